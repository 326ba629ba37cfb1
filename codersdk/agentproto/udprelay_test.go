package agentproto_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wgmesh/coder/codersdk/agentproto"
)

func TestParseUDPRelayTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		target  string
		want    string
		wantErr string
	}{
		{"127.0.0.1:53", "127.0.0.1:53", ""},
		{"127.9.9.9:1", "127.9.9.9:1", ""},
		{"[::1]:5353", "[::1]:5353", ""},
		{"[::ffff:127.0.0.1]:53", "127.0.0.1:53", ""},
		{"10.1.2.3:53", "", "only loopback"},
		{"0.0.0.0:53", "", "only loopback"},
		{"[::]:53", "", "only loopback"},
		{"[::ffff:10.0.0.1]:53", "", "only loopback"},
		{"localhost:53", "", "want a loopback ip:port"},
		{"127.0.0.1", "", "want a loopback ip:port"},
		{"", "", "want a loopback ip:port"},
		{"127.0.0.1:0", "", "port 0"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			t.Parallel()
			got, err := agentproto.ParseUDPRelayTarget(tc.target)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parse: %v %v, want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("parse: %v %v, want %s", got, err, tc.want)
			}
		})
	}
}

func TestUDPFrameWireFormat(t *testing.T) {
	t.Parallel()
	client, server := tcpPair(t)
	fc := agentproto.NewUDPFrameConn(client, nil, nil)
	for _, d := range []string{"abc", ""} {
		if _, err := fc.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, 7)
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0, 3, 'a', 'b', 'c', 0, 0}; !bytes.Equal(got, want) {
		t.Fatalf("frames % x, want % x", got, want)
	}
	if _, err := fc.Write(make([]byte, agentproto.MaxUDPDatagram+1)); err == nil {
		t.Fatal("writing an oversized datagram succeeded")
	}
	if fc.RemoteAddr().String() != client.RemoteAddr().String() {
		t.Fatalf("RemoteAddr %s without a target, want the stream's peer %s", fc.RemoteAddr(), client.RemoteAddr())
	}
}

func TestUDPFrameConnRead(t *testing.T) {
	t.Parallel()
	client, server := tcpPair(t)
	fc := agentproto.NewUDPFrameConn(client, nil, nil)
	// Two datagrams in one TCP write, then one cut short by the peer.
	if _, err := server.Write([]byte{0, 5, 'h', 'e', 'l', 'l', 'o', 0, 2, 'o', 'k', 0, 4, 'c', 'u'}); err != nil {
		t.Fatal(err)
	}
	_ = server.Close()
	small := make([]byte, 3)
	// A short buffer truncates the datagram like a UDP socket and keeps
	// the framing intact.
	if n, err := fc.Read(small); err != nil || string(small[:n]) != "hel" {
		t.Fatalf("truncated read: %q %v", small[:n], err)
	}
	if n, err := fc.Read(small); err != nil || string(small[:n]) != "ok" {
		t.Fatalf("next datagram: %q %v", small[:n], err)
	}
	_, err := fc.Read(small)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut datagram: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, again := fc.Read(small); again == nil || again.Error() != err.Error() {
		t.Fatalf("read after a broken frame: %v, want %v again", again, err)
	}
}

// fakeAgent answers the relay handshake on server with res, followed in
// the same write by extra (datagram frames the agent sent early), and
// returns the request it received.
func fakeAgent(t *testing.T, server net.Conn, res string, extra []byte) <-chan agentproto.UDPRelayRequest {
	t.Helper()
	ch := make(chan agentproto.UDPRelayRequest, 1)
	go func() {
		defer close(ch)
		line, err := bufio.NewReader(server).ReadBytes('\n')
		if err != nil {
			return
		}
		var req agentproto.UDPRelayRequest
		if json.Unmarshal(line, &req) != nil {
			return
		}
		ch <- req
		_, _ = server.Write(append([]byte(res+"\n"), extra...))
	}()
	return ch
}

func TestOpenUDPRelay(t *testing.T) {
	t.Parallel()
	client, server := tcpPair(t)
	reqs := fakeAgent(t, server, `{}`, []byte{0, 2, 'h', 'i'})
	want := agentproto.UDPRelayRequest{Target: "127.0.0.1:5353", IdleTimeout: time.Minute}
	fc, err := agentproto.OpenUDPRelay(client, want)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-reqs; got != want {
		t.Fatalf("agent got %+v, want %+v", got, want)
	}
	if fc.RemoteAddr().String() != "127.0.0.1:5353" || fc.RemoteAddr().Network() != "udp" {
		t.Fatalf("RemoteAddr %s/%s, want the target", fc.RemoteAddr(), fc.RemoteAddr().Network())
	}
	// A datagram sent right behind the answer is not lost.
	buf := make([]byte, 16)
	if n, err := fc.Read(buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("first datagram: %q %v", buf[:n], err)
	}
	if _, err := fc.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 6)
	if _, err := io.ReadFull(server, got); err != nil || string(got) != "\x00\x04back" {
		t.Fatalf("agent read %q %v", got, err)
	}
}

func TestOpenUDPRelayFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, answer, wantErr string
	}{
		{"Refused", `{"error":"udp relay target \"10.0.0.1:53\": only loopback addresses in the workspace may be reached"}`, "agent refused: udp relay target"},
		{"Garbage", `HTTP/1.1 400 Bad Request`, "decode relay response"},
		{"Closed", "", "read relay response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, server := tcpPair(t)
			if tc.answer == "" {
				go func() {
					_, _ = bufio.NewReader(server).ReadBytes('\n')
					_ = server.Close()
				}()
			} else {
				fakeAgent(t, server, tc.answer, nil)
			}
			_, err := agentproto.OpenUDPRelay(client, agentproto.UDPRelayRequest{Target: "10.0.0.1:53"})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("open: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
	// A request the agent would cut off is refused before it is sent.
	client, server := tcpPair(t)
	_, err := agentproto.OpenUDPRelay(client, agentproto.UDPRelayRequest{Target: strings.Repeat("1", agentproto.MaxUDPRelayHeader)})
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("open with an oversized request: %v", err)
	}
	_ = client.Close()
	if n, _ := io.Copy(io.Discard, server); n != 0 {
		t.Fatalf("an oversized request sent %d bytes", n)
	}
}

func TestRelayDatagrams(t *testing.T) {
	t.Parallel()
	// A relay stream on one side, a connected UDP socket on the other: what
	// a real agent does, without the handshake.
	target, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	uc, err := net.DialUDP("udp", nil, target.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	client, server := tcpPair(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		agentproto.RelayDatagrams(agentproto.NewUDPFrameConn(server, nil, nil), uc, 200*time.Millisecond, nil)
	}()
	fc := agentproto.NewUDPFrameConn(client, nil, nil)
	if _, err := fc.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = target.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 16)
	n, from, err := target.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("target got %q %v", buf[:n], err)
	}
	if _, err := target.WriteToUDP([]byte("pong"), from); err != nil {
		t.Fatal(err)
	}
	if n, err := fc.Read(buf); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("answer %q %v", buf[:n], err)
	}
	// Without traffic the relay closes both sides (the stream deadline of
	// tcpPair bounds the wait).
	if _, err := fc.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("idle relay: read %v, want io.EOF", err)
	}
	<-done
}
