package storetest

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/store"
)

// ExercisePlacement runs the conformance suite of store.PlacementStore:
// clusters, quotas and reservations, and placements by three runners at
// once that never exceed a quota or a cluster's capacity. open is as for
// Exercise.
func ExercisePlacement(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Clusters", testClusters},
		{"Clusters/Refused", testClustersRefused},
		{"Quotas", testQuotas},
		{"Quotas/Refused", testQuotasRefused},
		{"Draining", testDraining},
		{"Place/Snapshot", testPlaceSnapshot},
		{"Place/Expiry", testPlaceExpiry},
		{"Place/Refused", testPlaceRefused},
		{"Place/Claims", testPlaceClaims},
		{"Renew", testRenewReservations},
		{"Renew/Large", testRenewLarge},
		{"Release", testReleaseReservations},
		{"List", testListReservations},
	}
	for seed := range uint64(5) {
		tests = append(tests, struct {
			name string
			fn   func(t *testing.T, s store.Store)
		}{fmt.Sprintf("Place/ThreeRunners/seed-%d", seed), func(t *testing.T, s store.Store) { testThreeRunners(t, s, seed) }})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

const gib = 1 << 30

// pAt is the suite's placement clock: base plus sec seconds.
func pAt(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }

func fullCluster(name string) placement.Cluster {
	return placement.Cluster{
		Name:            name,
		State:           placement.Enabled,
		Capacity:        placement.Resources{MilliCPU: 64_000, Memory: 256 * gib, GPU: map[string]int64{"a100": 8, "t4": 4}},
		Labels:          map[string][]string{"zone": {"eu-1a", "eu-1b"}, "pool": {"gpu"}, "empty": {}},
		PodsPerSecond:   25.5,
		PricePerCPUHour: 0.031,
		PricePerGiBHour: 0.004,
		PricePerGPUHour: map[string]float64{"a100": 2.5, "t4": 0.35},
	}
}

func listClusters(t *testing.T, s store.Store) []placement.Cluster {
	t.Helper()
	cs, err := s.ListClusters(t.Context())
	if err != nil {
		t.Fatalf("ListClusters: %v", err)
	}
	return cs
}

func listQuotas(t *testing.T, s store.Store) []placement.Quota {
	t.Helper()
	qs, err := s.ListQuotas(t.Context())
	if err != nil {
		t.Fatalf("ListQuotas: %v", err)
	}
	return qs
}

func putCluster(t *testing.T, s store.Store, c placement.Cluster) {
	t.Helper()
	if err := s.PutCluster(t.Context(), c); err != nil {
		t.Fatalf("PutCluster(%s): %v", c.Name, err)
	}
}

func putQuota(t *testing.T, s store.Store, q placement.Quota) {
	t.Helper()
	if err := s.PutQuota(t.Context(), q); err != nil {
		t.Fatalf("PutQuota(%s): %v", q.Team, err)
	}
}

func checkEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// wantNotFound checks that err wraps store.ErrNotFound and names name.
func wantNotFound(t *testing.T, what string, err error, name string) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), name) {
		t.Errorf("%s = %v, want an error wrapping ErrNotFound naming %q", what, err, name)
	}
}

// wantRejected checks that err wraps store.ErrRejected and names each of
// names.
func wantRejected(t *testing.T, what string, err error, names ...string) {
	t.Helper()
	if !errors.Is(err, store.ErrRejected) {
		t.Errorf("%s = %v, want an error wrapping ErrRejected", what, err)
		return
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("%s: error %q does not name %q", what, err, n)
		}
	}
}

// testClusters: clusters round-trip field by field (nil labels stay nil,
// empty ones empty), list by name, are replaced whole, keep their record
// under EnsureCluster, change state, and are deleted.
func testClusters(t *testing.T, s store.Store) {
	ctx := t.Context()
	if cs := listClusters(t, s); len(cs) != 0 {
		t.Fatalf("ListClusters of an empty store = %+v", cs)
	}
	b := fullCluster("b-east")
	a := placement.Cluster{Name: "a-west", State: placement.Disabled, Capacity: placement.Resources{MilliCPU: 4000, Memory: 8 * gib}}
	c := placement.Cluster{Name: "c-local", State: placement.Enabled, Capacity: placement.Resources{MilliCPU: 2000},
		Labels: map[string][]string{}}
	for _, cl := range []placement.Cluster{b, a, c} {
		putCluster(t, s, cl)
	}
	checkEqual(t, "ListClusters", listClusters(t, s), []placement.Cluster{a, b, c})

	// Replaced whole: fields not given any more are gone.
	b2 := placement.Cluster{Name: "b-east", State: placement.Enabled, Capacity: placement.Resources{MilliCPU: 1000, Memory: gib}}
	putCluster(t, s, b2)
	checkEqual(t, "ListClusters after replacing b-east", listClusters(t, s), []placement.Cluster{a, b2, c})

	// EnsureCluster keeps what is there and returns it; creates what is not.
	got, err := s.EnsureCluster(ctx, fullCluster("a-west"))
	if err != nil {
		t.Fatalf("EnsureCluster(a-west): %v", err)
	}
	checkEqual(t, "EnsureCluster of a stored cluster", got, a)
	d := fullCluster("d-new")
	if got, err = s.EnsureCluster(ctx, d); err != nil {
		t.Fatalf("EnsureCluster(d-new): %v", err)
	}
	checkEqual(t, "EnsureCluster of a new cluster", got, d)
	checkEqual(t, "ListClusters after EnsureCluster", listClusters(t, s), []placement.Cluster{a, b2, c, d})

	if err := s.SetClusterState(ctx, "a-west", placement.Enabled); err != nil {
		t.Fatalf("SetClusterState: %v", err)
	}
	a.State = placement.Enabled
	wantNotFound(t, "SetClusterState of an unknown cluster", s.SetClusterState(ctx, "nowhere", placement.Disabled), "nowhere")
	wantNotFound(t, "DeleteCluster of an unknown cluster", s.DeleteCluster(ctx, "nowhere"), "nowhere")
	if err := s.DeleteCluster(ctx, "c-local"); err != nil {
		t.Fatalf("DeleteCluster: %v", err)
	}
	wantNotFound(t, "DeleteCluster twice", s.DeleteCluster(ctx, "c-local"), "c-local")
	checkEqual(t, "ListClusters after state change and delete", listClusters(t, s), []placement.Cluster{a, b2, d})
}

