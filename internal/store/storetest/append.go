package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/haul-dev/haul/internal/store"
)

// bigAppendTasks is the task count of the large-append test: 20,001
// (2,001 under the race detector, as bigJobTasks): several chunks of the
// sqlite driver's multi-row INSERTs and a last, partial one.
const bigAppendTasks = bigJobTasks/5 + 1

// moreTasks returns n tasks with indexes from, from+1, ..., keyed
// prefix-0, prefix-1, ..., each after t-0.
func moreTasks(prefix string, from, n int) []store.Task {
	tasks := newTasks(n)
	for i := range tasks {
		tasks[i].Index = int32(from + i)
		tasks[i].Key = fmt.Sprintf("%s-%d", prefix, i)
		tasks[i].After = []string{"t-0"}
	}
	return tasks
}

func appendTasks(t *testing.T, s store.Store, jobID string, tasks []store.Task) {
	t.Helper()
	if err := s.AppendTasks(t.Context(), jobID, tasks); err != nil {
		t.Fatalf("AppendTasks(%s, %d tasks): %v", jobID, len(tasks), err)
	}
}

// checkUnchanged checks that job id and its tasks are as they were.
func checkUnchanged(t *testing.T, s store.Store, what string, job *store.Job, tasks []store.Task) {
	t.Helper()
	if got := getJob(t, s, job.ID); !reflect.DeepEqual(got, job) {
		t.Errorf("%s: job changed:\n got %#v\nwant %#v", what, got, job)
	}
	if got := loadTasks(t, s, job.ID); !reflect.DeepEqual(got, tasks) {
		t.Errorf("%s: tasks changed: now %d tasks %v, were %d", what, len(got), keysOf(got[min(len(got), len(tasks)):]), len(tasks))
	}
}

func testAppendRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	old := newTasks(3)
	create(t, s, job, old)
	// The job runs and one task has succeeded.
	apply(t, s, &store.Batch{
		Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 0, State: store.TaskSucceeded, Attempts: 1}},
		Jobs:  []store.JobUpdate{{ID: job.ID, State: store.JobRunning, Counts: store.TaskCounts{Blocked: 2, Succeeded: 1}, StartedAt: base}},
	})
	added := moreTasks("dyn", 3, 4)
	added[0].JobID = job.ID // may be set, or left empty
	added[1].Tier, added[1].RunTier = 1, 0
	added[2].Tier, added[2].RunTier = 0, 1
	// Mutable fields set by the caller do not matter: a task starts blocked.
	added[3].State, added[3].Attempts, added[3].StartedAt, added[3].Reason = store.TaskRunning, 2, base, "x"
	appendTasks(t, s, job.ID, added)

	wantJob := storedJob(job, 3)
	wantJob.State, wantJob.StartedAt = store.JobRunning, base
	wantJob.TaskCount, wantJob.Counts = 7, store.TaskCounts{Blocked: 6, Succeeded: 1}
	checkJob(t, getJob(t, s, job.ID), wantJob)
	want := storedTasks(job.ID, old)
	want[0].State, want[0].Attempts = store.TaskSucceeded, 1
	want = append(want, storedTasks(job.ID, added)...)
	checkTasks(t, loadTasks(t, s, job.ID), want)

	got, err := s.GetTask(ctx, job.ID, "dyn-2")
	if err != nil {
		t.Fatalf("GetTask(dyn-2): %v", err)
	}
	checkTasks(t, []store.Task{*got}, want[5:6])
	listed, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, KeyGlob: "dyn-*", After: -1})
	if err != nil {
		t.Fatal(err)
	}
	checkTasks(t, listed, want[3:])
	blocked, err := s.ListTasks(ctx, store.TaskFilter{JobID: job.ID, States: []store.TaskState{store.TaskBlocked}, After: -1})
	if err != nil {
		t.Fatal(err)
	}
	checkTasks(t, blocked, want[1:])
}

