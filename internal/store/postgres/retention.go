package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// Retention (store.RetentionStore): the archive row first, then the job's
// rows a bounded batch per statement, then the jobs row.
const (
	archiveColumns = `id, name, namespace, labels, state, task_count,
	count_blocked, count_queued, count_running, count_succeeded, count_failed, count_upstream_failed, count_cancelled,
	cost_usd, worker_seconds, created_at, started_at, finished_at, submitted_by, export_batch, archived_at, history, retired_at`

	// $1 limit.
	qRetiringJobs = `SELECT id FROM job_archive WHERE retired_at IS NULL ORDER BY id LIMIT $1`
	// $1 finished before (Unix nanoseconds), $2 limit.
	qRetirableJobs = `SELECT j.id FROM jobs j JOIN exports e ON e.id = j.export_batch
WHERE j.export_batch IS NOT NULL AND e.state = 'done' AND j.state IN ('succeeded', 'failed', 'cancelled')
  AND (j.finished_at IS NULL OR j.finished_at < $1)
  AND NOT EXISTS (SELECT 1 FROM job_archive a WHERE a.id = j.id)
ORDER BY j.finished_at NULLS FIRST, j.id
LIMIT $2`
	// $1 job, $2 archived at, $3 history. Copies the jobs row if the job
	// is still terminal and exported; an existing archive row wins.
	qMarkRetiring = `INSERT INTO job_archive (` + archiveColumns + `)
SELECT j.id, j.name, j.namespace, j.labels, j.state, j.task_count,
	j.count_blocked, j.count_queued, j.count_running, j.count_succeeded, j.count_failed, j.count_upstream_failed, j.count_cancelled,
	j.cost_usd, j.worker_seconds, j.created_at, j.started_at, j.finished_at, j.submitted_by, j.export_batch, $2::bigint, $3::text, NULL
FROM jobs j JOIN exports e ON e.id = j.export_batch
WHERE j.id = $1 AND e.state = 'done' AND j.state IN ('succeeded', 'failed', 'cancelled')
ON CONFLICT (id) DO NOTHING`
	qIsRetiring = `SELECT retired_at IS NULL FROM job_archive WHERE id = $1`
	// $1 job, $2 retired at.
	qDeleteRetiredJob = `DELETE FROM jobs WHERE id = $1`
	qFinishRetired    = `UPDATE job_archive SET retired_at = $2 WHERE id = $1`

	qGetArchivedJob = `SELECT ` + archiveColumns + ` FROM job_archive WHERE id = $1`
	// $1 namespace ('' all), $2 before ('' no bound), $3 limit.
	qListArchivedJobs = `SELECT ` + archiveColumns + ` FROM job_archive
WHERE ($1::text = '' OR namespace = $1) AND ($2::text = '' OR id < $2)
ORDER BY id DESC LIMIT $3`
)

// retireDeletes deletes up to $2 rows of job $1 from each table of
// store.RetireTables, by primary key, so that each statement is a bounded
// transaction of its own.
var retireDeletes = map[string]string{
	"attempts": `DELETE FROM attempts WHERE (job_id, task_idx, number) IN
	(SELECT job_id, task_idx, number FROM attempts WHERE job_id = $1 LIMIT $2)`,
	"log_entries": `DELETE FROM log_entries WHERE (job_id, task_idx, attempt) IN
	(SELECT job_id, task_idx, attempt FROM log_entries WHERE job_id = $1 LIMIT $2)`,
	"workers": `DELETE FROM workers WHERE id IN (SELECT id FROM workers WHERE job_id = $1 LIMIT $2)`,
	"task_cancels": `DELETE FROM task_cancels WHERE (job_id, idx) IN
	(SELECT job_id, idx FROM task_cancels WHERE job_id = $1 LIMIT $2)`,
	"tasks": `DELETE FROM tasks WHERE (job_id, idx) IN (SELECT job_id, idx FROM tasks WHERE job_id = $1 LIMIT $2)`,
}

// RetireJobs retires up to limit jobs: those already retiring first, then
// terminal, exported jobs that finished before finishedBefore. Two
// retainers working at once do no harm: every step is idempotent.
func (s *Store) RetireJobs(ctx context.Context, finishedBefore time.Time, limit int, history string) ([]string, error) {
	limit = max(limit, 1)
	batch, progress := store.RetireOptions(ctx)
	ids, err := s.queryIDs(ctx, qRetiringJobs, limit)
	if err != nil {
		return nil, fmt.Errorf("retire jobs: %w", classify(err))
	}
	if len(ids) < limit {
		more, err := s.queryIDs(ctx, qRetirableJobs, store.ExportCutoff(finishedBefore), limit-len(ids))
		if err != nil {
			return nil, fmt.Errorf("retire jobs: %w", classify(err))
		}
		ids = append(ids, more...)
	}
	var retired []string
	for _, id := range ids {
		ok, err := s.retireJob(ctx, id, history, batch, progress)
		if err != nil {
			return retired, fmt.Errorf("retire job %s: %w", id, classify(err))
		}
		if ok {
			retired = append(retired, id)
		}
	}
	return retired, nil
}

func (s *Store) queryIDs(ctx context.Context, q string, args ...any) ([]string, error) {
	var ids []string
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		ids, err = scanRows(rows, scanString)
		return err
	})
	return ids, err
}

// retireJob takes one job through the three steps; ok is false when the
// job turned out not to be retirable (no archive row could be written).
func (s *Store) retireJob(ctx context.Context, id, history string, batch int, progress store.RetireProgress) (bool, error) {
	var retiring bool
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, qMarkRetiring, id, time.Now().UnixNano(), history); err != nil {
			return err
		}
		return c.QueryRow(ctx, qIsRetiring, id).Scan(&retiring)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, err
	case !retiring:
		return false, nil
	}
	for _, table := range store.RetireTables {
		for {
			if err := ctx.Err(); err != nil {
				return false, err
			}
			var n int64
			err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
				tag, err := c.Exec(ctx, retireDeletes[table], id, batch)
				n = tag.RowsAffected()
				return err
			})
			if err != nil {
				return false, fmt.Errorf("delete %s: %w", table, err)
			}
			if n > 0 {
				progress(id, table, n)
			}
			if n < int64(batch) {
				break
			}
		}
	}
	err = s.pool.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qDeleteRetiredJob, id); err != nil {
			return fmt.Errorf("delete jobs: %w", err)
		}
		_, err := tx.Exec(ctx, qFinishRetired, id, time.Now().UnixNano())
		return err
	})
	if err != nil {
		return false, err
	}
	progress(id, "jobs", 1)
	return true, nil
}

// GetArchivedJob returns a job's archive row.
func (s *Store) GetArchivedJob(ctx context.Context, id string) (*store.ArchivedJob, error) {
	var a store.ArchivedJob
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		a, err = storesql.ScanArchivedJob(c.QueryRow(ctx, qGetArchivedJob, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("archived job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("archived job %s: %w", id, classify(err))
	}
	return &a, nil
}

// ListArchivedJobs returns a page of archived jobs, newest first.
func (s *Store) ListArchivedJobs(ctx context.Context, namespace, before string, limit int) ([]store.ArchivedJob, error) {
	if limit <= 0 {
		limit = 100
	}
	var as []store.ArchivedJob
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListArchivedJobs, namespace, before, limit)
		if err != nil {
			return err
		}
		as, err = scanRows(rows, storesql.ScanArchivedJob)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list archived jobs: %w", classify(err))
	}
	return as, nil
}
