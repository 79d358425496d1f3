package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// Placement records (design note 010): clusters, quotas and reservations.
// Place serialises with every other Place through a row lock on the one
// row of placement_lock, taken first in its transaction; under READ
// COMMITTED each later statement of the transaction then sees what the
// previous placement committed.

const (
	clusterColumns = `name, state, capacity, labels, pods_per_second, price_per_cpu_hour, price_per_gib_hour, price_per_gpu_hour`
	quotaColumns   = `team, limits, clusters, lend`
	resvColumns    = `id, team, job, cluster, milli_cpu, memory, gpu_type, gpu_count, borrowed, reclaim, holder, created, expires_at`
	// dbNanos is the database's clock in Unix nanoseconds.
	dbNanos = `(extract(epoch FROM clock_timestamp()) * 1000000000)::bigint`
	// resvOrder lists reservations oldest first (unknown creation first),
	// then by ID.
	resvOrder = ` ORDER BY created NULLS FIRST, id`
)

const (
	qEnsureCluster = `INSERT INTO clusters (` + clusterColumns + `, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, ` + dbNanos + `)
ON CONFLICT (name) DO NOTHING`
	qPutCluster = `INSERT INTO clusters (` + clusterColumns + `, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, ` + dbNanos + `)
ON CONFLICT (name) DO UPDATE SET state = excluded.state, capacity = excluded.capacity, labels = excluded.labels,
	pods_per_second = excluded.pods_per_second, price_per_cpu_hour = excluded.price_per_cpu_hour,
	price_per_gib_hour = excluded.price_per_gib_hour, price_per_gpu_hour = excluded.price_per_gpu_hour,
	updated_at = excluded.updated_at`
	qGetCluster      = `SELECT ` + clusterColumns + ` FROM clusters WHERE name = $1`
	qListClusters    = `SELECT ` + clusterColumns + ` FROM clusters ORDER BY name`
	qSetClusterState = `UPDATE clusters SET state = $2, updated_at = ` + dbNanos + ` WHERE name = $1`
	qDeleteCluster   = `DELETE FROM clusters WHERE name = $1`
	qReclaimCluster  = `UPDATE reservations SET reclaim = true WHERE cluster = $1 AND NOT reclaim`

	qPutQuota = `INSERT INTO quotas (` + quotaColumns + `, updated_at) VALUES ($1, $2, $3, $4, ` + dbNanos + `)
ON CONFLICT (team) DO UPDATE SET limits = excluded.limits, clusters = excluded.clusters, lend = excluded.lend,
	updated_at = excluded.updated_at`
	qDeleteQuota = `DELETE FROM quotas WHERE team = $1`
	qListQuotas  = `SELECT ` + quotaColumns + ` FROM quotas ORDER BY team`

	qLockPlacement = `SELECT id FROM placement_lock WHERE id = 1 FOR UPDATE`
	qDeleteExpired = `DELETE FROM reservations WHERE expires_at <= $1`
	// Usage of the reservations live at $1, one row per GPU type, in the
	// order storesql.MergeUsage needs.
	qPlacementUsage = `SELECT team, cluster, borrowed, gpu_type, sum(milli_cpu)::bigint, sum(memory)::bigint,
	sum(gpu_count)::bigint, count(*)
FROM reservations WHERE expires_at > $1
GROUP BY team, cluster, borrowed, gpu_type
ORDER BY team, cluster, borrowed, gpu_type`
	qBorrowedReservations = `SELECT ` + resvColumns + ` FROM reservations WHERE borrowed AND expires_at > $1` + resvOrder
	// The IDs inserted; a row whose ID is taken is left out.
	qInsertReservations = `INSERT INTO reservations (` + resvColumns + `)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::bigint[],
	$9::boolean[], $10::boolean[], $11::text[], $12::bigint[], $13::bigint[])
ON CONFLICT (id) DO NOTHING
RETURNING id`
	qMarkReclaim = `UPDATE reservations SET reclaim = true WHERE id = ANY ($1::text[])`

	qDeleteExpiredClaims = `DELETE FROM placement_claims WHERE expires_at <= $1`
	qListClaims          = `SELECT id, team, job, cluster, resources, expires_at FROM placement_claims ORDER BY id`
	qPutClaim            = `INSERT INTO placement_claims (id, team, job, cluster, resources, expires_at) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE SET team = excluded.team, job = excluded.job, cluster = excluded.cluster,
	resources = excluded.resources, expires_at = excluded.expires_at`
	qDropClaims         = `DELETE FROM placement_claims WHERE id = ANY ($1::text[])`
	qRenewReservations  = `UPDATE reservations SET holder = $1, expires_at = $2 WHERE id = ANY ($3::text[]) RETURNING id, reclaim`
	qDeleteReservations = `DELETE FROM reservations WHERE id = ANY ($1::text[])`
	// $1 team, $2 cluster, $3 job, $4 holder ('' for any), $5 reclaim
	// only, $6 limit.
	qListReservations = `SELECT ` + resvColumns + ` FROM reservations
WHERE ($1::text = '' OR team = $1) AND ($2::text = '' OR cluster = $2) AND ($3::text = '' OR job = $3)
  AND ($4::text = '' OR holder = $4) AND (NOT $5::boolean OR reclaim)
  AND ($7::bigint = 0 OR expires_at <= $7)` + resvOrder + `
LIMIT $6`
)

