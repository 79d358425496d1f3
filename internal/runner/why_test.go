package runner_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
)

// whyUntil asks JobService.Why (through the gateway, which asks the
// runner) until a blocker of the kind comes back, and returns it.
func (b *bundle) whyUntil(t *testing.T, job, key, kind string) *apiv1.Blocker {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *apiv1.WhyResponse
	for time.Now().Before(deadline) {
		resp, err := b.api.Why(context.Background(), connect.NewRequest(&apiv1.WhyRequest{JobId: job, TaskKey: key}))
		if err != nil {
			t.Fatalf("why %s %s: %v", job, key, err)
		}
		last = resp.Msg
		for _, bl := range last.Blockers {
			if bl.Kind == kind {
				if len(strings.Fields(bl.Detail)) < 4 {
					t.Errorf("blocker %s: detail %q does not say why", kind, bl.Detail)
				}
				return bl
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("why %s %s never named a %q blocker; last answer %v", job, key, kind, last)
	return nil
}

// waitTask waits until a task is in state.
func (b *bundle) waitTask(t *testing.T, job, key string, state store.TaskState) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		task, _ := b.task(t, job, key)
		if task.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s, want %s", key, task.State, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var oneCluster = []placement.Cluster{{Name: "c1", State: placement.Enabled, Capacity: cpus(4)}}

// TestWhyNamesEachBlocker: for each thing that can keep a task from
// running, a job set up to hit it, and why names it with its figures.
func TestWhyNamesEachBlocker(t *testing.T) {
	t.Parallel()
	t.Run("parents", func(t *testing.T) {
		t.Parallel()
		b, _ := setupPlaced(t, oneCluster, nil, func(*runner.Config) {})
		// A parent by key, one that succeeded, and two through a glob.
		id := b.submit(t, "name: p\ntasks:\n  - {key: first, command: [sleep, '30']}\n  - {key: done, command: [true]}\n"+
			"  - {key: g-1, command: [sleep, '30']}\n  - {key: g-2, command: [sleep, '30']}\n"+
			"  - {key: last, command: [true], after: [first, done, 'g-*']}\n")
		b.waitTask(t, id, "done", store.TaskSucceeded)
		bl := b.whyUntil(t, id, "last", "parents")
		slices.Sort(bl.Parents)
		if !slices.Equal(bl.Parents, []string{"first", "g-1", "g-2"}) {
			t.Errorf("parents %v, want first, g-1 and g-2 (done succeeded)", bl.Parents)
		}
		b.whyUntil(t, id, "", "parents")
	})
	t.Run("backoff", func(t *testing.T) {
		t.Parallel()
		b, _ := setupPlaced(t, oneCluster, nil, func(c *runner.Config) {
			c.Sched = sched.Config{BackoffBase: time.Minute, BackoffMax: time.Minute}
		})
		id := b.submit(t, "name: b\ntasks:\n  - {key: flaky, command: [false], retries: 2}\n")
		bl := b.whyUntil(t, id, "flaky", "backoff")
		if bl.Until == nil || time.Until(bl.Until.AsTime()) < 30*time.Second {
			t.Errorf("backoff until %v: want about a minute from now", bl.Until)
		}
	})
	t.Run("max-workers", func(t *testing.T) {
		t.Parallel()
		b, _ := setupPlaced(t, oneCluster, nil, func(*runner.Config) {})
		id := b.submit(t, teamJob("solo", 3, "30")+"max_workers: 1\n")
		bl := b.whyUntil(t, id, "", "max-workers")
		if bl.Limit != 1 || bl.Used != 1 {
			t.Errorf("max-workers blocker used %d limit %d, want 1 of 1", bl.Used, bl.Limit)
		}
	})
	t.Run("quota", func(t *testing.T) {
		t.Parallel()
		// Every core is promised and nobody lends: team q owns one core.
		b, _ := setupPlaced(t, oneCluster, []placement.Quota{{Team: "q", Limit: cpus(1)}, {Team: "other", Limit: cpus(3)}}, func(*runner.Config) {})
		id := b.submit(t, teamJob("q", 3, "30"))
		bl := b.whyUntil(t, id, "", "quota")
		if bl.Resource != placement.ResCPU || bl.Used != 1000 || bl.Limit != 1000 {
			t.Errorf("quota blocker %s used %d limit %d, want cpu 1000 of 1000: %s", bl.Resource, bl.Used, bl.Limit, bl.Detail)
		}
		b.whyUntil(t, id, "t2", "quota")
	})
	t.Run("no-cluster", func(t *testing.T) {
		t.Parallel()
		b, _ := setupPlaced(t, oneCluster, nil, func(*runner.Config) {})
		id := b.submit(t, "name: g\nworkers: [{name: gpu, gpu: 1, gpu_type: a100}]\ntasks:\n  - {key: train, command: [true]}\n")
		bl := b.whyUntil(t, id, "train", "no-cluster")
		if !strings.Contains(bl.Detail, "gpu/a100") {
			t.Errorf("no-cluster detail %q does not name the GPU type", bl.Detail)
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		t.Parallel()
		b, _ := setupPlaced(t, []placement.Cluster{{Name: "c1", State: placement.Draining, Capacity: cpus(4)}}, nil, func(*runner.Config) {})
		id := b.submit(t, teamJob("u", 1, "1"))
		bl := b.whyUntil(t, id, "", "unavailable")
		if !slices.Equal(bl.Clusters, []string{"c1"}) || !strings.Contains(bl.Detail, "draining") {
			t.Errorf("unavailable blocker %v: want c1, draining", bl)
		}
	})
	t.Run("capacity", func(t *testing.T) {
		t.Parallel()
		// The quota promises more than the cluster has.
		b, _ := setupPlaced(t, []placement.Cluster{{Name: "c1", State: placement.Enabled, Capacity: cpus(2)}},
			[]placement.Quota{{Team: "big", Limit: cpus(8)}}, func(*runner.Config) {})
		id := b.submit(t, teamJob("big", 4, "30"))
		bl := b.whyUntil(t, id, "", "capacity")
		if !slices.Equal(bl.Clusters, []string{"c1"}) || bl.Limit == 0 {
			t.Errorf("capacity blocker %v: want c1 and its capacity", bl)
		}
	})
	t.Run("reclaiming", func(t *testing.T) {
		t.Parallel()
		b, _ := setupPlaced(t, oneCluster, []placement.Quota{{Team: "flood", Limit: cpus(1), Lend: true}, {Team: "owner", Limit: cpus(3), Lend: true}}, func(*runner.Config) {})
		flood := b.submit(t, teamJob("flood", 8, "20"))
		b.wait(t, flood, func(j *store.Job) bool { return j.Counts.Running >= 4 })
		owner := b.submit(t, teamJob("owner", 2, "1"))
		bl := b.whyUntil(t, owner, "", "reclaiming")
		if !strings.Contains(bl.Detail, "flood") {
			t.Errorf("reclaiming detail %q does not name the borrowing team", bl.Detail)
		}
	})
	t.Run("starting", func(t *testing.T) {
		t.Parallel()
		b, pb := setupPlaced(t, oneCluster, nil, func(*runner.Config) {})
		pb.mu.Lock()
		pb.hold = true
		pb.mu.Unlock()
		id := b.submit(t, teamJob("s", 1, "1"))
		bl := b.whyUntil(t, id, "t0", "starting")
		if bl.Since == nil || time.Since(bl.Since.AsTime()) < 0 {
			t.Errorf("starting blocker since %v", bl.Since)
		}
	})
	t.Run("ended work has no blocker", func(t *testing.T) {
		t.Parallel()
		b, _ := setupPlaced(t, oneCluster, nil, func(*runner.Config) {})
		id := b.submit(t, teamJob("done", 1, "0"))
		b.waitDone(t, id)
		resp, err := b.api.Why(context.Background(), connect.NewRequest(&apiv1.WhyRequest{JobId: id}))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Msg.State != "succeeded" || len(resp.Msg.Blockers) != 0 {
			t.Errorf("why of a finished job: %v", resp.Msg)
		}
		if _, err := b.api.Why(context.Background(), connect.NewRequest(&apiv1.WhyRequest{JobId: id, TaskKey: "nope"})); connect.CodeOf(err) != connect.CodeNotFound {
			t.Errorf("why of an unknown task: %v, want not found", err)
		}
	})
}
