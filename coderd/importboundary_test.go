package coderd_test

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoDatabaseImportOutsideServer enforces the architecture rule that the
// provisioner and the agent never depend on the database package (directly
// or transitively). It passes vacuously while those folders do not exist.
func TestNoDatabaseImportOutsideServer(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	const forbidden = "github.com/wgmesh/coder/database"

	for _, dir := range []string{"provisioner", "agent"} {
		if _, err := os.Stat(filepath.Join(root, dir)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		cmd := exec.Command("go", "list", "-deps", "-json=ImportPath,Deps", "./"+dir+"/...")
		cmd.Dir = root
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(stdout)
		for {
			var pkg struct{ ImportPath string }
			if err := dec.Decode(&pkg); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("decode go list output: %v", err)
			}
			if pkg.ImportPath == forbidden || strings.HasPrefix(pkg.ImportPath, forbidden+"/") {
				t.Errorf("./%s/... depends on %s", dir, pkg.ImportPath)
			}
		}
		if err := cmd.Wait(); err != nil {
			// Packages without Go files yet make go list fail with "matched no packages".
			if strings.Contains(stderr.String(), "matched no packages") {
				continue
			}
			t.Fatalf("go list ./%s/...: %v\n%s", dir, err, stderr.String())
		}
	}
}
