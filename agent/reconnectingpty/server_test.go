package reconnectingpty

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk/agentproto"
)

func startServer(t *testing.T, s *Server) string {
	t.Helper()
	if s.Shell == "" {
		s.Shell = "/bin/bash"
	}
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrClosed) {
			t.Errorf("Serve = %v, want ErrClosed", err)
		}
	})
	return l.Addr().String()
}

// term is an attached test client collecting output.
type term struct {
	*agentproto.PTYConn
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func attach(t *testing.T, addr string, req agentproto.PTYInit) *term {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := agentproto.AttachPTY(nc, req)
	if err != nil {
		t.Fatal(err)
	}
	tm := &term{PTYConn: c, done: make(chan struct{})}
	go func() {
		defer close(tm.done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { tm.Close(); <-tm.done })
	return tm
}

func (tm *term) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

func (tm *term) detach(t *testing.T) {
	t.Helper()
	tm.Close()
	<-tm.done
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (tm *term) waitMatch(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	var m []string
	eventually(t, re.String(), func() bool {
		m = re.FindStringSubmatch(tm.output())
		return m != nil
	})
	return m
}

func TestReconnectReplaysScrollback(t *testing.T) {
	t.Parallel()
	s := &Server{}
	addr := startServer(t, s)
	id := uuid.New()
	first := attach(t, addr, agentproto.PTYInit{ID: id, Height: 24, Width: 80})
	fmt.Fprint(first, "echo hello-$RANDOM\n")
	hello := first.waitMatch(t, regexp.MustCompile(`hello-\d+`))[0]
	first.detach(t)
	eventually(t, "client detached", func() bool { return s.Stats().Clients == 0 })
	if st := s.Stats(); st.Sessions != 1 {
		t.Fatalf("stats after detach = %+v, want the PTY alive", st)
	}

	second := attach(t, addr, agentproto.PTYInit{ID: id, Height: 24, Width: 80})
	second.waitMatch(t, regexp.MustCompile(regexp.QuoteMeta(hello)))
	fmt.Fprint(second, "echo live-$((40+2))\n")
	second.waitMatch(t, regexp.MustCompile(`live-42`))
}

func TestSeveralClients(t *testing.T) {
	t.Parallel()
	s := &Server{}
	addr := startServer(t, s)
	id := uuid.New()
	a := attach(t, addr, agentproto.PTYInit{ID: id})
	b := attach(t, addr, agentproto.PTYInit{ID: id})
	eventually(t, "two clients", func() bool { return s.Stats().Clients == 2 })
	fmt.Fprint(a, "echo both-$((1+1))\n")
	a.waitMatch(t, regexp.MustCompile(`both-2`))
	b.waitMatch(t, regexp.MustCompile(`both-2`))
}

func TestResize(t *testing.T) {
	t.Parallel()
	addr := startServer(t, &Server{})
	tm := attach(t, addr, agentproto.PTYInit{ID: uuid.New(), Height: 30, Width: 100})
	fmt.Fprint(tm, "stty size\n")
	tm.waitMatch(t, regexp.MustCompile(`30 100\r\n`))
	if err := tm.Resize(40, 120); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(tm, "stty size\n")
	tm.waitMatch(t, regexp.MustCompile(`40 120\r\n`))
}

func TestIdleReap(t *testing.T) {
	t.Parallel()
	s := &Server{Timeout: 200 * time.Millisecond}
	addr := startServer(t, s)
	id := uuid.New()
	tm := attach(t, addr, agentproto.PTYInit{ID: id})
	fmt.Fprint(tm, "echo pid=$$\n")
	pid, err := strconv.Atoi(tm.waitMatch(t, regexp.MustCompile(`pid=(\d+)`))[1])
	if err != nil {
		t.Fatal(err)
	}
	tm.detach(t)
	eventually(t, "idle PTY reaped", func() bool { return s.Stats().Sessions == 0 })
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("shell %d still exists after reaping: %v", pid, err)
	}
	// The same ID now starts a fresh PTY without the old scrollback.
	again := attach(t, addr, agentproto.PTYInit{ID: id, Command: "echo fresh; sleep 600"})
	again.waitMatch(t, regexp.MustCompile(`fresh`))
	if regexp.MustCompile(`pid=\d+`).MatchString(again.output()) {
		t.Error("old scrollback replayed after reaping")
	}
}

func TestProcessExitClosesClients(t *testing.T) {
	t.Parallel()
	s := &Server{}
	addr := startServer(t, s)
	tm := attach(t, addr, agentproto.PTYInit{ID: uuid.New(), Command: "echo bye; exit 3"})
	select {
	case <-tm.done:
	case <-time.After(30 * time.Second):
		t.Fatal("client not closed after process exit")
	}
	if code, ok := tm.ExitCode(); !ok || code != 3 {
		t.Errorf("ExitCode = %d, %v; want 3", code, ok)
	}
	if !regexp.MustCompile(`bye`).MatchString(tm.output()) {
		t.Errorf("output %q", tm.output())
	}
	eventually(t, "PTY removed", func() bool { return s.Stats().Sessions == 0 })
}

func TestBadInit(t *testing.T) {
	t.Parallel()
	addr := startServer(t, &Server{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := agentproto.WritePTYFrame(nc, agentproto.PTYFrameData, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	typ, payload, err := agentproto.ReadPTYFrame(nc)
	if err != nil || typ != agentproto.PTYFrameError {
		t.Fatalf("got frame %d %q %v, want error frame", typ, payload, err)
	}
	if _, _, err := agentproto.ReadPTYFrame(nc); !errors.Is(err, io.EOF) {
		t.Errorf("connection not closed: %v", err)
	}
}

func TestRing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cap    int
		writes []string
		want   string
	}{
		{"empty", 4, nil, ""},
		{"fits", 8, []string{"abc", "de"}, "abcde"},
		{"wraps", 5, []string{"abc", "def", "gh"}, "defgh"},
		{"big write", 3, []string{"ab", "cdefg"}, "efg"},
		{"exact", 3, []string{"abc"}, "abc"},
		{"many", 4, []string{"a", "b", "c", "d", "e", "f"}, "cdef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(tt.cap)
			for _, w := range tt.writes {
				r.Write([]byte(w))
			}
			if got := string(r.Bytes()); got != tt.want {
				t.Errorf("Bytes = %q, want %q", got, tt.want)
			}
		})
	}
}
