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

// AcquireLease takes or renews a lease: AcquireLeases of l alone.
func (s *Store) AcquireLease(ctx context.Context, l store.Lease, now time.Time) (store.Lease, bool, error) {
	return storesql.AcquireLease(ctx, l, now, s.acquireLeases)
}

// AcquireLeases takes or renews the leases of ls in one transaction and
// one round trip.
func (s *Store) AcquireLeases(ctx context.Context, ls []store.Lease, now time.Time) ([]store.Lease, []bool, error) {
	return storesql.AcquireLeases(ctx, ls, now, s.acquireLeases)
}

// acquireLeases sends, for each lease of ls (checked), its upsert and the
// read of its row in one pgx batch: the batch ends with a single Sync, so
// PostgreSQL runs it as one implicit transaction (committed at the Sync,
// rolled back whole if a statement fails) in one round trip. The leases go
// in name order (storesql.LeaseOrder), so that batches sharing leases lock
// their rows in the same order; the result is in ls's order.
func (s *Store) acquireLeases(ctx context.Context, ls []store.Lease, now time.Time) ([]store.Lease, error) {
	order := storesql.LeaseOrder(ls)
	got := make([]store.Lease, len(ls))
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		var b pgx.Batch
		for _, i := range order {
			l := ls[i]
			b.Queue(qAcquireLease, l.Name, l.Holder, l.Address, l.ExpiresAt.UnixNano(), now.UnixNano())
			b.Queue(qGetLease, l.Name)
		}
		br := c.SendBatch(ctx, &b)
		for _, i := range order {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return fmt.Errorf("lease %s: %w", ls[i].Name, err)
			}
			l, err := storesql.ScanLease(br.QueryRow())
			if err != nil {
				br.Close()
				return fmt.Errorf("lease %s: %w", ls[i].Name, err)
			}
			got[i] = l
		}
		// Close reads up to the Sync: an error there is a failed commit.
		return br.Close()
	})
	if err != nil {
		return nil, err
	}
	return got, nil
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
