package cli_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/provisioner/terraform"
)

// TestInitScriptCachesAgentBinary runs the real agent init script against a
// real coderd serving a stand-in agent binary: two starts leave one binary
// on disk (the second downloads nothing), a changed binary replaces the
// cached one, and nothing is left in the temp directory. The old script
// downloaded into a fresh mktemp directory on every start.
func TestInitScriptCachesAgentBinary(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	home, tmp := filepath.Join(root, "home"), filepath.Join(root, "tmp")
	for _, d := range []string{home, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	marker := filepath.Join(root, "ran")
	binPath := filepath.Join(root, "served-coder")
	writeAgent := func(version string) string {
		t.Helper()
		body := "#!/bin/sh\n# agent " + version + "\necho \"$0 $*\" >> '" + marker + "'\n"
		if err := os.WriteFile(binPath, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(body))
		return hex.EncodeToString(sum[:])
	}
	hash1 := writeAgent("v1")
	client, _ := coderdtest.New(t, &coderdtest.Options{API: coderd.Options{
		Provisioning: coderd.ProvisioningOptions{AgentBinaryPath: binPath},
	}})
	script := terraform.AgentInitScript("linux", "amd64", client.URL.String())
	start := func() string {
		t.Helper()
		_ = os.Remove(marker)
		cmd := exec.Command("sh", "-c", script)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "TMPDIR=" + tmp, "CODER_AGENT_TOKEN=x"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("init script: %v\n%s", err, out)
		}
		data, err := os.ReadFile(marker)
		if err != nil {
			t.Fatal(err)
		}
		ran, _, _ := strings.Cut(strings.TrimSpace(string(data)), " ")
		return ran
	}
	// binaries lists every file left under root except the served one.
	binaries := func() []string {
		t.Helper()
		var files []string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && p != binPath && p != marker {
				files = append(files, p)
			}
			return nil
		})
		return files
	}
	inode := func(p string) uint64 {
		t.Helper()
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	cache := filepath.Join(home, ".cache", "coder", "agent")

	first := start()
	if want := filepath.Join(cache, hash1, "coder"); first != want {
		t.Fatalf("first start ran %s, want %s", first, want)
	}
	ino := inode(first)
	second := start()
	if second != first || inode(second) != ino {
		t.Fatalf("second start ran %s (inode %d), want the cached %s (inode %d)", second, inode(second), first, ino)
	}
	if files := binaries(); len(files) != 1 {
		t.Fatalf("after two starts: %v, want one binary", files)
	}

	hash2 := writeAgent("v2")
	third := start()
	if want := filepath.Join(cache, hash2, "coder"); third != want {
		t.Fatalf("start after an upgrade ran %s, want %s", third, want)
	}
	if files := binaries(); len(files) != 1 || files[0] != third {
		t.Fatalf("after the upgrade: %v, want only %s", files, third)
	}

	// coderd names the hash on the binary itself too, and honours the ETag.
	req, _ := http.NewRequest(http.MethodGet, client.URL.String()+"/bin/coder-linux-amd64", nil)
	req.Header.Set("If-None-Match", `"`+hash2+`"`)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotModified || res.Header.Get(coderd.AgentBinaryHashHeader) != hash2 {
		t.Fatalf("conditional GET: %d, hash header %q", res.StatusCode, res.Header.Get(coderd.AgentBinaryHashHeader))
	}
}
