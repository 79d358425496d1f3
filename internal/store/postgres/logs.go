package postgres

import (
	"context"
	"encoding/json"
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
	// $1 job, $2 tier (-1: any), $3 cluster, $4 running (-1: any, 1
	// running, 0 ended), $5 teams (NULL: any), $6 job labels (NULL: any),
	// $7 before, $8 limit.
	qListWorkerRecords = `SELECT ` + storesql.WorkerColumns + ` FROM workers
WHERE ($1::text = '' OR job_id = $1)
  AND ($2::integer < 0 OR tier = $2)
  AND ($3::text = '' OR cluster = $3)
  AND ($4::integer < 0 OR ($4 = 1) = (ended_at IS NULL))
  AND ($5::text[] IS NULL OR team = ANY ($5))
  AND ($6::jsonb IS NULL OR EXISTS (SELECT 1 FROM jobs WHERE jobs.id = workers.job_id AND jobs.labels @> $6))
  AND ($7::text = '' OR id COLLATE "C" < $7)
ORDER BY id COLLATE "C" DESC
LIMIT $8`
	qListAttemptsByWorker = `SELECT (SELECT key FROM tasks WHERE tasks.job_id = attempts.job_id AND tasks.idx = attempts.task_idx), ` + attemptColumns + `
FROM attempts WHERE job_id = $1 AND worker_id = $2
ORDER BY started_at NULLS LAST, task_idx, number
LIMIT $3`
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

// ListWorkerRecords returns a page of worker records across jobs, by ID
// descending.
func (s *Store) ListWorkerRecords(ctx context.Context, f store.WorkerFilter) ([]store.WorkerRecord, error) {
	tier, running := -1, -1
	if f.Tier != nil {
		tier = int(*f.Tier)
	}
	if f.Running != nil {
		running = 0
		if *f.Running {
			running = 1
		}
	}
	var labels []byte // nil (NULL): any labels
	if len(f.JobLabels) > 0 {
		b, err := json.Marshal(f.JobLabels)
		if err != nil {
			return nil, fmt.Errorf("list workers: %w", err)
		}
		labels = b
	}
	var ws []store.WorkerRecord
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		// A nil slice is NULL (any team), an empty one an empty array.
		rows, err := c.Query(ctx, qListWorkerRecords, f.JobID, tier, f.Cluster, running, f.Namespaces, labels,
			f.Before, store.WorkerPageLimit(f.Limit))
		if err != nil {
			return err
		}
		ws, err = scanRows(rows, storesql.ScanWorker)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", classify(err))
	}
	return ws, nil
}

// ListAttemptsByWorker returns the attempts a worker of job jobID ran, in
// the order they started, each with its task's key.
func (s *Store) ListAttemptsByWorker(ctx context.Context, jobID, workerID string, limit int) ([]store.WorkerAttempt, error) {
	var as []store.WorkerAttempt
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListAttemptsByWorker, jobID, workerID, store.WorkerPageLimit(limit))
		if err != nil {
			return err
		}
		as, err = scanRows(rows, scanWorkerAttempt)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list attempts of worker %s: %w", workerID, classify(err))
	}
	return as, nil
}

// keyRow scans a task key, then the row's other columns into dest.
type keyRow struct {
	storesql.Row
	key *string
}

func (k keyRow) Scan(dest ...any) error { return k.Row.Scan(append([]any{k.key}, dest...)...) }

func scanWorkerAttempt(r storesql.Row) (store.WorkerAttempt, error) {
	var wa store.WorkerAttempt
	a, err := storesql.ScanAttempt(keyRow{r, &wa.TaskKey})
	wa.Attempt = a
	return wa, err
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
