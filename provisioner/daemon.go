// Package provisioner is the provisioner daemon: it acquires jobs from coderd
// over the API (never the database), runs them with terraform and reports
// logs, heartbeats and results.
package provisioner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/codersdk/provisionersdk"
	"github.com/wgmesh/coder/provisioner/terraform"
)

// Daemon is a provisioner daemon. Run it with Run; it stops when the
// context ends (a running job is interrupted and reported failed).
type Daemon struct {
	// Client talks to coderd with the pre-shared key.
	Client *provisionersdk.Client
	// Name identifies the daemon (unique per deployment).
	Name string
	// Tags are the daemon's tags; a job runs here only if its tags are a subset.
	Tags map[string]string
	// Runner runs terraform; nil means a zero terraform.Runner.
	Runner *terraform.Runner
	// Version is the daemon's version string, reported to coderd.
	Version string
	// Logger receives operational logs; nil discards.
	Logger *slog.Logger
	// RetryInterval is the pause after a failed API call; 0 means one second.
	// It doubles with each failure in a row (jittered), up to
	// MaxRetryInterval, so a daemon does not hammer a coderd whose database
	// is down.
	RetryInterval time.Duration
	// MaxRetryInterval caps the backoff; 0 means ten seconds.
	MaxRetryInterval time.Duration
	// ReportTimeout bounds one attempt of a report to coderd (a batch of
	// logs, a state upload, completing or failing a job); a failed attempt
	// is retried with the backoff above until coderd answers, so a job may
	// run and report for any length of time. 0 means DefaultReportTimeout.
	ReportTimeout time.Duration
	// ShutdownGrace is how long the reports of a running job keep being
	// retried after the daemon's context ends (the job itself is
	// interrupted at once). 0 means DefaultShutdownGrace.
	ShutdownGrace time.Duration
}

// Defaults of Daemon.
const (
	DefaultReportTimeout = 30 * time.Second
	DefaultShutdownGrace = time.Minute
)

func (d *Daemon) reportTimeout() time.Duration {
	if d.ReportTimeout > 0 {
		return d.ReportTimeout
	}
	return DefaultReportTimeout
}

func (d *Daemon) shutdownGrace() time.Duration {
	if d.ShutdownGrace > 0 {
		return d.ShutdownGrace
	}
	return DefaultShutdownGrace
}

func (d *Daemon) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

func (d *Daemon) runner() *terraform.Runner {
	if d.Runner == nil {
		return &terraform.Runner{}
	}
	return d.Runner
}

// retryDelay is the wait after the attempt-th failed call in a row:
// RetryInterval doubled per failure up to MaxRetryInterval, jittered to
// [step/2, step].
func (d *Daemon) retryDelay(attempt int) time.Duration {
	step := d.RetryInterval
	if step <= 0 {
		step = time.Second
	}
	limit := d.MaxRetryInterval
	if limit <= 0 {
		limit = 10 * time.Second
	}
	for i := 1; i < attempt && step < limit; i++ {
		step *= 2
	}
	step = min(step, limit)
	return step/2 + rand.N(step/2+1)
}

// sleep waits for the retry delay or the end of ctx.
func (d *Daemon) sleep(ctx context.Context, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// sleepOrDrain waits for the retry delay, the end of ctx or drain closing.
func (d *Daemon) sleepOrDrain(ctx context.Context, drain <-chan struct{}, wait time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-drain:
	case <-t.C:
	}
}

// ErrUnauthorized is returned by Run when coderd refuses the pre-shared key.
var ErrUnauthorized = errors.New("coderd refused the provisioner daemon pre-shared key")

func isUnauthorized(err error) bool {
	apiErr, ok := codersdk.AsError(err)
	return ok && apiErr.StatusCode() == http.StatusUnauthorized
}

