package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// Placement records (design note 010): clusters, quotas and reservations.
// Place runs in a transaction on the single write connection, begun
// IMMEDIATE: it holds SQLite's write lock from its first statement, so
// placements (and every other write) run one after another, in this
// process and any other. Lists of IDs travel as one JSON array parameter
// (json_each), whatever their length.

const (
	clusterColumns = `name, state, capacity, labels, pods_per_second, price_per_cpu_hour, price_per_gib_hour, price_per_gpu_hour`
	quotaColumns   = `team, limits, clusters, lend`
	resvColumns    = `id, team, job, cluster, milli_cpu, memory, gpu_type, gpu_count, borrowed, reclaim, holder, created, expires_at`
	// dbNanos is the database's clock in Unix nanoseconds.
	dbNanos = `CAST(unixepoch('subsec') * 1000000000 AS INTEGER)`
	// resvOrder lists reservations oldest first (unknown creation first),
	// then by ID.
	resvOrder = ` ORDER BY created NULLS FIRST, id`
	// inIDs is the condition "id is one of the JSON array ?1".
	inIDs = `id IN (SELECT value FROM json_each(?1))`
)

const (
	qEnsureCluster = `INSERT INTO clusters (` + clusterColumns + `, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ` + dbNanos + `)
ON CONFLICT (name) DO NOTHING`
	qPutCluster = `INSERT INTO clusters (` + clusterColumns + `, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ` + dbNanos + `)
ON CONFLICT (name) DO UPDATE SET state = excluded.state, capacity = excluded.capacity, labels = excluded.labels,
	pods_per_second = excluded.pods_per_second, price_per_cpu_hour = excluded.price_per_cpu_hour,
	price_per_gib_hour = excluded.price_per_gib_hour, price_per_gpu_hour = excluded.price_per_gpu_hour,
	updated_at = excluded.updated_at`
	qGetCluster      = `SELECT ` + clusterColumns + ` FROM clusters WHERE name = ?1`
	qListClusters    = `SELECT ` + clusterColumns + ` FROM clusters ORDER BY name`
	qSetClusterState = `UPDATE clusters SET state = ?2, updated_at = ` + dbNanos + ` WHERE name = ?1`
	qDeleteCluster   = `DELETE FROM clusters WHERE name = ?1`
	qReclaimCluster  = `UPDATE reservations SET reclaim = 1 WHERE cluster = ?1 AND NOT reclaim`

	qPutQuota = `INSERT INTO quotas (` + quotaColumns + `, updated_at) VALUES (?1, ?2, ?3, ?4, ` + dbNanos + `)
ON CONFLICT (team) DO UPDATE SET limits = excluded.limits, clusters = excluded.clusters, lend = excluded.lend,
	updated_at = excluded.updated_at`
	qDeleteQuota = `DELETE FROM quotas WHERE team = ?1`
	qListQuotas  = `SELECT ` + quotaColumns + ` FROM quotas ORDER BY team`

	qDeleteExpired = `DELETE FROM reservations WHERE expires_at <= ?1`
	// Usage of the reservations live at ?1, one row per GPU type, in the
	// order storesql.MergeUsage needs.
	qPlacementUsage = `SELECT team, cluster, borrowed, gpu_type, sum(milli_cpu), sum(memory), sum(gpu_count), count(*)
FROM reservations WHERE expires_at > ?1
GROUP BY team, cluster, borrowed, gpu_type
ORDER BY team, cluster, borrowed, gpu_type`
	qBorrowedReservations = `SELECT ` + resvColumns + ` FROM reservations WHERE borrowed AND expires_at > ?1` + resvOrder
	// Inserts nothing when the ID is taken.
	qInsertReservation = `INSERT INTO reservations (` + resvColumns + `)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
ON CONFLICT (id) DO NOTHING`
	qMarkReclaim = `UPDATE reservations SET reclaim = 1 WHERE ` + inIDs

	qDeleteExpiredClaims = `DELETE FROM placement_claims WHERE expires_at <= ?1`
	qListClaims          = `SELECT id, team, job, cluster, resources, expires_at FROM placement_claims ORDER BY id`
	qPutClaim            = `INSERT INTO placement_claims (id, team, job, cluster, resources, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (id) DO UPDATE SET team = excluded.team, job = excluded.job, cluster = excluded.cluster,
	resources = excluded.resources, expires_at = excluded.expires_at`
	qDropClaims = `DELETE FROM placement_claims WHERE ` + inIDs
	// ?1 the IDs, ?2 holder, ?3 expiry.
	qRenewReservations  = `UPDATE reservations SET holder = ?2, expires_at = ?3 WHERE ` + inIDs + ` RETURNING id, reclaim`
	qDeleteReservations = `DELETE FROM reservations WHERE ` + inIDs
	// ?1 team, ?2 cluster, ?3 job, ?4 holder ('' for any), ?5 reclaim
	// only, ?6 limit.
	qListReservations = `SELECT ` + resvColumns + ` FROM reservations
WHERE (?1 = '' OR team = ?1) AND (?2 = '' OR cluster = ?2) AND (?3 = '' OR job = ?3)
  AND (?4 = '' OR holder = ?4) AND (NOT ?5 OR reclaim) AND (?7 = 0 OR expires_at <= ?7)` + resvOrder + `
LIMIT ?6`
)

