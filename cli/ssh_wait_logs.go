package cli

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk"
)

// waitsForReady reports whether `coder ssh` waits for the agent's startup
// scripts to finish (lifecycle ready) before connecting: --wait yes, or
// --wait auto when a start script blocks login.
func waitsForReady(mode waitMode, ag codersdk.WorkspaceAgent) bool {
	return mode == waitYes || (mode == waitAuto || mode == "") && ag.StartupScriptBehavior == "blocking"
}

// startupDone reports whether the agent's startup scripts have ended (or
// the agent is already shutting down), so there is nothing to wait for.
func startupDone(l codersdk.WorkspaceAgentLifecycle) bool {
	switch l {
	case codersdk.WorkspaceAgentLifecycleCreated, codersdk.WorkspaceAgentLifecycleStarting, "":
		return false
	}
	return true
}

// waitLogs prints an agent's startup log lines to w as they reach coderd,
// while `coder ssh --wait` waits for the startup scripts. It follows the
// agent's log stream from the first line; stop ends the stream and prints
// whatever reached coderd before the agent became ready and the stream had
// not yet delivered, so the terminal shows the whole startup log once.
type waitLogs struct {
	client  *codersdk.Client
	agentID uuid.UUID
	w       io.Writer
	status  *statusLine

	mu     sync.Mutex
	lastID int64

	cancel context.CancelFunc
	done   chan struct{}
}

// startWaitLogs starts printing the agent's startup logs when `coder ssh`
// is about to wait for its startup scripts; otherwise it returns a stop
// that does nothing. The returned stop must be called once the wait ended.
func (r *root) startWaitLogs(ctx context.Context, client *codersdk.Client, ag codersdk.WorkspaceAgent, mode waitMode, status *statusLine) (stop func()) {
	if !waitsForReady(mode, ag) || startupDone(ag.LifecycleState) {
		return func() {}
	}
	l := &waitLogs{client: client, agentID: ag.ID, w: r.stderr, status: status, done: make(chan struct{})}
	ctx, l.cancel = context.WithCancel(ctx)
	go l.follow(ctx)
	return l.stop
}

// follow streams the logs until ctx is done, reconnecting the stream when
// it drops (coderd restarting) from the last printed line.
func (l *waitLogs) follow(ctx context.Context) {
	defer close(l.done)
	for ctx.Err() == nil {
		l.mu.Lock()
		after := l.lastID
		l.mu.Unlock()
		ch, closeStream, err := l.client.FollowWorkspaceAgentLogs(ctx, l.agentID, after)
		if err == nil {
			for batch := range ch {
				l.print(batch)
			}
			_ = closeStream()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// print writes the lines above the last printed ID (a reconnected stream
// or the final fetch may repeat some).
func (l *waitLogs) print(batch []codersdk.WorkspaceAgentLog) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range batch {
		if line.ID <= l.lastID {
			continue
		}
		l.lastID = line.ID
		l.status.Clear()
		fmt.Fprintln(l.w, line.Output)
	}
}

// stop ends the stream and prints the lines it had not delivered yet.
func (l *waitLogs) stop() {
	l.cancel()
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		l.mu.Lock()
		after := l.lastID
		l.mu.Unlock()
		logs, err := l.client.WorkspaceAgentLogsAfter(ctx, l.agentID, after)
		if err != nil || len(logs) == 0 {
			return
		}
		l.print(logs)
	}
}
