package provisionerdserver

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/wgmesh/coder/database"
)

// FailHungJobs fails every running job whose heartbeat is older than the
// heartbeat timeout, with HungJobError and a log line saying so. Run calls it
// periodically.
func (s *Server) FailHungJobs(ctx context.Context) error {
	now := s.now()
	return s.db.InTx(ctx, func(q *database.Queries) error {
		jobs, err := q.GetHungProvisionerJobs(ctx, pgtype.Timestamptz{Time: now.Add(-s.opts.HeartbeatTimeout), Valid: true})
		if err != nil {
			return fmt.Errorf("get hung jobs: %w", err)
		}
		for _, job := range jobs {
			s.logger.Warn("failing hung provisioner job", "job_id", job.ID, "last_heartbeat", job.HeartbeatAt.Time)
			if _, err := q.UpdateProvisionerJobWithCompleteByID(ctx, database.UpdateProvisionerJobWithCompleteByIDParams{
				ID: job.ID, CompletedAt: now,
				Error:     pgtype.Text{String: HungJobError, Valid: true},
				ErrorCode: pgtype.Text{String: "HUNG", Valid: true},
			}); err != nil {
				return fmt.Errorf("fail hung job %s: %w", job.ID, err)
			}
			if _, err := q.InsertProvisionerJobLogs(ctx, database.InsertProvisionerJobLogsParams{
				JobID: job.ID, CreatedAt: []time.Time{now}, Source: []string{"provisioner_daemon"},
				Level: []string{"error"}, Stage: []string{"Cleaning up"},
				Output: []string{fmt.Sprintf("%s: no heartbeat since %s", HungJobError, job.HeartbeatAt.Time.Format(time.RFC3339))},
			}); err != nil {
				return fmt.Errorf("log hung job %s: %w", job.ID, err)
			}
		}
		return nil
	})
}
