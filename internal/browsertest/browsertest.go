// Package browsertest starts headless Chromium for tests that drive the
// dashboard and workspace apps in a real browser.
package browsertest

import (
	"context"
	"os"
	"testing"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is where Debian's chromium (scripts/deps.sh) puts the browser.
const ChromiumPath = "/usr/bin/chromium"

// Start launches a headless Chromium with a fresh profile and returns the
// context of its first tab; t.Cleanup stops the browser. Host names under
// appsDomain (the wildcard of subdomain apps) resolve to 127.0.0.1. A
// missing chromium fails the test.
func Start(t testing.TB, appsDomain string, width, height int) context.Context {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Fatalf("chromium not found at %s (%v): run `make deps` to install it", ChromiumPath, err)
	}
	tmp, err := os.MkdirTemp("", "chromium-")
	if err != nil {
		t.Fatalf("chromium temp dir: %v", err)
	}
	// Registered before the browser's cleanup, so it runs after it.
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(ChromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("host-resolver-rules", "MAP *."+appsDomain+" 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium keeps its singleton socket in $TMPDIR/org.chromium.Chromium.*
		// and leaves it behind when the test's cancel kills it: give it a
		// temporary directory of its own, removed at cleanup (short: a
		// unix socket path has at most 107 bytes, t.TempDir() is longer
		// for long test names).
		chromedp.Env("TMPDIR="+tmp),
		chromedp.WindowSize(width, height),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}
