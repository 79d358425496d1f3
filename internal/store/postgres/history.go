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

// The history export's bookkeeping (store.HistoryStore).
const (
	// exportLockKey is the advisory lock that serialises export claims
	// ("haulexpt"), held until the claim's transaction ends.
	exportLockKey     int64 = 0x6861756c_65787074
	qLockExportClaims       = `SELECT pg_advisory_xact_lock($1)`
	qWritingExport          = `SELECT id, created_at, job_count FROM exports WHERE state = 'writing' ORDER BY id LIMIT 1`
	// $1 finished before (Unix nanoseconds), $2 limit.
	qUnexportedJobs = `SELECT id FROM jobs
WHERE export_batch IS NULL AND state IN ('succeeded', 'failed', 'cancelled')
  AND (finished_at IS NULL OR finished_at < $1)
ORDER BY finished_at NULLS FIRST, id
LIMIT $2`
	qInsertExport    = `INSERT INTO exports (state, created_at, job_count) VALUES ('writing', $1, $2) RETURNING id`
	qSetExportBatch  = `UPDATE jobs SET export_batch = $1 WHERE id = ANY ($2::text[])`
	qJobsOfBatch     = `SELECT id FROM jobs WHERE export_batch = $1 ORDER BY finished_at NULLS FIRST, id`
	qFinishExport    = `UPDATE exports SET state = 'done', finished_at = $2, row_counts = $3::jsonb WHERE id = $1`
	qListExports     = `SELECT id, state, created_at, finished_at, job_count, row_counts::text FROM exports ORDER BY id DESC LIMIT $1`
	qJobExported     = `SELECT j.export_batch, coalesce(e.state = 'done', false) FROM jobs j LEFT JOIN exports e ON e.id = j.export_batch WHERE j.id = $1`
	qListJobAttempts = `SELECT ` + attemptColumns + ` FROM attempts
WHERE job_id = $1 AND (task_idx, number) > ($2, $3)
ORDER BY task_idx, number
LIMIT $4`
)

// ClaimExportBatch returns the batch still writing or a new one, in one
// transaction that first takes an advisory lock, so that claimers take
// turns and each sees the batches the one before created.
func (s *Store) ClaimExportBatch(ctx context.Context, maxJobs int, finishedBefore time.Time) (store.ExportBatch, bool, error) {
	maxJobs = max(maxJobs, 1)
	var b store.ExportBatch
	var ok bool
	err := s.pool.withTx(ctx, func(tx pgx.Tx) error {
		b, ok = store.ExportBatch{}, false
		if _, err := tx.Exec(ctx, qLockExportClaims, exportLockKey); err != nil {
			return err
		}
		var created int64
		err := tx.QueryRow(ctx, qWritingExport).Scan(&b.ID, &created, &b.JobCount)
		switch {
		case err == nil:
			b.State, b.CreatedAt = store.ExportWriting, time.Unix(0, created).UTC()
			rows, err := tx.Query(ctx, qJobsOfBatch, b.ID)
			if err != nil {
				return err
			}
			if b.Jobs, err = scanRows(rows, scanString); err != nil {
				return err
			}
			ok = true
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		rows, err := tx.Query(ctx, qUnexportedJobs, store.ExportCutoff(finishedBefore), maxJobs)
		if err != nil {
			return err
		}
		ids, err := scanRows(rows, scanString)
		if err != nil || len(ids) == 0 {
			return err
		}
		now := time.Now().UnixNano()
		if err := tx.QueryRow(ctx, qInsertExport, now, len(ids)).Scan(&b.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, qSetExportBatch, b.ID, ids); err != nil {
			return err
		}
		b.State, b.CreatedAt, b.JobCount, b.Jobs = store.ExportWriting, time.Unix(0, now).UTC(), int64(len(ids)), ids
		ok = true
		return nil
	})
	if err != nil {
		return store.ExportBatch{}, false, fmt.Errorf("claim export batch: %w", classify(err))
	}
	return b, ok, nil
}

func scanString(r storesql.Row) (string, error) {
	var v string
	err := r.Scan(&v)
	return v, err
}

// JobsOfBatch returns the IDs of a batch's jobs in export order.
func (s *Store) JobsOfBatch(ctx context.Context, batch int64) ([]string, error) {
	var ids []string
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qJobsOfBatch, batch)
		if err != nil {
			return err
		}
		ids, err = scanRows(rows, scanString)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs of export batch %d: %w", batch, classify(err))
	}
	return ids, nil
}

// FinishExportBatch marks a batch done with its row counts.
func (s *Store) FinishExportBatch(ctx context.Context, batch int64, rows map[string]int64) error {
	counts, err := store.EncodeExportRows(rows)
	if err != nil {
		return err
	}
	var n int64
	err = s.pool.withConn(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, qFinishExport, batch, time.Now().UnixNano(), counts)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("finish export batch %d: %w", batch, classify(err))
	}
	if n == 0 {
		return fmt.Errorf("finish export batch %d: %w", batch, store.ErrNotFound)
	}
	return nil
}

// ListExportBatches returns up to limit batches, newest first.
func (s *Store) ListExportBatches(ctx context.Context, limit int) ([]store.ExportBatch, error) {
	if limit <= 0 {
		limit = 100
	}
	var bs []store.ExportBatch
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListExports, limit)
		if err != nil {
			return err
		}
		bs, err = scanRows(rows, scanExport)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list export batches: %w", classify(err))
	}
	return bs, nil
}

func scanExport(r storesql.Row) (store.ExportBatch, error) {
	var (
		b        store.ExportBatch
		state    string
		created  int64
		finished *int64
		counts   string
	)
	if err := r.Scan(&b.ID, &state, &created, &finished, &b.JobCount, &counts); err != nil {
		return b, err
	}
	b.State, b.CreatedAt, b.FinishedAt = store.ExportState(state), time.Unix(0, created).UTC(), storesql.FromNanos(finished)
	var err error
	b.Rows, err = store.DecodeExportRows(b.State, []byte(counts))
	return b, err
}

// JobExported reports a job's batch and whether it is done.
func (s *Store) JobExported(ctx context.Context, jobID string) (int64, bool, error) {
	var batch *int64
	var done bool
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, qJobExported, jobID).Scan(&batch, &done)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, fmt.Errorf("job exported %s: %w", jobID, store.ErrNotFound)
	}
	if err != nil {
		return 0, false, fmt.Errorf("job exported %s: %w", jobID, classify(err))
	}
	if batch == nil {
		return 0, false, nil
	}
	return *batch, done, nil
}

// ListJobAttempts returns a page of a job's attempts in (task, number)
// order.
func (s *Store) ListJobAttempts(ctx context.Context, jobID string, afterTask, afterAttempt int32, limit int) ([]store.Attempt, error) {
	if afterTask < 0 {
		afterTask, afterAttempt = -1, 0
	}
	var as []store.Attempt
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListJobAttempts, jobID, afterTask, afterAttempt, store.ExportPageLimit(limit))
		if err != nil {
			return err
		}
		as, err = scanRows(rows, storesql.ScanAttempt)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list attempts of job %s: %w", jobID, classify(err))
	}
	return as, nil
}