// Run registers the daemon and runs jobs until ctx ends. It returns nil when
// ctx ends, ErrUnauthorized (wrapped) when the key is refused, and an error
// when terraform cannot be found.
func (d *Daemon) Run(ctx context.Context) error { return d.RunDraining(ctx, nil) }

// RunDraining is Run with a graceful stop: once drain is closed the daemon
// acquires no new job, lets the job it runs finish and report, and returns
// nil. An acquire long poll already in flight is not abandoned (coderd may
// have assigned a job the daemon would then never run, leaving it to fail
// as hung): it ends within coderd's acquire wait, and a job it brings is
// run too. Ending ctx still interrupts a running job at once. A nil drain
// never closes.
func (d *Daemon) RunDraining(ctx context.Context, drain <-chan struct{}) error {
	draining := func() bool {
		select {
		case <-drain:
			return true
		default:
			return false
		}
	}
	err := d.run(ctx, drain, draining)
	if err == nil && draining() && ctx.Err() == nil {
		d.logger().Info("provisioner daemon drained: no job running, no new jobs")
	}
	return err
}

// run registers and runs jobs until ctx ends or, between jobs, draining
// reports true (drain is closed then; it wakes retry waits).
func (d *Daemon) run(ctx context.Context, drain <-chan struct{}, draining func() bool) error {
	log := d.logger()
	version, err := d.runner().Version(ctx)
	if err != nil {
		return fmt.Errorf("provisioner daemon %s: %w", d.Name, err)
	}
	req := provisionersdk.RegisterRequest{
		Name: d.Name, Tags: d.Tags, Provisioners: []string{"terraform"}, Version: d.Version,
		TerraformFlavor: version.Flavor, TerraformVersion: version.Version,
	}
	var reg provisionersdk.RegisterResponse
	for failures := 1; ; failures++ {
		reg, err = d.Client.Register(ctx, req)
		if err == nil {
			break
		}
		if ctx.Err() != nil || draining() {
			return nil
		}
		if isUnauthorized(err) {
			return fmt.Errorf("%w: %v", ErrUnauthorized, err)
		}
		wait := d.retryDelay(failures)
		log.Warn("register provisioner daemon", "error", err, "attempt", failures, "retry_in", wait)
		d.sleepOrDrain(ctx, drain, wait)
	}
	d.cleanStale(log)
	log.Info("provisioner daemon registered", "id", reg.ID, "name", d.Name, "tags", reg.Tags,
		"terraform", version.Flavor+" "+version.Version)
	heartbeat := time.Duration(reg.HeartbeatIntervalMillis) * time.Millisecond
	if heartbeat <= 0 {
		heartbeat = provisionersdk.DefaultHeartbeatInterval
	}
	failures := 0
	for ctx.Err() == nil && !draining() {
		job, err := d.Client.AcquireJob(ctx, reg.ID)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if isUnauthorized(err) {
				return fmt.Errorf("%w: %v", ErrUnauthorized, err)
			}
			failures++
			wait := d.retryDelay(failures)
			log.Warn("acquire job", "error", err, "attempt", failures, "retry_in", wait)
			d.sleepOrDrain(ctx, drain, wait)
			continue
		}
		failures = 0
		if job == nil {
			continue
		}
		d.runJob(ctx, reg.ID, job, heartbeat)
	}
	return nil
}

// isPermanent reports whether a refused report must not be retried: coderd
// answered that the job is over (409), not this daemon's (403), unknown
// (404) or the request is bad (400). Anything else (network errors,
// timeouts, 5xx while the database is down) is retried.
func isPermanent(err error) bool {
	apiErr, ok := codersdk.AsError(err)
	if !ok {
		return false
	}
	switch apiErr.StatusCode() {
	case http.StatusConflict, http.StatusForbidden, http.StatusNotFound, http.StatusBadRequest, http.StatusUnauthorized:
		return true
	}
	return false
}

