package terraform

import (
	"bytes"
	"encoding/json"
	"github.com/wgmesh/coder/codersdk"
	"os"
	"sync"
	"time"
)

// DefaultStatePollInterval is how often a build's state file is checked for
// changes while terraform applies.
const DefaultStatePollInterval = time.Second

// StateFunc receives the Terraform state a build has written so far. It is
// called from one goroutine, with each distinct, complete state terraform
// wrote, and must not block for long.
type StateFunc func(state []byte)

// BuildOption changes how Runner.Build (and, for WithVariables, Import and
// DryRun) runs.
type BuildOption func(*buildOptions)

type buildOptions struct {
	onState   StateFunc
	variables []codersdk.VariableValue
	inherited []codersdk.VariableValue
}

// WithStateUpdates makes Build report the state file while terraform
// applies: terraform rewrites it each time a resource is created or
// destroyed, so a caller that stores it keeps track of what exists even if
// the build never finishes.
func WithStateUpdates(fn StateFunc) BuildOption {
	return func(o *buildOptions) { o.onState = fn }
}

func (r *Runner) statePollInterval() time.Duration {
	if r.StatePollInterval > 0 {
		return r.StatePollInterval
	}
	return DefaultStatePollInterval
}

// watchState polls the job's state file every interval and passes each
// new, complete (valid JSON) content to fn. The returned stop function ends
// the watch after a last look, and waits for it.
func (j *job) watchState(fn StateFunc, interval time.Duration) (stop func()) {
	if fn == nil {
		return func() {}
	}
	var last []byte
	if prev, err := os.ReadFile(j.statePath()); err == nil {
		last = prev // the previous build's state: already known
	}
	check := func() {
		data, err := os.ReadFile(j.statePath())
		if err != nil || len(data) == 0 || bytes.Equal(data, last) || !json.Valid(data) {
			return
		}
		last = data
		fn(data)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				check()
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
