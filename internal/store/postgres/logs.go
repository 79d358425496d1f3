package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

const (
	qPutLogEntry = `INSERT INTO log_entries (` + storesql.LogEntryColumns + `)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (job_id, task_idx, attempt) DO UPDATE SET object = excluded.object, off = excluded.off,
	length = excluded.length, stdout_bytes = excluded.stdout_bytes, stderr_bytes = excluded.stderr_bytes,
	first_at = excluded.first_at, last_at = excluded.last_at, truncated = excluded.truncated, note = excluded.note,
	destination = excluded.destination, archive_error = excluded.archive_error`
	// $2 task (-1: all), $3 attempt (0: all), $4 $5 keyset, $6 limit.
	qListLogEntries = `SELECT ` + storesql.LogEntryColumns + ` FROM log_entries
WHERE job_id = $1 AND ($2::integer < 0 OR task_idx = $2) AND ($3::integer = 0 OR attempt = $3)
	AND (task_idx > $4 OR (task_idx = $4 AND attempt > $5))
ORDER BY task_idx, attempt LIMIT $6`
	qPutWorker = `INSERT INTO workers (` + storesql.WorkerColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (id) DO UPDATE SET job_id = excluded.job_id, tier = excluded.tier, cluster = excluded.cluster,
	team = excluded.team, started_at = COALESCE(workers.started_at, excluded.started_at), ended_at = excluded.ended_at,
	end_reason = excluded.end_reason, attempts = excluded.attempts`
	qListWorkers = `SELECT ` + storesql.WorkerColumns + ` FROM workers WHERE job_id = $1 ORDER BY id`
)

// PutLogEntries stores entries in one transaction, replacing any of the
// same attempt.
func (s *Store) PutLogEntries(ctx context.Context, entries []store.LogEntry) error {
	for _, e := range entries {
		if err := storesql.CheckLogEntry(e); err != nil {
			return fmt.Errorf("put log entries: %w", err)
		}
	}
	return s.putRows(ctx, "put log entries", qPutLogEntry, len(entries), func(i int) []any { return storesql.LogEntryArgs(entries[i]) })
}

// ListLogEntries returns a page of a job's entries.
func (s *Store) ListLogEntries(ctx context.Context, f store.LogEntryFilter) ([]store.LogEntry, error) {
	f, err := storesql.LogEntryPage(f)
	if err != nil {
		return nil, err
	}
	var es []store.LogEntry
	err = s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListLogEntries, f.JobID, f.TaskIndex, f.Attempt, f.AfterTask, f.AfterAttempt, f.Limit)
		if err != nil {
			return err
		}
		es, err = scanRows(rows, storesql.ScanLogEntry)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list log entries of job %s: %w", f.JobID, classify(err))
	}
	return es, nil
}

// PutWorkers stores worker records in one transaction, replacing any of
// the same ID.
func (s *Store) PutWorkers(ctx context.Context, ws []store.WorkerRecord) error {
	for _, w := range ws {
		if err := storesql.CheckWorker(w); err != nil {
			return fmt.Errorf("put workers: %w", err)
		}
	}
	return s.putRows(ctx, "put workers", qPutWorker, len(ws), func(i int) []any { return storesql.WorkerArgs(ws[i]) })
}

// ListWorkers returns a job's workers, by ID.
func (s *Store) ListWorkers(ctx context.Context, jobID string) ([]store.WorkerRecord, error) {
	var ws []store.WorkerRecord
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListWorkers, jobID)
		if err != nil {
			return err
		}
		ws, err = scanRows(rows, storesql.ScanWorker)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list workers of job %s: %w", jobID, classify(err))
	}
	return ws, nil
}

// putRows runs q once per row, in one batch and one transaction.
func (s *Store) putRows(ctx context.Context, what, q string, n int, args func(i int) []any) error {
	if n == 0 {
		return nil
	}
	err := s.pool.withTx(ctx, func(tx pgx.Tx) error {
		var b pgx.Batch
		for i := range n {
			b.Queue(q, args(i)...)
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	return nil
}

// scanRows scans every row with scan and closes rows.
func scanRows[T any](rows pgx.Rows, scan func(storesql.Row) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
