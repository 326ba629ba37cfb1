package docker_test

import (
	"sort"
	"testing"
	"time"
)

// BenchmarkDockerWorkspace measures examples/templates/docker end to end
// against a real `coder server`: `coder create` until the agent is connected
// and its startup script done (create→ready), and `coder stop` + `coder
// start` until the agent is ready again (stop→start→ready). Each iteration
// is one workspace; the p50 over the iterations is reported (run with
// -benchtime=5x for docs/performance.md).
func BenchmarkDockerWorkspace(b *testing.B) {
	requireDocker(b)
	s := startServer(b)
	dc := newDockerCleanup(b)
	owner := s.cliFor(s.Client, s.Owner.Username)
	dir := b.TempDir() + "/docker"
	owner.must("templates", "init", "--id", "docker", dir)
	owner.pushTemplate("docker", dir)

	var create, restart []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		name := "bench" + string(rune('a'+i%26)) + time.Now().Format("150405")
		start := time.Now()
		owner.must("create", name, "-t", "docker", "-y")
		ws, err := s.Client.WorkspaceByOwnerAndName(b.Context(), "me", name)
		if err != nil {
			b.Fatal(err)
		}
		dc.add(ws.ID)
		waitAgentReady(b, s.Client, ws.ID, containerLogs(ws.ID))
		create = append(create, time.Since(start))

		start = time.Now()
		owner.must("stop", name, "-y")
		owner.must("start", name, "-y")
		waitAgentReady(b, s.Client, ws.ID, containerLogs(ws.ID))
		restart = append(restart, time.Since(start))

		b.StopTimer()
		owner.must("delete", name, "-y")
		b.StartTimer()
	}
	b.ReportMetric(p50(create).Seconds(), "create-ready-p50-s")
	b.ReportMetric(p50(restart).Seconds(), "stop-start-ready-p50-s")
	b.Logf("create→ready %v; stop→start→ready %v", create, restart)
}

func p50(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
