package cli_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database/dbtestutil"
)

// result is the outcome of one in-process CLI run.
type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs the CLI in-process with the given environment.
func runCLI(t *testing.T, env []string, stdin io.Reader, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := cli.Run(context.Background(), cli.Invocation{
		Args: args, Stdin: stdin, Stdout: &stdout, Stderr: &stderr, Environ: env,
	})
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func mustRun(t *testing.T, env []string, args ...string) string {
	t.Helper()
	res := runCLI(t, env, nil, args...)
	if res.code != 0 {
		t.Fatalf("coder %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// testEnv returns an environment with a private config dir and home.
func testEnv(t *testing.T) ([]string, string) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	return []string{"HOME=" + dir, "CODER_CONFIG_DIR=" + cfg}, cfg
}

func requireMode0600(t *testing.T, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, info.Mode().Perm())
	}
}

func TestLoginFirstUserNonInteractive(t *testing.T) {
	t.Parallel()
	client, _ := coderdtest.New(t, nil)
	env, cfg := testEnv(t)

	// Without the first-user flags and without a terminal: a clear error.
	res := runCLI(t, env, nil, "login", client.URL.String())
	if res.code != 1 || !strings.HasPrefix(res.stderr, "error: the deployment has no users yet") {
		t.Fatalf("login without first-user flags: exit %d, stderr %q", res.code, res.stderr)
	}

	out := mustRun(t, append(env, "CODER_FIRST_USER_PASSWORD="+coderdtest.FirstUserPassword),
		"login", client.URL.String(), "--first-user-username", "admin", "--first-user-email", "admin@coder.test")
	if !strings.Contains(out, "admin") {
		t.Fatalf("login output %q does not greet the user", out)
	}
	requireMode0600(t, filepath.Join(cfg, "url"))
	requireMode0600(t, filepath.Join(cfg, "session"))

	var me codersdk.User
	if err := json.Unmarshal([]byte(mustRun(t, env, "users", "show", "me", "-o", "json")), &me); err != nil {
		t.Fatal(err)
	}
	if me.Username != "admin" || len(me.Roles) != 1 || me.Roles[0].Name != "owner" {
		t.Fatalf("me = %+v, want owner admin", me)
	}

	// A second first-user login is refused as the deployment has users;
	// without a token and a terminal that is an error, not a prompt.
	env2, _ := testEnv(t)
	res = runCLI(t, env2, nil, "login", client.URL.String())
	if res.code != 1 || !strings.Contains(res.stderr, "--token") {
		t.Fatalf("login without credentials: exit %d, stderr %q", res.code, res.stderr)
	}

	mustRun(t, env, "logout")
	if _, err := os.Stat(filepath.Join(cfg, "session")); !os.IsNotExist(err) {
		t.Fatalf("session file still there after logout: %v", err)
	}
	res = runCLI(t, env, nil, "users", "show", "me")
	if res.code != 1 || !strings.Contains(res.stderr, "not logged in") {
		t.Fatalf("after logout: exit %d, stderr %q", res.code, res.stderr)
	}
}

func TestLoginWithToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client, _ := coderdtest.New(t, nil)
	coderdtest.CreateFirstUser(t, client)
	token, err := client.CreateToken(ctx, codersdk.Me, codersdk.CreateTokenRequest{TokenName: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	env, cfg := testEnv(t)

	res := runCLI(t, env, nil, "login", client.URL.String(), "--token", "aaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbb")
	if res.code != 1 || !strings.HasPrefix(res.stderr, "error: ") {
		t.Fatalf("login with a bad token: exit %d, stderr %q", res.code, res.stderr)
	}

	mustRun(t, append(env, "CODER_SESSION_TOKEN="+token.Key), "login", client.URL.String())
	saved, err := os.ReadFile(filepath.Join(cfg, "session"))
	if err != nil || string(saved) != token.Key {
		t.Fatalf("saved session %q, %v", saved, err)
	}
	out := mustRun(t, env, "users", "show", "me")
	if !strings.Contains(out, "owner") {
		t.Fatalf("users show me: %q", out)
	}
}

func TestFlagsFromEnvWithoutConfig(t *testing.T) {
	t.Parallel()
	client, _ := coderdtest.New(t, nil)
	coderdtest.CreateFirstUser(t, client)
	env, _ := testEnv(t)
	env = append(env, "CODER_URL="+client.URL.String(), "CODER_SESSION_TOKEN="+client.SessionToken())
	out := mustRun(t, env, "users", "list")
	if !strings.Contains(out, "owner@coder.test") {
		t.Fatalf("users list with env credentials: %q", out)
	}
	// A flag wins over its environment twin.
	res := runCLI(t, env, nil, "users", "list", "--token", "aaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbb")
	if res.code != 1 {
		t.Fatalf("--token did not override $CODER_SESSION_TOKEN: %+v", res)
	}
}

// loggedIn returns an environment logged in as the first user of a new server.
func loggedIn(t *testing.T) ([]string, *codersdk.Client) {
	t.Helper()
	client, _ := coderdtest.New(t, nil)
	coderdtest.CreateFirstUser(t, client)
	env, _ := testEnv(t)
	mustRun(t, append(env, "CODER_SESSION_TOKEN="+client.SessionToken()), "login", client.URL.String())
	return env, client
}

func TestUsersCommands(t *testing.T) {
	t.Parallel()
	env, _ := loggedIn(t)

	out := mustRun(t, env, "users", "create", "--username", "alice", "--email", "alice@coder.test", "--password", "alice-password", "--role", "template-admin")
	if !strings.Contains(out, "alice") {
		t.Fatalf("create output %q", out)
	}
	mustRun(t, env, "users", "create", "-u", "bob", "-e", "bob@coder.test", "-p", "bob-password")

	var users []codersdk.User
	if err := json.Unmarshal([]byte(mustRun(t, env, "users", "list", "-o", "json")), &users); err != nil {
		t.Fatal(err)
	}
	if len(users) != 3 {
		t.Fatalf("users list json: %d users, want 3", len(users))
	}
	table := mustRun(t, env, "users", "list")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "USERNAME") || !strings.Contains(table, "template-admin") {
		t.Fatalf("users list table:\n%s", table)
	}

	out = mustRun(t, env, "users", "suspend", "bob")
	if !strings.Contains(out, "suspended") {
		t.Fatalf("suspend output %q", out)
	}
	var bob codersdk.User
	if err := json.Unmarshal([]byte(mustRun(t, env, "users", "show", "bob", "-o", "json")), &bob); err != nil {
		t.Fatal(err)
	}
	if bob.Status != codersdk.UserStatusSuspended {
		t.Fatalf("bob status %q after suspend", bob.Status)
	}
	suspendedOnly := mustRun(t, env, "users", "list", "--search", "status:suspended")
	if !strings.Contains(suspendedOnly, "bob") || strings.Contains(suspendedOnly, "alice") {
		t.Fatalf("status filter:\n%s", suspendedOnly)
	}
	mustRun(t, env, "users", "activate", "bob")
	if err := json.Unmarshal([]byte(mustRun(t, env, "users", "show", "bob", "-o", "json")), &bob); err != nil {
		t.Fatal(err)
	}
	if bob.Status != codersdk.UserStatusActive {
		t.Fatalf("bob status %q after activate", bob.Status)
	}
}

func TestErrorOutput(t *testing.T) {
	t.Parallel()
	env, _ := loggedIn(t)
	mustRun(t, env, "users", "create", "-u", "dup", "-e", "dup@coder.test", "-p", "dup-password")

	res := runCLI(t, env, nil, "users", "create", "-u", "dup", "-e", "dup2@coder.test", "-p", "dup-password")
	if res.code != 1 {
		t.Fatalf("duplicate create exit %d", res.code)
	}
	lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
	if lines[0] != "error: A user with that username already exists." {
		t.Fatalf("first error line %q", lines[0])
	}
	if !strings.Contains(res.stderr, "username: is already taken") {
		t.Fatalf("validation line missing:\n%s", res.stderr)
	}

	res = runCLI(t, env, nil, "users", "create", "-u", "bad name", "-e", "nope", "-p", "x")
	if res.code != 1 || !strings.HasPrefix(res.stderr, "error: Validation failed.") {
		t.Fatalf("invalid create: exit %d\n%s", res.code, res.stderr)
	}
	for _, field := range []string{"username:", "email:", "password:"} {
		if !strings.Contains(res.stderr, field) {
			t.Fatalf("stderr lacks %q:\n%s", field, res.stderr)
		}
	}

	res = runCLI(t, env, nil, "users", "show", "ghost")
	if res.code != 1 || !strings.HasPrefix(res.stderr, "error: Resource not found") {
		t.Fatalf("show unknown user: exit %d\n%s", res.code, res.stderr)
	}
	res = runCLI(t, env, nil, "users", "list", "-o", "yaml")
	if res.code != 1 || !strings.Contains(res.stderr, `unknown output format "yaml"`) {
		t.Fatalf("bad output format: exit %d\n%s", res.code, res.stderr)
	}
}

func TestTokensCommands(t *testing.T) {
	t.Parallel()
	env, client := loggedIn(t)

	token := mustRun(t, env, "tokens", "create", "--name", "ci", "--lifetime", "48h")
	token = strings.TrimSuffix(token, "\n")
	if strings.ContainsAny(token, " \n") || len(token) != 33 {
		t.Fatalf("tokens create printed %q, want the token alone", token)
	}
	tokenClient := codersdk.New(client.URL)
	tokenClient.SetSessionToken(token)
	if _, err := tokenClient.User(context.Background(), codersdk.Me); err != nil {
		t.Fatalf("created token does not work: %v", err)
	}

	var keys []codersdk.APIKey
	if err := json.Unmarshal([]byte(mustRun(t, env, "tokens", "list", "-o", "json")), &keys); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].TokenName != "ci" || keys[0].LifetimeSeconds != 48*3600 {
		t.Fatalf("tokens list = %+v", keys)
	}
	if table := mustRun(t, env, "tokens", "list"); !strings.Contains(table, "ci") || !strings.HasPrefix(table, "ID") {
		t.Fatalf("tokens list table:\n%s", table)
	}

	mustRun(t, env, "tokens", "remove", "ci")
	if _, err := tokenClient.User(context.Background(), codersdk.Me); err == nil {
		t.Fatal("removed token still works")
	}
	res := runCLI(t, env, nil, "tokens", "remove", "ci")
	if res.code != 1 || !strings.HasPrefix(res.stderr, "error: ") {
		t.Fatalf("removing a missing token: %+v", res)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	env, _ := testEnv(t)
	var info map[string]string
	if err := json.Unmarshal([]byte(mustRun(t, env, "version", "-o", "json")), &info); err != nil {
		t.Fatal(err)
	}
	if info["version"] == "" {
		t.Fatalf("version json = %v", info)
	}
	if out := mustRun(t, env, "version"); !strings.HasPrefix(out, "Coder ") {
		t.Fatalf("version output %q", out)
	}
}

// TestServerCommand runs `coder server` in-process against a test database,
// logs in through it and shuts it down by cancelling its context.
func TestServerCommand(t *testing.T) {
	t.Parallel()
	pgURL := dbtestutil.NewDB(t)
	env, _ := testEnv(t)
	env = append(env, "CODER_PG_CONNECTION_URL="+pgURL, "CODER_HTTP_ADDRESS=127.0.0.1:0",
		// A private STUN port: the default 0.0.0.0:3478 may be taken by a running server.
		"CODER_DERP_SERVER_STUN_ADDRESSES=127.0.0.1:0")
	// The default built-in daemons run the test's terraform.
	env = append(env, terraformEnv(t)...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outR, outW := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		code := cli.Run(ctx, cli.Invocation{
			Args:   []string{"server", "--prometheus-address", "127.0.0.1:0"},
			Stdout: outW, Stderr: &stderr, Environ: env,
		})
		_ = outW.Close()
		done <- code
	}()

	scanner := bufio.NewScanner(outR)
	var serverURL, metricsURL string
	for scanner.Scan() {
		line := scanner.Text()
		if rest, ok := strings.CutPrefix(line, "Started HTTP listener at "); ok {
			serverURL = rest
		}
		if rest, ok := strings.CutPrefix(line, "Prometheus metrics at "); ok {
			metricsURL = rest
		}
		if strings.HasPrefix(line, "Log in from a terminal:") {
			break
		}
	}
	if serverURL == "" || metricsURL == "" {
		cancel()
		<-done
		t.Fatalf("server did not print its URLs; stderr:\n%s", stderr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, outR) }()

	loginEnv, _ := testEnv(t)
	mustRun(t, append(loginEnv, "CODER_FIRST_USER_USERNAME=admin", "CODER_FIRST_USER_EMAIL=admin@coder.test",
		"CODER_FIRST_USER_PASSWORD="+coderdtest.FirstUserPassword), "login", serverURL)
	if out := mustRun(t, loginEnv, "users", "list"); !strings.Contains(out, "admin") {
		t.Fatalf("users list via the server command: %q", out)
	}

	res, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `coderd_api_requests_processed_total{code="201",method="POST",path="/api/v2/users/login"}`) {
		t.Fatalf("metrics lack the login request:\n%s", body)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("server exited %d; stderr:\n%s", code, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("server did not stop within a minute of cancellation")
	}
	if _, err := http.Get(serverURL + "/healthz"); err == nil {
		t.Fatal("server still answering after shutdown")
	}
}
