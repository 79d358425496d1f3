package runner_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
)

// placedBackend is the in-process backend with clusters: every start asks
// placement, and the backend records where each worker was placed.
type placedBackend struct {
	*inProcBackend
	clusters []runner.BackendCluster
	mu       sync.Mutex
	placed   map[string]string // worker → cluster
	// hold: workers are placed but never started (they stay starting).
	hold bool
}

func (b *placedBackend) PlacementClusters() []runner.BackendCluster { return b.clusters }

func (b *placedBackend) StartWorker(ctx context.Context, s runner.WorkerSpec) error {
	if s.Cluster == "" {
		return fmt.Errorf("worker %s: no cluster from placement", s.ID)
	}
	b.mu.Lock()
	b.placed[s.ID] = s.Cluster
	hold := b.hold
	b.mu.Unlock()
	if hold {
		return nil
	}
	return b.inProcBackend.StartWorker(ctx, s)
}

// setupPlaced starts a runner whose backend has the given clusters, and
// stores the quotas before the runner starts.
func setupPlaced(t *testing.T, clusters []placement.Cluster, quotas []placement.Quota, tune func(*runner.Config)) (*bundle, *placedBackend) {
	t.Helper()
	dir := t.TempDir()
	in := &inProcBackend{t: t, dir: dir, cancels: map[string]context.CancelFunc{}}
	pb := &placedBackend{inProcBackend: in, placed: map[string]string{}}
	for _, c := range clusters {
		pb.clusters = append(pb.clusters, runner.BackendCluster{Cluster: c})
	}
	// Registered before serve's, so it runs after the runner has stopped:
	// no worker can start (wg.Add) while it waits.
	t.Cleanup(func() {
		in.killAll()
		in.wg.Wait()
	})
	b, _ := serve(t, dir, pb, runner.Config{
		MaxWorkers: 8, ScanInterval: 50 * time.Millisecond, IdleTimeout: 200 * time.Millisecond,
		Sched: sched.Config{BackoffBase: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond},
	}, func(cfg *runner.Config) {
		for _, q := range quotas {
			if err := cfg.Store.PutQuota(context.Background(), q); err != nil {
				t.Fatal(err)
			}
		}
		tune(cfg)
	}, func(r *runner.Runner) { in.r = r }, nil)
	b.backend = in
	return b, pb
}

func cpus(n int64) placement.Resources {
	return placement.Resources{MilliCPU: n * 1000, Memory: n << 30}
}

// teamJob is a job of team ns with n tasks sleeping for d.
func teamJob(ns string, n int, d string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "name: %s-job\nnamespace: %s\nworkers: [{name: w, cpu: 1, memory: 1Gi}]\ntasks:\n", ns, ns)
	for i := range n {
		fmt.Fprintf(&sb, "  - {key: t%d, command: [sleep, %q]}\n", i, d)
	}
	return sb.String()
}

// attempts returns every attempt of a job's tasks.
func (b *bundle) attempts(t *testing.T, job string, n int) [][]store.Attempt {
	t.Helper()
	out := make([][]store.Attempt, n)
	for i := range n {
		_, out[i] = b.task(t, job, fmt.Sprintf("t%d", i))
	}
	return out
}

// overlap is the most attempts of a job that ran at once.
func overlap(atts [][]store.Attempt) int {
	type edge struct {
		at time.Time
		d  int
	}
	var es []edge
	for _, as := range atts {
		for _, a := range as {
			es = append(es, edge{a.StartedAt, 1}, edge{a.FinishedAt, -1})
		}
	}
	slices.SortFunc(es, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.d - b.d // ends before starts at the same instant
	})
	n, most := 0, 0
	for _, e := range es {
		n += e.d
		most = max(most, n)
	}
	return most
}

