package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// RequestTaskCancel records a cancel request for a task that is not terminal.
func (s *Store) RequestTaskCancel(ctx context.Context, jobID string, index int32) error {
	if _, err := s.write.ExecContext(ctx, qRequestTaskCancel, jobID, index); err != nil {
		return fmt.Errorf("request cancel of task %d of job %s: %w", index, jobID, err)
	}
	var one int
	if err := s.read.QueryRowContext(ctx, qTaskExists, jobID, index).Scan(&one); err != nil {
		return fmt.Errorf("request cancel of task %d of job %s: %w", index, jobID, notFound(err))
	}
	return nil
}

// ListTaskCancels returns the cancel requests of tasks of active jobs.
func (s *Store) ListTaskCancels(ctx context.Context) ([]store.TaskRef, error) {
	rows, err := s.read.QueryContext(ctx, qListTaskCancels)
	if err != nil {
		return nil, fmt.Errorf("list task cancels: %w", err)
	}
	defer rows.Close()
	var refs []store.TaskRef
	for rows.Next() {
		var r store.TaskRef
		if err := rows.Scan(&r.JobID, &r.Index); err != nil {
			return nil, fmt.Errorf("list task cancels: %w", err)
		}
		refs = append(refs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list task cancels: %w", err)
	}
	return refs, nil
}

// AcquireLease takes or renews a lease in one transaction.
func (s *Store) AcquireLease(ctx context.Context, l store.Lease, now time.Time) (store.Lease, bool, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return store.Lease{}, false, fmt.Errorf("acquire lease %s: %w", l.Name, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, qAcquireLease, l.Name, l.Holder, l.Address, l.ExpiresAt.UnixNano(), now.UnixNano()); err != nil {
		return store.Lease{}, false, fmt.Errorf("acquire lease %s: %w", l.Name, err)
	}
	var got store.Lease
	var exp int64
	if err := tx.QueryRowContext(ctx, qGetLease, l.Name).Scan(&got.Name, &got.Holder, &got.Address, &exp); err != nil {
		return store.Lease{}, false, fmt.Errorf("acquire lease %s: %w", l.Name, err)
	}
	if err := tx.Commit(); err != nil {
		return store.Lease{}, false, fmt.Errorf("acquire lease %s: %w", l.Name, err)
	}
	got.ExpiresAt = time.Unix(0, exp)
	return got, got.Holder == l.Holder, nil
}

// ReleaseLease deletes a lease held by holder.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.write.ExecContext(ctx, qReleaseLease, name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// notFound maps sql.ErrNoRows to store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}
