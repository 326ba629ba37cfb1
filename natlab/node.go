package natlab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RoleEnv names the environment variable that turns a test binary into a lab
// node: its value is the role to run (see Main).
const RoleEnv = "NATLAB_ROLE"

// lineMarker starts every protocol line a node writes on stdout; other stdout
// lines are passed to the log.
const lineMarker = "natlab:"

const (
	defaultSetupTimeout = 60 * time.Second
	closeGrace          = 10 * time.Second
)

// Handler runs one command sent to a node and returns a JSON-able result.
type Handler func(ctx context.Context, cmd string, args []string) (any, error)

// Role starts a node's service. It returns what the node reports as ready
// (JSON-able: addresses, keys, ...), the command handler, and a function that
// stops the service when the node exits.
type Role func(ctx context.Context, logger *slog.Logger) (ready any, h Handler, stop func(), err error)

// IsNode reports whether this process was started as a lab node (RoleEnv set).
func IsNode() bool { return os.Getenv(RoleEnv) != "" }

// Main runs the role named by RoleEnv, serving commands from stdin and
// answering on stdout until stdin closes or SIGTERM arrives; logs go to
// stderr. It returns the process exit code. Call it from TestMain (or a
// main package) when IsNode is true.
func Main(roles map[string]Role) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	name := os.Getenv(RoleEnv)
	role, ok := roles[name]
	if !ok {
		logger.Error("natlab: unknown role", "role", name)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	logger = logger.With("role", name)
	ready, h, stop, err := role(ctx, logger)
	if err != nil {
		logger.Error("natlab: role failed to start", "err", err)
		_ = writeLine(os.Stdout, response{Error: err.Error(), Ready: true})
		return 1
	}
	defer stop()
	if err := Serve(ctx, os.Stdin, os.Stdout, ready, h); err != nil {
		logger.Error("natlab: serve", "err", err)
		return 1
	}
	return 0
}

type request struct {
	ID      int64    `json:"id"`
	Cmd     string   `json:"cmd"`
	Args    []string `json:"args,omitempty"`
	Timeout string   `json:"timeout,omitempty"`
}

