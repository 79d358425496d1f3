package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// retryColumns returns what CreateJob writes of a job's parameters and
// webhook: the params and notify JSON (NULL for none) and the webhook's
// delivery state (pending with a webhook, else NULL).
func retryColumns(job *store.Job) (params, notify, notifyState any, err error) {
	p, n, err := storesql.RetryColumns(job)
	if err != nil {
		return nil, nil, nil, err
	}
	if p != nil {
		params = string(p)
	}
	if n != nil {
		notify, notifyState = string(n), "pending"
	}
	return params, notify, notifyState, nil
}

const (
	qRetryJob   = `SELECT state, notify IS NOT NULL FROM jobs WHERE id = ?`
	qRetryTasks = `SELECT key, after_deps, state, attempts FROM tasks WHERE job_id = ? ORDER BY idx`
	qRetryTask  = `UPDATE tasks SET state = 'blocked', exit_code = 0, reason = '', finished_at = NULL,
	duration_ms = -1, peak_rss = 0, retry_base = attempts WHERE job_id = ? AND idx = ?`
	qRetryCancel = `DELETE FROM task_cancels WHERE job_id = ? AND idx = ?`
	qRetryCounts = `SELECT state, count(*) FROM tasks WHERE job_id = ? GROUP BY state`
	qRetryJobSet = `UPDATE jobs SET state = 'pending',
	count_blocked = ?, count_queued = ?, count_running = ?, count_succeeded = ?,
	count_failed = ?, count_upstream_failed = ?, count_cancelled = ?,
	finished_at = NULL, cancel_requested = 0, retries = retries + 1,
	notify_state = CASE WHEN notify IS NOT NULL THEN 'pending' ELSE notify_state END,
	-- The new run's delivery starts afresh: an earlier run's delivery
	-- still backing off is superseded (its attempts and backoff are not
	-- the new run's).
	notify_attempts = 0, notify_next_at = NULL, notify_error = NULL
WHERE id = ?`
)

// RetryTasks runs some tasks of an ended job again (see store.Store).
func (s *Store) RetryTasks(ctx context.Context, jobID string, f store.RetryFilter) (store.RetryResult, error) {
	var res store.RetryResult
	sel, err := storesql.NewRetrySelect(jobID, f)
	if err != nil {
		return res, err
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("retry job %s: %w", jobID, err)
	}
	defer tx.Rollback()
	var state string
	var hasNotify bool
	err = tx.QueryRowContext(ctx, qRetryJob, jobID).Scan(&state, &hasNotify)
	if errors.Is(err, sql.ErrNoRows) {
		return res, fmt.Errorf("retry job %s: %w", jobID, store.ErrNotFound)
	}
	if err != nil {
		return res, fmt.Errorf("retry job %s: %w", jobID, err)
	}
	if err := storesql.CheckRetryState(jobID, store.JobState(state)); err != nil {
		return res, err
	}
	rows, err := tx.QueryContext(ctx, qRetryTasks, jobID)
	if err != nil {
		return res, fmt.Errorf("retry job %s: %w", jobID, err)
	}
	for rows.Next() {
		var key, st string
		var after []byte
		var attempts int32
		if err := rows.Scan(&key, &after, &st, &attempts); err != nil {
			rows.Close()
			return res, fmt.Errorf("retry job %s: %w", jobID, err)
		}
		if err := sel.Add(key, after, store.TaskState(st)); err != nil {
			rows.Close()
			return res, err
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("retry job %s: %w", jobID, err)
	}
	reset, err := sel.Resolve()
	if err != nil {
		return res, err
	}
	for _, t := range reset {
		if _, err := tx.ExecContext(ctx, qRetryTask, jobID, t); err != nil {
			return res, fmt.Errorf("retry job %s: task %d: %w", jobID, t, classify(err))
		}
		if _, err := tx.ExecContext(ctx, qRetryCancel, jobID, t); err != nil {
			return res, fmt.Errorf("retry job %s: task %d: %w", jobID, t, classify(err))
		}
	}
	var c store.TaskCounts
	crows, err := tx.QueryContext(ctx, qRetryCounts, jobID)
	if err != nil {
		return res, fmt.Errorf("retry job %s: count tasks: %w", jobID, err)
	}
	for crows.Next() {
		var st string
		var n int64
		if err := crows.Scan(&st, &n); err != nil {
			crows.Close()
			return res, fmt.Errorf("retry job %s: count tasks: %w", jobID, err)
		}
		c.Add(store.TaskState(st), n)
	}
	crows.Close()
	if err := crows.Err(); err != nil {
		return res, fmt.Errorf("retry job %s: count tasks: %w", jobID, err)
	}
	if _, err := tx.ExecContext(ctx, qRetryJobSet, c.Blocked, c.Queued, c.Running, c.Succeeded, c.Failed, c.UpstreamFailed, c.Cancelled, jobID); err != nil {
		return res, fmt.Errorf("retry job %s: %w", jobID, classify(err))
	}
	if err := tx.Commit(); err != nil {
		return res, fmt.Errorf("retry job %s: commit: %w", jobID, err)
	}
	return sel.Result(reset), nil
}
