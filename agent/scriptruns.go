package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"github.com/wgmesh/coder/agent/agentscripts"
	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/agentsdk"
)

// scriptRunReporter delivers the start and end of every script run to
// coderd in order, retrying each until coderd answered.
type scriptRunReporter struct {
	logger  *slog.Logger
	mu      sync.Mutex
	pending []agentsdk.PostScriptRunRequest
	notify  chan struct{}
}

func newScriptRunReporter(logger *slog.Logger) *scriptRunReporter {
	return &scriptRunReporter{logger: logger, notify: make(chan struct{}, 1)}
}

// observe is the runner's OnRun hook: it queues the report of a run.
func (s *scriptRunReporter) observe(rep agentscripts.RunReport) {
	req := agentsdk.PostScriptRunRequest{ScriptID: rep.Script.ID, Status: codersdk.ScriptRunRunning, StartedAt: rep.Started}
	if rep.Result != nil {
		ended := rep.Ended
		code := int32(rep.Result.ExitCode)
		req.EndedAt, req.ExitCode, req.Status = &ended, &code, scriptRunStatus(rep.Result.Err)
	}
	s.mu.Lock()
	s.pending = append(s.pending, req)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// scriptRunStatus tells how a run ended from its error.
func scriptRunStatus(err error) codersdk.WorkspaceAgentScriptRunStatus {
	switch {
	case err == nil:
		return codersdk.ScriptRunOK
	case errors.Is(err, agentscripts.ErrTimeout):
		return codersdk.ScriptRunTimedOut
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return codersdk.ScriptRunCanceled
	default:
		return codersdk.ScriptRunExitFailure
	}
}

func (s *scriptRunReporter) head() (agentsdk.PostScriptRunRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return agentsdk.PostScriptRunRequest{}, false
	}
	return s.pending[0], true
}

func (s *scriptRunReporter) pop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = s.pending[1:]
}

// sendOne posts the head; false means retry. coderd refusing it (a 4xx
// other than 401/429) drops it.
func (s *scriptRunReporter) sendOne(ctx context.Context, client *agentsdk.Client, req agentsdk.PostScriptRunRequest) bool {
	err := client.PostScriptRun(ctx, req)
	if err == nil {
		return true
	}
	if apiErr, ok := codersdk.AsError(err); ok {
		if code := apiErr.StatusCode(); code >= 400 && code < 500 && code != http.StatusUnauthorized && code != http.StatusTooManyRequests {
			s.logger.Warn("coderd refused a script run report; dropping it", "script_id", req.ScriptID, "status", req.Status, "error", err)
			return true
		}
	}
	s.logger.Debug("report script run failed; retrying", "script_id", req.ScriptID, "error", err)
	return false
}

// run delivers reports until ctx is done.
func (s *scriptRunReporter) run(ctx context.Context, client *agentsdk.Client, bo *backoff) {
	for {
		req, ok := s.head()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-s.notify:
			}
			continue
		}
		if s.sendOne(ctx, client, req) {
			s.pop()
			bo.reset()
			continue
		}
		if !bo.wait(ctx) {
			return
		}
	}
}

// flush delivers what is queued, for shutdown, until ctx is done.
func (s *scriptRunReporter) flush(ctx context.Context, client *agentsdk.Client, bo *backoff) {
	for {
		req, ok := s.head()
		if !ok {
			return
		}
		if s.sendOne(ctx, client, req) {
			s.pop()
			bo.reset()
			continue
		}
		if !bo.wait(ctx) {
			return
		}
	}
}
