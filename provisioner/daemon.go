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

// ErrUnauthorized is returned by Run when coderd refuses the pre-shared key.
var ErrUnauthorized = errors.New("coderd refused the provisioner daemon pre-shared key")

func isUnauthorized(err error) bool {
	apiErr, ok := codersdk.AsError(err)
	return ok && apiErr.StatusCode() == http.StatusUnauthorized
}

// Run registers the daemon and runs jobs until ctx ends. It returns nil when
// ctx ends, ErrUnauthorized (wrapped) when the key is refused, and an error
// when terraform cannot be found.
func (d *Daemon) Run(ctx context.Context) error {
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
		if ctx.Err() != nil {
			return nil
		}
		if isUnauthorized(err) {
			return fmt.Errorf("%w: %v", ErrUnauthorized, err)
		}
		wait := d.retryDelay(failures)
		log.Warn("register provisioner daemon", "error", err, "attempt", failures, "retry_in", wait)
		d.sleep(ctx, wait)
	}
	log.Info("provisioner daemon registered", "id", reg.ID, "name", d.Name, "tags", reg.Tags,
		"terraform", version.Flavor+" "+version.Version)
	heartbeat := time.Duration(reg.HeartbeatIntervalMillis) * time.Millisecond
	if heartbeat <= 0 {
		heartbeat = provisionersdk.DefaultHeartbeatInterval
	}
	failures := 0
	for ctx.Err() == nil {
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
			d.sleep(ctx, wait)
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

// logBatcher sends job logs to coderd in batches from its own goroutine.
type logBatcher struct {
	ch   chan provisionersdk.Log
	done chan struct{}
}

func (d *Daemon) startLogs(ctx context.Context, daemonID, jobID uuid.UUID) *logBatcher {
	b := &logBatcher{ch: make(chan provisionersdk.Log, 256), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		var batch []provisionersdk.Log
		flush := func() {
			if len(batch) == 0 {
				return
			}
			if err := d.Client.SendLogs(ctx, daemonID, provisionersdk.LogsRequest{JobID: jobID, Logs: batch}); err != nil {
				d.logger().Warn("send job logs", "job_id", jobID, "error", err)
			}
			batch = nil
		}
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case l, ok := <-b.ch:
				if !ok {
					flush()
					return
				}
				batch = append(batch, l)
				if len(batch) >= 100 {
					flush()
				}
			case <-t.C:
				flush()
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

// runJob runs one job: logs stream while it runs, a heartbeat keeps it alive
// and watches for cancelation, then the result is reported.
func (d *Daemon) runJob(ctx context.Context, daemonID uuid.UUID, job *provisionersdk.AcquiredJob, heartbeat time.Duration) {
	log := d.logger().With("job_id", job.JobID, "type", job.Type)
	log.Info("running job")
	// Reports use a context that outlives a daemon shutdown, bounded in time.
	reportCtx, cancelReport := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancelReport()
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
			case <-jobCtx.Done():
				return
			case <-t.C:
			}
			resp, err := d.Client.Heartbeat(jobCtx, daemonID, job.JobID)
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
			if resp.Canceled {
				mu.Lock()
				canceledReason = "canceled by a user"
				mu.Unlock()
				log.Info("job canceled; interrupting terraform")
				cancelJob()
				return
			}
		}
	}()

	logs := d.startLogs(reportCtx, daemonID, job.JobID)
	logFn := func(l provisionersdk.Log) {
		if l.CreatedAt.IsZero() {
			l.CreatedAt = time.Now()
		}
		logs.log(l)
	}
	completed, runErr := d.execute(jobCtx, job, logFn)
	if runErr != nil && ctx.Err() != nil {
		logFn(provisionersdk.Log{Level: codersdk.LogLevelError, Stage: "Cleaning up", Output: "provisioner daemon shutting down: job interrupted"})
	}
	logs.close()
	close(hbStop)
	<-hbDone

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
		if err := d.Client.FailJob(reportCtx, daemonID, fail); err != nil {
			log.Error("report failed job", "error", err)
		}
		log.Info("job failed", "error", msg)
		return
	}
	if err := d.Client.CompleteJob(reportCtx, daemonID, *completed); err != nil {
		log.Error("report completed job", "error", err)
		return
	}
	log.Info("job completed")
}

// execute runs the job with terraform. On a failed build it may return a
// CompletedJob carrying the state terraform left, alongside the error.
func (d *Daemon) execute(ctx context.Context, job *provisionersdk.AcquiredJob, logs terraform.LogFunc) (*provisionersdk.CompletedJob, error) {
	r := d.runner()
	switch job.Type {
	case codersdk.ProvisionerJobTypeTemplateVersionImport:
		if job.TemplateImport == nil {
			return nil, errors.New("import job without import payload")
		}
		res, err := r.Import(ctx, job.TemplateSourceArchive, job.TemplateImport.Metadata, job.ParameterValues, logs)
		if err != nil {
			return nil, err
		}
		return &provisionersdk.CompletedJob{JobID: job.JobID, Resources: res.Resources, StopResources: res.StopResources, Parameters: res.Parameters}, nil
	case codersdk.ProvisionerJobTypeTemplateVersionDryRun:
		if job.TemplateDryRun == nil {
			return nil, errors.New("dry-run job without dry-run payload")
		}
		res, err := r.DryRun(ctx, job.TemplateSourceArchive, job.TemplateDryRun.Metadata, job.ParameterValues, logs)
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
		res, err := r.Build(ctx, job.TemplateSourceArchive, wb.State, md, job.ParameterValues, logs)
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
