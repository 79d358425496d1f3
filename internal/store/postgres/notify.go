package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

var _ store.NotifyStore = (*Store)(nil)

const (
	// $1 now, $2 limit. The first two terms of the WHERE are the predicate
	// of jobs_notify_due_idx, so that the scan reads the index only. A
	// round's attempts so far are counted while it waits for its next
	// attempt (notify_next_at set); a handled round clears notify_next_at,
	// so the next round starts at 0 whatever RetryTasks left in
	// notify_state.
	qDueNotifications = `SELECT id, namespace, name, state,
	count_blocked, count_queued, count_running, count_succeeded, count_failed, count_upstream_failed, count_cancelled,
	finished_at, retries, notify::text,
	CASE WHEN notify_next_at IS NULL THEN 0 ELSE notify_attempts END
FROM jobs
WHERE notify IS NOT NULL AND notify_round <= retries
	AND (notify_next_at IS NULL OR notify_next_at <= $1)
	AND state IN ('succeeded', 'failed', 'cancelled')
ORDER BY finished_at, id LIMIT $2`
	// $1 state, $2 event, $3 attempts, $4 error, $5 next at, $6 delivered
	// at, $7 handled, $8 round, $9 job.
	qRecordNotification = `UPDATE jobs SET notify_state = $1, notify_event = $2, notify_attempts = $3, notify_error = $4,
	notify_next_at = $5, notify_delivered_at = $6, notify_round = CASE WHEN $7::boolean THEN $8::integer ELSE notify_round END
WHERE id = $9 AND retries + 1 = $8::integer AND notify IS NOT NULL`
	qNotifyOf = `SELECT retries, notify IS NOT NULL FROM jobs WHERE id = $1`
)

// DueNotifications returns the jobs whose latest run's end is due to be
// sent to their webhooks.
func (s *Store) DueNotifications(ctx context.Context, now time.Time, limit int) ([]store.Notification, error) {
	if err := storesql.CheckNow(now); err != nil {
		return nil, fmt.Errorf("due notifications: %w", err)
	}
	if limit <= 0 {
		limit = 100
	}
	ns, err := queryAll(ctx, s, scanNotification, qDueNotifications, now.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("due notifications: %w", classify(err))
	}
	return ns, nil
}

func scanNotification(r storesql.Row) (store.Notification, error) {
	var n store.Notification
	var finished *int64
	var notify, state string
	c := &n.Counts
	if err := r.Scan(&n.JobID, &n.Namespace, &n.Name, &state,
		&c.Blocked, &c.Queued, &c.Running, &c.Succeeded, &c.Failed, &c.UpstreamFailed, &c.Cancelled,
		&finished, &n.Retries, &notify, &n.Attempts); err != nil {
		return n, err
	}
	n.State, n.FinishedAt = store.JobState(state), storesql.FromNanos(finished)
	var w struct {
		Webhook string   `json:"webhook"`
		On      []string `json:"on"`
	}
	if err := json.Unmarshal([]byte(notify), &w); err != nil {
		// Not what CreateJob writes: returned with no webhook, so that the
		// notifier records it failed (an empty URL) rather than the scan
		// failing for every job.
		n.On = []string{string(store.JobSucceeded), string(store.JobFailed), string(store.JobCancelled)}
		return n, nil
	}
	n.Webhook, n.On = w.Webhook, w.On
	return n, nil
}

// RecordNotification records what became of a delivery of a job's round.
func (s *Store) RecordNotification(ctx context.Context, jobID string, round int32, r store.NotifyResult) error {
	if err := store.CheckNotifyResult(round, r); err != nil {
		return fmt.Errorf("record notification of job %s: %w", jobID, err)
	}
	var errText *string
	if r.Error != "" {
		errText = &r.Error
	}
	var retries int32
	var updated, has bool
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, qRecordNotification, r.State, r.Event, r.Attempts, errText,
			storesql.Nanos(r.NextAt), storesql.Nanos(r.DeliveredAt), r.Handled(), round, jobID)
		if err != nil {
			return err
		}
		if updated = tag.RowsAffected() > 0; updated {
			return nil
		}
		return c.QueryRow(ctx, qNotifyOf, jobID).Scan(&retries, &has)
	})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("record notification of job %s: %w", jobID, store.ErrNotFound)
	case err != nil:
		return fmt.Errorf("record notification of job %s: %w", jobID, classify(err))
	case updated:
		return nil
	case !has:
		return fmt.Errorf("record notification of job %s: the job has no webhook: %w", jobID, store.ErrRejected)
	}
	return fmt.Errorf("record notification of job %s, run %d (it is at run %d): %w", jobID, round, retries+1, store.ErrNotifyRound)
}
