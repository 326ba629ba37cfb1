// Package convert turns database rows into the API types of codersdk.
//
// Its functions are pure: they read nothing but their arguments (no
// request, no database, no clock; a time-dependent status takes the time
// as an argument). Handlers fetch every row a response needs in a few
// batched queries, then build the response here from the leaves up: apps
// and scripts into an agent, agents and metadata into a resource,
// resources and the job into a build, the latest build into a workspace.
package convert

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/codersdk"
	"github.com/wgmesh/coder/database"
)

// timePtr returns the time of a nullable timestamp, or nil.
func timePtr(t pgtype.Timestamptz) *time.Time {
	if !t.Valid {
		return nil
	}
	v := t.Time
	return &v
}

// JobStatus derives a provisioner job's status from its timestamps and error.
func JobStatus(job database.ProvisionerJob) codersdk.ProvisionerJobStatus {
	switch {
	case job.CanceledAt.Valid && job.CompletedAt.Valid:
		return codersdk.ProvisionerJobCanceled
	case job.CanceledAt.Valid:
		return codersdk.ProvisionerJobCanceling
	case job.CompletedAt.Valid && job.Error.Valid && job.Error.String != "":
		return codersdk.ProvisionerJobFailed
	case job.CompletedAt.Valid:
		return codersdk.ProvisionerJobSucceeded
	case job.StartedAt.Valid:
		return codersdk.ProvisionerJobRunning
	default:
		return codersdk.ProvisionerJobPending
	}
}

// JobQueue holds the queue figures of a pending job (the queries that
// fetch jobs for the API compute them).
type JobQueue struct {
	// Position is the job's 1-based position among the jobs waiting for a daemon.
	Position int
	// Size is the number of jobs waiting for a daemon.
	Size int
	// LiveDaemons is the number of live provisioner daemons carrying all of the job's tags.
	LiveDaemons int
}

// Job turns a provisioner job into its API shape. A pending job carries its
// queue figures and, in Detail, why it waits; other jobs ignore queue.
func Job(job database.ProvisionerJob, queue JobQueue) codersdk.ProvisionerJob {
	tags := map[string]string{}
	_ = json.Unmarshal(job.Tags, &tags)
	out := codersdk.ProvisionerJob{
		ID: job.ID, CreatedAt: job.CreatedAt, StartedAt: timePtr(job.StartedAt), CompletedAt: timePtr(job.CompletedAt),
		CanceledAt: timePtr(job.CanceledAt), Error: job.Error.String, ErrorCode: job.ErrorCode.String,
		Status: JobStatus(job), FileID: job.FileID, Tags: tags, Type: codersdk.ProvisionerJobType(job.Type),
	}
	if job.WorkerID.Valid {
		id := job.WorkerID.UUID
		out.WorkerID = &id
	}
	if out.Status != codersdk.ProvisionerJobPending {
		return out
	}
	out.QueuePosition, out.QueueSize = queue.Position, queue.Size
	if queue.LiveDaemons == 0 {
		out.Detail = fmt.Sprintf("no provisioner daemon with tags %s is connected; the job waits for one", formatTags(tags))
	} else {
		out.Detail = fmt.Sprintf("waiting for one of %d provisioner daemon(s) with tags %s (queue position %d of %d)",
			queue.LiveDaemons, formatTags(tags), out.QueuePosition, out.QueueSize)
	}
	return out
}

// formatTags renders tags as "{k1=v1, k2=v2}", sorted by key.
func formatTags(tags map[string]string) string {
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+tags[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// JobLog turns a stored provisioner job log line into its API shape.
func JobLog(l database.ProvisionerJobLog) codersdk.ProvisionerJobLog {
	return codersdk.ProvisionerJobLog{
		ID: l.ID, CreatedAt: l.CreatedAt, Source: string(l.Source), Level: codersdk.LogLevel(l.Level),
		Stage: l.Stage, Output: l.Output,
	}
}
