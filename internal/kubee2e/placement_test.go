package kubee2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/store"
)

// siteCapacity is what each cluster of the placement tests offers haul's
// workers: four 1-core, 1 GiB workers fit in one, eight in both.
var siteCapacity = placement.Resources{MilliCPU: 4000, Memory: 16 << 30}

// TestPlacement runs placement end to end on two real API servers, a and
// b, each with a configured capacity: a team's workers spread evenly over
// them, disabling a cluster through the API sends new workers to the
// other, borrowed capacity goes back to its owner without a kill, and
// why names what holds work back (the team's quota, no cluster with the
// GPU type, clusters out of service, parents).
//
// It is not parallel, so that it runs alone: the disable-to-other-cluster
// delay it measures is then haul's, not the other tests' load on the
// machine's cores.
func TestPlacement(t *testing.T) {
	a, b := startSite(t, "a", true), startSite(t, "b", true)
	d := deployWith(t, deployOptions{
		capacity: map[string]placement.Resources{"a": siteCapacity, "b": siteCapacity},
		// A short idle grace makes a worker start cheap in reuse
		// targeting, so that a job with a queue asks for a worker per
		// queued task quickly (the spread needs several at once) and
		// idle workers go soon after a job ends.
		runner: runner.Config{IdleTimeout: 300 * time.Millisecond},
		// The runner's own worker cap is above what the clusters hold
		// (eight 1-core workers), so that placement is what bounds the
		// teams: with a cap of 8, a borrower holding all eight workers
		// would leave the owner no slot to ask placement with, and so
		// nothing to reclaim its capacity.
		maxWorkers: 16,
	}, a, b)
	kb := d.srv.Kube()

	t.Run("Spread", func(t *testing.T) {
		before := kb.Stats()
		id := d.submit(t, teamJob("spread", "spread", 8, 8, []string{"sleep", "3"}))
		j := d.waitJob(t, id)
		if j.State != "succeeded" {
			t.Fatalf("job %s with counts %v", j.State, j.Counts)
		}
		after := kb.Stats()
		na := after["a"].PodsCreated - before["a"].PodsCreated
		nb := after["b"].PodsCreated - before["b"].PodsCreated
		workers := map[string]bool{}
		for i := range 8 {
			for _, at := range d.task(t, id, fmt.Sprintf("t%d", i)).Attempts {
				workers[at.WorkerId] = true
			}
		}
		t.Logf("8 tasks of 1 core: %d worker pods created in a, %d in b; %d distinct workers ran them", na, nb, len(workers))
		if na+nb < 4 {
			t.Fatalf("only %d worker pods for 8 tasks of 3 s with max_workers 8: too few to tell a spread", na+nb)
		}
		if na-nb > 1 || nb-na > 1 {
			t.Errorf("worker pods a=%d b=%d: want the team spread evenly over two clusters of the same capacity (±1)", na, nb)
		}
		if n := int64(len(workers)); n > na+nb {
			t.Errorf("%d workers ran tasks but only %d pods were created", n, na+nb)
		}
		d.noPodsLeft(t)
	})

	t.Run("DisableMovesTraffic", func(t *testing.T) {
		dir := t.TempDir()
		gate, hold := filepath.Join(dir, "gate"), filepath.Join(dir, "hold")
		waitFile := func(p string) string {
			return fmt.Sprintf(`[sh, -c, 'until [ -e %s ]; do sleep 0.1; done']`, p)
		}
		// Two holders and a gate keep three workers busy, spread over
		// a and b; when the gate opens, four more tasks want workers.
		id := d.submit(t, `
name: moves
namespace: moves
max_workers: 8
workers: [{name: w, cpu: 1, memory: 1Gi}]
tasks:
  - key: "hold-{i}"
    foreach: {range: [0, 2]}
    command: `+waitFile(hold)+`
  - key: gate
    command: `+waitFile(gate)+`
  - key: "more-{i}"
    foreach: {range: [0, 4]}
    command: [sleep, "1"]
    after: [gate]
`)
		on := map[string]int{}
		for _, key := range []string{"hold-0", "hold-1", "gate"} {
			s, _ := d.runningPod(t, id, key, 1)
			on[s.name]++
		}
		if on["a"] == 0 || on["b"] == 0 {
			t.Fatalf("the job's three running tasks are on %v: want both clusters", on)
		}
		before := kb.Stats()
		start := time.Now()
		d.setClusterState(t, "a", placement.Disabled)
		defer d.setClusterState(t, "a", placement.Enabled)
		// T is when the disable call returned: from then on placement
		// must see the cluster disabled.
		T := time.Now()
		t.Logf("the disable call took %s", T.Sub(start).Round(time.Millisecond))
		if err := os.WriteFile(gate, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		// The first worker pod created in b after T: its creation time as
		// the backend sent it, and its creationTimestamp in the API.
		var first time.Time
		waitFor(t, time.Minute, "a new worker pod in b", func() bool {
			for _, c := range kb.Stats()["b"].CreateTimes {
				if c.After(T) && (first.IsZero() || c.Before(first)) {
					first = c
				}
			}
			return !first.IsZero()
		})
		delay := first.Sub(T)
		t.Logf("disable to the first new worker pod in b: %s (the disable call itself took %s)", delay.Round(time.Millisecond), T.Sub(start).Round(time.Millisecond))
		if delay > 5*time.Second {
			t.Errorf("the first new worker pod in b was created %s after cluster a was disabled: want within 5 s", delay)
		}
		// The API server's record agrees (its timestamps have whole
		// seconds, so it is compared with T rounded down).
		pods, err := b.cluster.Clientset().CoreV1().Pods(workerNS).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		var apiFirst time.Time
		for _, p := range pods.Items {
			if c := p.CreationTimestamp.Time; !c.Before(T.Truncate(time.Second)) && (apiFirst.IsZero() || c.Before(apiFirst)) {
				apiFirst = c
			}
		}
		if apiFirst.IsZero() {
			t.Errorf("no pod in b has a creationTimestamp at or after %s", T.Truncate(time.Second))
		} else if apiFirst.After(T.Add(5 * time.Second)) {
			t.Errorf("the first pod in b after the disable has creationTimestamp %s, more than 5 s after %s", apiFirst, T)
		}
		if err := os.WriteFile(hold, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		j := d.waitJob(t, id)
		if j.State != "succeeded" {
			t.Fatalf("job %s with counts %v", j.State, j.Counts)
		}
		after := kb.Stats()
		if n := after["a"].PodsCreated - before["a"].PodsCreated; n != 0 {
			t.Errorf("disabled cluster a got %d new worker pods", n)
		}
		nb := after["b"].PodsCreated - before["b"].PodsCreated
		t.Logf("after the disable: %d new worker pods in b, none in a", nb)
		// Disabling stops new workers; the ones in a run on: nothing is
		// killed or repeated.
		keys := []string{"hold-0", "hold-1", "gate", "more-0", "more-1", "more-2", "more-3"}
		for _, key := range keys {
			if as := d.task(t, id, key).Attempts; len(as) != 1 || as[0].State != "succeeded" {
				t.Errorf("task %s: attempts %v, want one that succeeded", key, as)
			}
		}
		d.noPodsLeft(t)
	})

	t.Run("BorrowedCapacityReturned", func(t *testing.T) {
		gib := int64(1) << 30
		d.setQuota(t, "flood", 1000, 4*gib)
		d.setQuota(t, "owner", 7000, 28*gib)
		defer d.deleteQuota(t, "flood")
		defer d.deleteQuota(t, "owner")
		// Enough work that the flood holds every core for a while: 60
		// tasks of 3 s are 180 core-seconds, over 20 s on all 8 cores.
		const floodTasks = 60
		flood := d.submit(t, teamJob("flood", "flood", floodTasks, 8, []string{"sleep", "3"}))
		st := d.srv.Store()
		var held, borrowed int
		// Wait until the flood holds the whole capacity: its own core and
		// the owner's seven, borrowed. The owner's workers then find no
		// room unless the borrowed capacity comes back.
		waitFor(t, 2*time.Minute, "the flood team to borrow the owner's whole quota", func() bool {
			rs, err := st.ListReservations(context.Background(), store.ReservationFilter{Team: "flood"})
			if err != nil {
				t.Fatal(err)
			}
			held, borrowed = len(rs), 0
			for _, r := range rs {
				if r.Borrowed {
					borrowed++
				}
			}
			return borrowed == 7
		})
		t.Logf("the flood team holds %d reservations, %d borrowed, on a 1-core quota", held, borrowed)
		if held != 8 {
			t.Fatalf("the flood team holds %d reservations with 7 borrowed: want 8 (its own core and 7 borrowed)", held)
		}
		owner := d.submit(t, teamJob("owner", "owner", 6, 8, []string{"sleep", "1"}))
		oj := d.waitJob(t, owner)
		fj := d.waitJob(t, flood)
		if oj.State != "succeeded" || fj.State != "succeeded" {
			t.Fatalf("owner %s, flood %s: want both succeeded", oj.State, fj.State)
		}
		of, ff := oj.FinishedAt.AsTime(), fj.FinishedAt.AsTime()
		t.Logf("the owner's job ran in %s; the flood's finished %s after it", of.Sub(oj.CreatedAt.AsTime()).Round(time.Millisecond), ff.Sub(of).Round(time.Millisecond))
		if !of.Before(ff) {
			t.Errorf("the owner's job finished at %s, not before the borrower's (%s): its capacity did not come back", of, ff)
		}
		for i := range floodTasks {
			if as := d.task(t, flood, fmt.Sprintf("t%d", i)).Attempts; len(as) != 1 || as[0].State != "succeeded" {
				t.Errorf("flood task t%d: attempts %v, want one that succeeded (borrowed capacity goes back without a kill)", i, as)
			}
		}
		d.noPodsLeft(t)
	})

	t.Run("WhyNamesBlockers", func(t *testing.T) {
		// Quota: every core is promised (1 to q, 7 to rest) and nobody
		// lends, so q's job holds one worker and why says so.
		gib := int64(1) << 30
		for _, q := range []struct {
			team string
			cpu  int64
		}{{"q", 1000}, {"rest", 7000}} {
			if _, err := d.admin.SetQuota(context.Background(), connect.NewRequest(&apiv1.SetQuotaRequest{Quota: &apiv1.Quota{
				Team: q.team, Limit: &apiv1.Resources{MilliCpu: q.cpu, MemoryBytes: q.cpu / 1000 * 4 * gib}}})); err != nil {
				t.Fatal(err)
			}
		}
		quota := d.submit(t, teamJob("q", "q", 3, 3, []string{"sleep", "30"}))
		bl := d.whyUntil(t, quota, "", "quota")
		if bl.Resource != "cpu" || bl.Used != 1000 || bl.Limit != 1000 {
			t.Errorf("quota blocker %s %d of %d, want cpu 1000 of 1000: %s", bl.Resource, bl.Used, bl.Limit, bl.Detail)
		}
		d.cancel(t, quota)
		// Without these quotas the other teams may use the whole fleet
		// again (nothing is promised, so everything is lendable).
		d.deleteQuota(t, "q")
		d.deleteQuota(t, "rest")

		// No cluster offers the tier's GPU type.
		gpu := d.submit(t, "name: g\nworkers: [{name: gpu, gpu: 1, gpu_type: a100}]\ntasks:\n  - {key: train, command: [true]}\n")
		if bl := d.whyUntil(t, gpu, "train", "no-cluster"); !strings.Contains(bl.Detail, "gpu/a100") {
			t.Errorf("no-cluster blocker %q does not name the GPU type", bl.Detail)
		}
		d.cancel(t, gpu)

		// Both clusters out of service: the job waits, and says why; it
		// runs once one is back.
		d.setClusterState(t, "a", placement.Disabled)
		d.setClusterState(t, "b", placement.Draining)
		parked := d.submit(t, "name: parked\ntasks:\n  - {key: first, command: [true]}\n  - {key: second, command: [true], after: [first]}\n")
		bl = d.whyUntil(t, parked, "", "unavailable")
		slices.Sort(bl.Clusters)
		if !slices.Equal(bl.Clusters, []string{"a", "b"}) || !strings.Contains(bl.Detail, "draining") {
			t.Errorf("unavailable blocker %v: want clusters a and b, b draining", bl)
		}
		if bl := d.whyUntil(t, parked, "second", "parents"); !slices.Equal(bl.Parents, []string{"first"}) {
			t.Errorf("parents blocker %v: want first", bl.Parents)
		}
		d.setClusterState(t, "a", placement.Enabled)
		d.setClusterState(t, "b", placement.Enabled)
		if j := d.waitJob(t, parked); j.State != "succeeded" {
			t.Errorf("the parked job ended %s once the clusters were back", j.State)
		}
		d.noPodsLeft(t)
	})
}

// whyUntil asks JobService.Why until a blocker of the kind comes back.
func (d *deployment) whyUntil(t *testing.T, job, key, kind string) *apiv1.Blocker {
	t.Helper()
	var found *apiv1.Blocker
	waitFor(t, time.Minute, fmt.Sprintf("why %s %s to name a %s blocker", job, key, kind), func() bool {
		resp, err := d.api.Why(context.Background(), connect.NewRequest(&apiv1.WhyRequest{JobId: job, TaskKey: key}))
		if err != nil {
			t.Fatalf("why %s %s: %v", job, key, err)
		}
		for _, b := range resp.Msg.Blockers {
			if b.Kind == kind {
				found = b
				return true
			}
		}
		return false
	})
	return found
}

// cancel cancels a job and waits for it to end.
func (d *deployment) cancel(t *testing.T, job string) {
	t.Helper()
	if _, err := d.api.CancelJob(context.Background(), connect.NewRequest(&apiv1.CancelJobRequest{JobId: job})); err != nil {
		t.Fatalf("cancel %s: %v", job, err)
	}
	d.waitJob(t, job)
}

// teamJob is a job of team ns with n tasks t0… running command on 1-core,
// 1 GiB workers, at most maxWorkers at once.
func teamJob(name, ns string, n, maxWorkers int, command []string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "name: %s\nnamespace: %s\nmax_workers: %d\nworkers: [{name: w, cpu: 1, memory: 1Gi}]\ntasks:\n", name, ns, maxWorkers)
	quoted := slices.Clone(command)
	for i, c := range quoted {
		quoted[i] = fmt.Sprintf("%q", c)
	}
	for i := range n {
		fmt.Fprintf(&sb, "  - {key: t%d, command: [%s]}\n", i, strings.Join(quoted, ", "))
	}
	return sb.String()
}

// setQuota gives a team a lending quota through the admin API.
func (d *deployment) setQuota(t *testing.T, team string, milliCPU, memory int64) {
	t.Helper()
	_, err := d.admin.SetQuota(context.Background(), connect.NewRequest(&apiv1.SetQuotaRequest{Quota: &apiv1.Quota{
		Team: team, Limit: &apiv1.Resources{MilliCpu: milliCPU, MemoryBytes: memory}, Lend: true}}))
	if err != nil {
		t.Fatalf("set quota of %s: %v", team, err)
	}
}

func (d *deployment) deleteQuota(t *testing.T, team string) {
	t.Helper()
	if _, err := d.admin.DeleteQuota(context.Background(), connect.NewRequest(&apiv1.DeleteQuotaRequest{Team: team})); err != nil {
		t.Errorf("delete quota of %s: %v", team, err)
	}
}
