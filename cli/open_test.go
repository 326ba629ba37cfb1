package cli_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/database"
)

// newOpenEnv is a logged-in CLI against a coderd with the given apps
// options, with a workspace "dev" whose agent "main" has the apps "code"
// (path), "sub" (subdomain) and "tool" (a command, no URL).
func newOpenEnv(t *testing.T, apps coderd.AppsOptions) (*reachEnv, string) {
	t.Helper()
	client, srv := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{Apps: apps}})
	first := coderdtest.CreateFirstUser(t, client)
	owner := uuid.MustParse(first.UserID)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"url": client.URL.String(), "session": client.SessionToken()} {
		if err := os.WriteFile(filepath.Join(cfg, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e := &reachEnv{t: t, client: client, srv: srv, owner: owner, env: []string{"HOME=" + dir, "CODER_CONFIG_DIR=" + cfg}, cfgDir: cfg, home: dir}
	agentID, _ := e.addWorkspace("dev")
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, a := range []struct {
		slug, url, command string
		subdomain          bool
	}{
		{slug: "code", url: "http://127.0.0.1:8080"},
		{slug: "sub", url: "http://127.0.0.1:3000", subdomain: true},
		{slug: "tool", command: "htop"},
	} {
		_, err := srv.DB.InsertWorkspaceApp(context.Background(), database.InsertWorkspaceAppParams{
			ID: uuid.New(), CreatedAt: now, AgentID: agentID, Slug: a.slug, DisplayName: a.slug,
			Url: pgtype.Text{String: a.url, Valid: a.url != ""}, Command: pgtype.Text{String: a.command, Valid: a.command != ""},
			Subdomain: a.subdomain, SharingLevel: database.AppSharingLevelOwner,
			Health: database.WorkspaceAppHealthDisabled, DisplayOrder: int32(i), OpenIn: "slim-window",
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return e, first.Username
}

func TestOpenApp(t *testing.T) {
	t.Parallel()
	t.Run("PathOnly", func(t *testing.T) {
		t.Parallel()
		e, owner := newOpenEnv(t, coderd.AppsOptions{})
		base := e.client.URL.String()
		tests := []struct {
			name string
			args []string
			want string
		}{
			{name: "path app", args: []string{"dev", "code"}, want: base + "/@" + owner + "/dev.main/apps/code/"},
			{name: "agent named", args: []string{"dev.main", "code"}, want: base + "/@" + owner + "/dev.main/apps/code/"},
			{name: "owner named", args: []string{owner + "/dev", "code"}, want: base + "/@" + owner + "/dev.main/apps/code/"},
			{name: "slug case-insensitive", args: []string{"dev", "CODE"}, want: base + "/@" + owner + "/dev.main/apps/code/"},
			// Without a wildcard access URL a subdomain app is still
			// reachable by its path.
			{name: "subdomain app without wildcard", args: []string{"dev", "sub"}, want: base + "/@" + owner + "/dev.main/apps/sub/"},
		}
		for _, tc := range tests {
			out := mustRun(t, e.env, append([]string{"open", "app"}, tc.args...)...)
			if got := strings.TrimSpace(out); got != tc.want {
				t.Errorf("%s: printed %q, want %q", tc.name, got, tc.want)
			}
		}
	})

	t.Run("Wildcard", func(t *testing.T) {
		t.Parallel()
		e, owner := newOpenEnv(t, coderd.AppsOptions{WildcardAccessURL: "*.apps.test"})
		base := e.client.URL.String()
		_, port, err := net.SplitHostPort(e.client.URL.Host)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			args []string
			want string
		}{
			{name: "subdomain app", args: []string{"dev", "sub"}, want: "http://sub--main--dev--" + strings.ToLower(owner) + ".apps.test:" + port + "/"},
			// Path apps serve only the workspace owner: with subdomains on,
			// every app is opened on its own origin.
			{name: "path app prefers the subdomain", args: []string{"dev", "code"}, want: "http://code--main--dev--" + strings.ToLower(owner) + ".apps.test:" + port + "/"},
			{name: "--path forces the path URL of a path app", args: []string{"dev", "code", "--path"}, want: base + "/@" + owner + "/dev.main/apps/code/"},
			{name: "--path forces the path URL", args: []string{"dev", "sub", "--path"}, want: base + "/@" + owner + "/dev.main/apps/sub/"},
		}
		for _, tc := range tests {
			out := mustRun(t, e.env, append([]string{"open", "app"}, tc.args...)...)
			if got := strings.TrimSpace(out); got != tc.want {
				t.Errorf("%s: printed %q, want %q", tc.name, got, tc.want)
			}
		}
	})

	t.Run("Errors", func(t *testing.T) {
		t.Parallel()
		e, _ := newOpenEnv(t, coderd.AppsOptions{})
		tests := []struct {
			name    string
			args    []string
			wantAll []string
		}{
			{name: "unknown app lists the apps", args: []string{"dev", "nope"}, wantAll: []string{`no app "nope"`, "code", "sub", "tool"}},
			{name: "command app has no URL", args: []string{"dev", "tool"}, wantAll: []string{`app "tool" runs a command`, "coder ssh dev"}},
			{name: "unknown workspace", args: []string{"nope", "code"}, wantAll: []string{`workspace "nope" not found`, "dev"}},
			{name: "unknown agent", args: []string{"dev.other", "code"}, wantAll: []string{`no agent "other"`, "main"}},
		}
		for _, tc := range tests {
			res := runCLI(t, e.env, nil, append([]string{"open", "app"}, tc.args...)...)
			if res.code == 0 {
				t.Errorf("%s: succeeded: %q", tc.name, res.stdout)
				continue
			}
			for _, want := range tc.wantAll {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("%s: stderr %q lacks %q", tc.name, res.stderr, want)
				}
			}
		}
	})
}
