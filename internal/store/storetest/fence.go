package storetest

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// leaseName is the lease the fencing tests write under.
const leaseName = "runner"

// huge is a CPU time a worker once reported; twice it is +Inf.
var huge = 1.7e308

func acquire(t *testing.T, s store.Store, holder string, now time.Time, ttl time.Duration) {
	t.Helper()
	got, ok, err := s.AcquireLease(t.Context(), store.Lease{Name: leaseName, Holder: holder, ExpiresAt: now.Add(ttl)}, now)
	if err != nil || !ok {
		t.Fatalf("AcquireLease(%s) at %v: %+v %v %v, want it taken", holder, now, got, ok, err)
	}
}

// checkFenced checks that err is the refusal of a fenced write of holder
// "a" while holder (or nobody, "") holds the lease leaseName.
func checkFenced(t *testing.T, what string, err error, holder string) {
	t.Helper()
	checkFencedBy(t, what, err, leaseName, holder)
}

// checkFencedBy checks that err is the refusal of a fenced write under
// lease while holder holds it; with holder "" the error need not name one.
func checkFencedBy(t *testing.T, what string, err error, lease, holder string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: succeeded, want it fenced off", what)
	case !errors.Is(err, store.ErrFenced):
		t.Errorf("%s: error %v, want one wrapping store.ErrFenced", what, err)
	case errors.Is(err, store.ErrRejected) || errors.Is(err, store.ErrNotFound):
		t.Errorf("%s: error %v wraps ErrRejected or ErrNotFound as well as ErrFenced", what, err)
	case !strings.Contains(err.Error(), lease) || (holder != "" && !strings.Contains(err.Error(), holder)):
		t.Errorf("%s: error %q does not name the lease %q and its holder %q", what, err, lease, holder)
	}
}

