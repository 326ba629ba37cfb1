package coderd_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/coderd"
	"github.com/wgmesh/coder/coderd/coderdtest"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// BenchmarkWorkspaceAppProxy measures the apps proxy's overhead: the same
// small GET against the same server, directly and through coderd's path
// app proxy (coderd → mesh → agent → 127.0.0.1:PORT), with 16 concurrent
// keep-alive clients. It reports requests/s and p99 latency.
//
//	go test -run '^$' -bench BenchmarkWorkspaceAppProxy -benchtime 3000x ./coderd/
func BenchmarkWorkspaceAppProxy(b *testing.B) {
	e := newAppsEnv(b, coderd.AppsOptions{})
	owner := codersdk.New(e.url)
	first := coderdtest.CreateFirstUser(b, owner)
	up := newUpstream(b)
	agentID, token := insertAgent(b, e.store, uuid.MustParse(first.UserID))
	insertApps(b, e.store, agentID, testApp{slug: "bench", url: fmt.Sprintf("http://127.0.0.1:%d", up.port), share: database.AppSharingLevelOwner})
	ws, err := e.store.GetWorkspaceByAgentID(context.Background(), agentID)
	if err != nil {
		b.Fatal(err)
	}
	runAgent(b, e.url, token)
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for {
		a, err := owner.WorkspaceAgent(ctx, agentID)
		if err == nil && a.Status == codersdk.WorkspaceAgentConnected {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("agent did not connect")
		}
		time.Sleep(20 * time.Millisecond)
	}
	targets := []struct{ name, url string }{
		{"direct", fmt.Sprintf("http://127.0.0.1:%d/bench", up.port)},
		{"proxy", fmt.Sprintf("%s/@%s/%s/apps/bench/bench", e.url, first.Username, ws.Name)},
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			load(b, tg.url, owner.SessionToken())
		})
	}
}

// load runs b.N GETs of url with 16 workers and reports req/s and p99.
func load(b *testing.B, url, token string) {
	const workers = 16
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	get := func() error {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set(codersdk.SessionTokenHeader, token)
		res, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	}
	// Warm up connections (and the proxy's mesh connection).
	for range workers {
		if err := get(); err != nil {
			b.Fatal(err)
		}
	}
	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	b.ResetTimer()
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := get(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				latencies[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	slices.Sort(latencies)
	p99 := latencies[min(len(latencies)-1, len(latencies)*99/100)]
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
}
