package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

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
	// order mergeUsage needs.
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
  AND (?4 = '' OR holder = ?4) AND (NOT ?5 OR reclaim)` + resvOrder + `
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
	if err := checkCluster(c); err != nil {
		return placement.Cluster{}, fmt.Errorf("ensure cluster: %w", err)
	}
	args, err := clusterArgs(c)
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
		got, err = scanCluster(tx.QueryRowContext(ctx, qGetCluster, c.Name))
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
	if err := checkCluster(c); err != nil {
		return fmt.Errorf("put cluster: %w", err)
	}
	args, err := clusterArgs(c)
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
	if err := checkClusterState(name, state); err != nil {
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
	if err := checkName("cluster name", name); err != nil {
		return fmt.Errorf("delete cluster: %w", storesql.Reject(err))
	}
	if err := s.deleteOne(ctx, qDeleteCluster, name); err != nil {
		return fmt.Errorf("delete cluster %q: %w", name, err)
	}
	return nil
}

// ListClusters returns every cluster, by name.
func (s *Store) ListClusters(ctx context.Context) ([]placement.Cluster, error) {
	cs, err := queryList(ctx, s.read, scanCluster, qListClusters)
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	return cs, nil
}

// PutQuota creates or replaces a team's quota.
func (s *Store) PutQuota(ctx context.Context, q placement.Quota) error {
	if err := checkQuota(q); err != nil {
		return fmt.Errorf("put quota: %w", err)
	}
	args, err := quotaArgs(q)
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
	if err := checkName("team", team); err != nil {
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
	if err := checkNow(now); err != nil {
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
		if err := checkPlaceWrite(w); err != nil {
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
	if snap.Clusters, err = queryList(ctx, tx, scanCluster, qListClusters); err != nil {
		return nil, err
	}
	if snap.Quotas, err = queryList(ctx, tx, scanQuota, qListQuotas); err != nil {
		return nil, err
	}
	if snap.Usage, err = queryUsage(ctx, tx, now); err != nil {
		return nil, err
	}
	if snap.Borrowed, err = queryList(ctx, tx, scanReservation, qBorrowedReservations, now.UnixNano()); err != nil {
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
			typ, gpus := gpuOf(r.Resources)
			res, err := stmt.ExecContext(ctx, r.ID, r.Team, r.Job, r.Cluster, r.Resources.MilliCPU, r.Resources.Memory, typ, gpus,
				r.Borrowed, r.Reclaim, r.Holder, storesql.Nanos(r.Created), r.ExpiresAt.UnixNano())
			if err != nil {
				return fmt.Errorf("reservation %q: %w", r.ID, classify(err))
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return takenID([]string{r.ID}, nil)
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
// given IDs, one statement per placementChunk IDs, in one transaction.
func (s *Store) RenewReservations(ctx context.Context, holder string, ids []string, expires time.Time) (reclaim, missing []string, err error) {
	if err := checkRenew(holder, ids, expires); err != nil {
		return nil, nil, fmt.Errorf("renew reservations: %w", err)
	}
	found := make(map[string]bool, len(ids))
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		for chunk := range slices.Chunk(ids, placementChunk) {
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
	reclaim, missing = renewResult(ids, found)
	return reclaim, missing, nil
}

// ReleaseReservations deletes the reservations with the given IDs.
func (s *Store) ReleaseReservations(ctx context.Context, ids []string) error {
	if err := checkIDs(ids); err != nil {
		return fmt.Errorf("release reservations: %w", err)
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		for chunk := range slices.Chunk(ids, placementChunk) {
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
	if err := checkFilter(f); err != nil {
		return nil, fmt.Errorf("list reservations: %w", err)
	}
	rs, err := queryList(ctx, s.read, scanReservation, qListReservations,
		f.Team, f.Cluster, f.Job, f.Holder, f.ReclaimOnly, reservationLimit(f.Limit))
	if err != nil {
		return nil, fmt.Errorf("list reservations: %w", err)
	}
	return rs, nil
}

// PlacementUsage returns the usage of the reservations live at now.
func (s *Store) PlacementUsage(ctx context.Context, now time.Time) ([]placement.Usage, error) {
	if err := checkNow(now); err != nil {
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
	rows, err := queryList(ctx, db, func(r storesql.Row) (usageRow, error) {
		var u usageRow
		err := r.Scan(&u.team, &u.cluster, &u.borrowed, &u.gpuType, &u.cpu, &u.mem, &u.gpus, &u.workers)
		return u, err
	}, qPlacementUsage, now.UnixNano())
	if err != nil {
		return nil, err
	}
	var us []placement.Usage
	for _, u := range rows {
		us = mergeUsage(us, u)
	}
	return us, nil
}

func scanQuota(r storesql.Row) (placement.Quota, error) {
	var q placement.Quota
	var limits, clusters []byte
	if err := r.Scan(&q.Team, &limits, &clusters, &q.Lend); err != nil {
		return q, err
	}
	return q, decodeQuota(&q, limits, clusters)
}

// What follows is the same in the postgres driver's placement.go (the
// checks, the column codecs and the merge of usage rows), so that both
// drivers accept and return the same records.

// placementChunk bounds the IDs one statement of RenewReservations or
// ReleaseReservations carries.
const placementChunk = 10_000

// checkText refuses what PostgreSQL cannot store in a text column
// (invalid UTF-8, a NUL byte); both drivers refuse it alike.
func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q: not valid UTF-8", field, s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q: holds a NUL byte", field, s)
	}
	return nil
}

// checkName refuses an empty name and text checkText refuses.
func checkName(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", field)
	}
	return checkText(field, s)
}

// checkResources refuses negative amounts and empty or unstorable GPU
// types.
func checkResources(field string, r placement.Resources) error {
	if r.MilliCPU < 0 {
		return fmt.Errorf("%s: milli-CPU %d: negative", field, r.MilliCPU)
	}
	if r.Memory < 0 {
		return fmt.Errorf("%s: memory %d: negative", field, r.Memory)
	}
	for _, t := range slices.Sorted(maps.Keys(r.GPU)) {
		if err := checkName(field+": GPU type", t); err != nil {
			return err
		}
		if n := r.GPU[t]; n < 0 {
			return fmt.Errorf("%s: GPU %s count %d: negative", field, t, n)
		}
	}
	return nil
}

func checkClusterState(name string, s placement.ClusterState) error {
	if err := checkName("cluster name", name); err != nil {
		return storesql.Reject(err)
	}
	if _, err := placement.ParseClusterState(string(s)); err != nil {
		return storesql.Reject(fmt.Errorf("cluster %q: %w", name, err))
	}
	return nil
}

// checkCluster refuses a cluster the store must not hold (what
// placement's Validate refuses, and label text neither driver stores
// alike); the error names it and what is wrong, and wraps
// store.ErrRejected.
func checkCluster(c placement.Cluster) error {
	if err := c.Validate(); err != nil {
		return storesql.Reject(err)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Labels)) {
		err := checkText("label", k)
		for _, v := range c.Labels[k] {
			if err == nil {
				err = checkText(fmt.Sprintf("label %s value", k), v)
			}
		}
		if err != nil {
			return storesql.Reject(fmt.Errorf("cluster %q: %w", c.Name, err))
		}
	}
	return nil
}

// checkQuota refuses a quota placement's Validate refuses; the error
// names the team and what is wrong, and wraps store.ErrRejected.
func checkQuota(q placement.Quota) error {
	return storesql.Reject(q.Validate())
}

// checkTime refuses a time outside what Unix nanoseconds hold.
func checkTime(field string, t time.Time) error {
	if t.Before(time.Unix(0, math.MinInt64)) || t.After(time.Unix(0, math.MaxInt64)) {
		return fmt.Errorf("%s %s: outside the storable range", field, t)
	}
	return nil
}

// checkNow refuses a zero or unstorable now.
func checkNow(now time.Time) error {
	if now.IsZero() {
		return storesql.Reject(errors.New("now is the zero time"))
	}
	return storesql.Reject(checkTime("now", now))
}

// checkReservation refuses a reservation the store cannot hold: an empty
// ID, team, cluster or holder, a negative amount, more than one GPU type,
// no expiry.
func checkReservation(r placement.Reservation) error {
	if err := checkName("reservation ID", r.ID); err != nil {
		return err
	}
	err := func() error {
		for _, f := range []struct{ field, s string }{{"team", r.Team}, {"cluster", r.Cluster}, {"holder", r.Holder}} {
			if err := checkName(f.field, f.s); err != nil {
				return err
			}
		}
		if err := checkText("job", r.Job); err != nil {
			return err
		}
		if err := checkResources("resources", r.Resources); err != nil {
			return err
		}
		var types []string
		for t, n := range r.Resources.GPU {
			if n != 0 {
				types = append(types, t)
			}
		}
		if len(types) > 1 {
			slices.Sort(types)
			return fmt.Errorf("resources: %d GPU types (%s), at most one allowed", len(types), strings.Join(types, ", "))
		}
		if r.ExpiresAt.IsZero() {
			return errors.New("no expiry")
		}
		if err := checkTime("expiry", r.ExpiresAt); err != nil {
			return err
		}
		if !r.Created.IsZero() {
			return checkTime("creation time", r.Created)
		}
		return nil
	}()
	if err != nil {
		return fmt.Errorf("reservation %q: %w", r.ID, err)
	}
	return nil
}

// checkPlaceWrite refuses w whole if a reservation in it is refused, an
// ID comes twice, or a reclaim ID is unstorable.
func checkPlaceWrite(w store.PlaceWrite) error {
	seen := make(map[string]bool, len(w.Insert))
	for i, r := range w.Insert {
		if err := checkReservation(r); err != nil {
			return storesql.Reject(fmt.Errorf("reservation %d of %d: %w", i, len(w.Insert), err))
		}
		if seen[r.ID] {
			return storesql.Reject(fmt.Errorf("reservation %q: given twice", r.ID))
		}
		seen[r.ID] = true
	}
	if err := checkIDs(w.Reclaim); err != nil {
		return fmt.Errorf("reclaim: %w", err)
	}
	if err := checkIDs(w.DropClaims); err != nil {
		return fmt.Errorf("dropped claims: %w", err)
	}
	for _, c := range w.Claims {
		if err := checkClaim(c); err != nil {
			return storesql.Reject(err)
		}
	}
	return nil
}

// checkIDs refuses reservation IDs that are empty or unstorable.
func checkIDs(ids []string) error {
	for _, id := range ids {
		if err := checkName("reservation ID", id); err != nil {
			return storesql.Reject(err)
		}
	}
	return nil
}

func checkRenew(holder string, ids []string, expires time.Time) error {
	if err := checkName("holder", holder); err != nil {
		return storesql.Reject(err)
	}
	if expires.IsZero() {
		return storesql.Reject(errors.New("no expiry"))
	}
	if err := checkTime("expiry", expires); err != nil {
		return storesql.Reject(err)
	}
	return checkIDs(ids)
}

func checkFilter(f store.ReservationFilter) error {
	for _, c := range []struct{ field, s string }{{"team", f.Team}, {"cluster", f.Cluster}, {"job", f.Job}, {"holder", f.Holder}} {
		if err := checkText(c.field, c.s); err != nil {
			return storesql.Reject(err)
		}
	}
	return nil
}

// reservationLimit is the number of rows ListReservations returns for a
// filter's limit.
func reservationLimit(limit int) int {
	if limit <= 0 {
		return store.DefaultReservationLimit
	}
	return limit
}

// takenID is the error of an insert that left out some of ids (those not
// in inserted): their IDs are in use.
func takenID(ids, inserted []string) error {
	in := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		in[id] = true
	}
	for _, id := range ids {
		if !in[id] {
			return storesql.Reject(fmt.Errorf("reservation %q: the ID is in use", id))
		}
	}
	return errors.New("insert reservations: fewer rows than asked")
}

// renewResult splits ids (in their order, each once) into those marked
// for reclaim and those not found, from the renewed rows' reclaim flags.
func renewResult(ids []string, found map[string]bool) (reclaim, missing []string) {
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		rec, ok := found[id]
		switch {
		case !ok:
			missing = append(missing, id)
		case rec:
			reclaim = append(reclaim, id)
		}
	}
	return reclaim, missing
}

// gpuOf is the one GPU type and count of a reservation's resources
// ("", 0 without GPUs).
func gpuOf(r placement.Resources) (string, int64) {
	for t, n := range r.GPU {
		if n != 0 {
			return t, n
		}
	}
	return "", 0
}

// clusterArgs are c's column values after its name, in clusterColumns
// order.
func clusterArgs(c placement.Cluster) ([]any, error) {
	capacity, err := json.Marshal(c.Capacity)
	if err != nil {
		return nil, fmt.Errorf("encode capacity: %w", err)
	}
	labels, err := json.Marshal(c.Labels)
	if err != nil {
		return nil, fmt.Errorf("encode labels: %w", err)
	}
	gpuPrices, err := json.Marshal(c.PricePerGPUHour)
	if err != nil {
		return nil, fmt.Errorf("encode GPU prices: %w", err)
	}
	return []any{c.Name, string(c.State), string(capacity), string(labels), c.PodsPerSecond,
		c.PricePerCPUHour, c.PricePerGiBHour, string(gpuPrices)}, nil
}

func scanCluster(r storesql.Row) (placement.Cluster, error) {
	var c placement.Cluster
	var state string
	var capacity, labels, gpuPrices []byte
	if err := r.Scan(&c.Name, &state, &capacity, &labels, &c.PodsPerSecond, &c.PricePerCPUHour, &c.PricePerGiBHour, &gpuPrices); err != nil {
		return c, err
	}
	c.State = placement.ClusterState(state)
	for _, f := range []struct {
		field string
		b     []byte
		v     any
	}{{"capacity", capacity, &c.Capacity}, {"labels", labels, &c.Labels}, {"GPU prices", gpuPrices, &c.PricePerGPUHour}} {
		if err := json.Unmarshal(f.b, f.v); err != nil {
			return c, fmt.Errorf("cluster %q: decode %s: %w", c.Name, f.field, err)
		}
	}
	return c, nil
}

// quotaArgs are q's column values in quotaColumns order.
func quotaArgs(q placement.Quota) ([]any, error) {
	limits, err := json.Marshal(q.Limit)
	if err != nil {
		return nil, fmt.Errorf("encode limit: %w", err)
	}
	clusters, err := json.Marshal(q.Clusters)
	if err != nil {
		return nil, fmt.Errorf("encode splits: %w", err)
	}
	return []any{q.Team, string(limits), string(clusters), q.Lend}, nil
}

func decodeQuota(q *placement.Quota, limits, clusters []byte) error {
	if err := json.Unmarshal(limits, &q.Limit); err != nil {
		return fmt.Errorf("quota of team %q: decode limit: %w", q.Team, err)
	}
	if err := json.Unmarshal(clusters, &q.Clusters); err != nil {
		return fmt.Errorf("quota of team %q: decode splits: %w", q.Team, err)
	}
	return nil
}

func scanReservation(r storesql.Row) (placement.Reservation, error) {
	var res placement.Reservation
	var gpuType string
	var gpus, expires int64
	var created *int64
	if err := r.Scan(&res.ID, &res.Team, &res.Job, &res.Cluster, &res.Resources.MilliCPU, &res.Resources.Memory,
		&gpuType, &gpus, &res.Borrowed, &res.Reclaim, &res.Holder, &created, &expires); err != nil {
		return res, err
	}
	if gpus != 0 {
		res.Resources.GPU = map[string]int64{gpuType: gpus}
	}
	res.Created = storesql.FromNanos(created)
	res.ExpiresAt = time.Unix(0, expires).UTC()
	return res, nil
}

// usageRow is a row of the usage query: one team, cluster, borrowed flag
// and GPU type.
type usageRow struct {
	team, cluster, gpuType string
	borrowed               bool
	cpu, mem, gpus         int64
	workers                int64
}

// mergeUsage adds u to us, whose last entry it joins when it is of the
// same team, cluster and borrowed flag (the query orders rows so).
func mergeUsage(us []placement.Usage, u usageRow) []placement.Usage {
	if n := len(us); n == 0 || us[n-1].Team != u.team || us[n-1].Cluster != u.cluster || us[n-1].Borrowed != u.borrowed {
		us = append(us, placement.Usage{Team: u.team, Cluster: u.cluster, Borrowed: u.borrowed})
	}
	last := &us[len(us)-1]
	add := placement.Resources{MilliCPU: u.cpu, Memory: u.mem}
	if u.gpuType != "" && u.gpus != 0 {
		add.GPU = map[string]int64{u.gpuType: u.gpus}
	}
	last.Held = last.Held.Add(add)
	last.Workers += int(u.workers)
	return us
}

// checkClaim refuses a claim the store cannot hold: an empty ID, team or
// cluster, a negative amount, no expiry.
func checkClaim(c placement.Claim) error {
	if err := checkName("claim ID", c.ID); err != nil {
		return err
	}
	for _, f := range []struct{ field, s string }{{"team", c.Team}, {"cluster", c.Cluster}} {
		if err := checkName(f.field, f.s); err != nil {
			return fmt.Errorf("claim %q: %w", c.ID, err)
		}
	}
	if err := checkText("job", c.Job); err != nil {
		return fmt.Errorf("claim %q: %w", c.ID, err)
	}
	if err := checkResources("resources", c.Resources); err != nil {
		return fmt.Errorf("claim %q: %w", c.ID, err)
	}
	if c.ExpiresAt.IsZero() {
		return fmt.Errorf("claim %q: no expiry", c.ID)
	}
	return checkTime("claim expiry", c.ExpiresAt)
}
