package embeddedpg

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// ErrBinariesNotFound means no PostgreSQL server binaries (initdb, pg_ctl,
// postgres) were found. Its message says what to install.
var ErrBinariesNotFound = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found")

// installHint tells the user how to get the binaries, for the current OS.
func installHint() string {
	switch runtime.GOOS {
	case "darwin":
		return "install them with `brew install postgresql@16`, or pass --postgres-url to use an existing PostgreSQL server"
	default:
		return "install them with `apt-get install postgresql` on Debian/Ubuntu (`brew install postgresql@16` on macOS), or pass --postgres-url to use an existing PostgreSQL server"
	}
}

// Binaries locates the PostgreSQL server programs of one installation.
type Binaries struct {
	// Dir holds initdb, pg_ctl and postgres.
	Dir string
}

// InitDB is the path of initdb.
func (b Binaries) InitDB() string { return filepath.Join(b.Dir, "initdb") }

// PgCtl is the path of pg_ctl.
func (b Binaries) PgCtl() string { return filepath.Join(b.Dir, "pg_ctl") }

// Postgres is the path of the postgres server.
func (b Binaries) Postgres() string { return filepath.Join(b.Dir, "postgres") }

// SearchOptions says where FindBinaries looks.
type SearchOptions struct {
	// Dir, when set, is the only directory searched.
	Dir string
	// Path is the PATH-style list searched first; empty means $PATH.
	Path string
	// Roots are the glob patterns of versioned install directories searched
	// after Path, newest version first; nil means DefaultRoots.
	Roots []string
}

// DefaultRoots are the usual installation directories of versioned
// PostgreSQL server binaries (Debian/Ubuntu, Homebrew, EDB/RPM layouts).
var DefaultRoots = []string{
	"/usr/lib/postgresql/*/bin",
	"/usr/pgsql-*/bin",
	"/opt/homebrew/opt/postgresql@*/bin",
	"/usr/local/opt/postgresql@*/bin",
	"/Library/PostgreSQL/*/bin",
}

// FindBinaries finds a directory holding initdb, pg_ctl and postgres: PATH
// first (symlinks resolved, so /usr/local/bin/pg_ctl pointing into
// /usr/lib/postgresql/15/bin counts), then DefaultRoots, newest version
// first. It returns an error wrapping ErrBinariesNotFound that says what to
// install when there are none.
func FindBinaries(opts SearchOptions) (Binaries, error) {
	if opts.Dir != "" {
		if complete(opts.Dir) {
			return Binaries{Dir: opts.Dir}, nil
		}
		return Binaries{}, fmt.Errorf("%w in %s: %s", ErrBinariesNotFound, opts.Dir, installHint())
	}
	path := opts.Path
	if path == "" {
		path = os.Getenv("PATH")
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		candidate := filepath.Join(dir, "pg_ctl")
		if !isExecutable(candidate) {
			continue
		}
		if complete(dir) {
			return Binaries{Dir: dir}, nil
		}
		// A symlinked pg_ctl (e.g. /usr/local/bin): use its real directory.
		real, err := filepath.EvalSymlinks(candidate)
		if err == nil && complete(filepath.Dir(real)) {
			return Binaries{Dir: filepath.Dir(real)}, nil
		}
	}
	roots := opts.Roots
	if roots == nil {
		roots = DefaultRoots
	}
	var dirs []string
	for _, pattern := range roots {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			return Binaries{}, fmt.Errorf("search %s: %w", pattern, err)
		}
		dirs = append(dirs, matches...)
	}
	sort.SliceStable(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, dir := range dirs {
		if complete(dir) {
			return Binaries{Dir: dir}, nil
		}
	}
	return Binaries{}, fmt.Errorf("%w (searched PATH and %s): %s", ErrBinariesNotFound, strings.Join(roots, ", "), installHint())
}

func complete(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if !isExecutable(filepath.Join(dir, name)) {
			return false
		}
	}
	return true
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.IsDir() {
		return false
	}
	if fi.Mode()&0o111 == 0 {
		return false
	}
	_, err = exec.LookPath(path)
	return err == nil
}

// versionOf extracts the major version from a directory such as
// /usr/lib/postgresql/15/bin or /usr/local/opt/postgresql@16/bin (0 if none).
func versionOf(dir string) float64 {
	best := 0.0
	for _, part := range strings.FieldsFunc(dir, func(r rune) bool {
		return r == '/' || r == '@' || r == '-' || r == '\\'
	}) {
		if v, err := strconv.ParseFloat(part, 64); err == nil && v > best {
			best = v
		}
	}
	return best
}
