// Package embeddedpg runs a private PostgreSQL cluster from the machine's
// PostgreSQL server binaries, for `coder server` without --postgres-url and
// for tests on machines without a PostgreSQL server.
//
// The cluster lives in Options.DataDir: pgdata/ (the cluster), password (the
// superuser password, 0600), port (the last port, reused when free so the URL
// stays stable) and postgres.log. It listens only on 127.0.0.1 (plus a unix
// socket in DataDir/run when the path is short enough) and requires
// SCRAM password authentication. When the process runs as root the server
// runs as the `postgres` OS user, since PostgreSQL refuses to run as root.
package embeddedpg

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DatabaseName is the database Start creates for coderd.
const DatabaseName = "coder"

// osUser is a numeric OS identity.
type osUser struct{ uid, gid int }

// superuser is the cluster's superuser role.
const superuser = "postgres"

// Options configures Start.
type Options struct {
	// DataDir holds the cluster and its files; created if missing. Required.
	DataDir string
	// Logger receives progress and server output; nil discards.
	Logger *slog.Logger
	// BinDir forces the directory of initdb/pg_ctl/postgres; empty searches
	// (see FindBinaries).
	BinDir string
	// Port to listen on; zero reuses the remembered port when free, else
	// picks a free one.
	Port int
	// NoSync turns off fsync and synchronous commit: much faster, but a
	// machine crash can corrupt the cluster. For test clusters only.
	NoSync bool
	// RunAs is the OS user that runs the server when the process is root;
	// empty means "postgres". Ignored when not root.
	RunAs string
	// Exclusive makes this process the cluster's only owner for as long as it
	// runs (a lock file in DataDir): a second Start on the same DataDir fails
	// at once instead of adopting a server that its owner is about to stop.
	// coder server sets it; shared test clusters do not.
	Exclusive bool
}

// ErrInUse is returned by an Exclusive Start while another live process owns
// the cluster.
var ErrInUse = errors.New("another process (a running coder server?) owns this embedded PostgreSQL cluster")

// Cluster is a running private PostgreSQL server.
type Cluster struct {
	logger   *slog.Logger
	bins     Binaries
	dataDir  string
	pgdata   string
	port     int
	password string
	// runAs is the OS user running initdb/postgres when this process is
	// root; nil means the current user.
	runAs *osUser
	// unlock releases the Exclusive owner lock; nil when not held.
	unlock func()
	url    string
	// adminURL is the URL of the "postgres" database.
	adminURL string
	// listenPort is the port the URL names, fixed once Start returns (port
	// changes while the supervisor restarts the server).
	listenPort int
	// noSync is Options.NoSync, kept for restarts.
	noSync bool
	// sup is the running supervisor (supervise.go); nil when none.
	sup *supervisor
}

