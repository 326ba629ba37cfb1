package site_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// csrfPage is the attacker's page on a sibling host of the same site. It
// forges requests to target the ways a page can without a CORS preflight:
// a no-cors fetch with a text/plain JSON body (the victim's cookie rides
// along) and an enctype=text/plain form whose one field spells JSON.
const csrfPage = `<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" action="%[1]s/api/v2/users/first">
<input type="hidden" name='{"email":"form@evil.test","username":"formevil","password":"%[2]s","x":"' value='"}'>
</form>
<script>
const target = %[3]q;
const body = %[4]q;
const path = %[5]q;
async function run() {
  try {
    await fetch(target + path, {method: "POST", mode: "no-cors", credentials: "include",
      headers: {"Content-Type": "text/plain"}, body});
    document.title = "sent";
  } catch (e) {
    document.title = "error " + e;
  }
}
if (location.pathname === "/form") document.getElementById("f").submit(); else run();
</script></body></html>`

// TestBrowserCSRF runs the reported cross-site request forgery in headless
// Chromium: a page on evil.example.test posts to coderd on
// coder.example.test (same site, so SameSite=Lax cookies are sent). It must
// neither claim a fresh deployment's first user nor, with the owner's
// cookie, create an owner; the dashboard on its own origin still works.
func TestBrowserCSRF(t *testing.T) {
	client, srv := coderdtest.New(t, nil)
	coderOrigin := "http://coder." + appsDomain + ":" + srv.URL.Port()
	firstBody := `{"email":"evil@evil.test","username":"evil","password":"` + coderdtest.FirstUserPassword + `"}`
	userBody := `{"email":"evil2@evil.test","username":"evil2","password":"` + coderdtest.FirstUserPassword + `","roles":["owner"]}`
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, path := firstBody, "/api/v2/users/first"
		if r.URL.Path == "/users" {
			body, path = userBody, "/api/v2/users"
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, csrfPage, coderOrigin, coderdtest.FirstUserPassword, coderOrigin, body, path)
	}))
	t.Cleanup(evil.Close)
	evilURL, err := url.Parse(evil.URL)
	if err != nil {
		t.Fatal(err)
	}
	evilOrigin := "http://evil." + appsDomain + ":" + evilURL.Port()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b := newBrowser(t)

	// A fresh deployment: the forged fetch and the forged form both fail.
	b.do("attacker page (fetch)", chromedp.Navigate(evilOrigin+"/first"))
	b.waitJS("forged fetch sent", `document.title === "sent"`, 30*time.Second)
	if has, err := client.HasFirstUser(ctx); err != nil || has {
		t.Fatalf("a cross-site fetch created the first user (%v)", err)
	}
	b.do("attacker page (form)", chromedp.Navigate(evilOrigin+"/form"))
	b.waitJS("forged form submitted", fmt.Sprintf(`location.origin === %q && document.readyState === "complete"`, coderOrigin), 30*time.Second)
	if got := b.eval(`document.body.innerText`); !strings.Contains(got, "Cross-origin request refused") {
		t.Errorf("forged form answer: %s", got)
	}
	if has, err := client.HasFirstUser(ctx); err != nil || has {
		t.Fatalf("a cross-site form created the first user (%v)", err)
	}

	// The dashboard on its own origin sets up the deployment (same-origin
	// JSON fetches) and logs the owner in (the session cookie).
	b.do("open dashboard", chromedp.Navigate(coderOrigin+"/"))
	b.waitJS("setup page", `location.pathname === "/setup" && !!document.querySelector("#f-username")`, 30*time.Second)
	b.do("fill setup form",
		chromedp.SendKeys(chromedp.CSS("#f-username"), "owner"),
		chromedp.SendKeys(chromedp.CSS("#f-email"), "owner@coder.test"),
		chromedp.SendKeys(chromedp.CSS("#f-password"), coderdtest.FirstUserPassword),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
	)
	b.waitJS("templates page after setup", `location.pathname === "/templates"`, 30*time.Second)

	// With the owner's cookie in the browser, the attacker tries to create
	// an owner account.
	b.do("attacker page (cookie)", chromedp.Navigate(evilOrigin+"/users"))
	b.waitJS("forged fetch sent", `document.title === "sent"`, 30*time.Second)

	login, err := client.LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{Email: "owner@coder.test", Password: coderdtest.FirstUserPassword})
	if err != nil {
		t.Fatal(err)
	}
	client.SetSessionToken(login.SessionToken)
	users, err := client.Users(ctx, codersdk.UsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(users.Users) != 1 {
		t.Fatalf("a cross-site page created users with the owner's cookie: %+v", users.Users)
	}

	// The dashboard's own cookie-authenticated JSON request still works.
	b.do("back to dashboard", chromedp.Navigate(coderOrigin+"/templates"))
	b.waitJS("templates page", `location.pathname === "/templates"`, 30*time.Second)
	b.do("same-origin create user", chromedp.Evaluate[chromedp.Void](`fetch("/api/v2/users", {method: "POST", credentials: "same-origin",
		headers: {"Content-Type": "application/json"},
		body: JSON.stringify({email: "member@coder.test", username: "member", password: `+jsString(coderdtest.FirstUserPassword)+`})})
		.then(r => { document.title = "status " + r.status; })`))
	b.waitJS("same-origin create user answered", `document.title.startsWith("status ")`, 30*time.Second)
	if got := b.eval(`document.title`); got != "status 201" {
		t.Fatalf("dashboard create user: %s", got)
	}
	users, err = client.Users(ctx, codersdk.UsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(users.Users) != 2 || !strings.Contains(fmt.Sprint(users.Users), "member") {
		t.Fatalf("users after the dashboard's request: %+v", users.Users)
	}
}
