// coder dashboard: a small client-side router over coderd's /api/v2.
// Every element is built with DOM calls (never innerHTML with data), so
// names and logs from the API cannot inject markup.
"use strict";

(() => {
  const POLL_MS = 2000;
  const main = document.getElementById("main");
  let cleanups = [];
  let me = null;

  // ---------- helpers ----------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `Request failed with status ${status}.`);
      this.status = status;
      this.detail = (body && body.detail) || "";
      this.validations = (body && body.validations) || [];
    }
  }

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let data = null;
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = { message: text }; }
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return data;
  }

  // h builds an element: h("a", {href: "/x", class: "c"}, "text", child...).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (v === true) el.setAttribute(k, "");
      else el.setAttribute(k, String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function setPage(title, ...nodes) {
    document.title = title ? `${title} · Coder` : "Coder";
    main.replaceChildren(...nodes);
  }

  function flash(message) {
    const el = document.getElementById("flash");
    el.textContent = message;
    setTimeout(() => { if (el.textContent === message) el.textContent = ""; }, 5000);
  }

  function errorBox(err) {
    const box = h("div", { class: "error", role: "alert" }, err.message || String(err));
    if (err.detail) box.append(h("div", { class: "muted" }, err.detail));
    return box;
  }

  function ago(iso) {
    if (!iso) return "never";
    const t = new Date(iso).getTime();
    if (!t || t < 0) return "never";
    const s = Math.round((Date.now() - t) / 1000);
    if (s < 5) return "just now";
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return `${Math.floor(s / 86400)}d ago`;
  }

  function badge(value, kind) {
    const v = value || "unknown";
    return h("span", { class: `badge badge-${kind || "status"} s-${v}` }, v.replace(/_/g, " "));
  }

  // poll calls fn now and every POLL_MS until the page changes; fn's
  // errors are shown in place of nothing (the next tick retries).
  function poll(fn) {
    let stopped = false;
    let timer = null;
    const tick = async () => {
      try { await fn(); } catch (err) { if (!stopped) handleError(err); }
      if (!stopped) timer = setTimeout(tick, POLL_MS);
    };
    cleanups.push(() => { stopped = true; clearTimeout(timer); });
    return tick();
  }

  function handleError(err) {
    if (err instanceof ApiError && err.status === 401) {
      me = null;
      navigate(`/login?redirect=${encodeURIComponent(location.pathname + location.search)}`, true);
      return true;
    }
    flash(err.message || String(err));
    return false;
  }

  function agentsOf(ws) {
    const out = [];
    for (const r of (ws.latest_build && ws.latest_build.resources) || []) {
      for (const a of r.agents || []) out.push(a);
    }
    return out;
  }

  function isOwner(user) {
    return !!user && (user.roles || []).some((r) => r.name === "owner");
  }

  let appHost = undefined; // undefined: not asked yet; "": no wildcard configured
  async function getAppHost() {
    if (appHost !== undefined) return appHost;
    try {
      const res = await api("GET", "/api/v2/applications/host");
      appHost = (res && res.host) || "";
    } catch (_) {
      appHost = "";
    }
    return appHost;
  }

  // subdomainURL builds an app origin from the wildcard pattern
  // ("*.apps.example.com" or "*-apps.example.com"), keeping the dashboard's
  // port when the pattern names none.
  function subdomainURL(pattern, prefix) {
    let hostname = pattern.replace("*", prefix);
    if (!/:\d+$/.test(hostname) && location.port) hostname += `:${location.port}`;
    return `${location.protocol}//${hostname}/`;
  }

  // ---------- router ----------

  function navigate(path, replace) {
    if (replace) history.replaceState(null, "", path);
    else history.pushState(null, "", path);
    render();
  }

  document.addEventListener("click", (ev) => {
    const a = ev.target.closest && ev.target.closest("a");
    if (!a || a.target || a.hasAttribute("download") || a.dataset.external !== undefined) return;
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin) return;
    // Pages the dashboard does not render itself: full navigation.
    if (/^\/@[^/]+\/[^/]+\/(terminal|apps|ports)(\/|$)/.test(url.pathname) || url.pathname.startsWith("/api/")) return;
    ev.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", render);

  const routes = [
    [/^\/login$/, viewLogin, false],
    [/^\/setup$/, viewSetup, false],
    [/^\/$/, () => navigate("/workspaces", true), true],
    [/^\/workspaces$/, viewWorkspaces, true],
    [/^\/templates$/, viewTemplates, true],
    [/^\/templates\/([^/]+)$/, viewTemplate, true],
    [/^\/templates\/([^/]+)\/workspace$/, viewCreateWorkspace, true],
    [/^\/users$/, viewUsers, true],
    [/^\/health$/, viewHealth, true],
    [/^\/@([^/]+)\/([^/.]+)$/, viewWorkspace, true],
  ];

  async function render() {
    for (const c of cleanups) c();
    cleanups = [];
    const path = location.pathname;
    for (const [re, view, needsAuth] of routes) {
      const m = path.match(re);
      if (!m) continue;
      if (needsAuth && !(await ensureUser())) return;
      updateChrome();
      try {
        await view(...m.slice(1).map(decodeURIComponent));
      } catch (err) {
        if (!handleError(err)) setPage("Error", h("h1", {}, "Something went wrong"), errorBox(err));
      }
      main.focus({ preventScroll: true });
      return;
    }
    updateChrome();
    setPage("Not found", h("h1", {}, "Page not found"),
      h("p", {}, "There is nothing at ", h("code", {}, path), ". ", h("a", { href: "/workspaces" }, "Go to workspaces.")));
  }

  async function ensureUser() {
    if (me) return true;
    try {
      me = await api("GET", "/api/v2/users/me");
      return true;
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 401) throw err;
    }
    let hasFirst = true;
    try { await api("GET", "/api/v2/users/first"); } catch (err) {
      if (err instanceof ApiError && err.status === 404) hasFirst = false;
    }
    const here = location.pathname + location.search;
    navigate(hasFirst ? `/login?redirect=${encodeURIComponent(here)}` : "/setup", true);
    return false;
  }

  function updateChrome() {
    document.getElementById("nav").hidden = !me;
    document.getElementById("account").hidden = !me;
    document.getElementById("nav-users").hidden = !isOwner(me);
    document.getElementById("nav-health").hidden = !isOwner(me);
    document.getElementById("account-name").textContent = me ? me.username : "";
    for (const a of document.querySelectorAll("#nav a")) {
      const here = location.pathname === a.getAttribute("href") || location.pathname.startsWith(a.getAttribute("href") + "/");
      if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
  }

  document.getElementById("logout").addEventListener("click", async () => {
    try { await api("POST", "/api/v2/users/logout"); } catch (_) { /* already gone */ }
    me = null;
    navigate("/login");
  });

  // ---------- forms ----------

  // field builds a labelled input with an error slot; the slot is filled
  // by showErrors from server-side validations.
  function field(label, input, help) {
    const id = input.id || (input.id = `f-${input.name}`);
    const err = h("div", { class: "field-error", id: `${id}-error`, role: "alert" });
    const hint = help ? h("div", { class: "help", id: `${id}-help` }, help) : null;
    input.setAttribute("aria-describedby", [hint && hint.id, err.id].filter(Boolean).join(" "));
    return h("div", { class: "field", dataset: { field: input.name } }, h("label", { for: id }, label), hint, input, err);
  }

  function clearErrors(form) {
    for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    const top = form.querySelector(".form-error");
    if (top) top.replaceChildren();
  }

  function setFieldError(form, name, message) {
    const wrap = form.querySelector(`.field[data-field="${CSS.escape(name)}"]`);
    if (!wrap) return false;
    wrap.querySelector(".field-error").textContent = message;
    const input = wrap.querySelector("input, select, textarea");
    if (input) input.setAttribute("aria-invalid", "true");
    return true;
  }

  function showErrors(form, err) {
    const top = form.querySelector(".form-error");
    const unmatched = [];
    for (const v of err.validations || []) {
      if (!setFieldError(form, v.field, v.detail)) unmatched.push(`${v.field}: ${v.detail}`);
    }
    top.replaceChildren(errorBox(err), ...unmatched.map((u) => h("div", {}, u)));
    const first = form.querySelector("[aria-invalid]");
    if (first) first.focus();
  }

  function submitting(form, busy) {
    for (const b of form.querySelectorAll("button")) b.disabled = busy;
    form.setAttribute("aria-busy", busy ? "true" : "false");
  }

  // ---------- views ----------

  function viewLogin() {
    if (me) { navigate("/workspaces", true); return; }
    const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true });
    const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true });
    const form = h("form", { class: "card narrow", "aria-labelledby": "login-title" },
      h("h1", { id: "login-title" }, "Sign in to Coder"),
      h("div", { class: "form-error" }),
      field("Email", email), field("Password", password),
      h("button", { type: "submit", class: "primary" }, "Sign in"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      submitting(form, true);
      try {
        await api("POST", "/api/v2/users/login", { email: email.value, password: password.value });
        me = null;
        const redirect = new URLSearchParams(location.search).get("redirect") || "/workspaces";
        if (/^\/@[^/]+\/[^/]+\/(terminal|apps|ports)(\/|$)/.test(redirect)) { location.assign(redirect); return; }
        navigate(redirect.startsWith("/") && !redirect.startsWith("//") ? redirect : "/workspaces", true);
      } catch (err) {
        showErrors(form, err);
      } finally {
        submitting(form, false);
      }
    });
    setPage("Sign in", form);
    email.focus();
  }

  function viewSetup() {
    const username = h("input", { name: "username", autocomplete: "username", required: true });
    const email = h("input", { type: "email", name: "email", autocomplete: "email", required: true });
    const name = h("input", { name: "name", autocomplete: "name" });
    const password = h("input", { type: "password", name: "password", autocomplete: "new-password", required: true });
    const form = h("form", { class: "card narrow", "aria-labelledby": "setup-title" },
      h("h1", { id: "setup-title" }, "Create the first user"),
      h("p", { class: "muted" }, "This account owns the deployment."),
      h("div", { class: "form-error" }),
      field("Username", username), field("Email", email), field("Full name (optional)", name), field("Password", password),
      h("button", { type: "submit", class: "primary" }, "Create account"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      submitting(form, true);
      try {
        await api("POST", "/api/v2/users/first", { username: username.value, email: email.value, name: name.value, password: password.value });
        await api("POST", "/api/v2/users/login", { email: email.value, password: password.value });
        me = null;
        navigate("/templates", true);
      } catch (err) {
        showErrors(form, err);
      } finally {
        submitting(form, false);
      }
    });
    setPage("Setup", form);
    username.focus();
  }

  function agentSummary(agents) {
    if (!agents.length) return h("span", { class: "muted" }, "—");
    return h("ul", { class: "plain" }, agents.map((a) =>
      h("li", { dataset: { agent: a.name } }, `${a.name}: `, badge(a.status), " ", badge(a.lifecycle_state, "lifecycle"))));
  }

  async function viewWorkspaces() {
    const tbody = h("tbody");
    const table = h("table", { class: "list", "aria-describedby": "ws-caption" },
      h("caption", { id: "ws-caption", class: "muted" }, "Updates live."),
      h("thead", {}, h("tr", {}, ["Name", "Template", "Status", "Last build", "Agents"].map((c) => h("th", { scope: "col" }, c)))),
      tbody);
    const empty = h("p", { class: "muted", hidden: true }, "No workspaces yet. ", h("a", { href: "/templates" }, "Create one from a template."));
    setPage("Workspaces",
      h("div", { class: "page-head" }, h("h1", {}, "Workspaces"), h("a", { class: "button primary", href: "/templates" }, "New workspace")),
      table, empty);
    await poll(async () => {
      const res = await api("GET", "/api/v2/workspaces");
      const list = res.workspaces || [];
      empty.hidden = list.length > 0;
      table.hidden = list.length === 0;
      tbody.replaceChildren(...list.map((ws) => {
        const b = ws.latest_build || {};
        return h("tr", { dataset: { workspace: `${ws.owner_name}/${ws.name}` } },
          h("th", { scope: "row" }, h("a", { href: `/@${ws.owner_name}/${ws.name}` }, `${ws.owner_name}/${ws.name}`)),
          h("td", {}, ws.template_display_name || ws.template_name),
          h("td", { class: "ws-status" }, badge(b.status)),
          h("td", {}, `${b.transition || ""} #${b.build_number || "?"} by ${b.initiator_name || "?"}, ${ago(b.created_at)}`),
          h("td", {}, agentSummary(agentsOf(ws))));
      }));
    });
  }

  // ---------- workspace page: agent logs, metadata, ports; build history ----------

  const AGENT_LOG_SOURCE = "3b9a1b7e-3f4f-4a8b-9d6e-2c1d0c0a9e01"; // agentsdk.AgentLogSourceID

  function duration(fromIso, toIso) {
    if (!fromIso) return "";
    const from = new Date(fromIso).getTime();
    const to = toIso ? new Date(toIso).getTime() : Date.now();
    const s = Math.max(0, Math.round((to - from) / 1000));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  // agentLogs streams one agent's logs (GET .../logs?follow, a websocket of
  // JSON arrays) into one block per log source: each script of the agent,
  // plus the agent's own lines. The stream resumes after the last line when
  // it drops.
  function agentLogs(agent) {
    const el = h("div", { class: "agent-logs", dataset: { agentLogs: agent.name } });
    const sources = new Map(); // source id -> {box, pre, status}
    let lastID = 0;
    let socket = null;
    let closed = false;
    let retry = null;
    let scripts = [];

    const sourceName = (id) => {
      if (id === AGENT_LOG_SOURCE) return "Agent";
      const s = scripts.find((x) => x.log_source_id === id);
      return s ? (s.display_name || "Script") : "Other";
    };
    const source = (id) => {
      let s = sources.get(id);
      if (s) return s;
      const status = h("span", { class: "script-status" });
      const nameEl = h("span", { class: "source-name" });
      const pre = h("pre", { class: "logs", tabindex: "0" });
      const box = h("details", { class: "log-source", open: true, dataset: { source: id } }, h("summary", {}, nameEl, " ", status), pre);
      s = { box, pre, status, nameEl };
      sources.set(id, s);
      arrange();
      return s;
    };
    // arrange names the blocks (scripts may arrive after their first
    // lines) and orders them: scripts in manifest order, the agent's own
    // lines last.
    const arrange = () => {
      for (const [id, s] of sources) {
        const n = sourceName(id);
        if (s.nameEl.textContent !== n) {
          s.nameEl.textContent = n;
          s.box.dataset.sourceName = n;
          s.pre.setAttribute("aria-label", `Logs of ${n}`);
        }
      }
      const order = (x) => { const i = scripts.findIndex((sc) => sc.log_source_id === x); return i < 0 ? (x === AGENT_LOG_SOURCE ? 1e6 : 1e5) : i; };
      const sorted = [...sources.entries()].sort((a, b) => order(a[0]) - order(b[0])).map(([, v]) => v.box);
      if (sorted.some((box, i) => el.children[i] !== box)) el.replaceChildren(...sorted);
    };
    const append = (logs) => {
      for (const l of logs) {
        if (l.id <= lastID) continue;
        lastID = l.id;
        const s = source(l.source_id);
        const atBottom = s.pre.scrollTop + s.pre.clientHeight >= s.pre.scrollHeight - 4;
        s.pre.append(h("span", { class: `log log-${l.level || "info"}` }, `${l.output}\n`));
        if (atBottom) s.pre.scrollTop = s.pre.scrollHeight;
      }
    };
    const connect = () => {
      if (closed) return;
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      socket = new WebSocket(`${proto}//${location.host}/api/v2/workspaceagents/${agent.id}/logs?follow&after=${lastID}`);
      socket.onmessage = (ev) => { try { append(JSON.parse(ev.data) || []); } catch (_) { /* ignore a bad frame */ } };
      socket.onclose = () => { socket = null; if (!closed) retry = setTimeout(connect, 2000); };
    };
    connect();
    return {
      el,
      // update labels each script with what runs it and how its latest
      // run went (GET .../script-runs): status, exit code, duration.
      update(a, runs) {
        scripts = a.scripts || [];
        arrange();
        for (const sc of scripts) {
          const s = source(sc.log_source_id);
          const kind = [sc.run_on_start && "start", sc.run_on_stop && "stop", sc.cron && `cron ${sc.cron}`].filter(Boolean).join(", ");
          const run = (runs || []).find((r) => r.script_id === sc.id);
          let state = "";
          let detail = "";
          if (run) {
            state = { exit_failure: "failed" }[run.status] || run.status;
            if (run.exit_code !== undefined && run.exit_code !== null) detail = ` exit code ${run.exit_code}`;
            detail += `, ${duration(run.started_at, run.ended_at)}`;
          } else if (sc.run_on_start && ["created", "starting"].includes(a.lifecycle_state)) {
            state = "pending";
          }
          s.box.dataset.status = state;
          s.status.replaceChildren(kind ? h("span", { class: "muted" }, `(${kind}) `) : "", state ? badge(state, "script") : "",
            detail ? h("span", { class: "muted", "data-exit-code": run && run.exit_code !== undefined && run.exit_code !== null ? String(run.exit_code) : undefined }, detail) : "");
        }
      },
      close() { closed = true; clearTimeout(retry); if (socket) socket.close(); },
    };
  }

  // agentInsights keeps, per agent of the workspace, its live startup logs,
  // metadata values and listening ports (with links through the apps
  // proxy). Its elements persist across the page's polls so log streams
  // keep running.
  function agentInsights(owner, name, host) {
    const el = h("div", { class: "agent-insights" });
    const agents = new Map(); // agent id -> {box, logs, meta, ports, busy}
    const portLink = (a, p) => {
      const label = `${p.port}${p.process_name ? ` (${p.process_name})` : ""}`;
      const href = host ? subdomainURL(host, `${p.port}--${a.name}--${name}--${owner}`) : `/@${owner}/${name}.${a.name}/ports/${p.port}/`;
      return h("li", {}, h("a", { href, "data-port": String(p.port), target: "_blank", rel: "noreferrer" }, label));
    };
    const refreshAgent = async (a, x) => {
      const md = (await api("GET", `/api/v2/workspaceagents/${a.id}/metadata`)) || [];
      x.meta.replaceChildren(md.length ? h("dl", { class: "meta" }, md.map((m) => {
        const r = m.result || {};
        const value = r.error ? h("span", { class: "error-inline" }, `error: ${r.error}`) : (r.value || "");
        return [h("dt", {}, m.description.display_name || m.description.key),
          h("dd", { dataset: { metadata: m.description.key }, title: r.collected_at ? `collected ${ago(r.collected_at)}` : "not collected yet" },
            r.collected_at ? value : h("span", { class: "muted" }, "not collected yet"))];
      })) : h("p", { class: "muted" }, "No metadata."));
      if (a.status !== "connected") {
        x.ports.replaceChildren(h("p", { class: "muted" }, "Listening ports show while the agent is connected."));
        x.portsShown = false;
        return;
      }
      if (!x.portsShown) x.ports.replaceChildren(h("p", { class: "muted" }, "Asking the agent…"));
      // Asked of the agent over the mesh: slow when it is unreachable, so
      // it runs beside the page's poll (one question at a time).
      if (x.busy) return;
      x.busy = true;
      api("GET", `/api/v2/workspaceagents/${a.id}/listening-ports`).then((res) => {
        const ports = (res && res.ports) || [];
        x.ports.replaceChildren(ports.length ? h("ul", { class: "plain ports" }, ports.map((p) => portLink(a, p))) : h("p", { class: "muted" }, "No listening ports."));
        x.portsShown = true;
      }, (err) => {
        x.ports.replaceChildren(h("p", { class: "muted" }, `Listening ports unavailable: ${err.message}`));
      }).finally(() => { x.busy = false; });
    };
    return {
      el,
      async update(ws) {
        const current = agentsOf(ws);
        for (const [id, x] of agents) {
          if (!current.some((a) => a.id === id)) { x.logs.close(); x.box.remove(); agents.delete(id); }
        }
        for (const a of current) {
          let x = agents.get(a.id);
          if (!x) {
            const logs = agentLogs(a);
            const meta = h("div", { class: "agent-metadata" });
            const ports = h("div", { class: "agent-ports" });
            const box = h("article", { class: "card agent-insight", dataset: { agentInsight: a.name } },
              h("h3", {}, `Agent ${a.name}`),
              h("h4", {}, "Metadata"), meta,
              h("h4", {}, "Listening ports"), ports,
              h("h4", {}, "Startup and shutdown logs"), logs.el);
            x = { box, logs, meta, ports, busy: false, portsShown: false };
            agents.set(a.id, x);
            el.append(box);
          }
          x.logs.update(a, (await api("GET", `/api/v2/workspaceagents/${a.id}/script-runs`)) || []);
          await refreshAgent(a, x);
        }
        if (!current.length) el.replaceChildren(h("p", { class: "muted" }, "No agent is running."));
        else for (const p of el.querySelectorAll(":scope > p")) p.remove();
      },
      close() { for (const x of agents.values()) x.logs.close(); },
    };
  }

  // buildHistory lists the workspace's builds (newest first) with reason,
  // initiator, duration and status; "Logs" shows that build's log. Rows are
  // kept and updated in place, so a button stays put between polls.
  function buildHistory(onView) {
    const tbody = h("tbody");
    const el = h("table", { class: "list", id: "build-history" },
      h("thead", {}, h("tr", {}, ["Build", "Transition", "Reason", "Initiator", "Duration", "Status", ""].map((c) => h("th", { scope: "col" }, c)))),
      tbody);
    const rows = new Map(); // build id -> {tr, cells}
    return {
      el,
      async update(ws) {
        const builds = ((await api("GET", `/api/v2/workspaces/${ws.id}/builds`)) || []).sort((a, b) => b.build_number - a.build_number);
        builds.forEach((b, i) => {
          let r = rows.get(b.id);
          if (!r) {
            const cells = {};
            for (const c of ["transition", "reason", "initiator", "duration", "status"]) cells[c] = h("td", { "data-col": c });
            const tr = h("tr", { dataset: { build: String(b.build_number) } }, h("th", { scope: "row" }, `#${b.build_number}`),
              cells.transition, cells.reason, cells.initiator, cells.duration, cells.status,
              h("td", {}, h("button", { type: "button", "data-action": "view-build-logs", onclick: () => onView(r.build) }, "Logs")));
            r = { tr, cells };
            rows.set(b.id, r);
          }
          r.build = b;
          r.cells.transition.textContent = b.transition;
          r.cells.reason.textContent = b.reason || "initiator";
          r.cells.initiator.textContent = b.initiator_name || "";
          r.cells.duration.textContent = duration(b.job.started_at || b.created_at, b.job.completed_at || b.job.canceled_at);
          r.cells.duration.title = new Date(b.created_at).toLocaleString();
          r.cells.status.replaceChildren(badge(b.status));
          if (tbody.children[i] !== r.tr) tbody.insertBefore(r.tr, tbody.children[i] || null);
        });
      },
    };
  }

  async function viewWorkspace(owner, name) {
    const head = h("div", { class: "page-head" });
    const actions = h("div", { class: "actions", role: "group", "aria-label": "Workspace actions" });
    const info = h("p", { class: "muted" });
    const scheduleBox = h("div", { id: "workspace-schedule" });
    const agentsBox = h("div", { class: "agents" });
    const resourcesBox = h("div");
    const logs = h("pre", { class: "logs", id: "build-logs", tabindex: "0", "aria-label": "Build logs" });
    const logsTitle = h("h2", {}, "Build logs");
    const host = await getAppHost();
    const insights = agentInsights(owner, name, host);
    const history = buildHistory((b) => streamLogs(b));
    cleanups.push(() => insights.close());
    setPage(`${owner}/${name}`, head, info, scheduleBox, actions,
      h("section", { "aria-label": "Agents" }, h("h2", {}, "Agents"), agentsBox),
      h("section", { "aria-label": "Agent details", id: "agent-insights" }, insights.el),
      h("section", { "aria-label": "Build logs" }, logsTitle, logs),
      h("section", { "aria-label": "Build history" }, h("h2", {}, "Build history"), history.el),
      h("section", { "aria-label": "Resources" }, h("h2", {}, "Resources"), resourcesBox));

    let ws = null;
    let logBuild = null;
    let latestSeen = null;
    let logSource = null;
    let busy = false;
    cleanups.push(() => { if (logSource) logSource.close(); });

    const appendLog = (l) => {
      const atBottom = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
      logs.append(h("span", { class: `log log-${l.log_level || "info"}` }, `${l.stage ? `[${l.stage}] ` : ""}${l.output}\n`));
      if (atBottom) logs.scrollTop = logs.scrollHeight;
    };

    // streamLogs shows the logs of build b: followed live (server-sent
    // events) while its job runs, fetched once otherwise.
    const streamLogs = async (b) => {
      if (logSource) { logSource.close(); logSource = null; }
      logBuild = b.id;
      logs.replaceChildren();
      logsTitle.textContent = `Build logs — ${b.transition} #${b.build_number}`;
      const url = `/api/v2/workspacebuilds/${b.id}/logs`;
      if (["pending", "running", "canceling"].includes(b.job.status)) {
        logSource = new EventSource(`${url}?follow=true`);
        logSource.addEventListener("log", (ev) => appendLog(JSON.parse(ev.data)));
        logSource.addEventListener("end", () => { logSource.close(); logSource = null; });
        logSource.onerror = () => { if (logSource && logSource.readyState === EventSource.CLOSED) logSource = null; };
      } else {
        for (const l of (await api("GET", url)) || []) appendLog(l);
      }
    };

    const build = async (transition) => {
      await api("POST", `/api/v2/workspaces/${ws.id}/builds`, { transition });
      await refresh();
    };
    const updateWorkspace = async () => {
      await api("POST", `/api/v2/workspaces/${ws.id}/builds`, { transition: "start", template_version_id: ws.template_active_version_id });
      await refresh();
    };
    const waitIdle = async () => {
      for (;;) {
        const cur = await api("GET", `/api/v2/workspaces/${ws.id}`);
        if (!["pending", "running", "canceling"].includes(cur.latest_build.job.status)) return cur;
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    const act = (label, fn) => h("button", {
      type: "button", "data-action": label.toLowerCase(),
      onclick: async () => {
        if (busy) return;
        if (label === "Delete" && !confirm(`Delete workspace ${owner}/${name}? Its resources are destroyed.`)) return;
        busy = true;
        renderActions();
        try { await fn(); } catch (err) { handleError(err); } finally { busy = false; renderActions(); }
      },
    }, label);

    const renderActions = () => {
      if (!ws) return;
      const b = ws.latest_build;
      const active = ["pending", "running", "canceling"].includes(b.job.status);
      const btns = [];
      if (!active && b.transition !== "start") btns.push(act("Start", () => build("start")));
      if (!active && b.transition === "start") {
        btns.push(act("Stop", () => build("stop")));
        btns.push(act("Restart", async () => { await build("stop"); ws = await waitIdle(); await build("start"); }));
      }
      // An outdated workspace updates to the active version (a start with
      // it; parameters the new version adds need coder update).
      if (!active && ws.outdated) btns.push(act("Update", () => updateWorkspace()));
      if (active) btns.push(act("Cancel", async () => { await api("PATCH", `/api/v2/workspacebuilds/${b.id}/cancel`); await refresh(); }));
      if (!active) btns.push(act("Delete", async () => { await build("delete"); }));
      for (const el of btns) el.disabled = busy;
      actions.replaceChildren(...btns);
    };

    const appLink = (a, app) => {
      const health = app.health && app.health !== "disabled" ? app.health : "";
      const label = [app.display_name || app.slug, health && badge(health, "health")];
      if (app.command) {
        const href = `/@${owner}/${name}.${a.name}/terminal?command=${encodeURIComponent(app.command)}`;
        return h("a", { class: "button app", href, dataset: { app: app.slug } }, label);
      }
      if (app.external) return h("a", { class: "button app", href: app.url, rel: "noreferrer", dataset: { app: app.slug, external: "" } }, label);
      // Whenever the deployment serves apps on subdomains, every app opens on
      // its own origin: a path app shares the dashboard's origin (its scripts
      // would act with the visitor's session) and serves only its owner.
      if (app.subdomain || host) {
        if (!host) return h("span", { class: "button app disabled", title: "Subdomain apps need a wildcard access URL on the server.", dataset: { app: app.slug } }, label);
        const url = subdomainURL(host, `${app.slug}--${a.name}--${name}--${owner}`);
        return h("a", { class: "button app", href: url, dataset: { app: app.slug, external: "" } }, label);
      }
      return h("a", { class: "button app", href: `/@${owner}/${name}.${a.name}/apps/${app.slug}/`, dataset: { app: app.slug } }, label);
    };

    // renderSchedule shows when a running workspace stops (with Extend,
    // one more hour, never beyond its max deadline) and a banner on a
    // dormant one with its deletion date and a button that activates it.
    const renderSchedule = () => {
      const b = ws.latest_build;
      const parts = [];
      if (ws.dormant_at) {
        parts.push(h("p", { class: "banner warning", id: "dormant-banner", role: "status" },
          "This workspace is dormant: it was stopped after a period without use and cannot start until it is activated.",
          ws.deleting_at ? ` It will be deleted on ${new Date(ws.deleting_at).toLocaleString()}.` : "",
          " ", act("Activate", async () => { await api("PUT", `/api/v2/workspaces/${ws.id}/dormant`, { dormant: false }); await refresh(); })));
      }
      if (b.transition === "start" && b.status === "running" && b.deadline) {
        const left = Math.max(0, new Date(b.deadline) - Date.now());
        const mins = Math.round(left / 60000);
        const text = mins >= 60 ? `${Math.floor(mins / 60)}h ${mins % 60}m` : `${mins}m`;
        const extend = act("Extend", async () => {
          let next = Math.max(new Date(b.deadline).getTime(), Date.now()) + 3600000;
          if (b.max_deadline) next = Math.min(next, new Date(b.max_deadline).getTime());
          await api("PUT", `/api/v2/workspaces/${ws.id}/extend`, { deadline: new Date(next).toISOString() });
          await refresh();
        });
        parts.push(h("p", { class: "muted", id: "workspace-deadline", title: new Date(b.deadline).toLocaleString() }, `Stops in ${text}. `, extend));
      }
      scheduleBox.replaceChildren(...parts);
    };

    const renderWorkspace = () => {
      const b = ws.latest_build;
      head.replaceChildren(h("h1", {}, `${ws.owner_name}/${ws.name}`), h("span", { id: "workspace-status" }, badge(b.status)));
      info.replaceChildren(`Template ${ws.template_display_name || ws.template_name}`,
        b.template_version_name ? ` (version ${b.template_version_name})` : "",
        ws.outdated ? " — a newer template version is available" : "",
        `. Last build: ${b.transition} #${b.build_number} by ${b.initiator_name}, ${ago(b.created_at)}.`,
        b.job.error ? h("span", { class: "error-inline" }, ` Error: ${b.job.error}`) : "");
      renderActions();
      renderSchedule();
      const agents = agentsOf(ws);
      agentsBox.replaceChildren(...(agents.length ? agents.map((a) => h("article", { class: "agent card", dataset: { agent: a.name } },
        h("h3", {}, a.name, " ", badge(a.status), " ", badge(a.lifecycle_state, "lifecycle")),
        h("p", { class: "muted" }, `${a.operating_system}/${a.architecture}`, a.version ? ` · agent ${a.version}` : "",
          a.expanded_directory || a.directory ? ` · ${a.expanded_directory || a.directory}` : ""),
        h("div", { class: "apps", role: "group", "aria-label": `Apps of ${a.name}` },
          h("a", { class: "button", href: `/@${owner}/${name}.${a.name}/terminal`, "data-app": "terminal" }, "Terminal"),
          (a.apps || []).filter((app) => !app.hidden).map((app) => appLink(a, app))))) :
        [h("p", { class: "muted" }, b.transition === "start" ? "No agents." : "The workspace is not running.")]));
      const resources = (b.resources || []).filter((r) => !r.hide);
      resourcesBox.replaceChildren(resources.length ? h("table", { class: "list" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Resource"), h("th", { scope: "col" }, "Kind"), h("th", { scope: "col" }, "Details"))),
        h("tbody", {}, resources.map((r) => h("tr", { "data-resource": `${r.type}.${r.name}` },
          h("th", { scope: "row" }, `${r.type}.${r.name}`),
          h("td", { "data-kind": r.kind, "data-lifetime": r.lifetime },
            h("span", { class: "badge", title: r.kind === "computational" ? "an agent runs in it" : "no agent runs in it" }, r.kind),
            " ",
            h("span", { class: "badge", title: r.lifetime === "persistent" ? "survives a stop" : "destroyed by a stop, recreated by a start" }, r.lifetime)),
          h("td", {}, h("dl", { class: "meta" }, (r.metadata || []).map((m) => [h("dt", {}, m.key), h("dd", {}, m.sensitive ? "••••••" : m.value)]))))))) :
        h("p", { class: "muted" }, "No resources."));
    };

    const refresh = async () => {
      try {
        ws = await api("GET", `/api/v2/users/${encodeURIComponent(owner)}/workspace/${encodeURIComponent(name)}`);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404 && ws) {
          flash(`Workspace ${owner}/${name} was deleted.`);
          navigate("/workspaces", true);
          return;
        }
        throw err;
      }
      renderWorkspace();
      // A new build takes over the log view; a build picked in the
      // history stays until then.
      if (latestSeen !== ws.latest_build.id) { latestSeen = ws.latest_build.id; await streamLogs(ws.latest_build); }
      await insights.update(ws);
      await history.update(ws);
    };
    await poll(refresh);
  }

  async function viewTemplates() {
    const list = await api("GET", "/api/v2/templates");
    setPage("Templates", h("h1", {}, "Templates"),
      list.length ? h("table", { class: "list" },
        h("thead", {}, h("tr", {}, ["Name", "Description", "Users", "Created by", ""].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, list.map((t) => h("tr", { dataset: { template: t.name } },
          h("th", { scope: "row" }, h("a", { href: `/templates/${t.name}` }, t.display_name || t.name)),
          h("td", {}, t.description),
          h("td", {}, String(t.active_user_count || 0)),
          h("td", {}, t.created_by_name),
          h("td", {}, h("a", { class: "button", href: `/templates/${t.name}/workspace` }, "Create workspace")))))) :
        h("p", { class: "muted" }, "No templates yet. Push one with ", h("code", {}, "coder templates push"), "."));
  }

  async function viewTemplate(name) {
    const t = await api("GET", `/api/v2/templates/${encodeURIComponent(name)}`);
    const versions = await api("GET", `/api/v2/templates/${encodeURIComponent(name)}/versions`);
    versions.sort((a, b) => new Date(b.created_at) - new Date(a.created_at));
    // The active version's Terraform variables; sensitive values never
    // leave the server.
    const variables = (await api("GET", `/api/v2/templateversions/${t.active_version_id}/variables`)) || [];
    setPage(t.display_name || t.name,
      h("div", { class: "page-head" }, h("h1", {}, t.display_name || t.name),
        h("a", { class: "button primary", href: `/templates/${t.name}/workspace` }, "Create workspace")),
      t.description ? h("p", {}, t.description) : "",
      h("h2", {}, "Versions"),
      h("table", { class: "list" },
        h("thead", {}, h("tr", {}, ["Version", "Import", "Created", "By", "Message"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, versions.map((v) => h("tr", { dataset: { version: v.name } },
          h("th", { scope: "row" }, v.name, v.id === t.active_version_id ? h("span", { class: "badge s-active" }, "active") : ""),
          h("td", {}, badge(v.job.status)),
          h("td", {}, ago(v.created_at)),
          h("td", {}, (v.created_by && v.created_by.username) || ""),
          h("td", {}, v.message || ""))))),
      h("h2", {}, "Variables"),
      variables.length ? h("table", { class: "list", id: "template-variables" },
        h("thead", {}, h("tr", {}, ["Variable", "Value", "Description"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, variables.map((v) => h("tr", { dataset: { variable: v.name } },
          h("th", { scope: "row" }, v.name, v.required ? h("span", { class: "badge" }, "required") : ""),
          h("td", {}, v.sensitive ? h("span", { class: "muted", title: "sensitive: write-only" }, "sensitive") : h("code", {}, v.value)),
          h("td", {}, v.description || ""))))) :
        h("p", { class: "muted" }, "The active version declares no Terraform variables."));
  }

  // paramInput renders one rich parameter as a form control.
  function paramInput(p) {
    const attrs = { name: p.name, id: `param-${p.name}`, required: p.required && p.default_value === "" };
    if (p.options && p.options.length) {
      return h("select", attrs, p.options.map((o) => h("option", { value: o.value, selected: o.value === p.default_value }, o.name || o.value)));
    }
    if (p.type === "bool") {
      return h("select", attrs, ["true", "false"].map((v) => h("option", { value: v, selected: v === p.default_value }, v)));
    }
    if (p.type === "number") {
      return h("input", { ...attrs, type: "number", value: p.default_value, min: p.validation_min, max: p.validation_max, step: 1 });
    }
    return h("input", { ...attrs, type: "text", value: p.default_value });
  }

  // checkParam validates a value as the server will; "" means valid.
  function checkParam(p, value) {
    if (value === "") return p.required && p.default_value === "" ? "A value is required." : "";
    if (p.type === "number") {
      const n = Number(value);
      if (!Number.isFinite(n) || !Number.isInteger(n)) return "Must be a whole number.";
      if (p.validation_min !== undefined && p.validation_min !== null && n < p.validation_min) return `Must be at least ${p.validation_min}.`;
      if (p.validation_max !== undefined && p.validation_max !== null && n > p.validation_max) return `Must be at most ${p.validation_max}.`;
    }
    if (p.validation_regex) {
      let re = null;
      try { re = new RegExp(p.validation_regex); } catch (_) { re = null; }
      if (re && !re.test(value)) return p.validation_error || `Must match ${p.validation_regex}.`;
    }
    return "";
  }

  async function viewCreateWorkspace(templateName) {
    const t = await api("GET", `/api/v2/templates/${encodeURIComponent(templateName)}`);
    const params = (await api("GET", `/api/v2/templateversions/${t.active_version_id}/rich-parameters`)) || [];
    const nameInput = h("input", { name: "name", id: "workspace-name", required: true, autocomplete: "off", pattern: "[a-zA-Z0-9](-?[a-zA-Z0-9])*", maxlength: 32 });
    const inputs = params.map((p) => [p, paramInput(p)]);
    const form = h("form", { class: "card", novalidate: true, "aria-labelledby": "create-title" },
      h("h1", { id: "create-title" }, `New workspace from ${t.display_name || t.name}`),
      h("div", { class: "form-error" }),
      field("Workspace name", nameInput, "Letters, digits and single hyphens."),
      params.length ? h("fieldset", {}, h("legend", {}, "Parameters"),
        inputs.map(([p, input]) => field(p.display_name || p.name, input, [p.description, p.mutable ? "" : " Cannot be changed later."].join("")))) : "",
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create workspace"),
        h("a", { class: "button", href: `/templates/${t.name}` }, "Cancel")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      let bad = false;
      if (!nameInput.value) { setFieldError(form, "name", "A name is required."); bad = true; }
      for (const [p, input] of inputs) {
        const msg = checkParam(p, input.value);
        if (msg) { setFieldError(form, p.name, msg); bad = true; }
      }
      if (bad) {
        form.querySelector(".form-error").replaceChildren(h("div", { class: "error", role: "alert" }, "Fix the highlighted fields."));
        form.querySelector("[aria-invalid]").focus();
        return;
      }
      submitting(form, true);
      try {
        const ws = await api("POST", "/api/v2/users/me/workspaces", {
          template_id: t.id, name: nameInput.value,
          rich_parameter_values: inputs.map(([p, input]) => ({ name: p.name, value: input.value })),
        });
        navigate(`/@${ws.owner_name}/${ws.name}`);
      } catch (err) {
        showErrors(form, err);
      } finally {
        submitting(form, false);
      }
    });
    setPage("New workspace", form);
    nameInput.focus();
  }

  async function viewUsers() {
    const res = await api("GET", "/api/v2/users");
    setPage("Users", h("h1", {}, "Users"),
      h("table", { class: "list" },
        h("thead", {}, h("tr", {}, ["Username", "Email", "Roles", "Status", "Last seen"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, (res.users || []).map((u) => h("tr", { dataset: { user: u.username } },
          h("th", { scope: "row" }, u.username, u.name ? h("div", { class: "muted" }, u.name) : ""),
          h("td", {}, u.email),
          h("td", {}, (u.roles || []).map((r) => r.display_name || r.name).join(", ") || "member"),
          h("td", {}, badge(u.status)),
          h("td", {}, ago(u.last_seen_at)))))),
      h("p", { class: "muted" }, `${res.count} user(s). Create users with `, h("code", {}, "coder users create"), "."));
  }

  // viewHealth shows the owners' health report: one line per section and
  // the replicas sharing the database (refreshed while the page is open).
  async function viewHealth() {
    // The first report is fetched before the page is built, so a refusal
    // (not an owner) shows as the error page.
    let next = await api("GET", "/api/v2/debug/health");
    const sectionNames = ["database", "derp", "stun", "provisioner_daemons", "replicas"];
    const summary = h("div", { id: "health-summary" });
    const sections = h("tbody", {});
    const replicas = h("tbody", {});
    const replicaNote = h("p", { class: "muted", id: "replicas-note" });
    setPage("Health", h("h1", {}, "Health"), summary,
      h("table", { class: "list", id: "health-sections" },
        h("thead", {}, h("tr", {}, ["Section", "Severity", "Error", "Warnings"].map((c) => h("th", { scope: "col" }, c)))),
        sections),
      h("h2", {}, "Replicas"), replicaNote,
      h("table", { class: "list", id: "replicas" },
        h("thead", {}, h("tr", {}, ["Hostname", "ID", "Relay URL", "Version", "Started", "Last heartbeat", "Error"].map((c) => h("th", { scope: "col" }, c)))),
        replicas));
    await poll(async () => {
      const rep = next || await api("GET", "/api/v2/debug/health");
      next = null;
      summary.replaceChildren(badge(rep.healthy ? "healthy" : "unhealthy"), " severity ", badge(rep.severity),
        h("span", { class: "muted" }, ` · checked ${ago(rep.time)}`));
      sections.replaceChildren(...sectionNames.filter((n) => rep[n]).map((n) => h("tr", { dataset: { section: n } },
        h("th", { scope: "row" }, n.replace(/_/g, " ")),
        h("td", {}, badge(rep[n].severity)),
        h("td", {}, rep[n].error || ""),
        h("td", {}, (rep[n].warnings || []).join("; ")))));
      const rs = (rep.replicas && rep.replicas.replicas) || [];
      replicaNote.textContent = rep.replicas && rep.replicas.enabled
        ? `${rs.length} live replica(s) share the database.`
        : "A single node (embedded PostgreSQL): no replicas.";
      replicas.replaceChildren(...rs.map((r) => h("tr", { dataset: { replica: r.id } },
        h("th", { scope: "row" }, r.hostname),
        h("td", {}, h("code", {}, r.id)),
        h("td", {}, r.relay_address || h("span", { class: "muted" }, "none (does not mesh)")),
        h("td", {}, r.version),
        h("td", {}, ago(r.started_at)),
        h("td", {}, ago(r.updated_at)),
        h("td", {}, r.error || ""))));
    });
  }

  render();
})();
