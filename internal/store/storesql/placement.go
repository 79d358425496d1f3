package storesql

// Placement records (design note 010): the checks, column codecs and the
// merge of usage rows both drivers use, so that they accept and return the
// same records.

import (
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
)

// PlacementChunk bounds the IDs one statement of RenewReservations or
// ReleaseReservations carries.
const PlacementChunk = 10_000

// CheckText refuses what PostgreSQL cannot store in a text column
// (invalid UTF-8, a NUL byte); both drivers refuse it alike.
func CheckText(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q: not valid UTF-8", field, s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s %q: holds a NUL byte", field, s)
	}
	return nil
}

// CheckName refuses an empty name and text CheckText refuses.
func CheckName(field, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", field)
	}
	return CheckText(field, s)
}

// CheckResources refuses negative amounts and empty or unstorable GPU
// types.
func CheckResources(field string, r placement.Resources) error {
	if r.MilliCPU < 0 {
		return fmt.Errorf("%s: milli-CPU %d: negative", field, r.MilliCPU)
	}
	if r.Memory < 0 {
		return fmt.Errorf("%s: memory %d: negative", field, r.Memory)
	}
	for _, t := range slices.Sorted(maps.Keys(r.GPU)) {
		if err := CheckName(field+": GPU type", t); err != nil {
			return err
		}
		if n := r.GPU[t]; n < 0 {
			return fmt.Errorf("%s: GPU %s count %d: negative", field, t, n)
		}
	}
	return nil
}

func CheckClusterState(name string, s placement.ClusterState) error {
	if err := CheckName("cluster name", name); err != nil {
		return Reject(err)
	}
	if _, err := placement.ParseClusterState(string(s)); err != nil {
		return Reject(fmt.Errorf("cluster %q: %w", name, err))
	}
	return nil
}

// CheckCluster refuses a cluster the store must not hold (what
// placement's Validate refuses, and label text neither driver stores
// alike); the error names it and what is wrong, and wraps
// store.ErrRejected.
func CheckCluster(c placement.Cluster) error {
	if err := c.Validate(); err != nil {
		return Reject(err)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Labels)) {
		err := CheckText("label", k)
		for _, v := range c.Labels[k] {
			if err == nil {
				err = CheckText(fmt.Sprintf("label %s value", k), v)
			}
		}
		if err != nil {
			return Reject(fmt.Errorf("cluster %q: %w", c.Name, err))
		}
	}
	return nil
}

// CheckQuota refuses a quota placement's Validate refuses; the error
// names the team and what is wrong, and wraps store.ErrRejected.
func CheckQuota(q placement.Quota) error {
	return Reject(q.Validate())
}

// CheckTime refuses a time outside what Unix nanoseconds hold.
func CheckTime(field string, t time.Time) error {
	if t.Before(time.Unix(0, math.MinInt64)) || t.After(time.Unix(0, math.MaxInt64)) {
		return fmt.Errorf("%s %s: outside the storable range", field, t)
	}
	return nil
}

// CheckNow refuses a zero or unstorable now.
func CheckNow(now time.Time) error {
	if now.IsZero() {
		return Reject(errors.New("now is the zero time"))
	}
	return Reject(CheckTime("now", now))
}