// Start creates the cluster on first use, starts the server (or adopts one
// already running from this DataDir, e.g. after this process crashed),
// creates the database "coder" and returns when it accepts connections.
func Start(ctx context.Context, opts Options) (_ *Cluster, retErr error) {
	if opts.DataDir == "" {
		return nil, errors.New("embeddedpg: DataDir is required")
	}
	if err := platformSupported(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bins, err := FindBinaries(SearchOptions{Dir: opts.BinDir})
	if err != nil {
		return nil, err
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("resolve data dir: %w", err)
	}
	c := &Cluster{
		logger:  logger,
		bins:    bins,
		dataDir: dataDir,
		pgdata:  filepath.Join(dataDir, "pgdata"),
		noSync:  opts.NoSync,
	}
	if err := c.prepareUser(opts.RunAs); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := c.chown(dataDir); err != nil {
		return nil, err
	}
	if opts.Exclusive {
		unlock, err := lockOwner(filepath.Join(dataDir, "owner.lock"))
		if err != nil {
			return nil, fmt.Errorf("data dir %s: %w", dataDir, err)
		}
		c.unlock = unlock
		defer func() {
			if retErr != nil {
				c.releaseOwner()
			}
		}()
	}
	if err := c.allowTraverse(dataDir); err != nil {
		return nil, err
	}
	if err := c.checkTraversable(); err != nil {
		return nil, err
	}
	if err := c.loadPassword(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(c.pgdata, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := c.initdb(ctx, opts.NoSync); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("inspect cluster: %w", err)
	}

	adopted, err := c.adoptOrClearStale(ctx)
	if err != nil {
		return nil, err
	}
	if !adopted {
		if err := c.startServer(ctx, opts); err != nil {
			return nil, err
		}
	}
	if err := c.ensureDatabase(ctx); err != nil {
		return nil, err
	}
	c.url = c.urlFor(DatabaseName)
	c.adminURL = c.urlFor("postgres")
	c.listenPort = c.port
	logger.Info("embedded postgres ready", slog.String("data_dir", dataDir), slog.Int("port", c.port), slog.String("bin_dir", bins.Dir))
	return c, nil
}

// URL is the connection URL of the "coder" database, password included.
func (c *Cluster) URL() string { return c.url }

// AdminURL is the connection URL of the "postgres" maintenance database.
func (c *Cluster) AdminURL() string { return c.adminURL }

// Port is the TCP port the server listens on (127.0.0.1).
func (c *Cluster) Port() int { return c.listenPort }

// DataDir is the directory holding the cluster.
func (c *Cluster) DataDir() string { return c.dataDir }

// Stop shuts the server down (fast mode: running transactions are rolled
// back, clients disconnected) and waits until it exited.
func (c *Cluster) Stop(ctx context.Context) error {
	defer c.releaseOwner()
	c.stopSupervisor()
	out, err := c.run(ctx, c.bins.PgCtl(), "stop", "-D", c.pgdata, "-m", "fast", "-w", "-t", "60")
	if err != nil {
		return fmt.Errorf("stop embedded postgres: %w: %s", err, tail(out))
	}
	return nil
}

// releaseOwner drops the Exclusive owner lock, if held.
func (c *Cluster) releaseOwner() {
	if c.unlock != nil {
		c.unlock()
		c.unlock = nil
	}
}

func (c *Cluster) urlFor(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(superuser, c.password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// prepareUser decides which OS user runs initdb/postgres: the current one,
// or RunAs ("postgres") when running as root.
func (c *Cluster) prepareUser(runAs string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if runAs == "" {
		runAs = "postgres"
	}
	u, err := user.Lookup(runAs)
	if err != nil {
		return fmt.Errorf("running as root: PostgreSQL refuses to run as root and the %q OS user to run it as is missing (%w); create it or run as a normal user", runAs, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return fmt.Errorf("parse uid of %s: %w", runAs, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return fmt.Errorf("parse gid of %s: %w", runAs, err)
	}
	c.runAs = &osUser{uid: int(uid), gid: int(gid)}
	return nil
}

// checkTraversable makes sure the unprivileged server user can reach the
// data dir: every existing parent must be searchable by it.
func (c *Cluster) checkTraversable() error {
	for dir := filepath.Dir(c.dataDir); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err == nil {
			if mode := fi.Mode().Perm(); !c.searchable(fi) {
				return fmt.Errorf("data dir %s: the server runs as uid %d (PostgreSQL refuses root) but cannot enter %s (mode %v); choose a data dir outside it, e.g. under /var/lib or /tmp", c.dataDir, c.runAs.uid, dir, mode)
			}
		}
		if dir == filepath.Dir(dir) {
			return nil
		}
	}
}

// searchable reports whether the server user may enter the directory fi.
func (c *Cluster) searchable(fi os.FileInfo) bool {
	uid, gid, ok := ownerOf(fi)
	mode := fi.Mode().Perm()
	switch {
	case ok && uid == c.runAs.uid:
		return mode&0o100 != 0
	case ok && gid == c.runAs.gid:
		return mode&0o010 != 0
	default:
		return mode&0o001 != 0
	}
}

// allowTraverse makes sure the server user can reach dir when running as
// root: the default config dir of root (/root/.config/coderv2) sits below
// directories only root may enter, and PostgreSQL refuses to run as root.
// Each ancestor that others cannot traverse gets the search bit for others
// (o+x: enter, not list), which is the least that lets the server user chdir
// into its data directory. Every change is logged.
func (c *Cluster) allowTraverse(dir string) error {
	if c.runAs == nil {
		return nil
	}
	for parent := filepath.Dir(dir); ; parent = filepath.Dir(parent) {
		info, err := os.Stat(parent)
		if err != nil {
			return fmt.Errorf("inspect %s: %w", parent, err)
		}
		mode := info.Mode().Perm()
		if !c.searchable(info) {
			if err := os.Chmod(parent, mode|0o001); err != nil {
				return fmt.Errorf("let the postgres user traverse %s: %w", parent, err)
			}
			c.logger.Info("granted traverse permission to others so the embedded PostgreSQL server (not root) can reach its data dir",
				slog.String("dir", parent), slog.String("old_mode", mode.String()), slog.String("new_mode", (mode|0o001).String()))
		}
		if parent == filepath.Dir(parent) {
			return nil
		}
	}
}

// chown gives path to the server user when running as root.
func (c *Cluster) chown(path string) error {
	if c.runAs == nil {
		return nil
	}
	if err := os.Lchown(path, c.runAs.uid, c.runAs.gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// loadPassword reads the superuser password, generating it on first use.
func (c *Cluster) loadPassword() error {
	path := filepath.Join(c.dataDir, "password")
	b, err := os.ReadFile(path)
	if err == nil && len(bytes.TrimSpace(b)) > 0 {
		c.password = string(bytes.TrimSpace(b))
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read password: %w", err)
	}
	if _, err := os.Stat(filepath.Join(c.pgdata, "PG_VERSION")); err == nil {
		return fmt.Errorf("cluster %s exists but its password file %s is missing", c.pgdata, path)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("generate password: %w", err)
	}
	c.password = hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(c.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("write password: %w", err)
	}
	return c.chown(path)
}

// initdb creates the cluster in a scratch directory and renames it into
// place, so an interrupted initdb never leaves a half-made cluster.
func (c *Cluster) initdb(ctx context.Context, noSync bool) error {
	scratch := c.pgdata + ".initdb"
	if err := os.RemoveAll(scratch); err != nil {
		return fmt.Errorf("remove leftover %s: %w", scratch, err)
	}
	pwfile := filepath.Join(c.dataDir, "initdb.pw")
	if err := os.WriteFile(pwfile, []byte(c.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("write initdb password file: %w", err)
	}
	defer os.Remove(pwfile)
	if err := c.chown(pwfile); err != nil {
		return err
	}
	start := time.Now()
	args := []string{
		"-D", scratch,
		"-U", superuser,
		"-A", "scram-sha-256",
		"--pwfile", pwfile,
		"-E", "UTF8",
		"--locale", "C",
	}
	if noSync {
		args = append(args, "--no-sync")
	}
	out, err := c.run(ctx, c.bins.InitDB(), args...)
	if err != nil {
		return fmt.Errorf("initdb: %w: %s", err, tail(out))
	}
	conf, err := os.OpenFile(filepath.Join(scratch, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = conf.WriteString("\n# Written by coder on every start (port, sockets, durability).\ninclude_if_exists = 'coder.conf'\n")
	if cerr := conf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("extend postgresql.conf: %w", err)
	}
	if err := os.Rename(scratch, c.pgdata); err != nil {
		return fmt.Errorf("move new cluster into place: %w", err)
	}
	c.logger.Info("created embedded postgres cluster", slog.String("pgdata", c.pgdata), slog.Duration("took", time.Since(start)))
	return nil
}

// adoptOrClearStale deals with a postmaster.pid left behind: when a server
// from this data dir still answers (this process crashed without stopping
// it) it is adopted; otherwise the stale lock file is removed. PostgreSQL's
// own shared-memory interlock still refuses to start a second server on a
// data dir in use, so removing the file cannot corrupt anything.
func (c *Cluster) adoptOrClearStale(ctx context.Context) (bool, error) {
	pidFile := filepath.Join(c.pgdata, "postmaster.pid")
	b, err := os.ReadFile(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read postmaster.pid: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) >= 4 {
		if port, err := strconv.Atoi(strings.TrimSpace(lines[3])); err == nil && port > 0 {
			c.port = port
			if c.ownsServer(ctx) {
				c.logger.Info("adopting running embedded postgres", slog.Int("port", port))
				return true, nil
			}
		}
	}
	c.port = 0
	c.logger.Warn("removing stale postmaster.pid", slog.String("path", pidFile))
	if err := os.Remove(pidFile); err != nil {
		return false, fmt.Errorf("remove stale postmaster.pid: %w", err)
	}
	return false, c.clearStaleSocketLocks()
}

// clearStaleSocketLocks removes the unix socket lock files (and sockets) of
// a dead postmaster. PostgreSQL removes them itself only when the PID they
// name is gone, and a killed postmaster stays a zombie until its parent
// (init, which in a container may reap late) collects it: until then the
// server refuses to start with "lock file ... already exists".
func (c *Cluster) clearStaleSocketLocks() error {
	locks, err := filepath.Glob(filepath.Join(c.dataDir, "run", ".s.PGSQL.*.lock"))
	if err != nil {
		return fmt.Errorf("find socket lock files: %w", err)
	}
	for _, lock := range locks {
		b, err := os.ReadFile(lock)
		if err != nil {
			continue
		}
		first, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(first))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		c.logger.Warn("removing stale socket lock file", slog.String("path", lock), slog.Int("dead_pid", pid))
		for _, p := range []string{lock, strings.TrimSuffix(lock, ".lock")} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove stale %s: %w", p, err)
			}
		}
	}
	return nil
}

// ownsServer reports whether 127.0.0.1:c.port is a server running on this
// cluster's data directory.
func (c *Cluster) ownsServer(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.urlFor("postgres"))
	if err != nil {
		return false
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var dir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err != nil {
		return false
	}
	want, err1 := filepath.EvalSymlinks(c.pgdata)
	got, err2 := filepath.EvalSymlinks(dir)
	return err1 == nil && err2 == nil && want == got
}

// startServer picks the port and runs pg_ctl start, retrying on another port
// if the chosen one was taken in the meantime.
func (c *Cluster) startServer(ctx context.Context, opts Options) error {
	portFile := filepath.Join(c.dataDir, "port")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := c.choosePort(opts.Port, portFile, attempt)
		if err != nil {
			return err
		}
		c.port = port
		if err := c.writeConf(opts.NoSync); err != nil {
			return err
		}
		logFile := filepath.Join(c.dataDir, "postgres.log")
		start := time.Now()
		out, err := c.run(ctx, c.bins.PgCtl(), "start", "-D", c.pgdata, "-w", "-t", "120", "-l", logFile)
		if err == nil {
			if err := os.WriteFile(portFile, []byte(strconv.Itoa(port)+"\n"), 0o600); err != nil {
				return fmt.Errorf("remember port: %w", err)
			}
			c.logger.Info("started embedded postgres", slog.Int("port", port), slog.Duration("took", time.Since(start)))
			return nil
		}
		logTail, _ := os.ReadFile(logFile)
		lastErr = fmt.Errorf("pg_ctl start on port %d: %w: %s; server log: %s", port, err, tail(out), tail(logTail))
		if ctx.Err() != nil || opts.Port != 0 || !bytes.Contains(logTail, []byte("could not bind")) {
			return lastErr
		}
		c.logger.Warn("embedded postgres port taken, trying another", slog.Int("port", port))
	}
	return lastErr
}

// choosePort returns the configured port, else the remembered one when it is
// free (first attempt only), else a free port chosen by the kernel.
func (c *Cluster) choosePort(configured int, portFile string, attempt int) (int, error) {
	if configured != 0 {
		return configured, nil
	}
	if attempt == 0 {
		if b, err := os.ReadFile(portFile); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && portFree(p) {
				return p, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("release probe port: %w", err)
	}
	return port, nil
}

func portFree(port int) bool {
	if port <= 0 || port > 65535 {
		return false
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// writeConf writes pgdata/coder.conf, included by postgresql.conf.
func (c *Cluster) writeConf(noSync bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "listen_addresses = '127.0.0.1'\nport = %d\n", c.port)
	sockDir := filepath.Join(c.dataDir, "run")
	// Unix socket paths are limited to ~107 bytes.
	if len(sockDir)+len("/.s.PGSQL.65535.lock") < 100 {
		if err := os.MkdirAll(sockDir, 0o700); err != nil {
			return fmt.Errorf("create socket dir: %w", err)
		}
		if err := c.chown(sockDir); err != nil {
			return err
		}
		fmt.Fprintf(&b, "unix_socket_directories = '%s'\n", strings.ReplaceAll(sockDir, "'", "''"))
	} else {
		b.WriteString("unix_socket_directories = ''\n")
	}
	b.WriteString("max_connections = 200\n")
	if noSync {
		b.WriteString("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
	}
	path := filepath.Join(c.pgdata, "coder.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write coder.conf: %w", err)
	}
	return c.chown(path)
}

// ensureDatabase creates the "coder" database if missing.
func (c *Cluster) ensureDatabase(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.urlFor("postgres"))
	if err != nil {
		return fmt.Errorf("connect to embedded postgres: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", DatabaseName).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", DatabaseName, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{DatabaseName}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", DatabaseName, err)
	}
	return nil
}

// run executes a PostgreSQL program as the server user and returns its
// combined output.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.dataDir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	if c.runAs != nil {
		runAsUser(cmd, *c.runAs)
		cmd.Env = append(cmd.Env, "HOME="+c.dataDir)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	c.logger.Debug("ran postgres tool", slog.String("cmd", name), slog.Any("args", args), slog.String("output", out.String()))
	return out.Bytes(), err
}

// tail returns the last lines of a command's output, for error messages.
func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	const max = 1500
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	return s
}