// EnsureCluster stores c unless a cluster of that name exists, and
// returns the stored record.
func (s *Store) EnsureCluster(ctx context.Context, c placement.Cluster) (placement.Cluster, error) {
	if err := storesql.CheckCluster(c); err != nil {
		return placement.Cluster{}, fmt.Errorf("ensure cluster: %w", err)
	}
	args, err := storesql.ClusterArgs(c)
	if err != nil {
		return placement.Cluster{}, fmt.Errorf("ensure cluster %q: %w", c.Name, err)
	}
	var got placement.Cluster
	err = s.pool.withTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, qEnsureCluster, args...)
		if err != nil {
			return classify(err)
		}
		if tag.RowsAffected() == 1 && c.State == placement.Draining {
			if _, err := tx.Exec(ctx, qReclaimCluster, c.Name); err != nil {
				return err
			}
		}
		got, err = storesql.ScanCluster(tx.QueryRow(ctx, qGetCluster, c.Name))
		return err
	})
	if err != nil {
		return placement.Cluster{}, fmt.Errorf("ensure cluster %q: %w", c.Name, err)
	}
	return got, nil
}

// PutCluster creates or replaces a cluster; draining marks its
// reservations for reclaim in the same transaction.
func (s *Store) PutCluster(ctx context.Context, c placement.Cluster) error {
	if err := storesql.CheckCluster(c); err != nil {
		return fmt.Errorf("put cluster: %w", err)
	}
	args, err := storesql.ClusterArgs(c)
	if err != nil {
		return fmt.Errorf("put cluster %q: %w", c.Name, err)
	}
	err = s.pool.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qPutCluster, args...); err != nil {
			return classify(err)
		}
		if c.State == placement.Draining {
			if _, err := tx.Exec(ctx, qReclaimCluster, c.Name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put cluster %q: %w", c.Name, err)
	}
	return nil
}

