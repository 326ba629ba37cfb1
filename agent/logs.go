package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
)

// Defaults of the log queue.
const (
	DefaultLogQueueLines   = 10000
	DefaultLogBatchLines   = 500
	DefaultLogSendInterval = 200 * time.Millisecond
	// DefaultLogsSentWait bounds how long the agent waits for its start
	// scripts' output to reach coderd before it reports their end.
	DefaultLogsSentWait = 5 * time.Second
)

type queuedLog struct {
	source uuid.UUID
	log    agentsdk.Log
}

// logQueue keeps script output in memory, in order, until coderd acked it.
// Memory is bounded: past maxLines the oldest lines are dropped and a marker
// line saying how many were dropped takes their place. Batches carry a
// strictly increasing sequence number so coderd stores a retried batch once.
type logQueue struct {
	logger   *slog.Logger
	maxLines int
	now      func() time.Time

	mu      sync.Mutex
	lines   []queuedLog
	dropped int
	notify  chan struct{}
	nextSeq int64
	// inflight is the batch being sent (removed from lines only once acked).
	inflight int

	// spoolPath is where unsent lines are persisted (empty: nowhere);
	// spooled says the file may exist and must follow every ack.
	spoolPath string
	spooled   bool
}

func newLogQueue(logger *slog.Logger, maxLines int) *logQueue {
	if maxLines <= 0 {
		maxLines = DefaultLogQueueLines
	}
	return &logQueue{
		logger: logger, maxLines: maxLines, now: time.Now,
		notify: make(chan struct{}, 1),
		// Sequence numbers start at the wall clock in nanoseconds, so a
		// restarted agent continues above everything it sent before.
		nextSeq: time.Now().UnixNano(),
	}
}

// add queues one line.
func (q *logQueue) add(source uuid.UUID, l agentsdk.Log) {
	q.mu.Lock()
	q.lines = append(q.lines, queuedLog{source: source, log: l})
	if over := len(q.lines) - q.maxLines; over > 0 {
		// Keep the in-flight batch intact (it may be stored already); drop
		// the oldest lines after it.
		start := q.inflight
		if start+over > len(q.lines) {
			over = len(q.lines) - start
		}
		q.lines = append(q.lines[:start], q.lines[start+over:]...)
		q.dropped += over
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// next returns the next batch (lines of one source, in order) without
// removing it, or ok=false when nothing is queued. A pending drop marker is
// turned into a line first.
func (q *logQueue) next(maxBatch int) (req agentsdk.PatchLogsRequest, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dropped > 0 && q.inflight == 0 {
		marker := queuedLog{source: agentsdk.AgentLogSourceID, log: agentsdk.Log{
			CreatedAt: q.now(), Level: codersdk.LogLevelWarn,
			Output: fmt.Sprintf("[agent] %d log lines were dropped: the agent's log buffer was full while coderd was unreachable", q.dropped),
		}}
		q.lines = append([]queuedLog{marker}, q.lines...)
		q.dropped = 0
	}
	if len(q.lines) == 0 {
		return req, false
	}
	src := q.lines[0].source
	n := 0
	if q.inflight > 0 {
		// A retry resends exactly the batch of the first attempt under
		// the same sequence number: coderd may have stored it already.
		n = min(q.inflight, len(q.lines))
	} else {
		for n < len(q.lines) && n < maxBatch && q.lines[n].source == src {
			n++
		}
	}
	q.inflight = n
	req.LogSourceID = src
	req.BatchSeq = q.nextSeq
	req.Logs = make([]agentsdk.Log, n)
	for i := 0; i < n; i++ {
		req.Logs[i] = q.lines[i].log
	}
	return req, true
}

// ack removes the in-flight batch and advances the sequence number. When
// the queue was spooled, the spool follows (and is removed once empty).
func (q *logQueue) ack() {
	q.mu.Lock()
	q.lines = q.lines[q.inflight:]
	q.inflight = 0
	q.nextSeq++
	spooled := q.spooled
	q.mu.Unlock()
	if spooled {
		q.saveSpool()
	}
}

// pending reports how many lines wait to be sent.
func (q *logQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.lines)
}

// send delivers queued batches until ctx is done. A batch that fails is
// retried (same sequence number) after a jittered backoff; a batch coderd
// refuses for good (4xx other than 401/429) is dropped with a warning.
func (q *logQueue) send(ctx context.Context, client *agentsdk.Client, interval time.Duration, bo *backoff) {
	for {
		req, ok := q.next(DefaultLogBatchLines)
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-q.notify:
				// Gather a few more lines into the batch.
				t := time.NewTimer(interval)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			continue
		}
		_, err := client.PatchLogs(ctx, req)
		if err != nil {
			if apiErr, ok := codersdk.AsError(err); ok {
				switch code := apiErr.StatusCode(); {
				case code == http.StatusUnauthorized || code == http.StatusTooManyRequests || code >= 500:
				default:
					q.logger.Warn("coderd refused a log batch; dropping it", "status", code, "error", err, "lines", len(req.Logs))
					q.ack()
					bo.reset()
					continue
				}
			}
			if ctx.Err() != nil {
				return
			}
			// coderd is unreachable: persist what waits, so a dying agent
			// does not lose it.
			q.saveSpool()
			q.logger.Debug("send logs failed; retrying", "error", err)
			if !bo.wait(ctx) {
				return
			}
			continue
		}
		bo.reset()
		q.ack()
	}
}

// flush sends every queued line until the queue is empty or ctx is done.
func (q *logQueue) flush(ctx context.Context, client *agentsdk.Client, bo *backoff) {
	for q.pending() > 0 || q.hasDropMarker() {
		req, ok := q.next(DefaultLogBatchLines)
		if !ok {
			return
		}
		if _, err := client.PatchLogs(ctx, req); err != nil {
			if apiErr, ok := codersdk.AsError(err); ok && apiErr.StatusCode() >= 400 && apiErr.StatusCode() < 500 &&
				apiErr.StatusCode() != http.StatusUnauthorized && apiErr.StatusCode() != http.StatusTooManyRequests {
				q.ack()
				continue
			}
			if !bo.wait(ctx) {
				return
			}
			continue
		}
		bo.reset()
		q.ack()
	}
}

func (q *logQueue) hasDropMarker() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped > 0
}

// awaitSent waits until every queued line was delivered to coderd by the
// send loop, or ctx is done. The agent calls it before it reports the end
// of its start scripts, so a client that waits for "ready" (coder ssh
// --wait yes) finds their whole output in coderd.
func (q *logQueue) awaitSent(ctx context.Context) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for q.pending() > 0 || q.hasDropMarker() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}