// testFence: fenced writes (Apply, AppendTasksFenced) go through while
// their holder holds the lease, even past its expiry while nobody else has
// taken it; once another holder takes it, or it is released, they change
// nothing and fail with ErrFenced. Unfenced writes are not checked.
func testFence(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(3))
	fa := store.Fence{Lease: leaseName, Holder: "a"}
	fb := store.Fence{Lease: leaseName, Holder: "b"}

	// Nobody holds the lease yet.
	err := s.Apply(ctx, &store.Batch{Fence: fa, Jobs: []store.JobUpdate{{ID: job.ID, State: store.JobRunning, Counts: store.TaskCounts{Blocked: 3}}}})
	checkFenced(t, "Apply under a lease nobody holds", err, "")

	acquire(t, s, "a", base, 10*time.Second)
	apply(t, s, &store.Batch{Fence: fa,
		Tasks:    []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskRunning, Attempts: 1, StartedAt: base}},
		Attempts: []store.Attempt{{JobID: job.ID, TaskIndex: 0, Number: 1, WorkerID: "w1", State: store.AttemptRunning, StartedAt: base}},
		Jobs:     []store.JobUpdate{{ID: job.ID, State: store.JobRunning, Counts: store.TaskCounts{Blocked: 2, Running: 1}, StartedAt: base}},
	})
	if err := s.AppendTasksFenced(ctx, fa, job.ID, moreTasks("a", 3, 2)); err != nil {
		t.Fatalf("AppendTasksFenced by the holder: %v", err)
	}
	// The fence checks the holder, not the clock: a has not renewed, but
	// nobody took the lease, so a's writes still go through.
	apply(t, s, &store.Batch{Fence: fa, Jobs: []store.JobUpdate{{ID: job.ID, State: store.JobRunning, Counts: store.TaskCounts{Blocked: 4, Running: 1}, StartedAt: base}}})
	if err := s.AppendTasksFenced(ctx, fb, job.ID, moreTasks("b", 5, 1)); err == nil {
		t.Fatal("AppendTasksFenced by b while a holds the lease succeeded")
	} else {
		checkFenced(t, "AppendTasksFenced by b while a holds the lease", err, "a")
	}

	// b takes the expired lease: a is fenced off.
	acquire(t, s, "b", base.Add(11*time.Second), 10*time.Second)
	before, beforeTasks := getJob(t, s, job.ID), loadTasks(t, s, job.ID)
	stale := store.Batch{Fence: fa,
		Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskSucceeded, Attempts: 1, StartedAt: base, FinishedAt: base.Add(time.Second)},
			{JobID: job.ID, Index: 1, State: store.TaskRunning, Attempts: 1, StartedAt: base}},
		Attempts: []store.Attempt{{JobID: job.ID, TaskIndex: 0, Number: 1, WorkerID: "w1", State: store.AttemptSucceeded, StartedAt: base, FinishedAt: base.Add(time.Second)},
			{JobID: job.ID, TaskIndex: 1, Number: 1, WorkerID: "w1", State: store.AttemptRunning, StartedAt: base}},
		Jobs: []store.JobUpdate{{ID: job.ID, State: store.JobSucceeded, Counts: store.TaskCounts{Succeeded: 5}, FinishedAt: base.Add(time.Second)}},
	}
	checkFenced(t, "Apply by a after b took the lease", s.Apply(ctx, &stale), "b")
	checkFenced(t, "AppendTasksFenced by a after b took the lease", s.AppendTasksFenced(ctx, fa, job.ID, moreTasks("late", 5, 2)), "b")
	checkFenced(t, "AppendTasksFenced by a of no tasks after b took the lease", s.AppendTasksFenced(ctx, fa, job.ID, nil), "b")
	checkUnchanged(t, s, "after a's fenced-off writes", before, beforeTasks)
	checkAttempts(t, s, job.ID, 0, []store.Attempt{{JobID: job.ID, TaskIndex: 0, Number: 1, WorkerID: "w1", State: store.AttemptRunning, StartedAt: base}})
	checkAttempts(t, s, job.ID, 1, nil)
	// A fenced-off batch that would also have been refused for its data
	// says fenced: the lease is checked first.
	bad := store.Batch{Fence: fa, Jobs: []store.JobUpdate{{ID: "ghost-job", State: store.JobRunning}}}
	checkFenced(t, "Apply by a of a batch naming a missing job", s.Apply(ctx, &bad), "b")

	// The new holder writes; so does an unfenced writer.
	apply(t, s, &store.Batch{Fence: fb, Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 1, State: store.TaskQueued}}})
	if err := s.AppendTasksFenced(ctx, fb, job.ID, moreTasks("b", 5, 1)); err != nil {
		t.Fatalf("AppendTasksFenced by the new holder: %v", err)
	}
	apply(t, s, &store.Batch{Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 2, State: store.TaskQueued}}})
	appendTasks(t, s, job.ID, moreTasks("plain", 6, 1))
	got := loadTasks(t, s, job.ID)
	if len(got) != 7 || got[1].State != store.TaskQueued || got[2].State != store.TaskQueued || got[0].State != store.TaskRunning {
		t.Errorf("after b's writes: %d tasks, states %s %s %s; want 7, running queued queued", len(got), got[0].State, got[1].State, got[2].State)
	}

	// Released: nobody holds it, and nobody's fenced write goes through.
	if err := s.ReleaseLease(ctx, leaseName, "b"); err != nil {
		t.Fatal(err)
	}
	checkFenced(t, "Apply by b after releasing the lease", s.Apply(ctx, &store.Batch{Fence: fb, Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 1, State: store.TaskRunning}}}), "")
	checkFenced(t, "AppendTasksFenced by b after releasing the lease", s.AppendTasksFenced(ctx, fb, job.ID, moreTasks("gone", 7, 1)), "")
	if got := getJob(t, s, job.ID); got.TaskCount != 7 {
		t.Errorf("after fenced-off appends: task count %d, want 7", got.TaskCount)
	}
}

