package agent

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk/agentsdk"
)

func TestLogQueueBoundedOrderedAndAcked(t *testing.T) {
	t.Parallel()
	src := uuid.New()
	q := newLogQueue(slog.New(slog.DiscardHandler), 3)
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		q.add(src, agentsdk.Log{Output: s})
	}
	// Over the cap: the two oldest lines were dropped, a marker comes first.
	first, ok := q.next(10)
	if !ok || first.LogSourceID != agentsdk.AgentLogSourceID || !strings.Contains(first.Logs[0].Output, "2 log lines were dropped") {
		t.Fatalf("first batch %+v", first)
	}
	// Not acked: the same batch with the same sequence number comes again.
	again, _ := q.next(10)
	if again.BatchSeq != first.BatchSeq || len(again.Logs) != 1 {
		t.Fatalf("retry %+v vs %+v", again, first)
	}
	q.ack()
	second, ok := q.next(10)
	if !ok || second.BatchSeq <= first.BatchSeq || second.LogSourceID != src {
		t.Fatalf("second batch %+v", second)
	}
	var got []string
	for _, l := range second.Logs {
		got = append(got, l.Output)
	}
	if strings.Join(got, "") != "cde" {
		t.Fatalf("lines %q", got)
	}
	q.ack()
	if _, ok := q.next(10); ok || q.pending() != 0 {
		t.Fatal("queue not empty after ack")
	}
}