// testClustersRefused: bad clusters and states are refused with an error
// naming what is wrong, and leave the stored records as they were.
func testClustersRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	good := fullCluster("east")
	putCluster(t, s, good)
	bad := func(f func(c *placement.Cluster)) placement.Cluster {
		c := fullCluster("east")
		f(&c)
		return c
	}
	for _, tc := range []struct {
		what  string
		c     placement.Cluster
		names []string
	}{
		{"an empty name", bad(func(c *placement.Cluster) { c.Name = "" }), []string{"cluster"}},
		{"an unknown state", bad(func(c *placement.Cluster) { c.State = "paused" }), []string{"east", "paused"}},
		{"no state", bad(func(c *placement.Cluster) { c.State = "" }), []string{"east", "state"}},
		{"negative memory", bad(func(c *placement.Cluster) { c.Capacity.Memory = -1 }), []string{"east", "memory"}},
		{"a negative GPU count", bad(func(c *placement.Cluster) { c.Capacity.GPU["t4"] = -2 }), []string{"east", "t4"}},
		{"a negative price", bad(func(c *placement.Cluster) { c.PricePerCPUHour = -1 }), []string{"east", "price"}},
		{"a NUL in a label value", bad(func(c *placement.Cluster) { c.Labels["zone"] = []string{"a\x00"} }), []string{"east", "zone"}},
	} {
		wantRejected(t, "PutCluster with "+tc.what, s.PutCluster(ctx, tc.c), tc.names...)
		_, err := s.EnsureCluster(ctx, tc.c)
		wantRejected(t, "EnsureCluster with "+tc.what, err, tc.names...)
	}
	wantRejected(t, "SetClusterState to an unknown state", s.SetClusterState(ctx, "east", "off"), "east", "off")
	wantRejected(t, "DeleteCluster of no name", s.DeleteCluster(ctx, ""), "name")
	checkEqual(t, "ListClusters after refused writes", listClusters(t, s), []placement.Cluster{good})
}

// testQuotas: quotas round-trip, list by team, are replaced whole and
// deleted.
func testQuotas(t *testing.T, s store.Store) {
	ctx := t.Context()
	if qs := listQuotas(t, s); len(qs) != 0 {
		t.Fatalf("ListQuotas of an empty store = %+v", qs)
	}
	sim := placement.Quota{Team: "sim", Limit: placement.Resources{MilliCPU: 32_000, Memory: 128 * gib, GPU: map[string]int64{"a100": 4}},
		Clusters: map[string]placement.Resources{"east": {MilliCPU: 8000, GPU: map[string]int64{"a100": 2}}, "west": {}}, Lend: true}
	ml := placement.Quota{Team: "ml", Limit: placement.Resources{MilliCPU: 1000}}
	putQuota(t, s, sim)
	putQuota(t, s, ml)
	checkEqual(t, "ListQuotas", listQuotas(t, s), []placement.Quota{ml, sim})

	sim2 := placement.Quota{Team: "sim", Limit: placement.Resources{Memory: gib}}
	putQuota(t, s, sim2)
	checkEqual(t, "ListQuotas after replacing sim", listQuotas(t, s), []placement.Quota{ml, sim2})

	if err := s.DeleteQuota(ctx, "ml"); err != nil {
		t.Fatalf("DeleteQuota: %v", err)
	}
	wantNotFound(t, "DeleteQuota twice", s.DeleteQuota(ctx, "ml"), "ml")
	checkEqual(t, "ListQuotas after delete", listQuotas(t, s), []placement.Quota{sim2})
}

// testQuotasRefused: bad quotas are refused naming what is wrong and
// leave the stored quota as it was.
func testQuotasRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	good := placement.Quota{Team: "sim", Limit: placement.Resources{MilliCPU: 4000, Memory: 4 * gib}}
	putQuota(t, s, good)
	for _, tc := range []struct {
		what  string
		q     placement.Quota
		names []string
	}{
		{"no team", placement.Quota{Limit: good.Limit}, []string{"team"}},
		{"negative cpu", placement.Quota{Team: "sim", Limit: placement.Resources{MilliCPU: -1}}, []string{"sim", "cpu"}},
		{"a split over the limit", placement.Quota{Team: "sim", Limit: good.Limit,
			Clusters: map[string]placement.Resources{"east": {MilliCPU: 5000}}}, []string{"sim", "east", "cpu"}},
	} {
		wantRejected(t, "PutQuota with "+tc.what, s.PutQuota(ctx, tc.q), tc.names...)
	}
	wantRejected(t, "DeleteQuota of no team", s.DeleteQuota(ctx, ""), "team")
	checkEqual(t, "ListQuotas after refused writes", listQuotas(t, s), []placement.Quota{good})
}

// resv is a reservation of the suite: one core and 1 GiB in cluster,
// created at pAt(0) and expiring at pAt(60).
func resv(id, team, cluster string) placement.Reservation {
	return placement.Reservation{ID: id, Team: team, Job: "job-" + team, Cluster: cluster,
		Resources: placement.Resources{MilliCPU: 1000, Memory: gib}, Holder: "runner-a", Created: pAt(0), ExpiresAt: pAt(60)}
}

