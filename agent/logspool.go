package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk/agentsdk"
)

// logSpoolFile is the file in the data dir holding log lines not yet
// acknowledged by coderd.
const logSpoolFile = "logs-spool.json"

// logSpool is the on-disk form of the log queue. NextSeq and Inflight
// describe the batch that was being sent, so that after a restart it is
// resent under the same sequence number and coderd stores it at most once.
type logSpool struct {
	NextSeq  int64            `json:"next_seq"`
	Inflight int              `json:"inflight"`
	Dropped  int              `json:"dropped"`
	Lines    []logSpoolRecord `json:"lines"`
}

type logSpoolRecord struct {
	Source uuid.UUID    `json:"source"`
	Log    agentsdk.Log `json:"log"`
}

// saveSpool writes the queued lines to the spool file (atomically, mode
// 0600), or removes the file when nothing is queued. Failures are logged:
// the in-memory queue stays authoritative.
func (q *logQueue) saveSpool() {
	q.mu.Lock()
	if q.spoolPath == "" {
		q.mu.Unlock()
		return
	}
	path := q.spoolPath
	if len(q.lines) == 0 && q.dropped == 0 {
		q.spooled = false
		q.mu.Unlock()
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			q.logger.Warn("remove log spool", "path", path, "error", err)
		}
		return
	}
	sp := logSpool{NextSeq: q.nextSeq, Inflight: q.inflight, Dropped: q.dropped, Lines: make([]logSpoolRecord, len(q.lines))}
	for i, l := range q.lines {
		sp.Lines[i] = logSpoolRecord{Source: l.source, Log: l.log}
	}
	q.spooled = true
	q.mu.Unlock()
	if err := writeFileAtomic(path, sp); err != nil {
		q.logger.Warn("spool unsent logs", "path", path, "error", err)
	}
}

// loadSpool puts the lines of a previous run's spool at the head of the
// queue, restoring the in-flight batch and its sequence number. It must be
// called before anything else uses the queue.
func (q *logQueue) loadSpool(path string) error {
	q.mu.Lock()
	q.spoolPath = path
	q.mu.Unlock()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read log spool: %w", err)
	}
	var sp logSpool
	if err := json.Unmarshal(data, &sp); err != nil {
		// A torn or foreign file: keep it aside for inspection and go on.
		_ = os.Rename(path, path+".corrupt")
		return fmt.Errorf("decode log spool %s: %w", path, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	restored := make([]queuedLog, 0, len(sp.Lines)+len(q.lines))
	for _, r := range sp.Lines {
		restored = append(restored, queuedLog{source: r.Source, log: r.Log})
	}
	q.lines = append(restored, q.lines...)
	q.dropped += sp.Dropped
	if sp.NextSeq > 0 {
		q.nextSeq = sp.NextSeq
	}
	if sp.Inflight > 0 && sp.Inflight <= len(sp.Lines) {
		q.inflight = sp.Inflight
	}
	q.spooled = true
	return nil
}

func writeFileAtomic(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create dir: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create temp file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	return nil
}
