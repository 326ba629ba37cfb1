package agent

import (
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
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

func TestLogQueueRetryResendsTheSameBatch(t *testing.T) {
	t.Parallel()
	src := uuid.New()
	q := newLogQueue(slog.New(slog.DiscardHandler), 100)
	q.add(src, agentsdk.Log{Output: "a"})
	q.add(src, agentsdk.Log{Output: "b"})
	first, _ := q.next(10)
	// A line arriving while the batch is in flight waits for the next one:
	// coderd may have stored the first attempt under its sequence number.
	q.add(src, agentsdk.Log{Output: "c"})
	again, _ := q.next(10)
	if again.BatchSeq != first.BatchSeq || len(again.Logs) != 2 {
		t.Fatalf("retry %+v, first %+v", again, first)
	}
	q.ack()
	next, _ := q.next(10)
	if len(next.Logs) != 1 || next.Logs[0].Output != "c" || next.BatchSeq != first.BatchSeq+1 {
		t.Fatalf("next %+v", next)
	}
}

func TestLogQueueSpoolSurvivesRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), logSpoolFile)
	src1, src2 := uuid.New(), uuid.New()
	q1 := newLogQueue(slog.New(slog.DiscardHandler), 100)
	if err := q1.loadSpool(path); err != nil {
		t.Fatal(err)
	}
	q1.add(src1, agentsdk.Log{Output: "a"})
	q1.add(src1, agentsdk.Log{Output: "b"})
	q1.add(src2, agentsdk.Log{Output: "c"})
	inflight, _ := q1.next(10)
	q1.saveSpool()
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("spool file: %v %v", info, err)
	}

	// A new process: the in-flight batch comes back under its sequence
	// number, then the rest, and the spool follows the acks.
	q2 := newLogQueue(slog.New(slog.DiscardHandler), 100)
	if err := q2.loadSpool(path); err != nil {
		t.Fatal(err)
	}
	q2.add(src2, agentsdk.Log{Output: "d"})
	first, ok := q2.next(10)
	if !ok || first.BatchSeq != inflight.BatchSeq || first.LogSourceID != src1 || len(first.Logs) != 2 || first.Logs[1].Output != "b" {
		t.Fatalf("first batch after restart %+v (was %+v)", first, inflight)
	}
	q2.ack()
	var sp logSpool
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &sp); err != nil || len(sp.Lines) != 2 || sp.Lines[0].Log.Output != "c" {
		t.Fatalf("spool after ack: %+v %v", sp, err)
	}
	second, _ := q2.next(10)
	if second.BatchSeq != first.BatchSeq+1 || len(second.Logs) != 2 || second.Logs[0].Output != "c" || second.Logs[1].Output != "d" {
		t.Fatalf("second batch %+v", second)
	}
	q2.ack()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("spool not removed once empty: %v", err)
	}
}

func TestLogQueueCorruptSpoolIsSetAside(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), logSpoolFile)
	if err := os.WriteFile(path, []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	q := newLogQueue(slog.New(slog.DiscardHandler), 100)
	if err := q.loadSpool(path); err == nil {
		t.Fatal("corrupt spool accepted")
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Fatalf("corrupt spool not kept aside: %v", err)
	}
	if q.pending() != 0 {
		t.Fatalf("%d lines from a corrupt spool", q.pending())
	}
}