// insert stores rs with a Place at now that decides nothing else.
func insert(t *testing.T, s store.Store, now time.Time, rs ...placement.Reservation) {
	t.Helper()
	err := s.Place(t.Context(), now, func(*placement.Snapshot) (store.PlaceWrite, error) {
		return store.PlaceWrite{Insert: rs}, nil
	})
	if err != nil {
		t.Fatalf("Place inserting %d reservations: %v", len(rs), err)
	}
}

func listResv(t *testing.T, s store.Store, f store.ReservationFilter) []placement.Reservation {
	t.Helper()
	rs, err := s.ListReservations(t.Context(), f)
	if err != nil {
		t.Fatalf("ListReservations(%+v): %v", f, err)
	}
	return rs
}

func resvIDs(rs []placement.Reservation) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	return ids
}

// testDraining: putting or setting a cluster to draining marks every
// reservation there for reclaim, and no other.
func testDraining(t *testing.T, s store.Store) {
	ctx := t.Context()
	east, west := fullCluster("east"), fullCluster("west")
	putCluster(t, s, east)
	putCluster(t, s, west)
	insert(t, s, pAt(0), resv("e1", "sim", "east"), resv("e2", "ml", "east"), resv("w1", "sim", "west"))
	reclaimOnly := store.ReservationFilter{ReclaimOnly: true}
	if got := resvIDs(listResv(t, s, reclaimOnly)); len(got) != 0 {
		t.Fatalf("reservations marked before any drain: %v", got)
	}
	if err := s.SetClusterState(ctx, "east", placement.Disabled); err != nil {
		t.Fatal(err)
	}
	if got := resvIDs(listResv(t, s, reclaimOnly)); len(got) != 0 {
		t.Errorf("disabling a cluster marked %v for reclaim, want none", got)
	}
	if err := s.SetClusterState(ctx, "east", placement.Draining); err != nil {
		t.Fatal(err)
	}
	checkEqual(t, "marked after draining east", resvIDs(listResv(t, s, reclaimOnly)), []string{"e1", "e2"})
	west.State = placement.Draining
	putCluster(t, s, west)
	checkEqual(t, "marked after putting west draining", resvIDs(listResv(t, s, reclaimOnly)), []string{"e1", "e2", "w1"})
	// A new record of a name whose reservations outlived its old record.
	insert(t, s, pAt(1), resv("g1", "sim", "gone"))
	gone := fullCluster("gone")
	gone.State = placement.Draining
	if _, err := s.EnsureCluster(ctx, gone); err != nil {
		t.Fatal(err)
	}
	checkEqual(t, "marked after ensuring gone draining", resvIDs(listResv(t, s, reclaimOnly)), []string{"e1", "e2", "g1", "w1"})
}

// testPlaceSnapshot: decide sees every cluster, quota, the live usage
// summed per team, cluster and borrowed (GPU types merged), and the
// borrowed reservations, oldest first; what it returns is committed,
// reclaim marks included.
func testPlaceSnapshot(t *testing.T, s store.Store) {
	ctx := t.Context()
	east, west := fullCluster("east"), fullCluster("west")
	putCluster(t, s, west)
	putCluster(t, s, east)
	q := placement.Quota{Team: "sim", Limit: placement.Resources{MilliCPU: 8000}}
	putQuota(t, s, q)

	a100 := resv("a", "sim", "east")
	a100.Resources.GPU = map[string]int64{"a100": 2}
	t4 := resv("b", "sim", "east")
	t4.Resources.GPU = map[string]int64{"t4": 1}
	b1 := resv("c", "ml", "east")
	b1.Borrowed = true
	b2 := resv("d", "ml", "west")
	b2.Borrowed, b2.Created = true, pAt(-5)
	plain := resv("e", "ml", "east")
	plain.Created = time.Time{} // not known: comes first
	insert(t, s, pAt(0), a100, t4, b1, b2, plain)

	var snap *placement.Snapshot
	err := s.Place(ctx, pAt(1), func(sn *placement.Snapshot) (store.PlaceWrite, error) {
		snap = sn
		return store.PlaceWrite{Reclaim: []string{"c", "unknown"}}, nil
	})
	if err != nil {
		t.Fatalf("Place: %v", err)
	}
	checkEqual(t, "snapshot clusters", snap.Clusters, []placement.Cluster{east, west})
	checkEqual(t, "snapshot quotas", snap.Quotas, []placement.Quota{q})
	checkEqual(t, "snapshot usage", snap.Usage, []placement.Usage{
		{Team: "ml", Cluster: "east", Held: placement.Resources{MilliCPU: 1000, Memory: gib}, Workers: 1},
		{Team: "ml", Cluster: "east", Borrowed: true, Held: placement.Resources{MilliCPU: 1000, Memory: gib}, Workers: 1},
		{Team: "ml", Cluster: "west", Borrowed: true, Held: placement.Resources{MilliCPU: 1000, Memory: gib}, Workers: 1},
		{Team: "sim", Cluster: "east", Held: placement.Resources{MilliCPU: 2000, Memory: 2 * gib, GPU: map[string]int64{"a100": 2, "t4": 1}}, Workers: 2},
	})
	checkReservations(t, "snapshot borrowed", snap.Borrowed, []placement.Reservation{b2, b1})
	usage, err := s.PlacementUsage(ctx, pAt(1))
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, "PlacementUsage", usage, snap.Usage)

	b1.Reclaim = true
	checkReservations(t, "every reservation after the reclaim mark", listResv(t, s, store.ReservationFilter{}),
		[]placement.Reservation{plain, b2, a100, t4, b1})
}

// checkReservations compares reservations field by field, times by
// instant.
func checkReservations(t *testing.T, what string, got, want []placement.Reservation) {
	t.Helper()
	norm := func(rs []placement.Reservation) []placement.Reservation {
		out := slices.Clone(rs)
		for i := range out {
			if !out[i].Created.IsZero() {
				out[i].Created = out[i].Created.UTC()
			}
			out[i].ExpiresAt = out[i].ExpiresAt.UTC()
		}
		return out
	}
	checkEqual(t, what, norm(got), norm(want))
}