// testFenceHandover: holder a writes fenced batches one after another
// while b takes the lease from it; every batch that a was told succeeded is
// stored, none after b took the lease is, and a's first refused batch is
// the end of its writes.
func testFenceHandover(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(1))
	acquire(t, s, "a", base, 10*time.Second)
	fa := store.Fence{Lease: leaseName, Holder: "a"}

	const maxWrites = 20_000 // a bound, never reached: b takes the lease after a's tenth write
	wrote := make(chan struct{})
	taken := make(chan int32, 1) // task 0's attempts as read right after b took the lease
	go func() {
		<-wrote
		_, ok, err := s.AcquireLease(ctx, store.Lease{Name: leaseName, Holder: "b", ExpiresAt: base.Add(time.Minute)}, base.Add(11*time.Second))
		if err != nil || !ok {
			t.Errorf("b's AcquireLease: %v %v", ok, err)
			taken <- -1
			return
		}
		tk, err := s.GetTask(ctx, job.ID, "t-0")
		if err != nil {
			t.Errorf("GetTask after b took the lease: %v", err)
			taken <- -1
			return
		}
		taken <- tk.Attempts
	}()
	var last int32 // the last write a was told succeeded
	var err error
	for n := int32(1); n <= maxWrites; n++ {
		err = s.Apply(ctx, &store.Batch{Fence: fa, Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskRunning, Attempts: n}}})
		if err != nil {
			break
		}
		last = n
		if n == 10 {
			close(wrote)
		}
	}
	if last < 10 {
		close(wrote) // refused early (reported below); let b go on
	}
	checkFenced(t, fmt.Sprintf("a's write after %d", last), err, "b")
	atTakeover := <-taken
	if atTakeover < 0 {
		return
	}
	if atTakeover > last {
		t.Errorf("right after b took the lease, task 0 had attempts %d, beyond a's last acknowledged write %d", atTakeover, last)
	}
	if tk, err := s.GetTask(ctx, job.ID, "t-0"); err != nil || tk.Attempts != last {
		t.Errorf("after the handover: task 0 attempts %v (%v), want a's last acknowledged write %d", tk, err, last)
	}
	if atTakeover != last {
		t.Errorf("a's write %d was acknowledged but committed after b took the lease (task 0 had attempts %d then)", last, atTakeover)
	}
}

