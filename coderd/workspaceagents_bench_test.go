package coderd_test

import (
	"context"
	"crypto/rand"
	"io"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/pkg/sftp"

	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/tunnel"
)

// BenchmarkAgentTunnel measures, over an established tunnel between a user
// and an in-process agent (coderd + PostgreSQL + DERP on loopback; the
// path is direct UDP on loopback once disco finds it):
//   - ssh-session: opening an SSH session on an existing SSH connection
//     and running `true` to completion (x/crypto/ssh client);
//   - sftp-upload / sftp-download: SFTP throughput of a 16 MiB file.
//
// Run: go test -run '^$' -bench BenchmarkAgentTunnel -benchtime 3s ./coderd/
func BenchmarkAgentTunnel(b *testing.B) {
	e := newAgentEnv(b)
	owner := e.client()
	first := coderdtest.CreateFirstUser(b, owner)
	agentID, token := insertAgentSpec(b, e.store, uuid.MustParse(first.UserID), agentSpec{})
	runAgent(b, e.url, token)
	waitAgent(b, owner, agentID, "ready", func(a codersdk.WorkspaceAgent) bool {
		return a.LifecycleState == codersdk.WorkspaceAgentLifecycleReady
	})
	conn := dialAgentTunnel(b, owner, e.derpMap, agentID)
	// Wait (bounded) for the direct path, so the figures are not DERP's.
	ip := tunnel.IPFromUUID(agentID)
	var path tunnel.PingResult
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := conn.Ping(ctx, ip)
		cancel()
		if err == nil {
			path = res
			if res.Direct {
				break
			}
		}
	}
	b.Logf("path to the agent: direct=%v endpoint=%q derp=%q latency=%v", path.Direct, path.Endpoint, path.DERPRegionCode, path.Latency)
	sc := sshOverTunnel(b, owner, conn, agentID)
	// Warm up the SSH connection before measuring.
	for range 20 {
		s, err := sc.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Run("true"); err != nil {
			b.Fatal(err)
		}
		_ = s.Close()
	}

	b.Run("ssh-session", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s, err := sc.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Run("true"); err != nil {
				b.Fatal(err)
			}
			_ = s.Close()
		}
	})

	const size = 16 << 20
	payload := make([]byte, size)
	_, _ = rand.Read(payload)
	fc, err := sftp.NewClient(sc, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(64))
	if err != nil {
		b.Fatalf("sftp: %v", err)
	}
	b.Cleanup(func() { _ = fc.Close() })
	remote := b.TempDir() + "/bench.bin"

	b.Run("sftp-upload", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			f, err := fc.Create(remote)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.ReadFrom(bytesReader(payload)); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sftp-download", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			f, err := fc.Open(remote)
			if err != nil {
				b.Fatal(err)
			}
			n, err := f.WriteTo(io.Discard)
			if err != nil || n != size {
				b.Fatalf("download: %d bytes, %v", n, err)
			}
			_ = f.Close()
		}
	})
}

// bytesReader returns a fresh reader of p that is not an io.WriterTo, so
// the SFTP file's ReadFrom does the (concurrent) transfer.
func bytesReader(p []byte) io.Reader {
	return &onlyReader{p: p}
}

type onlyReader struct{ p []byte }

func (r *onlyReader) Read(b []byte) (int, error) {
	if len(r.p) == 0 {
		return 0, io.EOF
	}
	n := copy(b, r.p)
	r.p = r.p[n:]
	return n, nil
}
