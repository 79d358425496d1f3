package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// Apply writes a batch in one transaction with prepared statements: task
// updates, then attempt upserts, then job updates. A task, attempt's task
// or job that does not exist fails the whole batch with an error wrapping
// store.ErrNotFound and store.ErrRejected; so does a value SQLite refuses
// (store.ErrRejected); nothing of a failed batch is written. With b.Fence
// set, the lease is read first in the same transaction: a batch of a writer
// that no longer holds it fails (store.ErrFenced) and writes nothing. When a
// batch holds two changes of one row, the later one wins.
func (s *Store) Apply(ctx context.Context, b *store.Batch) error {
	if b == nil || b.Empty() {
		return nil
	}
	if err := storesql.CheckBatch(b); err != nil {
		return err
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply batch: %w", err)
	}
	defer tx.Rollback()
	if err := s.checkFence(ctx, tx, b.Fence); err != nil {
		return fmt.Errorf("apply batch: %w", err)
	}
	if err := s.applyQueued(ctx, tx, b.Queued); err != nil {
		return err
	}
	if err := s.applyTasks(ctx, tx, b.Tasks); err != nil {
		return err
	}
	if err := s.applyAttempts(ctx, tx, b.Attempts); err != nil {
		return err
	}
	if err := s.applyJobs(ctx, tx, b.Jobs); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply batch: commit: %w", err)
	}
	return nil
}

func (s *Store) applyQueued(ctx context.Context, tx *sql.Tx, ranges []store.QueuedRange) error {
	if len(ranges) == 0 {
		return nil
	}
	stmt := tx.StmtContext(ctx, s.hot.queueRange)
	defer stmt.Close()
	for _, r := range ranges {
		res, err := stmt.ExecContext(ctx, r.JobID, r.First, r.End)
		if err != nil {
			return fmt.Errorf("apply batch: queued tasks %d..%d of job %s: %w", r.First, r.End-1, r.JobID, classify(err))
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("apply batch: queued tasks %d..%d of job %s: %w", r.First, r.End-1, r.JobID, err)
		}
		if n != int64(r.End-r.First) {
			return storesql.Reject(fmt.Errorf("apply batch: queued tasks %d..%d of job %s: %d of them: %w", r.First, r.End-1, r.JobID, n, store.ErrNotFound))
		}
	}
	return nil
}

func (s *Store) applyTasks(ctx context.Context, tx *sql.Tx, updates []store.TaskUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	stmt := tx.StmtContext(ctx, s.hot.updateTask)
	defer stmt.Close()
	for i := range updates {
		u := &updates[i]
		duration, peak := storesql.TaskEnd(u)
		res, err := stmt.ExecContext(ctx, u.RunTier, string(u.State), u.Attempts, u.ExitCode, u.Reason,
			storesql.Nanos(u.StartedAt), storesql.Nanos(u.FinishedAt), duration, peak, u.JobID, u.Index)
		if err != nil {
			return fmt.Errorf("apply batch: task %d of job %s: %w", u.Index, u.JobID, classify(err))
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("apply batch: task %d of job %s: %w", u.Index, u.JobID, err)
		}
		if n == 0 {
			return storesql.Reject(fmt.Errorf("apply batch: task %d of job %s: %w", u.Index, u.JobID, store.ErrNotFound))
		}
	}
	return nil
}

func (s *Store) applyAttempts(ctx context.Context, tx *sql.Tx, attempts []store.Attempt) error {
	if len(attempts) == 0 {
		return nil
	}
	stmt := tx.StmtContext(ctx, s.hot.upsertAttempt)
	defer stmt.Close()
	for i := range attempts {
		a := &attempts[i]
		gpus, err := storesql.EncodeGPUs(a.Usage.GPUs)
		if err != nil {
			return fmt.Errorf("apply batch: attempt %d of task %d of job %s: %w", a.Number, a.TaskIndex, a.JobID, err)
		}
		u := &a.Usage
		_, err = stmt.ExecContext(ctx, a.JobID, a.TaskIndex, a.Number, a.Tier, a.WorkerID, string(a.State),
			a.ExitCode, a.Signal, a.Reason, a.Message, storesql.Nanos(a.StartedAt), storesql.Nanos(a.FinishedAt),
			a.Enforcement, u.CPUUserSeconds, u.CPUSystemSeconds, u.PeakRSSBytes, u.AvgRSSBytes, string(gpus), u.GPUNote)
		if err != nil {
			// A failed statement leaves the transaction usable in SQLite:
			// tell a missing task (the foreign key) from other failures.
			var one int
			if e := tx.QueryRowContext(ctx, qTaskExists, a.JobID, a.TaskIndex).Scan(&one); errors.Is(e, sql.ErrNoRows) {
				err = storesql.Reject(store.ErrNotFound)
			}
			return fmt.Errorf("apply batch: attempt %d of task %d of job %s: %w", a.Number, a.TaskIndex, a.JobID, classify(err))
		}
	}
	return nil
}

func (s *Store) applyJobs(ctx context.Context, tx *sql.Tx, updates []store.JobUpdate) error {
	if len(updates) == 0 {
		return nil
	}
	stmt := tx.StmtContext(ctx, s.hot.updateJob)
	defer stmt.Close()
	for i := range updates {
		u := &updates[i]
		c, us := &u.Counts, &u.Usage
		res, err := stmt.ExecContext(ctx, string(u.State),
			c.Blocked, c.Queued, c.Running, c.Succeeded, c.Failed, c.UpstreamFailed, c.Cancelled,
			storesql.Nanos(u.StartedAt), storesql.Nanos(u.FinishedAt), u.WorkerSeconds, u.CostUSD,
			us.MemoryRequestedByteSeconds, us.MemoryUsedByteSeconds, us.CPURequestedSeconds, us.CPUUsedSeconds,
			us.PeakRSSBytes, us.OOMAttempts, u.ID, u.Run, u.Run)
		if err != nil {
			return fmt.Errorf("apply batch: job %s: %w", u.ID, classify(err))
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("apply batch: job %s: %w", u.ID, err)
		}
		if n == 0 {
			var one int
			if u.Run != 0 && tx.QueryRowContext(ctx, qJobExists, u.ID).Scan(&one) == nil {
				continue // from a run before a retry (JobUpdate.Run): skipped
			}
			return storesql.Reject(fmt.Errorf("apply batch: job %s: %w", u.ID, store.ErrNotFound))
		}
	}
	return nil
}