// writeTx runs fn in a transaction on the write connection, committed if
// fn returns nil and rolled back otherwise.
func (s *Store) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

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
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, qEnsureCluster, args...)
		if err != nil {
			return classify(err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 && c.State == placement.Draining {
			if _, err := tx.ExecContext(ctx, qReclaimCluster, c.Name); err != nil {
				return err
			}
		}
		got, err = storesql.ScanCluster(tx.QueryRowContext(ctx, qGetCluster, c.Name))
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
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, qPutCluster, args...); err != nil {
			return classify(err)
		}
		if c.State == placement.Draining {
			if _, err := tx.ExecContext(ctx, qReclaimCluster, c.Name); err != nil {
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
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, qSetClusterState, name, string(state))
		if err != nil {
			return classify(err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		if state == placement.Draining {
			if _, err := tx.ExecContext(ctx, qReclaimCluster, name); err != nil {
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
	cs, err := queryList(ctx, s.read, storesql.ScanCluster, qListClusters)
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
	if _, err := s.write.ExecContext(ctx, qPutQuota, args...); err != nil {
		return fmt.Errorf("put quota of team %q: %w", q.Team, classify(err))
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
	qs, err := queryList(ctx, s.read, scanQuota, qListQuotas)
	if err != nil {
		return nil, fmt.Errorf("list quotas: %w", err)
	}
	return qs, nil
}

// deleteOne runs a DELETE of one row by key: ErrNotFound when none was.
func (s *Store) deleteOne(ctx context.Context, q, key string) error {
	res, err := s.write.ExecContext(ctx, q, key)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// Place runs decide in one write transaction: SQLite's write lock,
// held from its start, serialises it with every other Place.
func (s *Store) Place(ctx context.Context, now time.Time, decide func(*placement.Snapshot) (store.PlaceWrite, error)) error {
	if err := storesql.CheckNow(now); err != nil {
		return fmt.Errorf("place: %w", err)
	}
	var decideErr error
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
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

// readSnapshot deletes the reservations expired at now and reads what
// placement decides against.
func readSnapshot(ctx context.Context, tx *sql.Tx, now time.Time) (*placement.Snapshot, error) {
	if _, err := tx.ExecContext(ctx, qDeleteExpired, now.UnixNano()); err != nil {
		return nil, fmt.Errorf("delete expired reservations: %w", err)
	}
	var snap placement.Snapshot
	var err error
	if snap.Clusters, err = queryList(ctx, tx, storesql.ScanCluster, qListClusters); err != nil {
		return nil, err
	}
	if snap.Quotas, err = queryList(ctx, tx, scanQuota, qListQuotas); err != nil {
		return nil, err
	}
	if snap.Usage, err = queryUsage(ctx, tx, now); err != nil {
		return nil, err
	}
	if snap.Borrowed, err = queryList(ctx, tx, storesql.ScanReservation, qBorrowedReservations, now.UnixNano()); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, qDeleteExpiredClaims, now.UnixNano()); err != nil {
		return nil, fmt.Errorf("delete expired claims: %w", err)
	}
	if snap.Claims, err = queryList(ctx, tx, scanClaim, qListClaims); err != nil {
		return nil, err
	}
	return &snap, nil
}

// writePlacement inserts w's reservations (refusing an ID in use) and
// marks w's reclaims.
func writePlacement(ctx context.Context, tx *sql.Tx, w store.PlaceWrite) error {
	if len(w.Insert) > 0 {
		stmt, err := tx.PrepareContext(ctx, qInsertReservation)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, r := range w.Insert {
			typ, gpus := storesql.GpuOf(r.Resources)
			res, err := stmt.ExecContext(ctx, r.ID, r.Team, r.Job, r.Cluster, r.Resources.MilliCPU, r.Resources.Memory, typ, gpus,
				r.Borrowed, r.Reclaim, r.Holder, storesql.Nanos(r.Created), r.ExpiresAt.UnixNano())
			if err != nil {
				return fmt.Errorf("reservation %q: %w", r.ID, classify(err))
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return storesql.TakenID([]string{r.ID}, nil)
			}
		}
	}
	if len(w.Reclaim) > 0 {
		ids, err := json.Marshal(w.Reclaim)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, qMarkReclaim, string(ids)); err != nil {
			return fmt.Errorf("mark reclaim: %w", err)
		}
	}
	if len(w.DropClaims) > 0 {
		ids, err := json.Marshal(w.DropClaims)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, qDropClaims, string(ids)); err != nil {
			return fmt.Errorf("drop claims: %w", err)
		}
	}
	for _, c := range w.Claims {
		res, err := json.Marshal(c.Resources)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, qPutClaim, c.ID, c.Team, c.Job, c.Cluster, string(res), c.ExpiresAt.UnixNano()); err != nil {
			return fmt.Errorf("claim %q: %w", c.ID, classify(err))
		}
	}
	return nil
}

// scanClaim scans a row of qListClaims.
func scanClaim(r storesql.Row) (placement.Claim, error) {
	var c placement.Claim
	var res string
	var expires int64
	if err := r.Scan(&c.ID, &c.Team, &c.Job, &c.Cluster, &res, &expires); err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(res), &c.Resources); err != nil {
		return c, fmt.Errorf("claim %q: resources: %w", c.ID, err)
	}
	c.ExpiresAt = time.Unix(0, expires).UTC()
	return c, nil
}

// RenewReservations sets holder and expiry on the reservations with the
// given IDs, one statement per storesql.PlacementChunk IDs, in one transaction.
func (s *Store) RenewReservations(ctx context.Context, holder string, ids []string, expires time.Time) (reclaim, missing []string, err error) {
	if err := storesql.CheckRenew(holder, ids, expires); err != nil {
		return nil, nil, fmt.Errorf("renew reservations: %w", err)
	}
	found := make(map[string]bool, len(ids))
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		for chunk := range slices.Chunk(ids, storesql.PlacementChunk) {
			list, err := json.Marshal(chunk)
			if err != nil {
				return err
			}
			rows, err := tx.QueryContext(ctx, qRenewReservations, string(list), holder, expires.UnixNano())
			if err != nil {
				return err
			}
			for rows.Next() {
				var id string
				var rec bool
				if err := rows.Scan(&id, &rec); err != nil {
					rows.Close()
					return err
				}
				found[id] = rec
			}
			if err := rows.Close(); err != nil {
				return err
			}
			if err := rows.Err(); err != nil {
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
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		for chunk := range slices.Chunk(ids, storesql.PlacementChunk) {
			list, err := json.Marshal(chunk)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, qDeleteReservations, string(list)); err != nil {
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
	rs, err := queryList(ctx, s.read, storesql.ScanReservation, qListReservations,
		f.Team, f.Cluster, f.Job, f.Holder, f.ReclaimOnly, storesql.ReservationLimit(f.Limit), storesql.ExpiresBefore(f))
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
	us, err := queryUsage(ctx, s.read, now)
	if err != nil {
		return nil, fmt.Errorf("placement usage: %w", err)
	}
	return us, nil
}

// querier is what reads run on: the read pool or a write transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryList runs q and scans every row it returns with scan.
func queryList[T any](ctx context.Context, db querier, scan func(storesql.Row) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func queryUsage(ctx context.Context, db querier, now time.Time) ([]placement.Usage, error) {
	rows, err := queryList(ctx, db, func(r storesql.Row) (storesql.UsageRow, error) {
		var u storesql.UsageRow
		err := r.Scan(u.Dest()...)
		return u, err
	}, qPlacementUsage, now.UnixNano())
	if err != nil {
		return nil, err
	}
	var us []placement.Usage
	for _, u := range rows {
		us = storesql.MergeUsage(us, u)
	}
	return us, nil
}

func scanQuota(r storesql.Row) (placement.Quota, error) {
	var q placement.Quota
	var limits, clusters []byte
	if err := r.Scan(&q.Team, &limits, &clusters, &q.Lend); err != nil {
		return q, err
	}
	return q, storesql.DecodeQuota(&q, limits, clusters)
}
