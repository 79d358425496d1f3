package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// AppendTasks adds tasks to a pending or running job in one transaction,
// with the multi-row INSERTs of CreateJob, and grows the job's task count
// and blocked count by len(tasks). The tasks start blocked, on their run
// tier as in CreateJob. The job is read in the transaction (the write
// connection serialises appenders), so the first index is checked against
// the task count as stored. A key that a stored task of the job has fails
// the whole call; nothing of a failed call is written. No tasks (nil or
// empty) writes nothing but still checks the job: store.ErrNotFound for an
// unknown job, an error for an ended one.
func (s *Store) AppendTasks(ctx context.Context, jobID string, tasks []store.Task) error {
	return s.AppendTasksFenced(ctx, store.Fence{}, jobID, tasks)
}

// AppendTasksFenced is AppendTasks that first reads the lease fence names
// in the same transaction and, unless fence.Holder holds it, writes nothing
// and fails with an error wrapping store.ErrFenced.
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
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := s.checkFence(ctx, tx, fence); err != nil {
		return err
	}

	var (
		state string
		count int64
		tiers []byte
	)
	err = tx.QueryRowContext(ctx, qAppendTarget, jobID).Scan(&state, &count, &tiers)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	if err != nil {
		return err
	}
	if err := storesql.CheckAppendRow(jobID, state, count, tiers, tasks); err != nil {
		return err
	}
	if len(tasks) == 0 {
		return nil
	}

	if err := insertTasks(ctx, tx, jobID, tasks); err != nil {
		// A failed statement leaves the transaction usable in SQLite: name
		// the key the unique index (job_id, key) refused, if that was it.
		if dup := duplicateKey(ctx, tx, jobID, tasks, count); dup != nil {
			return dup
		}
		return classify(err)
	}
	if _, err := tx.ExecContext(ctx, qAppendJobCounts, jobID, int64(len(tasks))); err != nil {
		return fmt.Errorf("update job: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// duplicateKey returns the error for the first of tasks whose key a task
// stored before the append (index below count) has, or nil if there is
// none. CheckAppend has already refused keys repeated within tasks.
func duplicateKey(ctx context.Context, tx *sql.Tx, jobID string, tasks []store.Task, count int64) error {
	keys := make([]string, len(tasks))
	for i := range tasks {
		keys[i] = tasks[i].Key
	}
	b, err := json.Marshal(keys)
	if err != nil {
		return nil
	}
	var (
		pos    int
		stored int32
	)
	if err := tx.QueryRowContext(ctx, qAppendDuplicate, jobID, string(b), count).Scan(&pos, &stored); err != nil {
		return nil
	}
	if pos < 0 || pos >= len(tasks) {
		return nil
	}
	return storesql.DuplicateKey(&tasks[pos], stored)
}
