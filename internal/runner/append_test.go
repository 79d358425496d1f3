package runner_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/store"
)

// gatedAdder is a job whose task adder runs until the file gate exists,
// so that the test can add tasks on its behalf while it runs.
func gatedAdder(gate string) string {
	return `
name: adder
tasks:
  - {key: adder, command: [sh, -c, 'while [ ! -e ` + gate + ` ]; do sleep 0.02; done']}
`
}

// child is a task as the gateway compiles it from a fragment.
func child(key string) store.Task {
	return store.Task{Key: key, Argv: []string{"sh", "-c", "echo " + key}, Env: map[string]string{"PART": key},
		Cwd: "/tmp", After: []string{"adder"}, Retries: 1, TimeoutMS: 60_000}
}

func storedCount(t *testing.T, b *bundle, id string) int64 {
	t.Helper()
	j, err := b.st.GetJob(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return j.TaskCount
}

// TestAddTasksIdempotent: adding tasks the job already has, with the same
// content, succeeds and stores nothing (a retried adder); new keys of the
// same call are added; a known key with different content is refused,
// naming the key and what differs, and nothing of that call is stored.
// Every added task runs once.
func TestAddTasksIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	gate := filepath.Join(b.dir, "gate")
	id := b.submit(t, gatedAdder(gate))
	b.wait(t, id, func(j *store.Job) bool { return j.Counts.Running == 1 })
	ctx := context.Background()
	add := func(tasks ...store.Task) (int64, error) { return b.run.AddTasks(ctx, id, "adder", 1, tasks) }

	// Only the adder's running attempt may add: another attempt number
	// (an ended attempt's token) adds nothing.
	for _, attempt := range []int32{0, 2} {
		if n, err := b.run.AddTasks(ctx, id, "adder", attempt, []store.Task{child("c1")}); !errors.Is(err, runner.ErrAppend) || !strings.Contains(err.Error(), "attempt") {
			t.Fatalf("add as attempt %d of the adder (which runs attempt 1): %d, %v; want refused naming the attempt", attempt, n, err)
		}
	}
	if got := storedCount(t, b, id); got != 1 {
		t.Fatalf("after adds by attempts that are not running: %d tasks stored, want 1", got)
	}

	if n, err := add(child("c1"), child("c2")); err != nil || n != 3 {
		t.Fatalf("first add: %d tasks, %v; want 3", n, err)
	}
	// The retried adder adds the same again: nothing new.
	if n, err := add(child("c1"), child("c2")); err != nil || n != 3 {
		t.Fatalf("same add again: %d tasks, %v; want 3 and no error", n, err)
	}
	if got := storedCount(t, b, id); got != 3 {
		t.Fatalf("after adding the same tasks again: %d tasks stored, want 3", got)
	}
	// Known and new keys in one call: the new one is added.
	c3 := child("c3")
	c3.After = []string{"c1"}
	if n, err := add(child("c1"), c3); err != nil || n != 4 {
		t.Fatalf("add of c1 again and c3: %d tasks, %v; want 4", n, err)
	}

	for _, tc := range []struct {
		name string
		edit func(t *store.Task)
		want string // in the error, after `task "c2" already exists`
	}{
		{"command", func(t *store.Task) { t.Argv = []string{"sh", "-c", "echo other"} }, `different command: ["sh", "-c", "echo c2"] in the job, ["sh", "-c", "echo other"] added`},
		{"env value", func(t *store.Task) { t.Env = map[string]string{"PART": "x"} }, "different env: PART differ"},
		{"env names", func(t *store.Task) { t.Env = map[string]string{"PART": "c2", "EXTRA": "1"} }, "different env: EXTRA differ"},
		{"cwd", func(t *store.Task) { t.Cwd = "/var" }, `different cwd: "/tmp" in the job, "/var" added`},
		{"after", func(t *store.Task) { t.After = nil }, `different after: ["adder"] in the job, [] added`},
		{"retries", func(t *store.Task) { t.Retries = 3 }, "different retries: 1 in the job, 3 added"},
		{"timeout", func(t *store.Task) { t.TimeoutMS = 1000 }, "different timeout: 1m0s in the job, 1s added"},
	} {
		c2 := child("c2")
		tc.edit(&c2)
		_, err := add(child("c9"), c2)
		if err == nil {
			t.Errorf("%s: re-adding c2 with a different %s succeeded", tc.name, tc.name)
			continue
		}
		if !errors.Is(err, runner.ErrAppend) {
			t.Errorf("%s: error %v does not wrap ErrAppend (the caller's to fix)", tc.name, err)
		}
		if msg := err.Error(); !strings.Contains(msg, `task "c2" already exists`) || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: error %q, want it to name c2 and contain %q", tc.name, msg, tc.want)
		}
	}
	if _, err := add(child("c1"), child("c1")); err == nil || !strings.Contains(err.Error(), `task "c1" is added twice`) {
		t.Errorf("a known key twice in one call: %v, want added twice", err)
	}
	if got := storedCount(t, b, id); got != 4 {
		t.Errorf("after refused adds: %d tasks stored, want 4 (c9 of the refused calls not stored)", got)
	}

	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j := b.waitDone(t, id)
	if j.State != store.JobSucceeded || j.TaskCount != 4 || j.Counts.Succeeded != 4 {
		t.Fatalf("job %s with %d tasks, counts %+v; want succeeded with 4", j.State, j.TaskCount, j.Counts)
	}
	for _, k := range []string{"c1", "c2", "c3"} {
		if tk, atts := b.task(t, id, k); tk.Attempts != 1 || len(atts) != 1 {
			t.Errorf("%s: %d attempts (%d stored), want it run once", k, tk.Attempts, len(atts))
		}
	}
}