// report calls fn until it succeeds, fails permanently (isPermanent) or
// ctx ends; each attempt is bounded by ReportTimeout and failures back off.
func (d *Daemon) report(ctx context.Context, what string, log *slog.Logger, fn func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, d.reportTimeout())
		err := fn(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info(what+" delivered after retries", "attempts", attempt)
			}
			return nil
		}
		if isPermanent(err) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: gave up: %w", what, errors.Join(ctx.Err(), err))
		}
		wait := d.retryDelay(attempt)
		log.Warn(what+" failed; retrying", "error", err, "attempt", attempt, "retry_in", wait)
		d.sleep(ctx, wait)
	}
}

// logBatcher sends job logs to coderd in batches from its own goroutine.
// A batch coderd did not take is kept and resent (with backoff) before
// anything newer, so no line is lost while coderd is briefly unreachable.
type logBatcher struct {
	ch   chan provisionersdk.Log
	done chan struct{}
}

// maxPendingLogs bounds the lines a log batcher keeps while coderd does not
// take them; past it the oldest are dropped and a line says how many.
const maxPendingLogs = 10000

func (d *Daemon) startLogs(ctx context.Context, daemonID, jobID uuid.UUID, log *slog.Logger) *logBatcher {
	b := &logBatcher{ch: make(chan provisionersdk.Log, 256), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		var pending []provisionersdk.Log
		dropped := 0
		failures := 0
		var retryAt time.Time
		// flush sends what is pending; with force it retries until coderd
		// takes it (or gives up for good), otherwise it tries once when due.
		flush := func(force bool) {
			for len(pending) > 0 {
				if !force && time.Now().Before(retryAt) {
					return
				}
				batch := pending
				if dropped > 0 {
					batch = append([]provisionersdk.Log{{
						CreatedAt: batch[0].CreatedAt, Level: codersdk.LogLevelWarn, Stage: batch[0].Stage,
						Output: fmt.Sprintf("provisioner daemon: %d log line(s) dropped while coderd was unreachable", dropped),
					}}, batch...)
				}
				actx, cancel := context.WithTimeout(ctx, d.reportTimeout())
				err := d.Client.SendLogs(actx, daemonID, provisionersdk.LogsRequest{JobID: jobID, Logs: batch})
				cancel()
				if err == nil || isPermanent(err) || ctx.Err() != nil {
					if err != nil {
						log.Warn("send job logs", "error", err)
					}
					pending, dropped, failures = nil, 0, 0
					return
				}
				failures++
				wait := d.retryDelay(failures)
				retryAt = time.Now().Add(wait)
				log.Warn("send job logs failed; retrying", "error", err, "attempt", failures, "retry_in", wait)
				if !force {
					return
				}
				d.sleep(ctx, wait)
			}
		}
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case l, ok := <-b.ch:
				if !ok {
					flush(true)
					return
				}
				pending = append(pending, l)
				if over := len(pending) - maxPendingLogs; over > 0 {
					pending = append(pending[:0:0], pending[over:]...)
					dropped += over
				}
				if len(pending) >= 100 {
					flush(false)
				}
			case <-t.C:
				flush(false)
			}
		}
	}()
	return b
}

func (b *logBatcher) log(l provisionersdk.Log) { b.ch <- l }

func (b *logBatcher) close() {
	close(b.ch)
	<-b.done
}

// stateUploader sends the latest partial state of a build to coderd from
// its own goroutine, coalescing states that arrive while one is in flight.
type stateUploader struct {
	mu     sync.Mutex
	latest []byte
	kick   chan struct{}
	done   chan struct{}
	stop   chan struct{}
}