// SetClusterState changes a cluster's state; draining marks its
// reservations for reclaim in the same transaction.
func (s *Store) SetClusterState(ctx context.Context, name string, state placement.ClusterState) error {
	if err := storesql.CheckClusterState(name, state); err != nil {
		return fmt.Errorf("set cluster state: %w", err)
	}
	err := s.pool.withTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, qSetClusterState, name, string(state))
		if err != nil {
			return classify(err)
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		if state == placement.Draining {
			if _, err := tx.Exec(ctx, qReclaimCluster, name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set state of cluster %q to %s: %w", name, state, err)
	}
	return nil
}

// DeleteCluster removes a cluster record; its reservations stay.
func (s *Store) DeleteCluster(ctx context.Context, name string) error {
	if err := storesql.CheckName("cluster name", name); err != nil {
		return fmt.Errorf("delete cluster: %w", storesql.Reject(err))
	}
	if err := s.deleteOne(ctx, qDeleteCluster, name); err != nil {
		return fmt.Errorf("delete cluster %q: %w", name, err)
	}
	return nil
}

// ListClusters returns every cluster, by name.
func (s *Store) ListClusters(ctx context.Context) ([]placement.Cluster, error) {
	var cs []placement.Cluster
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListClusters)
		if err != nil {
			return err
		}
		cs, err = scanClusters(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	return cs, nil
}

// PutQuota creates or replaces a team's quota.
func (s *Store) PutQuota(ctx context.Context, q placement.Quota) error {
	if err := storesql.CheckQuota(q); err != nil {
		return fmt.Errorf("put quota: %w", err)
	}
	args, err := storesql.QuotaArgs(q)
	if err != nil {
		return fmt.Errorf("put quota of team %q: %w", q.Team, err)
	}
	err = s.pool.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, qPutQuota, args...)
		return classify(err)
	})
	if err != nil {
		return fmt.Errorf("put quota of team %q: %w", q.Team, err)
	}
	return nil
}

// DeleteQuota removes a team's quota.
func (s *Store) DeleteQuota(ctx context.Context, team string) error {
	if err := storesql.CheckName("team", team); err != nil {
		return fmt.Errorf("delete quota: %w", storesql.Reject(err))
	}
	if err := s.deleteOne(ctx, qDeleteQuota, team); err != nil {
		return fmt.Errorf("delete quota of team %q: %w", team, err)
	}
	return nil
}

// ListQuotas returns every quota, by team.
func (s *Store) ListQuotas(ctx context.Context) ([]placement.Quota, error) {
	var qs []placement.Quota
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListQuotas)
		if err != nil {
			return err
		}
		qs, err = scanQuotas(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list quotas: %w", err)
	}
	return qs, nil
}

// deleteOne runs a DELETE of one row by key: ErrNotFound when none was.
func (s *Store) deleteOne(ctx context.Context, q, key string) error {
	return s.pool.withConn(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, q, key)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// Place runs decide in one transaction serialised with every other
// Place: the lock, the deletion of expired reservations and the reads of
// the snapshot go in one round trip, the inserts and reclaim marks in
// another.
func (s *Store) Place(ctx context.Context, now time.Time, decide func(*placement.Snapshot) (store.PlaceWrite, error)) error {
	if err := storesql.CheckNow(now); err != nil {
		return fmt.Errorf("place: %w", err)
	}
	var decideErr error
	err := s.pool.withTx(ctx, func(tx pgx.Tx) error {
		snap, err := readSnapshot(ctx, tx, now)
		if err != nil {
			return err
		}
		w, err := decide(snap)
		if err != nil {
			decideErr = err
			return err
		}
		if err := storesql.CheckPlaceWrite(w); err != nil {
			return err
		}
		return writePlacement(ctx, tx, w)
	})
	if decideErr != nil {
		return decideErr
	}
	if err != nil {
		return fmt.Errorf("place: %w", err)
	}
	return nil
}

// readSnapshot locks placement, deletes the reservations expired at now
// and reads what placement decides against, in one batch.
func readSnapshot(ctx context.Context, tx pgx.Tx, now time.Time) (*placement.Snapshot, error) {
	var b pgx.Batch
	b.Queue(qLockPlacement)
	b.Queue(qDeleteExpired, now.UnixNano())
	b.Queue(qListClusters)
	b.Queue(qListQuotas)
	b.Queue(qPlacementUsage, now.UnixNano())
	b.Queue(qBorrowedReservations, now.UnixNano())
	b.Queue(qDeleteExpiredClaims, now.UnixNano())
	b.Queue(qListClaims)
	br := tx.SendBatch(ctx, &b)
	snap, err := func() (*placement.Snapshot, error) {
		var snap placement.Snapshot
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("lock: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("delete expired reservations: %w", err)
		}
		rows, err := br.Query()
		if err != nil {
			return nil, err
		}
		if snap.Clusters, err = scanClusters(rows); err != nil {
			return nil, err
		}
		if rows, err = br.Query(); err != nil {
			return nil, err
		}
		if snap.Quotas, err = scanQuotas(rows); err != nil {
			return nil, err
		}
		if rows, err = br.Query(); err != nil {
			return nil, err
		}
		if snap.Usage, err = scanUsage(rows); err != nil {
			return nil, err
		}
		if rows, err = br.Query(); err != nil {
			return nil, err
		}
		if snap.Borrowed, err = scanReservations(rows); err != nil {
			return nil, err
		}
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("delete expired claims: %w", err)
		}
		if rows, err = br.Query(); err != nil {
			return nil, err
		}
		if snap.Claims, err = scanClaims(rows); err != nil {
			return nil, err
		}
		return &snap, nil
	}()
	if cerr := br.Close(); err == nil && cerr != nil {
		return nil, cerr
	}
	return snap, err
}