// testPlaceExpiry: a reservation expired at a Place's now is deleted by
// it, before decide reads; until then it is listed but not counted in
// PlacementUsage.
func testPlaceExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	putCluster(t, s, fullCluster("east"))
	short := resv("short", "sim", "east")
	short.ExpiresAt = pAt(10)
	long := resv("long", "sim", "east")
	long.ExpiresAt = pAt(100)
	insert(t, s, pAt(0), short, long)

	usage, err := s.PlacementUsage(ctx, pAt(10))
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, "PlacementUsage at the expiry of one", usage, []placement.Usage{
		{Team: "sim", Cluster: "east", Held: placement.Resources{MilliCPU: 1000, Memory: gib}, Workers: 1}})
	checkEqual(t, "listed before a Place", resvIDs(listResv(t, s, store.ReservationFilter{})), []string{"long", "short"})

	var seen []placement.Usage
	err = s.Place(ctx, pAt(10), func(sn *placement.Snapshot) (store.PlaceWrite, error) {
		seen = sn.Usage
		return store.PlaceWrite{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkEqual(t, "usage seen by decide", seen, usage)
	checkEqual(t, "listed after a Place", resvIDs(listResv(t, s, store.ReservationFilter{})), []string{"long"})
}

// testPlaceClaims: claims a Place writes are in the next snapshot,
// replaced by ID, dropped on request and deleted once expired; a claim
// the store cannot hold is refused whole.
func testPlaceClaims(t *testing.T, s store.Store) {
	ctx := t.Context()
	putCluster(t, s, fullCluster("east"))
	claim := func(id string, expires int) placement.Claim {
		return placement.Claim{ID: id, Team: "ml", Job: "j1", Cluster: "east",
			Resources: placement.Resources{MilliCPU: 1000, Memory: gib, GPU: map[string]int64{"a100": 1}}, ExpiresAt: pAt(expires).UTC()}
	}
	place := func(now int, w store.PlaceWrite) []placement.Claim {
		t.Helper()
		var seen []placement.Claim
		if err := s.Place(ctx, pAt(now), func(sn *placement.Snapshot) (store.PlaceWrite, error) {
			seen = sn.Claims
			return w, nil
		}); err != nil {
			t.Fatal(err)
		}
		return seen
	}
	place(0, store.PlaceWrite{Claims: []placement.Claim{claim("a", 10), claim("b", 20), claim("c", 30)}})
	checkEqual(t, "claims seen after they were written", place(1, store.PlaceWrite{
		Claims: []placement.Claim{claim("b", 25)}, DropClaims: []string{"c", "unknown"}}),
		[]placement.Claim{claim("a", 10), claim("b", 20), claim("c", 30)})
	checkEqual(t, "claims after a replace and a drop", place(2, store.PlaceWrite{}),
		[]placement.Claim{claim("a", 10), claim("b", 25)})
	checkEqual(t, "claims once one expired", place(10, store.PlaceWrite{}), []placement.Claim{claim("b", 25)})

	bad := claim("", 40)
	err := s.Place(ctx, pAt(11), func(*placement.Snapshot) (store.PlaceWrite, error) {
		return store.PlaceWrite{Claims: []placement.Claim{claim("d", 40), bad}, DropClaims: []string{"b"}}, nil
	})
	wantRejected(t, "a claim without an ID", err, "claim ID")
	checkEqual(t, "claims after a refused write", place(12, store.PlaceWrite{}), []placement.Claim{claim("b", 25)})
}

// testPlaceRefused: a write the store cannot hold is refused whole with an
// error naming the reservation; an error of decide comes back as it is;
// neither writes anything.
func testPlaceRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	insert(t, s, pAt(0), resv("taken", "sim", "east"))
	ok := resv("fine", "sim", "east")
	bad := func(id string, f func(r *placement.Reservation)) placement.Reservation {
		r := resv(id, "sim", "east")
		f(&r)
		return r
	}
	for _, tc := range []struct {
		what  string
		r     placement.Reservation
		names []string
	}{
		{"an ID in use", resv("taken", "ml", "west"), []string{"taken"}},
		{"no ID", bad("", func(*placement.Reservation) {}), []string{"ID"}},
		{"no team", bad("r1", func(r *placement.Reservation) { r.Team = "" }), []string{"r1", "team"}},
		{"no cluster", bad("r2", func(r *placement.Reservation) { r.Cluster = "" }), []string{"r2", "cluster"}},
		{"no holder", bad("r3", func(r *placement.Reservation) { r.Holder = "" }), []string{"r3", "holder"}},
		{"negative memory", bad("r4", func(r *placement.Reservation) { r.Resources.Memory = -1 }), []string{"r4", "memory"}},
		{"a negative GPU count", bad("r5", func(r *placement.Reservation) { r.Resources.GPU = map[string]int64{"t4": -1} }), []string{"r5", "t4"}},
		{"two GPU types", bad("r6", func(r *placement.Reservation) { r.Resources.GPU = map[string]int64{"t4": 1, "a100": 1} }), []string{"r6", "a100", "t4"}},
		{"no expiry", bad("r7", func(r *placement.Reservation) { r.ExpiresAt = time.Time{} }), []string{"r7", "expiry"}},
	} {
		err := s.Place(ctx, pAt(1), func(*placement.Snapshot) (store.PlaceWrite, error) {
			return store.PlaceWrite{Insert: []placement.Reservation{ok, tc.r}, Reclaim: []string{"taken"}}, nil
		})
		wantRejected(t, "Place of a reservation with "+tc.what, err, tc.names...)
	}
	err := s.Place(ctx, pAt(1), func(*placement.Snapshot) (store.PlaceWrite, error) {
		return store.PlaceWrite{Insert: []placement.Reservation{ok, ok}}, nil
	})
	wantRejected(t, "Place of one reservation twice", err, "fine")

	errDecide := errors.New("the core gave up")
	err = s.Place(ctx, pAt(1), func(*placement.Snapshot) (store.PlaceWrite, error) {
		return store.PlaceWrite{Insert: []placement.Reservation{ok}}, errDecide
	})
	if err != errDecide {
		t.Errorf("Place whose decide failed = %v, want decide's error as it is", err)
	}
	err = s.Place(ctx, time.Time{}, func(*placement.Snapshot) (store.PlaceWrite, error) {
		t.Error("decide called for a Place at the zero time")
		return store.PlaceWrite{}, nil
	})
	wantRejected(t, "Place at the zero time", err, "now")

	want := resv("taken", "sim", "east")
	checkReservations(t, "reservations after refused places", listResv(t, s, store.ReservationFilter{}), []placement.Reservation{want})
}

// testRenewReservations: renewal moves holder and expiry, returns the IDs
// marked for reclaim and those not found (never made, expired and
// deleted), each once in the order given.
func testRenewReservations(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b, c := resv("a", "sim", "east"), resv("b", "sim", "east"), resv("c", "ml", "east")
	c.Borrowed = true
	gone := resv("gone", "sim", "east")
	gone.ExpiresAt = pAt(5)
	insert(t, s, pAt(0), a, b, c, gone)
	err := s.Place(ctx, pAt(10), func(*placement.Snapshot) (store.PlaceWrite, error) {
		return store.PlaceWrite{Reclaim: []string{"c"}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	reclaim, missing, err := s.RenewReservations(ctx, "runner-b", []string{"c", "never", "a", "gone", "c", "never"}, pAt(200))
	if err != nil {
		t.Fatalf("RenewReservations: %v", err)
	}
	checkEqual(t, "reclaim", reclaim, []string{"c"})
	checkEqual(t, "missing", missing, []string{"never", "gone"})

	a.Holder, a.ExpiresAt = "runner-b", pAt(200)
	c.Holder, c.ExpiresAt, c.Reclaim = "runner-b", pAt(200), true
	checkReservations(t, "held by runner-b", listResv(t, s, store.ReservationFilter{Holder: "runner-b"}), []placement.Reservation{a, c})
	checkReservations(t, "held by runner-a", listResv(t, s, store.ReservationFilter{Holder: "runner-a"}), []placement.Reservation{b})

	if reclaim, missing, err = s.RenewReservations(ctx, "runner-b", nil, pAt(300)); err != nil || reclaim != nil || missing != nil {
		t.Errorf("RenewReservations of nothing = %v, %v, %v; want nothing", reclaim, missing, err)
	}
	_, _, err = s.RenewReservations(ctx, "", []string{"a"}, pAt(300))
	wantRejected(t, "RenewReservations with no holder", err, "holder")
	_, _, err = s.RenewReservations(ctx, "runner-b", []string{"a"}, time.Time{})
	wantRejected(t, "RenewReservations with no expiry", err, "expiry")
	_, _, err = s.RenewReservations(ctx, "runner-b", []string{"a", ""}, pAt(300))
	wantRejected(t, "RenewReservations of an empty ID", err, "ID")
	checkReservations(t, "held by runner-b after refused renewals", listResv(t, s, store.ReservationFilter{Holder: "runner-b"}), []placement.Reservation{a, c})
}

// testRenewLarge: a renewal of more IDs than one statement carries
// renews every one that exists and reports the rest missing.
func testRenewLarge(t *testing.T, s store.Store) {
	ctx := t.Context()
	var rs []placement.Reservation
	var ids []string
	for i := range 25_000 {
		id := fmt.Sprintf("w-%05d", i)
		ids = append(ids, id)
		if i%1000 == 999 {
			rs = append(rs, resv(id, "sim", "east"))
		}
	}
	insert(t, s, pAt(0), rs...)
	reclaim, missing, err := s.RenewReservations(ctx, "runner-b", ids, pAt(100))
	if err != nil {
		t.Fatalf("RenewReservations of %d IDs: %v", len(ids), err)
	}
	if len(reclaim) != 0 || len(missing) != len(ids)-len(rs) {
		t.Fatalf("RenewReservations of %d IDs, %d stored: %d to reclaim, %d missing", len(ids), len(rs), len(reclaim), len(missing))
	}
	if got := listResv(t, s, store.ReservationFilter{Holder: "runner-b"}); len(got) != len(rs) {
		t.Errorf("%d reservations renewed, want %d", len(got), len(rs))
	}
	if err := s.ReleaseReservations(ctx, ids); err != nil {
		t.Fatalf("ReleaseReservations of %d IDs: %v", len(ids), err)
	}
	if got := listResv(t, s, store.ReservationFilter{}); len(got) != 0 {
		t.Errorf("%d reservations left after releasing all", len(got))
	}
}

// testReleaseReservations: release deletes the given reservations and
// ignores unknown IDs.
func testReleaseReservations(t *testing.T, s store.Store) {
	ctx := t.Context()
	insert(t, s, pAt(0), resv("a", "sim", "east"), resv("b", "sim", "east"), resv("c", "sim", "east"))
	if err := s.ReleaseReservations(ctx, []string{"b", "never"}); err != nil {
		t.Fatalf("ReleaseReservations: %v", err)
	}
	if err := s.ReleaseReservations(ctx, nil); err != nil {
		t.Fatalf("ReleaseReservations of nothing: %v", err)
	}
	wantRejected(t, "ReleaseReservations of an empty ID", s.ReleaseReservations(ctx, []string{"a", ""}), "ID")
	checkEqual(t, "after release", resvIDs(listResv(t, s, store.ReservationFilter{})), []string{"a", "c"})
}

// testListReservations: each filter field selects, reclaim-only too, the
// limit caps, and the order is oldest first, then by ID.
func testListReservations(t *testing.T, s store.Store) {
	var rs []placement.Reservation
	for i := range 12 {
		r := resv(fmt.Sprintf("r%02d", i), []string{"sim", "ml"}[i%2], []string{"east", "west", "north"}[i%3])
		r.Job = fmt.Sprintf("job-%d", i%4)
		r.Holder = []string{"runner-a", "runner-b"}[i/6]
		r.Created = pAt(100 - i) // later IDs are older
		r.Borrowed = i%5 == 0
		r.ExpiresAt = pAt(1000 + i) // later IDs expire later
		rs = append(rs, r)
	}
	insert(t, s, pAt(0), rs...)
	err := s.Place(t.Context(), pAt(1), func(*placement.Snapshot) (store.PlaceWrite, error) {
		return store.PlaceWrite{Reclaim: []string{"r00", "r05", "r10"}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := func(keep func(i int) bool, limit int) []string {
		var ids []string
		for i := 11; i >= 0; i-- {
			if keep(i) && (limit == 0 || len(ids) < limit) {
				ids = append(ids, fmt.Sprintf("r%02d", i))
			}
		}
		return ids
	}
	for _, tc := range []struct {
		f    store.ReservationFilter
		keep func(i int) bool
	}{
		{store.ReservationFilter{}, func(int) bool { return true }},
		{store.ReservationFilter{Team: "ml"}, func(i int) bool { return i%2 == 1 }},
		{store.ReservationFilter{Cluster: "west"}, func(i int) bool { return i%3 == 1 }},
		{store.ReservationFilter{Job: "job-2"}, func(i int) bool { return i%4 == 2 }},
		{store.ReservationFilter{Holder: "runner-b"}, func(i int) bool { return i >= 6 }},
		{store.ReservationFilter{ReclaimOnly: true}, func(i int) bool { return i%5 == 0 }},
		{store.ReservationFilter{Team: "sim", Cluster: "east", Holder: "runner-a"}, func(i int) bool { return i%6 == 0 && i < 6 }},
		{store.ReservationFilter{Team: "nobody"}, func(int) bool { return false }},
		{store.ReservationFilter{Limit: 5}, func(int) bool { return true }},
		{store.ReservationFilter{Team: "sim", Limit: 2}, func(i int) bool { return i%2 == 0 }},
		{store.ReservationFilter{ExpiresBefore: pAt(1003)}, func(i int) bool { return i <= 3 }},
		{store.ReservationFilter{ExpiresBefore: pAt(1007), Holder: "runner-b"}, func(i int) bool { return i >= 6 && i <= 7 }},
	} {
		got := resvIDs(listResv(t, s, tc.f))
		checkEqual(t, fmt.Sprintf("ListReservations(%+v)", tc.f), got, want(tc.keep, tc.f.Limit))
	}
	_, err = s.ListReservations(t.Context(), store.ReservationFilter{Team: "a\x00b"})
	wantRejected(t, "ListReservations with a NUL in the team", err, "team")
}

// runnerState is what one runner of testThreeRunners knows: the
// reservations it holds.
type runnerState struct {
	name string
	held map[string]placement.Reservation
}

// testThreeRunners is the property: 100 placement requests from
// three runners at once, against random clusters and quotas, never put a
// team's own reservations over its quota (or a split) nor a cluster's
// reservations over its capacity, in any transaction's view nor after;
// and once runners release what their workers give back (reclaimed ones
// included), drain a cluster and one runner dies, every reservation is
// released by its holder or deleted on expiry: none is left that no
// runner holds.
func testThreeRunners(t *testing.T, s store.Store, seed uint64) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(seed, 14))
	gpuTypes := []string{"a100", "t4"}

	// Clusters: 24 cores in all at most, so that 100 requests of at least
	// a quarter core each cannot all fit.
	var clusters []placement.Cluster
	for i := range 3 {
		c := placement.Cluster{Name: fmt.Sprintf("cluster-%d", i), State: placement.Enabled,
			Capacity: placement.Resources{MilliCPU: int64(4000 + rng.IntN(5)*1000), Memory: int64(8+rng.IntN(8)) * gib}}
		if rng.IntN(2) == 0 {
			c.Capacity.GPU = map[string]int64{gpuTypes[rng.IntN(2)]: int64(1 + rng.IntN(4))}
		}
		if i == 2 && rng.IntN(2) == 0 {
			c.State = placement.Disabled
		}
		clusters = append(clusters, c)
		putCluster(t, s, c)
	}
	// Quotas: teams 0 to 2 have one (some lend, some split), team 3 has
	// none and may only borrow.
	teams := []string{"team-0", "team-1", "team-2", "team-3"}
	quotas := map[string]placement.Quota{}
	for _, team := range teams[:3] {
		q := placement.Quota{Team: team, Lend: rng.IntN(2) == 0,
			Limit: placement.Resources{MilliCPU: int64(3000 + rng.IntN(4)*1000), Memory: int64(2+rng.IntN(6)) * gib,
				GPU: map[string]int64{gpuTypes[rng.IntN(2)]: int64(rng.IntN(3))}}}
		if rng.IntN(2) == 0 {
			q.Clusters = map[string]placement.Resources{clusters[rng.IntN(3)].Name: {MilliCPU: q.Limit.MilliCPU / 2}}
		}
		quotas[team] = q
		putQuota(t, s, q)
	}
	qs := listQuotas(t, s)

	// Requests: 100, dealt to three runners, which ask in batches of 1 to
	// 5, each batch one Place.
	runners := []*runnerState{{name: "runner-0"}, {name: "runner-1"}, {name: "runner-2"}}
	reqs := make([][]placement.Request, len(runners))
	for i := range 100 {
		r := placement.Request{ID: fmt.Sprintf("w-%03d", i), Team: teams[rng.IntN(len(teams))], Created: pAt(0),
			Resources: placement.Resources{MilliCPU: int64(250 + rng.IntN(3)*250), Memory: int64(1+rng.IntN(2)) * gib / 4}}
		r.Job = "job-" + r.Team
		if rng.IntN(4) == 0 {
			r.Resources.GPU = map[string]int64{gpuTypes[rng.IntN(2)]: 1}
		}
		reqs[i%len(runners)] = append(reqs[i%len(runners)], r)
	}
	const ttl = 60 * time.Second
	check := func(what string, usage []placement.Usage) {
		t.Helper()
		for _, msg := range boundsBroken(clusters, quotas, usage) {
			t.Errorf("seed %d, %s: %s", seed, what, msg)
		}
	}

	var mu sync.Mutex
	placed, refused := 0, 0
	marked := map[string]bool{} // reservations the core marked for reclaim
	var wg sync.WaitGroup
	for ri, run := range runners {
		run.held = map[string]placement.Reservation{}
		batches := splitBatches(reqs[ri], rand.New(rand.NewPCG(seed, uint64(ri))))
		wg.Go(func() {
			for bi, batch := range batches {
				now := pAt(bi) // each runner's clock moves a second per batch
				var results []placement.Result
				var reclaim []string
				err := s.Place(ctx, now, func(sn *placement.Snapshot) (store.PlaceWrite, error) {
					checkEqual(t, "quotas in a snapshot", sn.Quotas, qs)
					before := cloneUsage(sn.Usage)
					check(fmt.Sprintf("%s batch %d, the snapshot", run.name, bi), before)
					results, reclaim = placement.Place(sn, batch, now)
					w := store.PlaceWrite{Reclaim: reclaim, Claims: sn.ClaimsMade, DropClaims: sn.ClaimsDropped}
					after := before
					for _, res := range results {
						if res.Placed {
							r := res.Reservation
							r.Holder, r.ExpiresAt = run.name, now.Add(ttl)
							w.Insert = append(w.Insert, r)
							after = addUsage(after, r)
						}
					}
					check(fmt.Sprintf("%s batch %d, after deciding", run.name, bi), after)
					return w, nil
				})
				if err != nil {
					t.Errorf("seed %d: %s: Place of batch %d: %v", seed, run.name, bi, err)
					return
				}
				mu.Lock()
				for _, id := range reclaim {
					marked[id] = true
				}
				for _, res := range results {
					if res.Placed {
						r := res.Reservation
						r.Holder, r.ExpiresAt = run.name, now.Add(ttl)
						run.held[r.ID] = r
						placed++
					} else {
						refused++
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("seed %d: %d placed, %d refused, %d borrowed marked for reclaim", seed, placed, refused, len(marked))
	if placed == 0 || refused == 0 {
		t.Fatalf("seed %d: %d placed, %d refused; want some of each (100 requests of a quarter core or more, at most 24 cores)", seed, placed, refused)
	}

	// Afterwards, read back: the stored reservations are exactly those the
	// runners were given, and their usage keeps every bound.
	// Each runner's clock moved a second per batch: at most 34 of them.
	now := pAt(40)
	usage, err := s.PlacementUsage(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	check("PlacementUsage after the placements", usage)
	stored := listResv(t, s, store.ReservationFilter{})
	var storedUsage []placement.Usage
	for _, r := range stored {
		storedUsage = addUsage(storedUsage, r)
	}
	checkEqual(t, "PlacementUsage against the listed reservations", sortUsage(usage), sortUsage(storedUsage))
	var given []string
	for _, run := range runners {
		given = slices.AppendSeq(given, maps.Keys(run.held))
	}
	slices.Sort(given)
	storedIDs := resvIDs(stored)
	slices.Sort(storedIDs)
	checkEqual(t, "stored reservations against those placed", storedIDs, given)
	for _, r := range stored {
		if r.Reclaim != marked[r.ID] {
			t.Errorf("seed %d: reservation %s stored with reclaim %v, but the core marked it: %v", seed, r.ID, r.Reclaim, marked[r.ID])
		}
		if marked[r.ID] && !r.Borrowed {
			t.Errorf("seed %d: reservation %s is owned and marked for reclaim", seed, r.ID)
		}
	}

	// Workers end: runner-0's release a third of theirs. A cluster
	// drains. runner-0 and runner-1 renew: their workers marked for
	// reclaim (borrowed ones an owner wanted back, those in the drained
	// cluster) finish and release theirs. runner-2 dies and renews
	// nothing.
	var ended []string
	for _, id := range slices.Sorted(maps.Keys(runners[0].held)) {
		if rng.IntN(3) == 0 {
			ended = append(ended, id)
		}
	}
	releaseHeld(t, s, runners[0], ended)
	renewedTo := pAt(200)
	drained := clusters[rng.IntN(len(clusters))].Name
	if err := s.SetClusterState(ctx, drained, placement.Draining); err != nil {
		t.Fatal(err)
	}
	for _, run := range runners[:2] {
		ids := slices.Sorted(maps.Keys(run.held))
		reclaim, missing, err := s.RenewReservations(ctx, run.name, ids, renewedTo)
		if err != nil {
			t.Fatalf("%s: RenewReservations: %v", run.name, err)
		}
		if len(missing) != 0 {
			t.Errorf("seed %d: %s renewing before any expiry: missing %v", seed, run.name, missing)
		}
		for _, id := range ids {
			r := run.held[id]
			if want := r.Cluster == drained || marked[id]; want != slices.Contains(reclaim, id) {
				t.Errorf("seed %d: %s: reservation %s (in %s, marked by the core: %v) to reclaim: %v, want %v", seed, run.name, id, r.Cluster, marked[id], !want, want)
			}
		}
		releaseHeld(t, s, run, reclaim)
	}

	// A later placement, after runner-2's reservations expired and
	// before the others' did, deletes runner-2's and sees only the rest.
	later := pAt(150)
	err = s.Place(ctx, later, func(sn *placement.Snapshot) (store.PlaceWrite, error) {
		check("the snapshot after the expiry", sn.Usage)
		return store.PlaceWrite{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if dead := listResv(t, s, store.ReservationFilter{Holder: runners[2].name}); len(dead) != 0 {
		t.Errorf("seed %d: %d reservations of the dead runner left after their expiry: %v", seed, len(dead), resvIDs(dead))
	}
	runners[2].held = nil
	// Every reservation left is held, unexpired, by a live runner that
	// knows it, and none is marked for reclaim that its runner did not
	// release.
	var live []string
	for _, run := range runners[:2] {
		live = slices.AppendSeq(live, maps.Keys(run.held))
	}
	slices.Sort(live)
	left := listResv(t, s, store.ReservationFilter{})
	for _, r := range left {
		run := runners[0]
		if r.Holder == runners[1].name {
			run = runners[1]
		}
		if _, ok := run.held[r.ID]; !ok || r.Holder != run.name || !r.ExpiresAt.After(later) {
			t.Errorf("seed %d: reservation %s (holder %q, expires %v) is held by no live runner", seed, r.ID, r.Holder, r.ExpiresAt)
		}
		if r.Cluster == drained {
			t.Errorf("seed %d: reservation %s in drained %s outlived its reclaim", seed, r.ID, drained)
		}
	}
	leftIDs := resvIDs(left)
	slices.Sort(leftIDs)
	checkEqual(t, "reservations left against those the live runners hold", leftIDs, live)

	// The live runners' workers end: nothing is left.
	for _, run := range runners[:2] {
		releaseHeld(t, s, run, slices.Sorted(maps.Keys(run.held)))
	}
	if left := listResv(t, s, store.ReservationFilter{}); len(left) != 0 {
		t.Errorf("seed %d: %d reservations left after every worker ended: %v", seed, len(left), resvIDs(left))
	}
}

// splitBatches deals reqs into batches of 1 to 5 requests.
func splitBatches(reqs []placement.Request, rng *rand.Rand) [][]placement.Request {
	var out [][]placement.Request
	for len(reqs) > 0 {
		n := min(len(reqs), 1+rng.IntN(5))
		out = append(out, reqs[:n])
		reqs = reqs[n:]
	}
	return out
}

// releaseHeld releases ids for run and forgets them.
func releaseHeld(t *testing.T, s store.Store, run *runnerState, ids []string) {
	t.Helper()
	if err := s.ReleaseReservations(t.Context(), ids); err != nil {
		t.Fatalf("%s: ReleaseReservations: %v", run.name, err)
	}
	for _, id := range ids {
		delete(run.held, id)
	}
}

func cloneUsage(us []placement.Usage) []placement.Usage {
	out := slices.Clone(us)
	for i := range out {
		out[i].Held.GPU = maps.Clone(out[i].Held.GPU)
	}
	return out
}

// addUsage adds r to us, in a new entry for its team, cluster and
// borrowed flag if there is none.
func addUsage(us []placement.Usage, r placement.Reservation) []placement.Usage {
	for i := range us {
		if us[i].Team == r.Team && us[i].Cluster == r.Cluster && us[i].Borrowed == r.Borrowed {
			us[i].Held = us[i].Held.Add(r.Resources)
			us[i].Workers++
			return us
		}
	}
	return append(us, placement.Usage{Team: r.Team, Cluster: r.Cluster, Borrowed: r.Borrowed, Held: placement.Resources{}.Add(r.Resources), Workers: 1})
}

func sortUsage(us []placement.Usage) []placement.Usage {
	out := slices.Clone(us)
	slices.SortFunc(out, func(a, b placement.Usage) int {
		if c := strings.Compare(a.Team, b.Team); c != 0 {
			return c
		}
		if c := strings.Compare(a.Cluster, b.Cluster); c != 0 {
			return c
		}
		switch {
		case a.Borrowed == b.Borrowed:
			return 0
		case b.Borrowed:
			return -1
		}
		return 1
	})
	return out
}

// boundsBroken lists how usage breaks the bounds: a team's own
// reservations over its quota's limit or a split, a team without a quota
// owning anything, a cluster's reservations over its capacity.
func boundsBroken(clusters []placement.Cluster, quotas map[string]placement.Quota, usage []placement.Usage) []string {
	owned := map[string]placement.Resources{}
	ownedIn := map[[2]string]placement.Resources{}
	inCluster := map[string]placement.Resources{}
	for _, u := range usage {
		inCluster[u.Cluster] = inCluster[u.Cluster].Add(u.Held)
		if !u.Borrowed {
			owned[u.Team] = owned[u.Team].Add(u.Held)
			ownedIn[[2]string{u.Team, u.Cluster}] = ownedIn[[2]string{u.Team, u.Cluster}].Add(u.Held)
		}
	}
	var out []string
	for _, team := range slices.Sorted(maps.Keys(owned)) {
		q, ok := quotas[team]
		if name := owned[team].Exceeds(q.Limit); name != "" {
			out = append(out, fmt.Sprintf("team %s owns %s, over its limit %s (has a quota: %v)", team, owned[team], q.Limit, ok))
		}
		for c, split := range q.Clusters {
			if name := ownedIn[[2]string{team, c}].Exceeds(split); name != "" {
				out = append(out, fmt.Sprintf("team %s owns %s in %s, over its split %s", team, ownedIn[[2]string{team, c}], c, split))
			}
		}
	}
	for _, c := range clusters {
		if name := inCluster[c.Name].Exceeds(c.Capacity); name != "" {
			out = append(out, fmt.Sprintf("cluster %s holds %s, over its capacity %s", c.Name, inCluster[c.Name], c.Capacity))
		}
	}
	return out
}