func (d *Daemon) startStateUploads(ctx context.Context, daemonID, jobID uuid.UUID, log *slog.Logger) *stateUploader {
	u := &stateUploader{kick: make(chan struct{}, 1), done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		defer close(u.done)
		send := func() {
			u.mu.Lock()
			state := u.latest
			u.latest = nil
			u.mu.Unlock()
			if state == nil {
				return
			}
			err := d.report(ctx, "upload partial state", log, func(ctx context.Context) error {
				return d.Client.UpdateState(ctx, daemonID, provisionersdk.StateRequest{JobID: jobID, State: state})
			})
			if err != nil {
				log.Warn("upload partial state", "error", err)
			} else {
				log.Debug("partial state uploaded", "bytes", len(state))
			}
		}
		for {
			select {
			case <-u.kick:
				send()
			case <-u.stop:
				send()
				return
			}
		}
	}()
	return u
}

// update queues state for upload (replacing one not sent yet).
func (u *stateUploader) update(state []byte) {
	u.mu.Lock()
	u.latest = state
	u.mu.Unlock()
	select {
	case u.kick <- struct{}{}:
	default:
	}
}

// close sends what is queued and stops.
func (u *stateUploader) close() {
	close(u.stop)
	<-u.done
}

// runJob runs one job: logs stream while it runs, a heartbeat keeps it alive
// and watches for cancelation, then the result is reported. Nothing here is
// bounded by the job's length: each report attempt has its own timeout and
// is retried until coderd answers. The heartbeat goes on until the final
// report is delivered, so coderd never takes a job whose result is on its
// way for a hung one.
// cleanStale removes what jobs of a killed daemon left behind: their work
// directories and processes, and their providers' dead plugin sockets.
func (d *Daemon) cleanStale(log *slog.Logger) {
	if removed, err := d.runner().CleanStale(); err != nil {
		log.Warn("clean what earlier jobs left behind", "error", err)
	} else if len(removed) > 0 {
		log.Info("removed what jobs of a previous daemon left behind", "paths", removed)
	}
}

func (d *Daemon) runJob(ctx context.Context, daemonID uuid.UUID, job *provisionersdk.AcquiredJob, heartbeat time.Duration) {
	log := d.logger().With("job_id", job.JobID, "type", job.Type)
	log.Info("running job")
	// A provider of a killed daemon's job may still have been exiting when
	// this daemon started (its plugin socket still answered); every job's
	// end sweeps again.
	defer d.cleanStale(log)
	// Reports outlive a daemon shutdown by ShutdownGrace; the job does not.
	reportCtx, cancelReport := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReport()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(d.shutdownGrace(), cancelReport)
		context.AfterFunc(reportCtx, func() { t.Stop() })
	})
	defer stopGrace()
	jobCtx, cancelJob := context.WithCancel(ctx)
	defer cancelJob()

	var mu sync.Mutex
	canceledReason := ""
	hbDone := make(chan struct{})
	hbStop := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(heartbeat)
		defer t.Stop()
		for {
			select {
			case <-hbStop:
				return
			case <-reportCtx.Done():
				return
			case <-t.C:
			}
			hctx, cancel := context.WithTimeout(reportCtx, d.reportTimeout())
			resp, err := d.Client.Heartbeat(hctx, daemonID, job.JobID)
			cancel()
			if err != nil {
				if apiErr, ok := codersdk.AsError(err); ok && apiErr.StatusCode() == http.StatusConflict {
					mu.Lock()
					canceledReason = "the job was completed by coderd: " + apiErr.Message
					mu.Unlock()
					cancelJob()
					return
				}
				log.Warn("heartbeat", "error", err)
				continue
			}
			if resp.Canceled && jobCtx.Err() == nil {
				mu.Lock()
				canceledReason = "canceled by a user"
				mu.Unlock()
				log.Info("job canceled; interrupting terraform")
				cancelJob()
			}
		}
	}()
	defer func() {
		close(hbStop)
		<-hbDone
	}()

	logs := d.startLogs(reportCtx, daemonID, job.JobID, log)
	logFn := func(l provisionersdk.Log) {
		if l.CreatedAt.IsZero() {
			l.CreatedAt = time.Now()
		}
		logs.log(l)
	}
	states := d.startStateUploads(reportCtx, daemonID, job.JobID, log)
	completed, runErr := d.execute(jobCtx, job, logFn, states.update)
	if runErr != nil && ctx.Err() != nil {
		logFn(provisionersdk.Log{Level: codersdk.LogLevelError, Stage: "Cleaning up", Output: "provisioner daemon shutting down: job interrupted"})
	}
	states.close()
	logs.close()

	mu.Lock()
	reason := canceledReason
	mu.Unlock()
	if runErr != nil {
		msg := runErr.Error()
		code := ""
		switch {
		case reason != "":
			msg, code = reason+": "+msg, "CANCELED"
		case ctx.Err() != nil:
			msg = "provisioner daemon shut down while running the job: " + msg
		}
		fail := provisionersdk.FailedJob{JobID: job.JobID, Error: msg, ErrorCode: code}
		if completed != nil {
			fail.State = completed.State
		}
		if err := d.report(reportCtx, "report failed job", log, func(ctx context.Context) error {
			return d.Client.FailJob(ctx, daemonID, fail)
		}); err != nil {
			log.Error("report failed job", "error", err)
		}
		log.Info("job failed", "error", msg)
		return
	}
	if err := d.report(reportCtx, "report completed job", log, func(ctx context.Context) error {
		return d.Client.CompleteJob(ctx, daemonID, *completed)
	}); err != nil {
		log.Error("report completed job", "error", err)
		return
	}
	log.Info("job completed")
}