// writePlacement inserts w's reservations (refusing an ID in use) and
// marks w's reclaims.
func writePlacement(ctx context.Context, tx pgx.Tx, w store.PlaceWrite) error {
	if len(w.Insert) > 0 {
		n := len(w.Insert)
		ids, teams, jobs, clusters, gpuTypes, holders := make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n)
		cpu, mem, gpus, expires := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		borrowed, reclaim := make([]bool, n), make([]bool, n)
		created := make([]*int64, n)
		for i, r := range w.Insert {
			ids[i], teams[i], jobs[i], clusters[i], holders[i] = r.ID, r.Team, r.Job, r.Cluster, r.Holder
			cpu[i], mem[i] = r.Resources.MilliCPU, r.Resources.Memory
			gpuTypes[i], gpus[i] = storesql.GpuOf(r.Resources)
			borrowed[i], reclaim[i] = r.Borrowed, r.Reclaim
			created[i], expires[i] = storesql.Nanos(r.Created), r.ExpiresAt.UnixNano()
		}
		rows, err := tx.Query(ctx, qInsertReservations, ids, teams, jobs, clusters, cpu, mem, gpuTypes, gpus,
			borrowed, reclaim, holders, created, expires)
		if err != nil {
			return classify(err)
		}
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return classify(err)
		}
		if len(inserted) != n {
			return storesql.TakenID(ids, inserted)
		}
	}
	if len(w.Reclaim) > 0 {
		if _, err := tx.Exec(ctx, qMarkReclaim, w.Reclaim); err != nil {
			return fmt.Errorf("mark reclaim: %w", err)
		}
	}
	if len(w.DropClaims) > 0 {
		if _, err := tx.Exec(ctx, qDropClaims, w.DropClaims); err != nil {
			return fmt.Errorf("drop claims: %w", err)
		}
	}
	if len(w.Claims) > 0 {
		var b pgx.Batch
		for _, c := range w.Claims {
			res, err := json.Marshal(c.Resources)
			if err != nil {
				return err
			}
			b.Queue(qPutClaim, c.ID, c.Team, c.Job, c.Cluster, string(res), c.ExpiresAt.UnixNano())
		}
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("store claims: %w", classify(err))
		}
	}
	return nil
}

// scanClaims scans the rows of qListClaims.
func scanClaims(rows pgx.Rows) ([]placement.Claim, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (placement.Claim, error) {
		var c placement.Claim
		var res []byte
		var expires int64
		if err := r.Scan(&c.ID, &c.Team, &c.Job, &c.Cluster, &res, &expires); err != nil {
			return c, err
		}
		if err := json.Unmarshal(res, &c.Resources); err != nil {
			return c, fmt.Errorf("claim %q: resources: %w", c.ID, err)
		}
		c.ExpiresAt = time.Unix(0, expires).UTC()
		return c, nil
	})
}

