package coderd_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
)

// loginStatus posts a password login and returns the status and Retry-After.
func loginStatus(t *testing.T, ctx context.Context, base, email, password string) (int, string) {
	t.Helper()
	body := `{"email":"` + email + `","password":"` + password + `"}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v2/users/login", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	return res.StatusCode, res.Header.Get("Retry-After")
}

// TestLoginRateLimit is the brute force: wrong passwords against one
// account, then guesses spread over many accounts from one address. Both
// are cut off with 429 + Retry-After (before any password hashing), and the
// legitimate login works once the window (on the injected clock) has passed.
func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	clk := newClock()
	client, srv := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{
		Now:         clk.Now,
		LoginLimits: coderd.LoginLimitOptions{AttemptsPerIP: 8, FailuresPerAccount: 3, Window: time.Minute},
	}})
	first := coderdtest.CreateFirstUser(t, client)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := srv.URL.String()
	pw := coderdtest.FirstUserPassword

	retryAfter := func(t *testing.T, v string) {
		t.Helper()
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 60 {
			t.Fatalf("Retry-After = %q, want 1..60 seconds", v)
		}
	}

	// Per account: three wrong passwords, then even the right one waits.
	clk.Advance(time.Minute)
	for i := range 3 {
		if status, _ := loginStatus(t, ctx, base, first.Email, "wrong-"+strconv.Itoa(i)); status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: status %d, want 401", i, status)
		}
	}
	status, ra := loginStatus(t, ctx, base, strings.ToUpper(first.Email), "wrong-again")
	if status != http.StatusTooManyRequests {
		t.Fatalf("4th wrong password: status %d, want 429", status)
	}
	retryAfter(t, ra)
	if status, ra := loginStatus(t, ctx, base, first.Email, pw); status != http.StatusTooManyRequests {
		t.Fatalf("right password while locked: status %d, want 429", status)
	} else {
		retryAfter(t, ra)
	}
	clk.Advance(61 * time.Second)
	if status, _ := loginStatus(t, ctx, base, first.Email, pw); status != http.StatusCreated {
		t.Fatalf("login after the window: status %d, want 201", status)
	}

	// Per address: guesses at many accounts.
	clk.Advance(time.Minute)
	for i := range 8 {
		if status, _ := loginStatus(t, ctx, base, uuid.NewString()+"@coder.test", "guess"); status != http.StatusUnauthorized {
			t.Fatalf("guess %d: status %d, want 401", i, status)
		}
	}
	status, ra = loginStatus(t, ctx, base, uuid.NewString()+"@coder.test", "guess")
	if status != http.StatusTooManyRequests {
		t.Fatalf("9th guess from one address: status %d, want 429", status)
	}
	retryAfter(t, ra)
	clk.Advance(30 * time.Second)
	if status, ra := loginStatus(t, ctx, base, first.Email, pw); status != http.StatusTooManyRequests || ra != "30" {
		t.Fatalf("mid-window: status %d Retry-After %q, want 429 and 30", status, ra)
	}
	clk.Advance(31 * time.Second)
	if status, _ := loginStatus(t, ctx, base, first.Email, pw); status != http.StatusCreated {
		t.Fatalf("login after the address window: status %d, want 201", status)
	}
	// The CLI's client logs in too.
	if _, err := client.LoginWithPassword(ctx, codersdk.LoginWithPasswordRequest{Email: first.Email, Password: pw}); err != nil {
		t.Fatal(err)
	}
}