// TestQuotaBoundsEachTeam: one team's wide job holds no more than its
// quota, so another team's one task starts at once instead of queueing
// behind it (the 11 s wait of issue 14).
func TestQuotaBoundsEachTeam(t *testing.T) {
	t.Parallel()
	b, pb := setupPlaced(t, []placement.Cluster{{Name: "c1", State: placement.Enabled, Capacity: cpus(4)}},
		[]placement.Quota{{Team: "flood", Limit: cpus(2)}, {Team: "small", Limit: cpus(2)}}, func(*runner.Config) {})
	flood := b.submit(t, teamJob("flood", 12, "1"))
	b.wait(t, flood, func(j *store.Job) bool { return j.Counts.Running > 0 })
	small := b.submit(t, teamJob("small", 1, "0.1"))
	sj := b.waitDone(t, small)
	fj := b.waitDone(t, flood)
	if sj.State != store.JobSucceeded || fj.State != store.JobSucceeded {
		t.Fatalf("small %s, flood %s: want both succeeded", sj.State, fj.State)
	}
	if !sj.FinishedAt.Before(fj.FinishedAt) {
		t.Errorf("the small team's job finished at %v, after the flood (%v): it waited behind another team's job", sj.FinishedAt, fj.FinishedAt)
	}
	if n := overlap(b.attempts(t, flood, 12)); n > 2 {
		t.Errorf("the flood team ran %d attempts at once on 1-core workers; its quota is 2 cores", n)
	}
	pb.mu.Lock()
	for id, c := range pb.placed {
		if c != "c1" {
			t.Errorf("worker %s placed in %q", id, c)
		}
	}
	pb.mu.Unlock()
	// Every reservation goes with its worker.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs, err := b.st.ListReservations(context.Background(), store.ReservationFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d reservations left after every worker ended: %+v", len(rs), rs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBorrowedCapacityReturned: a team borrows another's unused quota;
// when the owner submits work, the borrowing workers finish their current
// task and exit, and no task is killed or repeated. With the runner's
// worker cap equal to the cluster's room, the borrowers hold every slot
// too: the owner's job asks for its room with claim-only requests.
func TestBorrowedCapacityReturned(t *testing.T) {
	t.Parallel()
	for _, cap := range []int{8, 4} {
		t.Run(fmt.Sprintf("cap-%d", cap), func(t *testing.T) {
			t.Parallel()
			testBorrowedCapacityReturned(t, cap)
		})
	}
}

func testBorrowedCapacityReturned(t *testing.T, cap int) {
	b, _ := setupPlaced(t, []placement.Cluster{{Name: "c1", State: placement.Enabled, Capacity: cpus(4)}},
		[]placement.Quota{{Team: "flood", Limit: cpus(1), Lend: true}, {Team: "owner", Limit: cpus(3), Lend: true}},
		func(c *runner.Config) { c.MaxWorkers = cap })
	// The flood's work (24 tasks of 2 s on 4 workers: 12 s) outlasts the
	// way back for the owner's room by far: a renewal (2 s) or a
	// claim-only ask (1 s), then the marked workers' current task.
	flood := b.submit(t, teamJob("flood", 24, "2"))
	b.wait(t, flood, func(j *store.Job) bool { return j.Counts.Running >= 3 })
	rs, err := b.st.ListReservations(context.Background(), store.ReservationFilter{Team: "flood"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rs, func(r placement.Reservation) bool { return r.Borrowed }) {
		t.Fatalf("the flood team runs %d workers on a 1-core quota without a borrowed reservation: %+v", len(rs), rs)
	}
	owner := b.submit(t, teamJob("owner", 3, "0.2"))
	oj := b.waitDone(t, owner)
	fj := b.waitDone(t, flood)
	if oj.State != store.JobSucceeded || fj.State != store.JobSucceeded {
		t.Fatalf("owner %s, flood %s: want both succeeded", oj.State, fj.State)
	}
	if !oj.FinishedAt.Before(fj.FinishedAt) {
		t.Errorf("the owner's job finished at %v, after the borrower's (%v): its capacity did not come back", oj.FinishedAt, fj.FinishedAt)
	}
	for i, as := range b.attempts(t, flood, 24) {
		if len(as) != 1 || as[0].State != store.AttemptSucceeded {
			t.Errorf("flood task t%d: attempts %+v, want one that succeeded (borrowed capacity goes back without a kill)", i, as)
		}
	}
}

// TestOrphanedReservationsReleased: the reservations of a runner that is
// no longer a member, and that nobody renewed for the orphan grace, are
// released well before their expiry; those of live members, and recently
// renewed ones, stay.
func TestOrphanedReservationsReleased(t *testing.T) {
	t.Parallel()
	var st store.Store
	b, _ := setupPlaced(t, oneCluster, nil, func(c *runner.Config) { st = c.Store })
	ctx := context.Background()
	now := time.Now()
	if _, ok, err := st.AcquireLease(ctx, store.Lease{Name: store.MemberLease("alive"), Holder: "alive", ExpiresAt: now.Add(time.Hour)}, now); err != nil || !ok {
		t.Fatalf("member lease of a live runner: %v %v", ok, err)
	}
	res := func(id, holder string, expires time.Duration) placement.Reservation {
		return placement.Reservation{ID: id, Team: "t", Job: "j", Cluster: "c1", Resources: cpus(1), Holder: holder,
			Created: now, ExpiresAt: now.Add(expires)}
	}
	if err := st.Place(ctx, now, func(*placement.Snapshot) (store.PlaceWrite, error) {
		return store.PlaceWrite{Insert: []placement.Reservation{
			res("dead-old", "dead", 20*time.Second),   // renewed 40 s ago, its runner gone
			res("dead-new", "dead", 59*time.Second),   // renewed a second ago: adoption may still come
			res("alive-old", "alive", 20*time.Second), // its runner is a member
		}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs, err := b.st.ListReservations(ctx, store.ReservationFilter{})
		if err != nil {
			t.Fatal(err)
		}
		ids := make([]string, 0, len(rs))
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		slices.Sort(ids)
		if slices.Equal(ids, []string{"alive-old", "dead-new"}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("reservations %v: want dead-old released, alive-old and dead-new kept", ids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
