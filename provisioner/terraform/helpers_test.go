package terraform

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/provisioner/terraform/terraformtest"
)

// testRunner returns a Runner for binary ("terraform" or "tofu") installed by
// scripts/deps.sh, with the provider mirror configuration. It fails the test
// when the deps are missing.
func testRunner(t *testing.T, binary string) *Runner {
	t.Helper()
	deps := terraformtest.Find(t)
	bin, rc := deps.Terraform, deps.CLIConfig
	if binary == "tofu" {
		bin = deps.Tofu
	}
	home := t.TempDir()
	return &Runner{
		TerraformPath:  bin,
		CLIConfigPath:  rc,
		WorkDir:        t.TempDir(),
		Env:            map[string]string{"HOME": home},
		InterruptGrace: 20 * time.Second,
	}
}

// tarFiles builds a template archive from file names and contents.
func tarFiles(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// logSink collects provisioner logs safely.
type logSink struct {
	mu   sync.Mutex
	logs []provisionersdk.Log
}

func (s *logSink) add(l provisionersdk.Log) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs = append(s.logs, l)
}

func (s *logSink) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, l := range s.logs {
		b.WriteString(string(l.Level) + " [" + l.Stage + "] " + l.Output + "\n")
	}
	return b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processAlive reports whether pid is a running (non-zombie) process.
func processAlive(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// Format: pid (comm) state ...
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("parse pid file %q: %v", data, err)
	}
	return pid
}

func testMetadata(transition codersdk.WorkspaceTransition, coderURL string) provisionersdk.Metadata {
	return provisionersdk.Metadata{
		CoderURL:            coderURL,
		WorkspaceTransition: transition,
		WorkspaceName:       "dev",
		WorkspaceOwner:      "alice",
		WorkspaceOwnerName:  "Alice Liddell",
		WorkspaceOwnerEmail: "alice@example.com",
		WorkspaceOwnerID:    "7b4c2f1e-0000-4000-8000-000000000001",
		WorkspaceID:         "7b4c2f1e-0000-4000-8000-000000000002",
		WorkspaceBuildID:    "7b4c2f1e-0000-4000-8000-000000000003",
		TemplateID:          "7b4c2f1e-0000-4000-8000-000000000004",
		TemplateName:        "test",
		TemplateVersion:     "v1",
	}
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