// TestAddTasksFenced: a runner whose shard lease another runner took
// stores no added tasks: the store refuses its fenced append, or the
// runner already knows it lost the shard.
func TestAddTasksFenced(t *testing.T) {
	t.Parallel()
	b := setupWith(t, func(c *runner.Config) { c.Holder, c.LeaseTTL = "runner-a", time.Minute })
	gate := filepath.Join(b.dir, "gate")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644) })
	id := b.submit(t, gatedAdder(gate))
	b.wait(t, id, func(j *store.Job) bool { return j.Counts.Running == 1 })
	ctx := context.Background()

	now := time.Now().Add(2 * time.Minute) // past runner-a's expiry
	lease := store.ShardLease(store.ShardOf(id))
	if l, ok, err := b.st.AcquireLease(ctx, store.Lease{Name: lease, Holder: "runner-b", ExpiresAt: now.Add(time.Hour)}, now); err != nil || !ok {
		t.Fatalf("runner-b takes the lease: %+v %v %v", l, ok, err)
	}
	_, err := b.run.AddTasks(ctx, id, "adder", 1, []store.Task{child("c1")})
	switch {
	case errors.Is(err, store.ErrFenced):
		if !strings.Contains(err.Error(), "runner-b") {
			t.Errorf("error %q does not name the lease's holder", err)
		}
	case errors.Is(err, runner.ErrNotOwner):
	default:
		t.Fatalf("AddTasks by the runner that lost its lease: %v, want an error wrapping store.ErrFenced or runner.ErrNotOwner", err)
	}
	if errors.Is(err, runner.ErrAppend) {
		t.Errorf("error %v wraps ErrAppend: it is not the caller's to fix", err)
	}
	if got := storedCount(t, b, id); got != 1 {
		t.Errorf("after the fenced add: %d tasks stored, want 1", got)
	}
}

