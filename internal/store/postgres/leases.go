package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// RequestTaskCancel records a cancel request for a task that is not terminal.
func (s *Store) RequestTaskCancel(ctx context.Context, jobID string, index int32) error {
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, qRequestTaskCancel, jobID, index); err != nil {
			return err
		}
		var ok bool
		if err := c.QueryRow(ctx, qTaskExists, jobID, index).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("request cancel of task %d of job %s: %w", index, jobID, err)
	}
	return nil
}

// ListTaskCancels returns the cancel requests of tasks of active jobs.
func (s *Store) ListTaskCancels(ctx context.Context) ([]store.TaskRef, error) {
	var refs []store.TaskRef
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListTaskCancels)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r store.TaskRef
			if err := rows.Scan(&r.JobID, &r.Index); err != nil {
				return err
			}
			refs = append(refs, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list task cancels: %w", err)
	}
	return refs, nil
}

// AcquireLease takes or renews a lease in one transaction.
func (s *Store) AcquireLease(ctx context.Context, l store.Lease, now time.Time) (store.Lease, bool, error) {
	if err := storesql.CheckLease(l); err != nil {
		return store.Lease{}, false, fmt.Errorf("acquire lease: %w", err)
	}
	var got store.Lease
	err := s.pool.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qAcquireLease, l.Name, l.Holder, l.Address, l.ExpiresAt.UnixNano(), now.UnixNano()); err != nil {
			return err
		}
		var err error
		got, err = storesql.ScanLease(tx.QueryRow(ctx, qGetLease, l.Name))
		return err
	})
	if err != nil {
		return store.Lease{}, false, fmt.Errorf("acquire lease %s: %w", l.Name, err)
	}
	return got, got.Holder == l.Holder, nil
}

// ReleaseLease frees a lease held by holder, keeping its row and epoch.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, qReleaseLease, name, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// ListLeases returns the held leases whose name starts with prefix, by name.
func (s *Store) ListLeases(ctx context.Context, prefix string) ([]store.Lease, error) {
	if err := storesql.CheckLeasePrefix(prefix); err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	var ls []store.Lease
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListLeases, prefix)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			l, err := storesql.ScanLease(rows)
			if err != nil {
				return err
			}
			ls = append(ls, l)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list leases %q: %w", prefix, err)
	}
	return ls, nil
}

// EnsureSecret stores value under name unless something is stored there,
// and returns what is.
func (s *Store) EnsureSecret(ctx context.Context, name string, value []byte) ([]byte, error) {
	if err := storesql.CheckSecret(name, value); err != nil {
		return nil, fmt.Errorf("ensure secret: %w", err)
	}
	var got []byte
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, qInsertSecret, name, value); err != nil {
			return err
		}
		return c.QueryRow(ctx, qGetSecret, name).Scan(&got)
	})
	if err != nil {
		return nil, fmt.Errorf("ensure secret %q: %w", name, err)
	}
	return got, nil
}
