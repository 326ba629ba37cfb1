package agentproto_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk/agentproto"
)

// tcpPair returns both ends of a real loopback TCP connection; both are
// closed when the test ends, and all I/O is bounded by a deadline.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a.err != nil {
		_ = client.Close()
		t.Fatal(a.err)
	}
	server = a.c
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	deadline := time.Now().Add(30 * time.Second)
	_ = client.SetDeadline(deadline)
	_ = server.SetDeadline(deadline)
	return client, server
}

func TestPTYFrameWireFormat(t *testing.T) {
	t.Parallel()
	// The framing is a contract with agents of other versions: type byte,
	// big-endian uint32 length, payload.
	var buf bytes.Buffer
	if err := agentproto.WritePTYFrame(&buf, agentproto.PTYFrameData, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := agentproto.WritePTYFrame(&buf, agentproto.PTYFrameExit, nil); err != nil {
		t.Fatal(err)
	}
	want := []byte{2, 0, 0, 0, 2, 'h', 'i', 4, 0, 0, 0, 0}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("encoded % x, want % x", buf.Bytes(), want)
	}
	for _, f := range []struct {
		typ     byte
		payload string
	}{{agentproto.PTYFrameData, "hi"}, {agentproto.PTYFrameExit, ""}} {
		typ, payload, err := agentproto.ReadPTYFrame(&buf)
		if err != nil || typ != f.typ || string(payload) != f.payload {
			t.Fatalf("read frame: %d %q %v, want %d %q", typ, payload, err, f.typ, f.payload)
		}
	}
	if _, _, err := agentproto.ReadPTYFrame(&buf); !errors.Is(err, io.EOF) {
		t.Fatalf("read at end: %v, want io.EOF", err)
	}
	// The payload types keep their JSON field names.
	b, err := json.Marshal(agentproto.PTYInit{ID: uuid.Nil, Height: 24, Width: 80, Command: "top"})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"id":"00000000-0000-0000-0000-000000000000","height":24,"width":80,"command":"top"}` {
		t.Fatalf("init JSON %s", got)
	}
}

func TestPTYFrameLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		input   []byte
		wantErr string
	}{
		// A peer announcing a huge frame is refused before anything is
		// allocated for it.
		{"Oversized", []byte{2, 0xff, 0xff, 0xff, 0xff}, "exceeds"},
		{"JustOverLimit", []byte{2, 0, 0x10, 0, 1}, "exceeds"},
		{"TruncatedHeader", []byte{2, 0, 0}, io.ErrUnexpectedEOF.Error()},
		{"TruncatedPayload", []byte{2, 0, 0, 0, 5, 'a'}, io.ErrUnexpectedEOF.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := agentproto.ReadPTYFrame(bytes.NewReader(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("read: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
	var buf bytes.Buffer
	if err := agentproto.WritePTYFrame(&buf, agentproto.PTYFrameData, make([]byte, agentproto.MaxPTYPayload+1)); err == nil {
		t.Fatal("writing an oversized frame succeeded")
	}
	if buf.Len() != 0 {
		t.Fatalf("a refused frame wrote %d bytes", buf.Len())
	}
	if err := agentproto.WritePTYFrame(&buf, agentproto.PTYFrameData, make([]byte, agentproto.MaxPTYPayload)); err != nil {
		t.Fatalf("writing a frame of the maximum size: %v", err)
	}
	if _, payload, err := agentproto.ReadPTYFrame(&buf); err != nil || len(payload) != agentproto.MaxPTYPayload {
		t.Fatalf("reading a frame of the maximum size: %d bytes, %v", len(payload), err)
	}
}

// readFrameOf reads one frame from the server end and checks its type.
func readFrameOf(t *testing.T, r io.Reader, want byte) []byte {
	t.Helper()
	typ, payload, err := agentproto.ReadPTYFrame(r)
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if typ != want {
		t.Fatalf("frame type %d, want %d", typ, want)
	}
	return payload
}

func TestPTYConnSession(t *testing.T) {
	t.Parallel()
	client, server := tcpPair(t)
	init := agentproto.PTYInit{ID: uuid.New(), Height: 24, Width: 80, Command: "bash"}
	pc, err := agentproto.AttachPTY(client, init)
	if err != nil {
		t.Fatal(err)
	}
	var got agentproto.PTYInit
	if err := json.Unmarshal(readFrameOf(t, server, agentproto.PTYFrameInit), &got); err != nil {
		t.Fatal(err)
	}
	if got != init {
		t.Fatalf("server got init %+v, want %+v", got, init)
	}

	// Output arrives in order; a small buffer reads a frame in pieces.
	for _, s := range []string{"hello ", "world"} {
		if err := agentproto.WritePTYFrame(server, agentproto.PTYFrameData, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]byte, 0, 11)
	small := make([]byte, 4)
	for len(out) < 11 {
		n, err := pc.Read(small)
		if err != nil {
			t.Fatalf("read output: %v", err)
		}
		out = append(out, small[:n]...)
	}
	if string(out) != "hello world" {
		t.Fatalf("output %q", out)
	}

	// Input larger than a frame is split, and arrives whole.
	input := bytes.Repeat([]byte("x"), agentproto.MaxPTYPayload+10)
	done := make(chan error, 1)
	go func() {
		n, err := pc.Write(input)
		if err == nil && n != len(input) {
			err = errors.New("short write")
		}
		done <- err
	}()
	first := readFrameOf(t, server, agentproto.PTYFrameData)
	second := readFrameOf(t, server, agentproto.PTYFrameData)
	if len(first) != agentproto.MaxPTYPayload || len(second) != 10 {
		t.Fatalf("input frames of %d and %d bytes", len(first), len(second))
	}
	if err := <-done; err != nil {
		t.Fatalf("write input: %v", err)
	}

	if err := pc.Resize(40, 120); err != nil {
		t.Fatal(err)
	}
	var rs agentproto.PTYResize
	if err := json.Unmarshal(readFrameOf(t, server, agentproto.PTYFrameResize), &rs); err != nil {
		t.Fatal(err)
	}
	if rs != (agentproto.PTYResize{Height: 40, Width: 120}) {
		t.Fatalf("resize %+v", rs)
	}

	if _, ok := pc.ExitCode(); ok {
		t.Fatal("exit code reported before the process exited")
	}
	if err := agentproto.WritePTYFrame(server, agentproto.PTYFrameExit, []byte(`{"exit_code":3}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Read(small); !errors.Is(err, io.EOF) {
		t.Fatalf("read after exit: %v, want io.EOF", err)
	}
	if code, ok := pc.ExitCode(); !ok || code != 3 {
		t.Fatalf("exit code %d %v, want 3", code, ok)
	}
	// Close detaches: the server sees the stream end.
	if err := pc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := agentproto.ReadPTYFrame(server); !errors.Is(err, io.EOF) {
		t.Fatalf("server read after close: %v, want io.EOF", err)
	}
}

func TestPTYConnServerFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		typ     byte
		payload string
		// wantErr is empty for io.EOF.
		wantErr string
	}{
		{"ErrorFrame", agentproto.PTYFrameError, "init frame without id", "reconnecting pty: init frame without id"},
		{"UnknownFrame", 9, "", "unexpected frame type 9"},
		{"ClientOnlyFrame", agentproto.PTYFrameResize, `{"height":1,"width":1}`, "unexpected frame type 3"},
		{"BadExit", agentproto.PTYFrameExit, "not json", "decode exit"},
		{"ClosedWithoutExit", 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, server := tcpPair(t)
			pc, err := agentproto.AttachPTY(client, agentproto.PTYInit{ID: uuid.New()})
			if err != nil {
				t.Fatal(err)
			}
			readFrameOf(t, server, agentproto.PTYFrameInit)
			if tc.typ != 0 {
				if err := agentproto.WritePTYFrame(server, tc.typ, []byte(tc.payload)); err != nil {
					t.Fatal(err)
				}
			}
			_ = server.Close()
			buf := make([]byte, 16)
			for range 2 { // the error sticks
				_, err := pc.Read(buf)
				if tc.wantErr == "" {
					if !errors.Is(err, io.EOF) {
						t.Fatalf("read: %v, want io.EOF", err)
					}
				} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("read: %v, want an error containing %q", err, tc.wantErr)
				}
			}
			if _, ok := pc.ExitCode(); ok {
				t.Fatal("exit code reported without an exit frame")
			}
		})
	}
}