// RenewReservations sets holder and expiry on the reservations with the
// given IDs, one statement per storesql.PlacementChunk IDs.
func (s *Store) RenewReservations(ctx context.Context, holder string, ids []string, expires time.Time) (reclaim, missing []string, err error) {
	if err := storesql.CheckRenew(holder, ids, expires); err != nil {
		return nil, nil, fmt.Errorf("renew reservations: %w", err)
	}
	found := make(map[string]bool, len(ids))
	err = s.pool.withConn(ctx, func(c *pgx.Conn) error {
		for chunk := range slices.Chunk(ids, storesql.PlacementChunk) {
			rows, err := c.Query(ctx, qRenewReservations, holder, expires.UnixNano(), chunk)
			if err != nil {
				return err
			}
			var id string
			var rec bool
			if _, err := pgx.ForEachRow(rows, []any{&id, &rec}, func() error {
				found[id] = rec
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("renew %d reservations for %s: %w", len(ids), holder, err)
	}
	reclaim, missing = storesql.RenewResult(ids, found)
	return reclaim, missing, nil
}

// ReleaseReservations deletes the reservations with the given IDs.
func (s *Store) ReleaseReservations(ctx context.Context, ids []string) error {
	if err := storesql.CheckIDs(ids); err != nil {
		return fmt.Errorf("release reservations: %w", err)
	}
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		for chunk := range slices.Chunk(ids, storesql.PlacementChunk) {
			if _, err := c.Exec(ctx, qDeleteReservations, chunk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("release %d reservations: %w", len(ids), err)
	}
	return nil
}

// ListReservations returns the reservations f selects, oldest first.
func (s *Store) ListReservations(ctx context.Context, f store.ReservationFilter) ([]placement.Reservation, error) {
	if err := storesql.CheckFilter(f); err != nil {
		return nil, fmt.Errorf("list reservations: %w", err)
	}
	var rs []placement.Reservation
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListReservations, f.Team, f.Cluster, f.Job, f.Holder, f.ReclaimOnly, storesql.ReservationLimit(f.Limit),
			storesql.ExpiresBefore(f))
		if err != nil {
			return err
		}
		rs, err = scanReservations(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list reservations: %w", err)
	}
	return rs, nil
}

// PlacementUsage returns the usage of the reservations live at now.
func (s *Store) PlacementUsage(ctx context.Context, now time.Time) ([]placement.Usage, error) {
	if err := storesql.CheckNow(now); err != nil {
		return nil, fmt.Errorf("placement usage: %w", err)
	}
	var us []placement.Usage
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qPlacementUsage, now.UnixNano())
		if err != nil {
			return err
		}
		us, err = scanUsage(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("placement usage: %w", err)
	}
	return us, nil
}

func scanClusters(rows pgx.Rows) ([]placement.Cluster, error) {
	defer rows.Close()
	var cs []placement.Cluster
	for rows.Next() {
		c, err := storesql.ScanCluster(rows)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

func scanQuotas(rows pgx.Rows) ([]placement.Quota, error) {
	defer rows.Close()
	var qs []placement.Quota
	for rows.Next() {
		var q placement.Quota
		var limits, clusters []byte
		if err := rows.Scan(&q.Team, &limits, &clusters, &q.Lend); err != nil {
			return nil, err
		}
		if err := storesql.DecodeQuota(&q, limits, clusters); err != nil {
			return nil, err
		}
		qs = append(qs, q)
	}
	return qs, rows.Err()
}

func scanUsage(rows pgx.Rows) ([]placement.Usage, error) {
	defer rows.Close()
	var us []placement.Usage
	for rows.Next() {
		var u storesql.UsageRow
		if err := rows.Scan(u.Dest()...); err != nil {
			return nil, err
		}
		us = storesql.MergeUsage(us, u)
	}
	return us, rows.Err()
}

func scanReservations(rows pgx.Rows) ([]placement.Reservation, error) {
	defer rows.Close()
	var rs []placement.Reservation
	for rows.Next() {
		r, err := storesql.ScanReservation(rows)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, rows.Err()
}