func testAppendTwice(t *testing.T, s store.Store) {
	job := newJob(newID(base, 1))
	create(t, s, job, nil) // a job may start without tasks and grow
	first, second := moreTasks("a", 0, 2), moreTasks("b", 2, 3)
	appendTasks(t, s, job.ID, first)
	appendTasks(t, s, job.ID, second)
	wantJob := storedJob(job, 5)
	checkJob(t, getJob(t, s, job.ID), wantJob)
	checkTasks(t, loadTasks(t, s, job.ID), storedTasks(job.ID, append(slices.Clone(first), second...)))
}

func testAppendWrongIndex(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(3))
	before, beforeTasks := getJob(t, s, job.ID), loadTasks(t, s, job.ID)
	for _, tc := range []struct {
		name    string
		indexes []int32
		got     int32 // the index named as wrong
		want    int64 // and the one wanted
	}{
		{"gap after the stored tasks", []int32{4, 5}, 4, 3},
		{"overlaps the stored tasks", []int32{2, 3}, 2, 3},
		{"from zero", []int32{0}, 0, 3},
		{"gap within the batch", []int32{3, 5}, 5, 4},
		{"swapped", []int32{4, 3}, 4, 3},
		{"repeated", []int32{3, 3}, 3, 4},
		{"negative", []int32{-1}, -1, 3},
	} {
		tasks := moreTasks("x", 0, len(tc.indexes))
		for i, idx := range tc.indexes {
			tasks[i].Index = idx
		}
		err := s.AppendTasks(ctx, job.ID, tasks)
		if err == nil {
			t.Errorf("%s: AppendTasks succeeded, want an error", tc.name)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("index %d", tc.got)) || !strings.Contains(msg, fmt.Sprintf("want %d", tc.want)) || !strings.Contains(msg, job.ID) {
			t.Errorf("%s: error %q does not name index %d, the wanted %d and the job", tc.name, err, tc.got, tc.want)
		}
		if errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: error %q wraps ErrNotFound", tc.name, err)
		}
		checkUnchanged(t, s, tc.name, before, beforeTasks)
	}
}

func testAppendDuplicateKey(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(3))
	before, beforeTasks := getJob(t, s, job.ID), loadTasks(t, s, job.ID)
	for _, tc := range []struct {
		name  string
		tasks []store.Task
		key   string // named in the error
	}{
		{"key of a stored task", func() []store.Task {
			ts := moreTasks("new", 3, 2)
			ts[1].Key = "t-1"
			return ts
		}(), `"t-1"`},
		{"key twice in the batch", func() []store.Task {
			ts := moreTasks("new", 3, 3)
			ts[2].Key = ts[0].Key
			return ts
		}(), `"new-0"`},
		// The duplicate comes in the last of several chunks: the earlier
		// ones are not kept either.
		{"key of a stored task at the end of a large batch", func() []store.Task {
			ts := moreTasks("new", 3, 1201)
			ts[len(ts)-1].Key = "t-2"
			return ts
		}(), `"t-2"`},
	} {
		err := s.AppendTasks(ctx, job.ID, tc.tasks)
		if err == nil {
			t.Errorf("%s: AppendTasks succeeded, want an error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), job.ID) {
			t.Errorf("%s: error %q does not name key %s and the job", tc.name, err, tc.key)
		}
		checkUnchanged(t, s, tc.name, before, beforeTasks)
	}
	// The refused appends used no index: the next one starts where they did.
	appendTasks(t, s, job.ID, moreTasks("new", 3, 2))
	if got := getJob(t, s, job.ID); got.TaskCount != 5 || got.Counts.Blocked != 5 {
		t.Errorf("after a good append: task count %d, blocked %d; want 5, 5", got.TaskCount, got.Counts.Blocked)
	}
}

func testAppendRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1)) // two tiers
	create(t, s, job, newTasks(3))
	plain := newJob(newID(base, 2))
	plain.Tiers = nil
	create(t, s, plain, newTasks(1))
	for _, tc := range []struct {
		name  string
		job   *store.Job
		first int
		edit  func(ts []store.Task)
		want  string // in the error
	}{
		{"empty key", job, 3, func(ts []store.Task) { ts[1].Key = "" }, "key"},
		{"other job's task", job, 3, func(ts []store.Task) { ts[0].JobID = "other" }, `"other"`},
		{"NUL in argv", job, 3, func(ts []store.Task) { ts[1].Argv = []string{"a\x00b"} }, "argv"},
		{"invalid UTF-8 in cwd", job, 3, func(ts []store.Task) { ts[0].Cwd = "\xff\xfe" }, "cwd"},
		{"NUL in key", job, 3, func(ts []store.Task) { ts[1].Key = "k\x00" }, "key"},
		{"tier past the job's tiers", job, 3, func(ts []store.Task) { ts[1].Tier = 2 }, "tier 2"},
		{"negative run tier", job, 3, func(ts []store.Task) { ts[0].RunTier = -1 }, "run tier -1"},
		{"tier of a job without tiers", plain, 1, func(ts []store.Task) { ts[1].Tier = 1 }, "tier 1"},
	} {
		before, beforeTasks := getJob(t, s, tc.job.ID), loadTasks(t, s, tc.job.ID)
		tasks := moreTasks("bad", tc.first, 2)
		for i := range tasks {
			tasks[i].Tier = 0
		}
		tc.edit(tasks)
		err := s.AppendTasks(ctx, tc.job.ID, tasks)
		if err == nil {
			t.Errorf("%s: AppendTasks succeeded, want an error", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.job.ID) {
			t.Errorf("%s: error %q does not mention %q and the job", tc.name, err, tc.want)
		}
		checkUnchanged(t, s, tc.name, before, beforeTasks)
	}
}

func testAppendEnded(t *testing.T, s store.Store) {
	ctx := t.Context()
	states := []store.JobState{store.JobPending, store.JobRunning, store.JobSucceeded, store.JobFailed, store.JobCancelled}
	ids := make([]string, len(states))
	var b store.Batch
	for i, st := range states {
		ids[i] = newID(base, uint64(i))
		create(t, s, newJob(ids[i]), newTasks(1))
		if st != store.JobPending {
			b.Jobs = append(b.Jobs, store.JobUpdate{ID: ids[i], State: st, Counts: store.TaskCounts{Succeeded: 1}})
		}
	}
	apply(t, s, &b)
	for i, st := range states {
		before, beforeTasks := getJob(t, s, ids[i]), loadTasks(t, s, ids[i])
		for _, tasks := range [][]store.Task{moreTasks("late", 1, 2), nil} {
			err := s.AppendTasks(ctx, ids[i], tasks)
			switch {
			case !st.Terminal() && err != nil:
				t.Errorf("AppendTasks(%s job, %d tasks): %v", st, len(tasks), err)
			case st.Terminal() && err == nil:
				t.Errorf("AppendTasks(%s job, %d tasks) succeeded, want an error", st, len(tasks))
			case st.Terminal():
				if msg := err.Error(); !strings.Contains(msg, "ended") || !strings.Contains(msg, string(st)) || !strings.Contains(msg, ids[i]) {
					t.Errorf("AppendTasks(%s job): error %q does not say the job %s has ended (%s)", st, err, ids[i], st)
				}
				if errors.Is(err, store.ErrNotFound) {
					t.Errorf("AppendTasks(%s job): error %q wraps ErrNotFound", st, err)
				}
				checkUnchanged(t, s, fmt.Sprintf("append to a %s job", st), before, beforeTasks)
			}
		}
		if got := getJob(t, s, ids[i]); !st.Terminal() && (got.TaskCount != before.TaskCount+2 || got.Counts.Blocked != before.Counts.Blocked+2) {
			t.Errorf("%s job after appending 2 tasks: task count %d, blocked %d; were %d, %d", st, got.TaskCount, got.Counts.Blocked, before.TaskCount, before.Counts.Blocked)
		}
	}
}

func testAppendNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	create(t, s, newJob("some-job"), newTasks(1))
	for _, id := range []string{"no-such-job", "some-jo", "", "a\x00b", "\xff"} {
		for _, tasks := range [][]store.Task{moreTasks("x", 0, 2), nil} {
			err := s.AppendTasks(ctx, id, tasks)
			checkNotFound(t, fmt.Sprintf("AppendTasks(%q, %d tasks)", id, len(tasks)), err, id)
		}
	}
}

// testAppendEmpty: no tasks is no change, not an error (an unknown or
// ended job still is: see testAppendNotFound and testAppendEnded).
func testAppendEmpty(t *testing.T, s store.Store) {
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(2))
	before, beforeTasks := getJob(t, s, job.ID), loadTasks(t, s, job.ID)
	for _, tasks := range [][]store.Task{nil, {}} {
		appendTasks(t, s, job.ID, tasks)
		checkUnchanged(t, s, fmt.Sprintf("append of %#v", tasks), before, beforeTasks)
	}
}

func testAppendLarge(t *testing.T, s store.Store) {
	const n = bigAppendTasks
	job := newJob(newID(base, 1))
	old := newTasks(3)
	create(t, s, job, old)
	added := moreTasks("big", 3, n)
	appendTasks(t, s, job.ID, added)
	checkJob(t, getJob(t, s, job.ID), storedJob(job, 3+n))
	got := loadTasks(t, s, job.ID)
	if len(got) != 3+n {
		t.Fatalf("LoadTasks: %d tasks, want %d", len(got), 3+n)
	}
	want := append(storedTasks(job.ID, old), storedTasks(job.ID, added)...)
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("task %d:\n got %#v\nwant %#v", i, got[i], want[i])
		}
	}
	last := added[n-1].Key
	if one, err := s.GetTask(t.Context(), job.ID, last); err != nil || one.Index != int32(3+n-1) {
		t.Errorf("GetTask(%s) = %+v, %v; want index %d", last, one, err, 3+n-1)
	}
}

// testAppendConcurrent: appenders racing for one job each read its task
// count and append one task there; the loser of a race is refused (its
// index is taken) and tries again. Every task ends up stored once, at
// contiguous indexes.
func testAppendConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const appenders, each = 4, 5
	job := newJob(newID(base, 1))
	create(t, s, job, newTasks(1))
	var wg sync.WaitGroup
	errs := make(chan error, appenders)
	for w := range appenders {
		wg.Go(func() {
			for k := range each {
				key := fmt.Sprintf("w%d-%d", w, k)
				// Each refusal means another appender's task went in
				// first, so there are fewer than appenders*each of them.
				for try := 0; ; try++ {
					j, err := s.GetJob(ctx, job.ID)
					if err != nil {
						errs <- err
						return
					}
					err = s.AppendTasks(ctx, job.ID, []store.Task{{Index: int32(j.TaskCount), Key: key}})
					if err == nil {
						break
					}
					if !strings.Contains(err.Error(), "index") || try > appenders*each {
						errs <- fmt.Errorf("appender %d, task %s, try %d: %w", w, key, try, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := loadTasks(t, s, job.ID)
	if j := getJob(t, s, job.ID); j.TaskCount != 1+appenders*each || j.Counts.Blocked != j.TaskCount || int64(len(got)) != j.TaskCount {
		t.Errorf("task count %d, blocked %d, %d tasks stored; want %d of each", j.TaskCount, j.Counts.Blocked, len(got), 1+appenders*each)
	}
	seen := map[string]bool{}
	for i, task := range got {
		if task.Index != int32(i) {
			t.Errorf("task %d has index %d", i, task.Index)
		}
		seen[task.Key] = true
	}
	for w := range appenders {
		for k := range each {
			if key := fmt.Sprintf("w%d-%d", w, k); !seen[key] {
				t.Errorf("task %s missing", key)
			}
		}
	}
}
