package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// The history export's bookkeeping (store.HistoryStore).
const (
	qWritingExport = `SELECT id, created_at, job_count FROM exports WHERE state = 'writing' ORDER BY id LIMIT 1`
	// ?1 finished before (Unix nanoseconds), ?2 limit.
	qUnexportedJobs = `SELECT id FROM jobs
WHERE export_batch IS NULL AND state IN ('succeeded', 'failed', 'cancelled')
  AND (finished_at IS NULL OR finished_at < ?1)
ORDER BY finished_at NULLS FIRST, id
LIMIT ?2`
	qInsertExport = `INSERT INTO exports (state, created_at, job_count) VALUES ('writing', ?1, ?2) RETURNING id`
	// ?1 batch, ?2 JSON array of job IDs.
	qSetExportBatch = `UPDATE jobs SET export_batch = ?1 WHERE id IN (SELECT value FROM json_each(?2))`
	qJobsOfBatch    = `SELECT id FROM jobs WHERE export_batch = ?1 ORDER BY finished_at NULLS FIRST, id`
	qFinishExport   = `UPDATE exports SET state = 'done', finished_at = ?2, row_counts = ?3 WHERE id = ?1`
	qListExports    = `SELECT id, state, created_at, finished_at, job_count, row_counts FROM exports ORDER BY id DESC LIMIT ?1`
	qJobExported    = `SELECT j.export_batch, coalesce(e.state = 'done', 0) FROM jobs j LEFT JOIN exports e ON e.id = j.export_batch WHERE j.id = ?1`
	// ?1 job, ?2 ?3 keyset (task, number), ?4 limit.
	qListJobAttempts = `SELECT ` + attemptColumns + ` FROM attempts
WHERE job_id = ?1 AND (task_idx > ?2 OR (task_idx = ?2 AND number > ?3))
ORDER BY task_idx, number
LIMIT ?4`
)

// ClaimExportBatch returns the batch still writing or a new one, in one
// write transaction: SQLite's write lock serialises claimers.
func (s *Store) ClaimExportBatch(ctx context.Context, maxJobs int, finishedBefore time.Time) (store.ExportBatch, bool, error) {
	maxJobs = max(maxJobs, 1)
	b, ok, err := s.claimExport(ctx, maxJobs, finishedBefore)
	if err != nil {
		return store.ExportBatch{}, false, fmt.Errorf("claim export batch: %w", classify(err))
	}
	return b, ok, nil
}

func (s *Store) claimExport(ctx context.Context, maxJobs int, finishedBefore time.Time) (store.ExportBatch, bool, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return store.ExportBatch{}, false, err
	}
	defer tx.Rollback()
	var b store.ExportBatch
	var created int64
	err = tx.QueryRowContext(ctx, qWritingExport).Scan(&b.ID, &created, &b.JobCount)
	switch {
	case err == nil:
		b.State, b.CreatedAt = store.ExportWriting, time.Unix(0, created).UTC()
		if b.Jobs, err = queryList(ctx, tx, scanString, qJobsOfBatch, b.ID); err != nil {
			return b, false, err
		}
		return b, true, tx.Commit()
	case !errors.Is(err, sql.ErrNoRows):
		return b, false, err
	}
	before := store.ExportCutoff(finishedBefore)
	ids, err := queryList(ctx, tx, scanString, qUnexportedJobs, before, maxJobs)
	if err != nil || len(ids) == 0 {
		return b, false, err
	}
	now := time.Now().UTC()
	if err := tx.QueryRowContext(ctx, qInsertExport, now.UnixNano(), len(ids)).Scan(&b.ID); err != nil {
		return b, false, err
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return b, false, err
	}
	if _, err := tx.ExecContext(ctx, qSetExportBatch, b.ID, string(list)); err != nil {
		return b, false, err
	}
	b.State, b.CreatedAt, b.JobCount, b.Jobs = store.ExportWriting, time.Unix(0, now.UnixNano()).UTC(), int64(len(ids)), ids
	return b, true, tx.Commit()
}

func scanString(r storesql.Row) (string, error) {
	var v string
	err := r.Scan(&v)
	return v, err
}

// JobsOfBatch returns the IDs of a batch's jobs in export order.
func (s *Store) JobsOfBatch(ctx context.Context, batch int64) ([]string, error) {
	ids, err := queryList(ctx, s.read, scanString, qJobsOfBatch, batch)
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
	res, err := s.write.ExecContext(ctx, qFinishExport, batch, time.Now().UnixNano(), counts)
	if err != nil {
		return fmt.Errorf("finish export batch %d: %w", batch, classify(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("finish export batch %d: %w", batch, err)
	} else if n == 0 {
		return fmt.Errorf("finish export batch %d: %w", batch, store.ErrNotFound)
	}
	return nil
}

// ListExportBatches returns up to limit batches, newest first.
func (s *Store) ListExportBatches(ctx context.Context, limit int) ([]store.ExportBatch, error) {
	if limit <= 0 {
		limit = 100
	}
	bs, err := queryList(ctx, s.read, scanExport, qListExports, limit)
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
		counts   []byte
	)
	if err := r.Scan(&b.ID, &state, &created, &finished, &b.JobCount, &counts); err != nil {
		return b, err
	}
	b.State, b.CreatedAt, b.FinishedAt = store.ExportState(state), time.Unix(0, created).UTC(), storesql.FromNanos(finished)
	var err error
	b.Rows, err = store.DecodeExportRows(b.State, counts)
	return b, err
}

// JobExported reports a job's batch and whether it is done.
func (s *Store) JobExported(ctx context.Context, jobID string) (int64, bool, error) {
	var batch *int64
	var done bool
	err := s.read.QueryRowContext(ctx, qJobExported, jobID).Scan(&batch, &done)
	if errors.Is(err, sql.ErrNoRows) {
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
	as, err := queryList(ctx, s.read, storesql.ScanAttempt, qListJobAttempts, jobID, afterTask, afterAttempt, store.ExportPageLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("list attempts of job %s: %w", jobID, classify(err))
	}
	return as, nil
}
