// coder web terminal: xterm.js attached to coderd's reconnecting-PTY
// websocket (GET /api/v2/workspaceagents/{id}/pty?reconnect=&height=&width=).
//
// The reconnect ID is kept in the URL (?reconnect=) and in localStorage, so a
// reload re-attaches to the same shell and the server replays its scrollback.
// Client messages are JSON objects sent as binary frames: {"data": "..."}
// for input, {"height": rows, "width": cols} for a resize. Server messages
// are terminal output bytes.
"use strict";

(() => {
  const body = document.body;
  const owner = body.dataset.owner;
  const workspace = body.dataset.workspace;
  const agentName = body.dataset.agent;
  const statusEl = document.getElementById("terminal-status");
  const params = new URLSearchParams(location.search);
  const command = params.get("command") || "";
  const storageKey = `coder.terminal.${owner}/${workspace}.${agentName || ""}${command ? `#${command}` : ""}`;
  const encoder = new TextEncoder();

  let reconnect = params.get("reconnect");
  if (!reconnect || !/^[0-9a-f-]{36}$/i.test(reconnect)) {
    try { reconnect = localStorage.getItem(storageKey); } catch (_) { reconnect = null; }
    if (!reconnect) reconnect = crypto.randomUUID();
  }
  try { localStorage.setItem(storageKey, reconnect); } catch (_) { /* private mode */ }
  params.set("reconnect", reconnect);
  history.replaceState(null, "", `${location.pathname}?${params}`);

  const term = new Terminal({
    cursorBlink: true,
    // xterm's DOM renderer clips each row to its cell height (overflow:
    // hidden). With lineHeight 1 a font's underscore sits on or below the
    // row's bottom edge and disappears ("$CODER WORKSPACE NAME"); 1.2 gives
    // every glyph room. Fonts common on Linux come before the macOS and
    // Windows ones (Chrome on Linux ignores ui-monospace).
    fontFamily: '"DejaVu Sans Mono", "Liberation Mono", "Ubuntu Mono", Menlo, Consolas, "Courier New", monospace',
    fontSize: 14,
    lineHeight: 1.2,
    scrollback: 10000,
    theme: { background: "#111418" },
  });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();
  term.focus();

  function setStatus(text, state) {
    statusEl.textContent = text;
    body.dataset.state = state;
  }

  let socket = null;
  let attempts = 0;
  let exited = false;

  function send(obj) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(encoder.encode(JSON.stringify(obj)));
  }

  term.onData((data) => send({ data }));
  term.onResize(({ rows, cols }) => send({ height: rows, width: cols }));
  window.addEventListener("resize", () => fit.fit());

  async function findAgent() {
    const res = await fetch(`/api/v2/users/${encodeURIComponent(owner)}/workspace/${encodeURIComponent(workspace)}`, { credentials: "same-origin" });
    if (res.status === 401) {
      location.assign(`/login?redirect=${encodeURIComponent(location.pathname + location.search)}`);
      return null;
    }
    if (!res.ok) throw new Error(res.status === 404 ? `Workspace ${owner}/${workspace} not found.` : `Workspace lookup failed (${res.status}).`);
    const ws = await res.json();
    const agents = [];
    for (const r of ws.latest_build.resources || []) for (const a of r.agents || []) agents.push(a);
    if (ws.latest_build.transition !== "start" || agents.length === 0) throw new Error(`Workspace ${owner}/${workspace} is not running.`);
    const agent = agentName ? agents.find((a) => a.name === agentName) : agents[0];
    if (!agent) throw new Error(`Workspace ${owner}/${workspace} has no agent named "${agentName}".`);
    if (!agentName && agents.length > 1) throw new Error(`Workspace has several agents: open /@${owner}/${workspace}.AGENT/terminal.`);
    return agent;
  }

  async function connect() {
    let agent;
    try {
      agent = await findAgent();
      if (!agent) return;
    } catch (err) {
      setStatus(err.message, "error");
      return;
    }
    if (agent.status !== "connected") {
      setStatus(`Agent ${agent.name} is ${agent.status}; retrying…`, "waiting");
      retry();
      return;
    }
    const q = new URLSearchParams({ reconnect, height: String(term.rows), width: String(term.cols) });
    if (command) q.set("command", command);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/v2/workspaceagents/${agent.id}/pty?${q}`);
    ws.binaryType = "arraybuffer";
    socket = ws;
    setStatus("Connecting…", "connecting");
    ws.onopen = () => {
      attempts = 0;
      setStatus("Connected", "connected");
      send({ height: term.rows, width: term.cols });
    };
    ws.onmessage = (ev) => {
      term.write(typeof ev.data === "string" ? ev.data : new Uint8Array(ev.data));
    };
    ws.onclose = (ev) => {
      if (socket !== ws) return;
      socket = null;
      if (ev.code === 1000 && ev.reason && /exit/i.test(ev.reason)) exited = true;
      if (exited) {
        setStatus("The process exited. Reload for a new session.", "exited");
        try { localStorage.removeItem(storageKey); } catch (_) { /* ignore */ }
        return;
      }
      setStatus(`Disconnected${ev.reason ? `: ${ev.reason}` : ""}; reconnecting…`, "disconnected");
      retry();
    };
  }

  function retry() {
    attempts++;
    const delay = Math.min(10000, 500 * 2 ** Math.min(attempts, 5));
    setTimeout(connect, delay);
  }

  connect();
})();
