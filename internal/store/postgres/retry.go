package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

const (
	qRetryJob   = `SELECT state, notify IS NOT NULL FROM jobs WHERE id = $1 FOR UPDATE`
	qRetryTasks = `SELECT key, after_deps, state, attempts FROM tasks WHERE job_id = $1 ORDER BY idx`
	qRetryTask  = `UPDATE tasks SET state = 'blocked', exit_code = 0, reason = '', finished_at = NULL,
	duration_ms = -1, peak_rss = 0, retry_base = attempts WHERE job_id = $1 AND idx = ANY($2)`
	qRetryCancel = `DELETE FROM task_cancels WHERE job_id = $1 AND idx = ANY($2)`
	qRetryCounts = `SELECT state, count(*) FROM tasks WHERE job_id = $1 GROUP BY state`
	qRetryJobSet = `UPDATE jobs SET state = 'pending',
	count_blocked = $2, count_queued = $3, count_running = $4, count_succeeded = $5,
	count_failed = $6, count_upstream_failed = $7, count_cancelled = $8,
	finished_at = NULL, cancel_requested = false, retries = retries + 1,
	notify_state = CASE WHEN notify IS NOT NULL THEN 'pending' ELSE notify_state END,
	-- The new run's delivery starts afresh: an earlier run's delivery
	-- still backing off is superseded (its attempts and backoff are not
	-- the new run's).
	notify_attempts = 0, notify_next_at = NULL, notify_error = NULL
WHERE id = $1`
)

// RetryTasks runs some tasks of an ended job again (see store.Store).
func (s *Store) RetryTasks(ctx context.Context, jobID string, f store.RetryFilter) (store.RetryResult, error) {
	var res store.RetryResult
	sel, err := storesql.NewRetrySelect(jobID, f)
	if err != nil {
		return res, err
	}
	var reset []int32
	err = s.pool.withTx(ctx, func(tx pgx.Tx) error {
		var state string
		var hasNotify bool
		err := tx.QueryRow(ctx, qRetryJob, jobID).Scan(&state, &hasNotify)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := storesql.CheckRetryState(jobID, store.JobState(state)); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, qRetryTasks, jobID)
		if err != nil {
			return err
		}
		for rows.Next() {
			var key, st string
			var after []byte
			var attempts int32
			if err := rows.Scan(&key, &after, &st, &attempts); err != nil {
				rows.Close()
				return err
			}
			if err := sel.Add(key, after, store.TaskState(st)); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if reset, err = sel.Resolve(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, qRetryTask, jobID, reset); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, qRetryCancel, jobID, reset); err != nil {
			return err
		}
		var c store.TaskCounts
		crows, err := tx.Query(ctx, qRetryCounts, jobID)
		if err != nil {
			return err
		}
		for crows.Next() {
			var st string
			var n int64
			if err := crows.Scan(&st, &n); err != nil {
				crows.Close()
				return err
			}
			c.Add(store.TaskState(st), n)
		}
		crows.Close()
		if err := crows.Err(); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, qRetryJobSet, jobID, c.Blocked, c.Queued, c.Running, c.Succeeded, c.Failed, c.UpstreamFailed, c.Cancelled)
		return err
	})
	if err != nil {
		if errors.Is(err, store.ErrRejected) {
			return res, err
		}
		return res, fmt.Errorf("retry job %s: %w", jobID, classify(err))
	}
	return sel.Result(reset), nil
}