// execute runs the job with terraform. On a failed build it may return a
// CompletedJob carrying the state terraform left, alongside the error.
// Builds pass the state terraform writes as it applies to onState.
func (d *Daemon) execute(ctx context.Context, job *provisionersdk.AcquiredJob, logs terraform.LogFunc, onState terraform.StateFunc) (*provisionersdk.CompletedJob, error) {
	r := d.runner()
	switch job.Type {
	case codersdk.ProvisionerJobTypeTemplateVersionImport:
		if job.TemplateImport == nil {
			return nil, errors.New("import job without import payload")
		}
		res, err := r.Import(ctx, job.TemplateSourceArchive, job.TemplateImport.Metadata, job.ParameterValues, logs,
			terraform.WithVariables(job.VariableValues), terraform.WithInheritedVariables(job.InheritedVariableValues))
		if err != nil {
			return nil, err
		}
		return &provisionersdk.CompletedJob{JobID: job.JobID, Resources: res.Resources, StopResources: res.StopResources, Parameters: res.Parameters, Variables: res.Variables}, nil
	case codersdk.ProvisionerJobTypeTemplateVersionDryRun:
		if job.TemplateDryRun == nil {
			return nil, errors.New("dry-run job without dry-run payload")
		}
		res, err := r.DryRun(ctx, job.TemplateSourceArchive, job.TemplateDryRun.Metadata, job.ParameterValues, logs, terraform.WithVariables(job.VariableValues))
		if err != nil {
			return nil, err
		}
		return &provisionersdk.CompletedJob{JobID: job.JobID, Resources: res}, nil
	case codersdk.ProvisionerJobTypeWorkspaceBuild:
		if job.WorkspaceBuild == nil {
			return nil, errors.New("build job without build payload")
		}
		wb := job.WorkspaceBuild
		md := wb.Metadata
		md.WorkspaceTransition = wb.Transition
		res, err := r.Build(ctx, job.TemplateSourceArchive, wb.State, md, job.ParameterValues, logs, terraform.WithStateUpdates(onState), terraform.WithVariables(job.VariableValues))
		if err != nil {
			if res != nil {
				return &provisionersdk.CompletedJob{JobID: job.JobID, State: res.State}, err
			}
			return nil, err
		}
		return &provisionersdk.CompletedJob{JobID: job.JobID, State: res.State, Resources: res.Resources}, nil
	default:
		return nil, fmt.Errorf("unsupported job type %q", job.Type)
	}
}