type response struct {
	ID     int64           `json:"id"`
	Ready  bool            `json:"ready,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func writeLine(w io.Writer, r response) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	if _, err := fmt.Fprintf(w, "%s%s\n", lineMarker, b); err != nil {
		return fmt.Errorf("write response: %w", err)
	}
	return nil
}

func marshalResult(v any) (json.RawMessage, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return b, nil
}

// Serve announces ready on out, then reads one JSON request per line from in
// and answers each, in order, until in reaches EOF or ctx ends.
func Serve(ctx context.Context, in io.Reader, out io.Writer, ready any, h Handler) error {
	rb, err := marshalResult(ready)
	if err != nil {
		return err
	}
	if err := writeLine(out, response{Ready: true, Result: rb}); err != nil {
		return err
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if ctx.Err() != nil {
			return nil
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var req request
		if err := json.Unmarshal(line, &req); err != nil {
			if err := writeLine(out, response{Error: fmt.Sprintf("bad request: %v", err)}); err != nil {
				return err
			}
			continue
		}
		if err := writeLine(out, handle(ctx, h, req)); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read requests: %w", err)
	}
	return nil
}

func handle(ctx context.Context, h Handler, req request) response {
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil {
			return response{ID: req.ID, Error: fmt.Sprintf("bad timeout: %v", err)}
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	res, err := h(ctx, req.Cmd, req.Args)
	if err != nil {
		return response{ID: req.ID, Error: err.Error()}
	}
	b, err := marshalResult(res)
	if err != nil {
		return response{ID: req.ID, Error: err.Error()}
	}
	return response{ID: req.ID, Result: b}
}

// NodeOptions configure a node process.
type NodeOptions struct {
	// Role is the role to run (value of RoleEnv in the child).
	Role string
	// Env adds "KEY=value" entries to the child's environment (which
	// otherwise is this process's).
	Env []string
	// Binary is the program to run; empty means this process's executable
	// (a test binary whose TestMain calls Main when IsNode).
	Binary string
	// Args are passed to Binary; with Binary empty the default runs no test.
	Args []string
	// Logger receives the node's stderr lines; nil discards.
	Logger *slog.Logger
}

// Node is a process running inside a lab namespace, driven by a line
// protocol on its stdin/stdout.
type Node struct {
	// Name identifies the node in logs ("<role>@<namespace>").
	Name string

	cmd     *exec.Cmd
	stdin   io.WriteCloser
	resps   chan response
	ready   json.RawMessage
	logger  *slog.Logger
	readers sync.WaitGroup
	exited  chan struct{}
	waitErr error

	mu     sync.Mutex // serialises calls
	nextID int64

	closeOnce sync.Once
	closeErr  error
}

// StartNode starts a node process in ns and waits until it reports ready.
func StartNode(ctx context.Context, ns *Namespace, opts NodeOptions) (*Node, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bin, args := opts.Binary, opts.Args
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("start node: %w", err)
		}
		bin = exe
		if args == nil {
			args = []string{"-test.run=^$"}
		}
	}
	name := opts.Role + "@" + ns.Name
	// Not CommandContext: the node's lifetime is bounded by Close, not ctx.
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin}, args...)...)
	cmd.Env = append(append(os.Environ(), RoleEnv+"="+opts.Role), opts.Env...)
	// `ip netns exec` execs the program in place, so it is the child that
	// gets SIGKILL should this process die without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	n := &Node{
		Name:   name,
		cmd:    cmd,
		stdin:  stdin,
		resps:  make(chan response, 16),
		logger: logger.With("node", name),
		exited: make(chan struct{}),
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node %s: %w", name, err)
	}
	n.readers.Add(2)
	go n.readStdout(stdout)
	go n.readStderr(stderr)
	go func() {
		n.readers.Wait()
		n.waitErr = cmd.Wait()
		close(n.exited)
	}()

	select {
	case r, ok := <-n.resps:
		if !ok {
			err := n.Close()
			return nil, fmt.Errorf("start node %s: exited before ready: %w", name, err)
		}
		if r.Error != "" {
			_ = n.Close()
			return nil, fmt.Errorf("start node %s: %s", name, r.Error)
		}
		n.ready = r.Result
	case <-ctx.Done():
		_ = n.Close()
		return nil, fmt.Errorf("start node %s: waiting for ready: %w", name, ctx.Err())
	}
	return n, nil
}

// StartTestNode starts a node for a test, fails the test if it does not
// start, and closes it in t.Cleanup.
func StartTestNode(t testing.TB, ns *Namespace, opts NodeOptions) *Node {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	ctx, cancel := context.WithTimeout(context.Background(), defaultSetupTimeout)
	defer cancel()
	n, err := StartNode(ctx, ns, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Logf("natlab: node %s: %v", n.Name, err)
		}
	})
	return n
}

func (n *Node) readStdout(r io.Reader) {
	defer n.readers.Done()
	defer close(n.resps)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, lineMarker)
		if !ok {
			n.logger.Info("stdout: " + line)
			continue
		}
		var resp response
		if err := json.Unmarshal([]byte(rest), &resp); err != nil {
			n.logger.Warn("natlab: bad line from node", "line", line, "err", err)
			continue
		}
		n.resps <- resp
	}
	// Drain whatever remains so the child never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

func (n *Node) readStderr(r io.Reader) {
	defer n.readers.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		n.logger.Info(sc.Text())
	}
	_, _ = io.Copy(io.Discard, r)
}

// Ready returns what the node reported when it became ready.
func (n *Node) Ready() json.RawMessage { return n.ready }

// ReadyInto decodes the node's ready report into v.
func (n *Node) ReadyInto(v any) error {
	if err := json.Unmarshal(n.ready, v); err != nil {
		return fmt.Errorf("node %s: decode ready: %w", n.Name, err)
	}
	return nil
}

// Call sends a command and waits for its answer, decoding the result into
// result (which may be nil). The command runs in the node with ctx's deadline
// (a little shortened so its answer still arrives in time).
func (n *Node) Call(ctx context.Context, result any, cmd string, args ...string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nextID++
	req := request{ID: n.nextID, Cmd: cmd, Args: args}
	if dl, ok := ctx.Deadline(); ok {
		// The node gets slightly less time than we wait, so that an answer
		// made at its deadline still reaches us.
		left := time.Until(dl)
		req.Timeout = (left - min(time.Second, left/10)).String()
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("node %s: %s: %w", n.Name, cmd, err)
	}
	if _, err := n.stdin.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("node %s: %s: send: %w", n.Name, cmd, err)
	}
	for {
		select {
		case r, ok := <-n.resps:
			if !ok {
				return fmt.Errorf("node %s: %s: node exited", n.Name, cmd)
			}
			if r.ID != req.ID {
				continue // answer to an earlier call that gave up waiting
			}
			if r.Error != "" {
				return fmt.Errorf("node %s: %s: %s", n.Name, cmd, r.Error)
			}
			if result != nil && r.Result != nil {
				if err := json.Unmarshal(r.Result, result); err != nil {
					return fmt.Errorf("node %s: %s: decode result: %w", n.Name, cmd, err)
				}
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("node %s: %s: %w", n.Name, cmd, ctx.Err())
		}
	}
}

// Close ends the node: it closes its stdin (the node stops and exits), and
// kills it if it has not exited within a grace period. It waits for the
// process and returns its exit error, if any.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		_ = n.stdin.Close()
		select {
		case <-n.exited:
		case <-time.After(closeGrace):
			n.logger.Warn("natlab: node did not exit, killing it")
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
		if n.waitErr != nil {
			var ee *exec.ExitError
			if errors.As(n.waitErr, &ee) && !ee.Exited() {
				n.closeErr = fmt.Errorf("node %s killed: %w", n.Name, n.waitErr)
			} else {
				n.closeErr = fmt.Errorf("node %s: %w", n.Name, n.waitErr)
			}
		}
	})
	return n.closeErr
}