// testRejected: writes the store refuses for their data fail with
// ErrRejected, naming what is wrong, and write nothing; transient failures
// (a cancelled context) do not wrap it.
func testRejected(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(2))
	before, beforeTasks := getJob(t, s, job.ID), loadTasks(t, s, job.ID)
	good := func() store.Batch {
		return store.Batch{
			Tasks:    []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskSucceeded, Attempts: 1, StartedAt: base, FinishedAt: base.Add(time.Second)}},
			Attempts: []store.Attempt{{JobID: job.ID, TaskIndex: 0, Number: 1, WorkerID: "w1", State: store.AttemptSucceeded, StartedAt: base, FinishedAt: base.Add(time.Second)}},
			Jobs:     []store.JobUpdate{{ID: job.ID, State: store.JobRunning, Counts: store.TaskCounts{Blocked: 1, Succeeded: 1}, StartedAt: base}},
		}
	}
	for _, tc := range []struct {
		name  string
		edit  func(b *store.Batch)
		names []string // in the error
	}{
		{"overflowed CPU seconds", func(b *store.Batch) { b.Attempts[0].Usage.CPUUserSeconds = huge + huge }, []string{"cpu_user_seconds", "+Inf", "attempt 1 of task 0", job.ID}},
		{"NaN system CPU", func(b *store.Batch) { b.Attempts[0].Usage.CPUSystemSeconds = math.NaN() }, []string{"cpu_system_seconds", "NaN"}},
		{"infinite job CPU", func(b *store.Batch) { b.Jobs[0].Usage.CPUUsedSeconds = math.Inf(1) }, []string{"cpu_used_seconds", "job " + job.ID}},
		{"invalid UTF-8 message", func(b *store.Batch) { b.Attempts[0].Message = "exit \xff\xfe" }, []string{"message", "UTF-8"}},
		{"NUL in a message", func(b *store.Batch) { b.Attempts[0].Message = "a\x00b" }, []string{"message", "NUL"}},
		{"NUL in a reason", func(b *store.Batch) { b.Tasks[0].Reason = "x\x00" }, []string{"reason", "task 0 of job " + job.ID}},
		{"missing task", func(b *store.Batch) {
			b.Tasks = append(b.Tasks, store.TaskUpdate{JobID: job.ID, Index: 9, State: store.TaskQueued})
		}, []string{"task 9", job.ID}},
		{"missing job", func(b *store.Batch) {
			b.Jobs = append(b.Jobs, store.JobUpdate{ID: "ghost-job", State: store.JobRunning})
		}, []string{"ghost-job"}},
	} {
		b := good()
		tc.edit(&b)
		err := s.Apply(ctx, &b)
		if !errors.Is(err, store.ErrRejected) {
			t.Errorf("%s: Apply: %v, want an error wrapping store.ErrRejected", tc.name, err)
			continue
		}
		if errors.Is(err, store.ErrFenced) {
			t.Errorf("%s: Apply: %v wraps ErrFenced", tc.name, err)
		}
		for _, w := range tc.names {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not name %q", tc.name, err, w)
			}
		}
		checkUnchanged(t, s, tc.name, before, beforeTasks)
		checkAttempts(t, s, job.ID, 0, nil)
	}
	// Fenced and refused: the data is checked before the lease (a refused
	// batch is refused whoever writes it).
	b := good()
	b.Fence = store.Fence{Lease: "nobody's", Holder: "a"}
	b.Attempts[0].Usage.CPUUserSeconds = math.Inf(1)
	if err := s.Apply(ctx, &b); !errors.Is(err, store.ErrRejected) {
		t.Errorf("refused batch under a lease nobody holds: %v, want ErrRejected", err)
	}

	// The other writes.
	if err := s.CreateJob(ctx, newJob(job.ID), newTasks(1)); !errors.Is(err, store.ErrRejected) {
		t.Errorf("CreateJob of a used ID: %v, want ErrRejected", err)
	}
	bad := newTasks(1)
	bad[0].Argv = []string{"\x00"}
	if err := s.CreateJob(ctx, newJob(newID(base, 2)), bad); !errors.Is(err, store.ErrRejected) {
		t.Errorf("CreateJob of a NUL argv: %v, want ErrRejected", err)
	}
	dup := moreTasks("new", 2, 2)
	dup[1].Key = "t-1"
	for what, tasks := range map[string][]store.Task{
		"a used key":     dup,
		"a wrong index":  moreTasks("new", 5, 1),
		"invalid UTF-8":  func() []store.Task { ts := moreTasks("new", 2, 1); ts[0].Cwd = "\xff"; return ts }(),
		"a missing tier": func() []store.Task { ts := moreTasks("new", 2, 1); ts[0].Tier = 7; return ts }(),
		"a NUL in an env": func() []store.Task {
			ts := moreTasks("new", 2, 1)
			ts[0].Env = map[string]string{"A": "\x00"}
			return ts
		}(),
	} {
		err := s.AppendTasksFenced(ctx, store.Fence{}, job.ID, tasks)
		if !errors.Is(err, store.ErrRejected) {
			t.Errorf("AppendTasks of %s: %v, want ErrRejected", what, err)
		}
		checkUnchanged(t, s, "AppendTasks of "+what, before, beforeTasks)
	}
	apply(t, s, &store.Batch{Jobs: []store.JobUpdate{{ID: job.ID, State: store.JobSucceeded, Counts: store.TaskCounts{Succeeded: 2}}}})
	if err := s.AppendTasks(ctx, job.ID, moreTasks("new", 2, 1)); !errors.Is(err, store.ErrRejected) {
		t.Errorf("AppendTasks to an ended job: %v, want ErrRejected", err)
	}
}