// CheckReservation refuses a reservation the store cannot hold: an empty
// ID, team, cluster or holder, a negative amount, more than one GPU type,
// no expiry.
func CheckReservation(r placement.Reservation) error {
	if err := CheckName("reservation ID", r.ID); err != nil {
		return err
	}
	err := func() error {
		for _, f := range []struct{ field, s string }{{"team", r.Team}, {"cluster", r.Cluster}, {"holder", r.Holder}} {
			if err := CheckName(f.field, f.s); err != nil {
				return err
			}
		}
		if err := CheckText("job", r.Job); err != nil {
			return err
		}
		if err := CheckResources("resources", r.Resources); err != nil {
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
		if err := CheckTime("expiry", r.ExpiresAt); err != nil {
			return err
		}
		if !r.Created.IsZero() {
			return CheckTime("creation time", r.Created)
		}
		return nil
	}()
	if err != nil {
		return fmt.Errorf("reservation %q: %w", r.ID, err)
	}
	return nil
}

// CheckPlaceWrite refuses w whole if a reservation in it is refused, an
// ID comes twice, or a reclaim ID is unstorable.
func CheckPlaceWrite(w store.PlaceWrite) error {
	seen := make(map[string]bool, len(w.Insert))
	for i, r := range w.Insert {
		if err := CheckReservation(r); err != nil {
			return Reject(fmt.Errorf("reservation %d of %d: %w", i, len(w.Insert), err))
		}
		if seen[r.ID] {
			return Reject(fmt.Errorf("reservation %q: given twice", r.ID))
		}
		seen[r.ID] = true
	}
	if err := CheckIDs(w.Reclaim); err != nil {
		return fmt.Errorf("reclaim: %w", err)
	}
	if err := CheckIDs(w.DropClaims); err != nil {
		return fmt.Errorf("dropped claims: %w", err)
	}
	for _, c := range w.Claims {
		if err := CheckClaim(c); err != nil {
			return Reject(err)
		}
	}
	return nil
}

// CheckIDs refuses reservation IDs that are empty or unstorable.
func CheckIDs(ids []string) error {
	for _, id := range ids {
		if err := CheckName("reservation ID", id); err != nil {
			return Reject(err)
		}
	}
	return nil
}

func CheckRenew(holder string, ids []string, expires time.Time) error {
	if err := CheckName("holder", holder); err != nil {
		return Reject(err)
	}
	if expires.IsZero() {
		return Reject(errors.New("no expiry"))
	}
	if err := CheckTime("expiry", expires); err != nil {
		return Reject(err)
	}
	return CheckIDs(ids)
}

func CheckFilter(f store.ReservationFilter) error {
	for _, c := range []struct{ field, s string }{{"team", f.Team}, {"cluster", f.Cluster}, {"job", f.Job}, {"holder", f.Holder}} {
		if err := CheckText(c.field, c.s); err != nil {
			return Reject(err)
		}
	}
	return nil
}

// ExpiresBefore is the filter's ExpiresBefore in Unix nanoseconds, 0 for
// none.
func ExpiresBefore(f store.ReservationFilter) int64 {
	if f.ExpiresBefore.IsZero() {
		return 0
	}
	return f.ExpiresBefore.UnixNano()
}

// ReservationLimit is the number of rows ListReservations returns for a
// filter's limit.
func ReservationLimit(limit int) int {
	if limit <= 0 {
		return store.DefaultReservationLimit
	}
	return limit
}

// TakenID is the error of an insert that left out some of ids (those not
// in inserted): their IDs are in use.
func TakenID(ids, inserted []string) error {
	in := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		in[id] = true
	}
	for _, id := range ids {
		if !in[id] {
			return Reject(fmt.Errorf("reservation %q: the ID is in use", id))
		}
	}
	return errors.New("insert reservations: fewer rows than asked")
}

// RenewResult splits ids (in their order, each once) into those marked
// for reclaim and those not found, from the renewed rows' reclaim flags.
func RenewResult(ids []string, found map[string]bool) (reclaim, missing []string) {
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

// GpuOf is the one GPU type and count of a reservation's resources
// ("", 0 without GPUs).
func GpuOf(r placement.Resources) (string, int64) {
	for t, n := range r.GPU {
		if n != 0 {
			return t, n
		}
	}
	return "", 0
}

// ClusterArgs are c's column values after its name, in clusterColumns
// order.
func ClusterArgs(c placement.Cluster) ([]any, error) {
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

func ScanCluster(r Row) (placement.Cluster, error) {
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

// QuotaArgs are q's column values in quotaColumns order.
func QuotaArgs(q placement.Quota) ([]any, error) {
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

func DecodeQuota(q *placement.Quota, limits, clusters []byte) error {
	if err := json.Unmarshal(limits, &q.Limit); err != nil {
		return fmt.Errorf("quota of team %q: decode limit: %w", q.Team, err)
	}
	if err := json.Unmarshal(clusters, &q.Clusters); err != nil {
		return fmt.Errorf("quota of team %q: decode splits: %w", q.Team, err)
	}
	return nil
}

func ScanReservation(r Row) (placement.Reservation, error) {
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
	res.Created = FromNanos(created)
	res.ExpiresAt = time.Unix(0, expires).UTC()
	return res, nil
}

// UsageRow is a row of the usage query: one team, cluster, borrowed flag
// and GPU type.
type UsageRow struct {
	team, cluster, gpuType string
	borrowed               bool
	cpu, mem, gpus         int64
	workers                int64
}

// Dest is what a usage query's row scans into: team, cluster, borrowed,
// GPU type, milli-CPU, memory, GPUs, workers.
func (u *UsageRow) Dest() []any {
	return []any{&u.team, &u.cluster, &u.borrowed, &u.gpuType, &u.cpu, &u.mem, &u.gpus, &u.workers}
}

// MergeUsage adds u to us, whose last entry it joins when it is of the
// same team, cluster and borrowed flag (the query orders rows so).
func MergeUsage(us []placement.Usage, u UsageRow) []placement.Usage {
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

// CheckClaim refuses a claim the store cannot hold: an empty ID, team or
// cluster, a negative amount, no expiry.
func CheckClaim(c placement.Claim) error {
	if err := CheckName("claim ID", c.ID); err != nil {
		return err
	}
	for _, f := range []struct{ field, s string }{{"team", c.Team}, {"cluster", c.Cluster}} {
		if err := CheckName(f.field, f.s); err != nil {
			return fmt.Errorf("claim %q: %w", c.ID, err)
		}
	}
	if err := CheckText("job", c.Job); err != nil {
		return fmt.Errorf("claim %q: %w", c.ID, err)
	}
	if err := CheckResources("resources", c.Resources); err != nil {
		return fmt.Errorf("claim %q: %w", c.ID, err)
	}
	if c.ExpiresAt.IsZero() {
		return fmt.Errorf("claim %q: no expiry", c.ID)
	}
	return CheckTime("claim expiry", c.ExpiresAt)
}
