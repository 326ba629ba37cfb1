package site_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/coderd/replicasync"
)

// TestBrowserHealthPageListsReplicas: an owner's Health page lists the
// replicas sharing the database (two registrations on the real
// PostgreSQL: this coderd's and a second replica's), with their relay URLs
// and the version mismatch warning; a stopped replica disappears from the
// list while the page is open. A member has no Health link and the page
// shows the API's refusal. Real coderd, PostgreSQL and headless Chromium.
func TestBrowserHealthPageListsReplicas(t *testing.T) {
	ctx := context.Background()
	client, srv := coderdtest.New(t, &coderdtest.Options{Replicas: &replicasync.Options{
		Hostname: "replica-a", RelayAddress: "http://10.0.0.1:3000", Version: "v2.0.0", UpdateInterval: time.Hour,
	}})
	coderdtest.CreateFirstUser(t, client)
	other, err := replicasync.New(ctx, nil, srv.DB, nil, replicasync.Options{
		Hostname: "replica-b", RelayAddress: "http://10.0.0.2:3000", Version: "v2.0.1", UpdateInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	if err := srv.API.Options().Replicas.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	base := strings.TrimSuffix(srv.URL.String(), "/")
	b := newBrowser(t)
	b.do("log in", chromedp.Navigate(base+"/login"))
	b.waitJS("login page", `!!document.querySelector("#f-email")`, 30*time.Second)
	b.do("fill login",
		chromedp.SendKeys(chromedp.CSS("#f-email"), "owner@coder.test"),
		chromedp.SendKeys(chromedp.CSS("#f-password"), coderdtest.FirstUserPassword),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	b.waitJS("workspaces page", `location.pathname === "/workspaces"`, 30*time.Second)
	b.waitJS("health link for owners", `!document.querySelector("#nav-health").hidden`, 30*time.Second)
	b.do("open health", chromedp.Click(chromedp.CSS("#nav-health")))
	for _, r := range []struct{ host, relay string }{{"replica-a", "http://10.0.0.1:3000"}, {"replica-b", "http://10.0.0.2:3000"}} {
		b.waitJS("row of "+r.host, fmt.Sprintf(`[...document.querySelectorAll("#replicas tbody tr")].some((tr) =>
			tr.querySelector("th").textContent === %q && tr.textContent.includes(%q))`, r.host, r.relay), 30*time.Second)
	}
	b.waitJS("two replicas", `document.querySelectorAll("#replicas tbody tr").length === 2 &&
		document.querySelector("#replicas-note").textContent.startsWith("2 live replica(s)")`, 30*time.Second)
	b.waitJS("version warning", `(document.querySelector('#health-sections tr[data-section="replicas"]')?.textContent || "").includes("different versions")`, 30*time.Second)
	b.screenshot("health-replicas")

	// Replica B stops: the open page drops it at its next refresh.
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.API.Options().Replicas.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	b.waitJS("replica-b gone", `[...document.querySelectorAll("#replicas tbody tr")].map((tr) => tr.querySelector("th").textContent).join() === "replica-a"`, 30*time.Second)

	// A member sees no link, and the page shows the API's refusal.
	_, member := coderdtest.CreateAnotherUser(t, client)
	b.do("log out", chromedp.Click(chromedp.CSS("#logout")))
	b.waitJS("login page", `location.pathname === "/login" && !!document.querySelector("#f-email")`, 30*time.Second)
	b.do("log in as member",
		chromedp.SendKeys(chromedp.CSS("#f-email"), member.Email),
		chromedp.SendKeys(chromedp.CSS("#f-password"), coderdtest.FirstUserPassword),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	b.waitJS("member's workspaces page", `location.pathname === "/workspaces" && document.querySelector("#account-name").textContent === `+fmt.Sprintf("%q", member.Username), 30*time.Second)
	b.waitJS("no health link", `document.querySelector("#nav-health").hidden`, 30*time.Second)
	b.do("open health as member", chromedp.Navigate(base+"/health"))
	b.waitJS("refused", `!!document.querySelector('[role="alert"]') && document.querySelectorAll("#replicas tbody tr").length === 0`, 30*time.Second)
}
