package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wgmesh/coder/cli"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/coderd/statecrypt"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
	"github.com/wgmesh/coder/database/dbtestutil"
	"github.com/wgmesh/coder/derp"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// stateTF is a template whose state holds an agent token: the agent runs
// in a terraform_data that exists while the workspace is started.
const stateTF = `terraform {
  required_providers {
    coder = {
      source  = "coder/coder"
      version = "2.20.0"
    }
  }
}

data "coder_workspace" "me" {}

resource "coder_agent" "main" {
  os   = "linux"
  arch = "amd64"
}

resource "terraform_data" "dev" {
  count = data.coder_workspace.me.start_count
  input = {
    agent = coder_agent.main.id
  }
}
`

// TestStateEncryptedAtRest runs real terraform builds through `coder server`
// on one PostgreSQL database across server restarts with different keys:
// the stored state never holds the agent token in the clear, a stop after a
// key rotation decrypts with the old key and writes with the new one, a
// legacy plaintext row is read and sealed on the next write, a server
// without the key fails the build with an error naming the key (and leaves
// the state intact), and after the delete the agent token is refused for
// good.
func TestStateEncryptedAtRest(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	deps := terraformtest.Find(t)
	dbURL := dbtestutil.NewDB(t)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	configDir := t.TempDir()
	key := func() string {
		k, err := statecrypt.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k1, k2, k3 := "", key(), key() // k1: generated into the config dir

	var srv *cli.Server
	start := func(current string, old ...string) *codersdk.Client {
		t.Helper()
		if srv != nil {
			if err := srv.Close(ctx); err != nil {
				t.Fatalf("close server: %v", err)
			}
		}
		srv, err = cli.StartServer(ctx, cli.ServerConfig{
			HTTPAddress: "127.0.0.1:0", PostgresURL: dbURL, ConfigDir: configDir, ProvisionerDaemons: 1,
			StateEncryptionKey: current, StateEncryptionOldKeys: old,
			Terraform: cli.TerraformConfig{Path: deps.Terraform, CLIConfig: deps.CLIConfig},
			DERP: cli.DERPConfig{ServerEnable: true, RegionID: derp.DefaultRegionID, RegionCode: derp.DefaultRegionCode,
				RegionName: derp.DefaultRegionName, STUNAddresses: []string{"127.0.0.1:0"}},
		})
		if err != nil {
			t.Fatalf("start server: %v", err)
		}
		return codersdk.New(srv.AccessURL)
	}
	t.Cleanup(func() {
		if srv != nil {
			_ = srv.Close(context.Background())
		}
	})

	client := start(k1)
	keyFile := filepath.Join(configDir, cli.StateKeyFile)
	requireMode0600(t, keyFile)
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	k1 = strings.TrimSpace(string(raw))
	keyID := func(k string) string {
		b, err := statecrypt.ParseKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return statecrypt.KeyID(b)
	}
	coderdtest.CreateFirstUser(t, client)
	session := client.SessionToken()

	// Template and workspace.
	env, _ := testEnv(t)
	env = append(env, "CODER_URL="+srv.AccessURL.String(), "CODER_SESSION_TOKEN="+session)
	if res := runCLI(t, env, nil, "templates", "push", "enc", "-d", writeDir(t, stateTF), "-y"); res.code != 0 {
		t.Fatalf("push: exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	tmpl, err := client.TemplateByName(ctx, "enc")
	if err != nil {
		t.Fatal(err)
	}
	ws, err := client.CreateWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: "enc1"})
	if err != nil {
		t.Fatal(err)
	}
	waitBuild(t, client, ws.LatestBuild.ID, codersdk.ProvisionerJobSucceeded)

	stored := func() []byte {
		t.Helper()
		var b []byte
		if err := pool.QueryRow(ctx, `SELECT provisioner_state FROM workspace_builds WHERE workspace_id = $1 ORDER BY build_number DESC LIMIT 1`, ws.ID).Scan(&b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	open := func(b []byte, keys ...string) []byte {
		t.Helper()
		var parsed [][]byte
		for _, k := range keys {
			p, _ := statecrypt.ParseKey(k)
			parsed = append(parsed, p)
		}
		kr, err := statecrypt.NewKeyring(parsed[0], parsed[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := kr.Decrypt(b, ws.ID)
		if err != nil {
			t.Fatalf("decrypt stored state: %v", err)
		}
		return plain
	}
	// The state is sealed with the generated key; in the clear it holds
	// the agent token, which the database never sees.
	st := stored()
	if statecrypt.StoredKeyID(st) != keyID(k1) {
		t.Fatalf("stored state is not sealed with the generated key: %.40q", st)
	}
	token := agentToken(t, open(st, k1))
	if bytes.Contains(st, []byte(token)) || bytes.Contains(st, []byte(`"coder_agent"`)) {
		t.Fatal("the stored state contains the agent token or resource names in the clear")
	}
	var hits int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM workspace_builds WHERE position($1::bytea in coalesce(provisioner_state, ''::bytea)) > 0`, []byte(token)).Scan(&hits); err != nil {
		t.Fatal(err)
	}
	if hits != 0 {
		t.Fatalf("%d build rows hold the agent token in the clear", hits)
	}
	agentClient := agentsdk.New(srv.AccessURL, token)
	if _, err := agentClient.Manifest(ctx); err != nil {
		t.Fatalf("agent token of the running workspace: %v", err)
	}

	// Rotation: k2 is current, k1 only decrypts. Stop decrypts the k1 state
	// and writes with k2.
	client = start(k2, k1)
	client.SetSessionToken(session)
	b, err := client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStop})
	if err != nil {
		t.Fatal(err)
	}
	waitBuild(t, client, b.ID, codersdk.ProvisionerJobSucceeded)
	if got := statecrypt.StoredKeyID(stored()); got != keyID(k2) {
		t.Fatalf("state after the rotation is sealed with %q, want the new key %q", got, keyID(k2))
	}

	// A legacy plaintext row (written before encryption existed) is read
	// and sealed on the next write.
	plain := open(stored(), k2)
	if _, err := pool.Exec(ctx, `UPDATE workspace_builds SET provisioner_state = $1 WHERE workspace_id = $2 AND build_number = $3`, plain, ws.ID, b.BuildNumber); err != nil {
		t.Fatal(err)
	}
	b, err = client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStart})
	if err != nil {
		t.Fatal(err)
	}
	waitBuild(t, client, b.ID, codersdk.ProvisionerJobSucceeded)
	if got := statecrypt.StoredKeyID(stored()); got != keyID(k2) {
		t.Fatalf("legacy plaintext state was not sealed on the next write (key %q)", got)
	}
	// The provider gave the new build's agent a new token: the first one
	// belongs to a superseded build and is refused for good.
	oldToken := token
	token = agentToken(t, open(stored(), k2))
	if _, err := agentsdk.New(srv.AccessURL, oldToken).Manifest(ctx); token != oldToken && !agentsdk.IsTokenRevoked(err) {
		t.Fatalf("token of the superseded build: want a permanent 401, got %v", err)
	}
	if _, err := agentsdk.New(srv.AccessURL, token).Manifest(ctx); err != nil {
		t.Fatalf("agent token of the restarted workspace: %v", err)
	}

	// A server without k2: the delete fails with an error that names the
	// key and the flag, and the state is left as it was.
	client = start(k3)
	client.SetSessionToken(session)
	before := stored()
	b, err = client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionDelete})
	if err != nil {
		t.Fatal(err)
	}
	failed := waitBuild(t, client, b.ID, codersdk.ProvisionerJobFailed)
	if !strings.Contains(failed.Job.Error, keyID(k2)) || !strings.Contains(failed.Job.Error, "--state-encryption-old-keys") {
		t.Fatalf("wrong-key build error: %q", failed.Job.Error)
	}
	if !bytes.Equal(stored(), before) {
		t.Fatal("the failed build changed the stored state")
	}
	if w, err := client.Workspace(ctx, ws.ID); err != nil || w.LatestBuild.Transition != codersdk.WorkspaceTransitionDelete {
		t.Fatalf("workspace after the failed delete: %+v %v", w.LatestBuild, err)
	}

	// With k2 among the old keys the delete goes through (terraform destroy
	// with the real state), and the agent token is revoked for good.
	client = start(k3, k2)
	client.SetSessionToken(session)
	b, err = client.CreateWorkspaceBuild(ctx, ws.ID, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionDelete})
	if err != nil {
		t.Fatal(err)
	}
	waitBuild(t, client, b.ID, codersdk.ProvisionerJobSucceeded)
	_, err = agentsdk.New(srv.AccessURL, token).Manifest(ctx)
	if !agentsdk.IsTokenRevoked(err) {
		t.Fatalf("agent token of the deleted workspace: want a permanent 401, got %v", err)
	}
}

// waitBuild polls a build until its job ends and requires status want.
func waitBuild(t *testing.T, client *codersdk.Client, id uuid.UUID, want codersdk.ProvisionerJobStatus) codersdk.WorkspaceBuild {
	t.Helper()
	var b codersdk.WorkspaceBuild
	waitFor(t, 5*time.Minute, "build "+id.String(), func() (bool, error) {
		var err error
		b, err = client.WorkspaceBuild(context.Background(), id)
		if err != nil {
			return false, err
		}
		switch b.Job.Status {
		case codersdk.ProvisionerJobSucceeded, codersdk.ProvisionerJobFailed, codersdk.ProvisionerJobCanceled:
			return true, nil
		}
		return false, nil
	})
	if b.Job.Status != want {
		t.Fatalf("build %d (%s): %s, want %s: %s", b.BuildNumber, b.Transition, b.Job.Status, want, b.Job.Error)
	}
	return b
}

// agentToken returns the coder_agent token of a Terraform state.
func agentToken(t *testing.T, state []byte) string {
	t.Helper()
	var st struct {
		Resources []struct {
			Type      string `json:"type"`
			Instances []struct {
				Attributes struct {
					Token string `json:"token"`
				} `json:"attributes"`
			} `json:"instances"`
		} `json:"resources"`
	}
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatalf("decode state: %v", err)
	}
	for _, r := range st.Resources {
		if r.Type == "coder_agent" && len(r.Instances) > 0 && r.Instances[0].Attributes.Token != "" {
			return r.Instances[0].Attributes.Token
		}
	}
	t.Fatalf("no coder_agent token in the state")
	return ""
}