// TestAddTasksByAPerson: a member of the job's team adds for no task (adder
// ""), while the job runs; once it has ended, adding is refused.
func TestAddTasksByAPerson(t *testing.T) {
	t.Parallel()
	b := setup(t)
	gate := filepath.Join(b.dir, "gate")
	id := b.submit(t, gatedAdder(gate))
	b.wait(t, id, func(j *store.Job) bool { return j.Counts.Running == 1 })
	ctx := context.Background()
	if _, err := b.run.AddTasks(ctx, id, "", 0, []store.Task{child("by-hand")}); err != nil {
		t.Fatalf("a person's add to a running job: %v", err)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	j := b.waitDone(t, id)
	if j.State != store.JobSucceeded || j.TaskCount != 2 {
		t.Fatalf("job %s with %d tasks, want succeeded with the added one", j.State, j.TaskCount)
	}
	if _, err := b.run.AddTasks(ctx, id, "", 0, []store.Task{child("late")}); !errors.Is(err, runner.ErrAppend) {
		t.Fatalf("adding to an ended job: %v, want refused", err)
	}
}

// slowAppendStore holds every AppendTasksFenced until release is closed,
// saying so on entered.
type slowAppendStore struct {
	store.Store
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	freed   sync.Once
}

// free lets every held and later append through.
func (s *slowAppendStore) free() { s.freed.Do(func() { close(s.release) }) }

func (s *slowAppendStore) AppendTasksFenced(ctx context.Context, f store.Fence, job string, tasks []store.Task) error {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return s.Store.AppendTasksFenced(ctx, f, job, tasks)
}

// TestAddTasksWritesWithoutTheShardLock: while the store write of an
// AddTasks is slow, another job of the same shard is loaded, dispatched
// and finishes: only the job being added to waits. Then the add completes
// and the added task runs.
func TestAddTasksWritesWithoutTheShardLock(t *testing.T) {
	t.Parallel()
	slow := &slowAppendStore{entered: make(chan struct{}), release: make(chan struct{})}
	b := setupWith(t, func(c *runner.Config) { slow.Store = c.Store; c.Store = slow })
	gate := filepath.Join(b.dir, "gate")
	t.Cleanup(func() { os.WriteFile(gate, nil, 0o644); slow.free() })
	id := b.submit(t, gatedAdder(gate))
	b.wait(t, id, func(j *store.Job) bool { return j.Counts.Running == 1 })
	ctx := context.Background()

	added := make(chan error, 1)
	go func() {
		_, err := b.run.AddTasks(ctx, id, "", 0, []store.Task{child("late")})
		added <- err
	}()
	<-slow.entered

	// Another job in the same shard, written straight to the store.
	other := ""
	for i := 0; other == ""; i++ {
		if c := fmt.Sprintf("other-%d", i); store.ShardOf(c) == store.ShardOf(id) {
			other = c
		}
	}
	now := time.Now()
	job := &store.Job{ID: other, Name: "other", Namespace: "default", CreatedAt: now,
		Tiers: []store.Tier{{Name: "t", CPU: 1, MemoryBytes: 1 << 30}}, Spec: []byte("name: other")}
	if err := b.st.CreateJob(ctx, job, []store.Task{{Index: 0, Key: "a", Argv: []string{"true"}}, {Index: 1, Key: "b", Argv: []string{"true"}, After: []string{"a"}}}); err != nil {
		t.Fatal(err)
	}
	b.run.Wake()
	if j := b.waitDone(t, other); j.State != store.JobSucceeded {
		t.Fatalf("the other job of the shard ended %s while the add was being written; want succeeded", j.State)
	}
	select {
	case err := <-added:
		t.Fatalf("AddTasks returned (%v) before its store write was let through", err)
	default:
	}
	slow.free()
	if err := <-added; err != nil {
		t.Fatalf("AddTasks: %v", err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if j := b.waitDone(t, id); j.State != store.JobSucceeded || j.TaskCount != 2 {
		t.Fatalf("job %s with %d tasks, want succeeded with the added one", j.State, j.TaskCount)
	}
}
