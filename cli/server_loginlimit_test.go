package cli_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database/dbtestutil"
)

// TestServerLoginLimitFlags: --login-failure-limit and --login-rate-limit
// (and their environment twins) change when `coder server` answers 429 to
// password logins; the defaults let the same attempts through with 401.
func TestServerLoginLimitFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		// want is the status of each of 4 wrong-password logins.
		want []int
	}{
		{name: "defaults", want: []int{401, 401, 401, 401}},
		{name: "failure limit flag", args: []string{"--login-failure-limit", "2"}, want: []int{401, 401, 429, 429}},
		// CreateFirstUser logs in once: the 5th attempt from the address is refused.
		{name: "rate limit env", env: []string{cli.EnvLoginRateLimit + "=4"}, want: []int{401, 401, 401, 429}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := startServerCommand(t, tc.env, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			u, err := url.Parse(base)
			if err != nil {
				t.Fatal(err)
			}
			client := codersdk.New(u)
			first := coderdtest.CreateFirstUser(t, client)
			for i, want := range tc.want {
				body := `{"email":"` + first.Email + `","password":"wrong-` + strconv.Itoa(i) + `"}`
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
				if res.StatusCode != want {
					t.Fatalf("wrong password %d: status %d, want %d", i+1, res.StatusCode, want)
				}
				if want == http.StatusTooManyRequests && res.Header.Get("Retry-After") == "" {
					t.Fatalf("429 without Retry-After")
				}
			}
		})
	}
}

// TestServerLoginLimitFlagsInvalid: a limit that would disable the
// protection is refused with the flag's name before anything starts.
func TestServerLoginLimitFlagsInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{args: []string{"--login-rate-limit", "-1"}, want: "--login-rate-limit -1: must be at least 1"},
		{args: []string{"--login-failure-limit", "0"}, want: "--login-failure-limit 0: must be at least 1"},
		{env: []string{cli.EnvLoginRateLimitWindow + "=-5s"}, want: "--login-rate-limit-window -5s: must be positive"},
		{args: []string{"--login-max-concurrent-hashes", "-2"}, want: "--login-max-concurrent-hashes -2: must be 0"},
	} {
		env, _ := testEnv(t)
		res := runCLI(t, append(env, tc.env...), nil, append([]string{"server"}, tc.args...)...)
		if res.code != 1 || !strings.Contains(res.stderr, tc.want) {
			t.Fatalf("server %v %v: exit %d stderr %q, want %q", tc.args, tc.env, res.code, res.stderr, tc.want)
		}
	}
}

// startServerCommand runs `coder server` (no built-in daemons) on a fresh
// database until the test ends and returns its URL.
func startServerCommand(t *testing.T, extraEnv []string, args ...string) string {
	t.Helper()
	env, _ := testEnv(t)
	env = append(env, "CODER_PG_CONNECTION_URL="+dbtestutil.NewDB(t), "CODER_HTTP_ADDRESS=127.0.0.1:0",
		"CODER_DERP_SERVER_STUN_ADDRESSES=127.0.0.1:0", cli.EnvProvisionerDaemons+"=0")
	env = append(env, extraEnv...)
	ctx, cancel := context.WithCancel(context.Background())
	outR, outW := io.Pipe()
	var stderr strings.Builder
	var mu sync.Mutex
	done := make(chan int, 1)
	go func() {
		code := cli.Run(ctx, cli.Invocation{Args: append([]string{"server"}, args...), Stdout: outW, Stderr: &lockedWriter{mu: &mu, w: &stderr}, Environ: env})
		_ = outW.Close()
		done <- code
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	sc := bufio.NewScanner(outR)
	var base string
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Started HTTP listener at "); ok {
			base = rest
		}
		if strings.HasPrefix(sc.Text(), "Log in from a terminal:") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	if base == "" {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("server did not start; stderr:\n%s", stderr.String())
	}
	return base
}
