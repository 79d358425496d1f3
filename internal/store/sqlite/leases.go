package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
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

// AcquireLease takes or renews a lease: AcquireLeases of l alone.
func (s *Store) AcquireLease(ctx context.Context, l store.Lease, now time.Time) (store.Lease, bool, error) {
	return storesql.AcquireLease(ctx, l, now, s.acquireLeases)
}

// AcquireLeases takes or renews the leases of ls in one transaction.
func (s *Store) AcquireLeases(ctx context.Context, ls []store.Lease, now time.Time) ([]store.Lease, []bool, error) {
	return storesql.AcquireLeases(ctx, ls, now, s.acquireLeases)
}

// acquireLeases upserts and reads back each lease of ls (checked), in ls's
// order, in one transaction on the single write connection: statements on
// a local file cost no round trips, and the one commit is the one sync.
func (s *Store) acquireLeases(ctx context.Context, ls []store.Lease, now time.Time) ([]store.Lease, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	got := make([]store.Lease, len(ls))
	for i, l := range ls {
		if _, err := tx.ExecContext(ctx, qAcquireLease, l.Name, l.Holder, l.Address, l.ExpiresAt.UnixNano(), now.UnixNano()); err != nil {
			return nil, fmt.Errorf("lease %s: %w", l.Name, err)
		}
		if got[i], err = storesql.ScanLease(tx.QueryRowContext(ctx, qGetLease, l.Name)); err != nil {
			return nil, fmt.Errorf("lease %s: %w", l.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return got, nil
}

// ReleaseLease frees a lease held by holder, keeping its row and epoch.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.write.ExecContext(ctx, qReleaseLease, name, holder); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// ListLeases returns the held leases whose name starts with prefix, by name.
func (s *Store) ListLeases(ctx context.Context, prefix string) ([]store.Lease, error) {
	if err := storesql.CheckLeasePrefix(prefix); err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	rows, err := s.read.QueryContext(ctx, qListLeases, prefix)
	if err != nil {
		return nil, fmt.Errorf("list leases %q: %w", prefix, err)
	}
	defer rows.Close()
	var ls []store.Lease
	for rows.Next() {
		l, err := storesql.ScanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("list leases %q: %w", prefix, err)
		}
		ls = append(ls, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list leases %q: %w", prefix, err)
	}
	return ls, nil
}

// EnsureSecret stores value under name unless something is stored there,
// and returns what is, in one transaction.
func (s *Store) EnsureSecret(ctx context.Context, name string, value []byte) ([]byte, error) {
	if err := storesql.CheckSecret(name, value); err != nil {
		return nil, fmt.Errorf("ensure secret: %w", err)
	}
	got, err := s.ensureSecret(ctx, name, value)
	if err != nil {
		return nil, fmt.Errorf("ensure secret %q: %w", name, err)
	}
	return got, nil
}

func (s *Store) ensureSecret(ctx context.Context, name string, value []byte) ([]byte, error) {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, qInsertSecret, name, value); err != nil {
		return nil, err
	}
	var got []byte
	if err := tx.QueryRowContext(ctx, qGetSecret, name).Scan(&got); err != nil {
		return nil, err
	}
	return got, tx.Commit()
}

// notFound maps sql.ErrNoRows to store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}
