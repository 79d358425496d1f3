package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// AppendTasks adds tasks to a pending or running job in one transaction,
// copying them with COPY as CreateJob does, and grows the job's task count
// and blocked count by len(tasks). The tasks start blocked, on their run
// tier as in CreateJob. The job's row is read FOR UPDATE, so appenders to
// one job take turns and each checks its first index against the task
// count the one before committed. A key that a stored task of the job has
// fails the whole call (the unique index on (job_id, key) refuses the
// COPY); nothing of a failed call is written. No tasks (nil or empty)
// writes nothing but still checks the job: store.ErrNotFound for an
// unknown job, an error for an ended one.
func (s *Store) AppendTasks(ctx context.Context, jobID string, tasks []store.Task) error {
	return s.AppendTasksFenced(ctx, store.Fence{}, jobID, tasks)
}

// AppendTasksFenced is AppendTasks that first reads the lease fence names
// in the same transaction, locking its row until the transaction ends, and,
// unless fence.Holder holds it, writes nothing and fails with an error
// wrapping store.ErrFenced.
func (s *Store) AppendTasksFenced(ctx context.Context, fence store.Fence, jobID string, tasks []store.Task) error {
	if err := s.appendTasks(ctx, fence, jobID, tasks); err != nil {
		return fmt.Errorf("append tasks to job %s: %w", jobID, err)
	}
	return nil
}

func (s *Store) appendTasks(ctx context.Context, fence store.Fence, jobID string, tasks []store.Task) error {
	if err := storesql.CheckAppendJobID(jobID); err != nil {
		return err
	}
	var count int64 // the job's task count before the append
	err := s.pool.withTx(ctx, func(tx pgx.Tx) error {
		// The lease before the job's row: Apply takes them in this order too.
		if err := checkFence(ctx, tx, fence); err != nil {
			return err
		}
		var (
			state string
			tiers []byte
		)
		if err := tx.QueryRow(ctx, qAppendTarget, jobID).Scan(&state, &count, &tiers); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return store.ErrNotFound
			}
			return err
		}
		if err := storesql.CheckAppendRow(jobID, state, count, tiers, tasks); err != nil {
			return err
		}
		if len(tasks) == 0 {
			return nil
		}
		src := &taskSource{jobID: jobID, tasks: tasks, i: -1}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{tasksTable}, taskCopyColumns, src); err != nil {
			return fmt.Errorf("copy tasks: %w", err)
		}
		if _, err := tx.Exec(ctx, qAppendJobCounts, jobID, int64(len(tasks))); err != nil {
			return fmt.Errorf("update job: %w", err)
		}
		return nil
	})
	if pgCode(err) == uniqueViolation {
		// Rolled back; name the key the unique index refused.
		if dup := s.duplicateKey(ctx, jobID, tasks, count); dup != nil {
			return dup
		}
	}
	return classify(err)
}

// duplicateKey returns the error for the first of tasks whose key a task
// stored before the append (index below count) has, or nil if there is
// none. CheckAppend has already refused keys repeated within tasks.
func (s *Store) duplicateKey(ctx context.Context, jobID string, tasks []store.Task, count int64) error {
	keys := make([]string, len(tasks))
	for i := range tasks {
		keys[i] = tasks[i].Key
	}
	var (
		pos    int64
		stored int32
	)
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, qAppendDuplicate, jobID, keys, count).Scan(&pos, &stored)
	})
	if err != nil || pos < 0 || pos >= int64(len(tasks)) {
		return nil
	}
	return storesql.DuplicateKey(&tasks[pos], stored)
}
