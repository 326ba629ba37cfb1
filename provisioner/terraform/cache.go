package terraform

import (
	"os"
	"path/filepath"
	"strings"
)

// CacheDir returns the directory scripts/deps.sh installs into: $CODER_CACHE_DIR when
// set, otherwise <repo>/.cache for the module root found by walking up from the
// working directory. It returns "" when neither exists.
func CacheDir() string {
	if dir := os.Getenv("CODER_CACHE_DIR"); dir != "" {
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	root := findModuleRoot(wd)
	if root == "" {
		return ""
	}
	return filepath.Join(root, ".cache")
}

// findModuleRoot walks up from dir to the directory holding this project's go.mod.
func findModuleRoot(dir string) string {
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/wgmesh/coder\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// CachedBinary returns <cache>/bin/<name> when it exists, else "".
func CachedBinary(name string) string {
	cache := CacheDir()
	if cache == "" {
		return ""
	}
	p := filepath.Join(cache, "bin", name)
	if st, err := os.Stat(p); err == nil && !st.IsDir() {
		return p
	}
	return ""
}

// CachedCLIConfig returns <cache>/terraformrc (the provider mirror configuration
// written by scripts/deps.sh) when it exists, else "".
func CachedCLIConfig() string {
	cache := CacheDir()
	if cache == "" {
		return ""
	}
	p := filepath.Join(cache, "terraformrc")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}
