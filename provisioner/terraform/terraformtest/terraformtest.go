// Package terraformtest gives tests the terraform and OpenTofu binaries and the
// provider mirror configuration that scripts/deps.sh (make deps) installs into
// $CODER_CACHE_DIR. The Makefile exports CODER_CACHE_DIR (<repo>/.cache); a test
// that needs these deps fails, never skips, when it is unset or incomplete.
//
// Production code never looks for these: the CLI passes binaries and the CLI
// configuration explicitly (--terraform-path, --terraform-cli-config).
package terraformtest

import (
	"os"
	"path/filepath"
	"testing"
)

// EnvCacheDir names the directory scripts/deps.sh installs into.
const EnvCacheDir = "CODER_CACHE_DIR"

// Deps are the paths of the installed test dependencies.
type Deps struct {
	// CacheDir is $CODER_CACHE_DIR.
	CacheDir string
	// Terraform is <cache>/bin/terraform.
	Terraform string
	// Tofu is <cache>/bin/tofu (OpenTofu).
	Tofu string
	// CLIConfig is <cache>/terraformrc: the CLI configuration that installs the
	// Coder provider from the local filesystem mirror (no registry access).
	CLIConfig string
}

// Find returns the deps, failing t with what to do when any is missing.
func Find(t testing.TB) Deps {
	t.Helper()
	dir := os.Getenv(EnvCacheDir)
	if dir == "" {
		t.Fatalf("$%s is not set: run the tests with make test (which exports it), "+
			"or run make deps and export %s=<repo>/.cache", EnvCacheDir, EnvCacheDir)
	}
	d := Deps{
		CacheDir:  dir,
		Terraform: filepath.Join(dir, "bin", "terraform"),
		Tofu:      filepath.Join(dir, "bin", "tofu"),
		CLIConfig: filepath.Join(dir, "terraformrc"),
	}
	for _, f := range []string{d.Terraform, d.Tofu, d.CLIConfig} {
		st, err := os.Stat(f)
		if err != nil || st.IsDir() {
			t.Fatalf("%s is missing from $%s=%s (%v): run make deps", filepath.Base(f), EnvCacheDir, dir, err)
		}
	}
	return d
}
