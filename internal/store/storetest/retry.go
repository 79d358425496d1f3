package storetest

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// retryModel is what RetryTasks must do to a job's tasks: reset holds the
// indexes expected to run again.
func retryModel(before []store.Task, reset []int32) []store.Task {
	out := slices.Clone(before)
	for _, i := range reset {
		t := &out[i]
		t.State = store.TaskBlocked
		t.RetryBase = t.Attempts
		t.Reason, t.ExitCode = "", 0
		t.FinishedAt = time.Time{}
		t.DurationMS, t.PeakRSSBytes = -1, 0
	}
	return out
}

func countsOf(tasks []store.Task) store.TaskCounts {
	var c store.TaskCounts
	for _, t := range tasks {
		c.Add(t.State, 1)
	}
	return c
}

func checkRejected(t *testing.T, what string, err error, words ...string) {
	t.Helper()
	if !errors.Is(err, store.ErrRejected) {
		t.Errorf("%s: error %v, want one wrapping store.ErrRejected", what, err)
		return
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not say %q", what, err, w)
		}
	}
}

// endRetryJob ends a job as a runner would: each task in the state (and
// attempts) given, the job in state st.
func endRetryJob(t *testing.T, s store.Store, id string, tasks []store.Task, st store.JobState, at time.Time) {
	t.Helper()
	b := store.Batch{}
	for _, tk := range tasks {
		u := store.TaskUpdate{JobID: id, Index: tk.Index, RunTier: tk.Tier, State: tk.State, Attempts: tk.Attempts,
			ExitCode: tk.ExitCode, Reason: tk.Reason}
		if tk.Attempts > 0 {
			u.StartedAt, u.FinishedAt, u.PeakRSSBytes = at.Add(-time.Second), at, 1<<20
		}
		b.Tasks = append(b.Tasks, u)
	}
	b.Jobs = []store.JobUpdate{{ID: id, State: st, Counts: countsOf(tasks), StartedAt: at.Add(-time.Minute), FinishedAt: at}}
	apply(t, s, &b)
}

func testRetryTasks(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.RetryTasks(ctx, "no-such-job", store.RetryFilter{})
	checkNotFound(t, "RetryTasks(unknown)", err, "no-such-job")

	id := newID(base, 1)
	job := newJob(id)
	job.Params = map[string]string{"n": "5", "model": "m1"}
	job.Notify = &store.JobNotify{Webhook: "https://hooks.example/x", On: []string{"failed", "succeeded"}}
	keys := []string{"prep", "sim-0", "sim-1", "sim-2", "sim-3", "merge", "report", "side", "x"}
	after := [][]string{nil, {"prep"}, {"prep"}, {"prep"}, {"prep"}, {"sim-*"}, {"merge"}, nil, {"side"}}
	tasks := make([]store.Task, len(keys))
	for i := range tasks {
		tasks[i] = store.Task{Index: int32(i), Key: keys[i], Argv: []string{"true"}, After: after[i], Retries: 1}
	}
	create(t, s, job, tasks)

	got := getJob(t, s, id)
	if !reflect.DeepEqual(got.Params, job.Params) {
		t.Errorf("Params = %v, want %v", got.Params, job.Params)
	}
	if want := (store.JobNotify{Webhook: job.Notify.Webhook, On: job.Notify.On, State: "pending"}); got.Notify == nil || !reflect.DeepEqual(*got.Notify, want) {
		t.Errorf("Notify = %+v, want %+v", got.Notify, want)
	}
	if got.Retries != 0 {
		t.Errorf("Retries = %d, want 0", got.Retries)
	}

	// A job that has not ended is refused.
	_, err = s.RetryTasks(ctx, id, store.RetryFilter{})
	checkRejected(t, "RetryTasks(pending job)", err, id, "pending")
	apply(t, s, &store.Batch{Jobs: []store.JobUpdate{{ID: id, State: store.JobRunning, Counts: store.TaskCounts{Blocked: 9}}}})
	_, err = s.RetryTasks(ctx, id, store.RetryFilter{})
	checkRejected(t, "RetryTasks(running job)", err, id, "running")
	if err := s.RequestCancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := s.RequestTaskCancel(ctx, id, 4); err != nil {
		t.Fatal(err)
	}

	// The job ends: sim-2 failed after 2 attempts, sim-3 cancelled, side
	// failed; their dependents upstream_failed.
	st := []store.TaskState{store.TaskSucceeded, store.TaskSucceeded, store.TaskSucceeded, store.TaskFailed, store.TaskCancelled,
		store.TaskUpstreamFailed, store.TaskUpstreamFailed, store.TaskFailed, store.TaskUpstreamFailed}
	attempts := []int32{1, 1, 2, 2, 1, 0, 0, 1, 0}
	for i := range tasks {
		tasks[i].State, tasks[i].Attempts = st[i], attempts[i]
		switch st[i] {
		case store.TaskFailed:
			tasks[i].ExitCode, tasks[i].Reason = 3, "exit"
		case store.TaskCancelled:
			tasks[i].Reason = "cancelled"
		case store.TaskUpstreamFailed:
			tasks[i].Reason = "upstream: sim-2 failed"
		}
	}
	end := base.Add(time.Hour)
	endRetryJob(t, s, id, tasks, store.JobFailed, end)
	before := loadTasks(t, s, id)

	// An upstream_failed task's reason names the failed task; the reason
	// filter "upstream" finds them all, an exact reason too, a part of
	// the word none.
	for reason, want := range map[string][]string{
		"upstream": {"merge", "report", "x"}, "upstream: sim-2 failed": {"merge", "report", "x"}, "upstrea": nil, "exit": {"sim-2", "side"},
	} {
		got, err := s.ListTasks(ctx, store.TaskFilter{JobID: id, Reason: reason, After: -1})
		if err != nil {
			t.Fatalf("ListTasks(reason %q): %v", reason, err)
		}
		if keys := keysOf(got); !slices.Equal(keys, want) {
			t.Errorf("ListTasks(reason %q) = %v, want %v", reason, keys, want)
		}
	}

	// Refused filters change nothing.
	_, err = s.RetryTasks(ctx, id, store.RetryFilter{States: []store.TaskState{store.TaskRunning}})
	checkRejected(t, "RetryTasks(state running)", err, `"running"`)
	_, err = s.RetryTasks(ctx, id, store.RetryFilter{KeyGlob: "nope-*"})
	checkRejected(t, "RetryTasks(no match)", err, "no task matches", `"nope-*"`)
	_, err = s.RetryTasks(ctx, id, store.RetryFilter{KeyGlob: "prep", States: []store.TaskState{store.TaskFailed}})
	checkRejected(t, "RetryTasks(succeeded key)", err, "no task matches", "prep")
	_, err = s.RetryTasks(ctx, id, store.RetryFilter{KeyGlob: "sim-["})
	checkRejected(t, "RetryTasks(bad glob)", err, "sim-[")
	checkTasks(t, loadTasks(t, s, id), before)
	if j := getJob(t, s, id); j.State != store.JobFailed || j.Retries != 0 {
		t.Fatalf("a refused retry changed the job: state %s, retries %d", j.State, j.Retries)
	}

	// sim-* in the default states: sim-2 and sim-3, and through the glob
	// group merge and report; not side or x.
	res, err := s.RetryTasks(ctx, id, store.RetryFilter{KeyGlob: "sim-*"})
	if err != nil {
		t.Fatalf("RetryTasks(sim-*): %v", err)
	}
	if want := (store.RetryResult{Matched: []string{"sim-2", "sim-3"}, Retried: 4}); !reflect.DeepEqual(res, want) {
		t.Errorf("RetryTasks(sim-*) = %+v, want %+v", res, want)
	}
	want := retryModel(before, []int32{3, 4, 5, 6})
	after1 := loadTasks(t, s, id)
	checkTasks(t, after1, want)
	j := getJob(t, s, id)
	if j.State != store.JobPending || !j.FinishedAt.IsZero() || j.CancelRequested || j.Retries != 1 || j.Counts != countsOf(want) {
		t.Errorf("job after retry: state %s finished %v cancel %v retries %d counts %+v, want pending, zero, false, 1, %+v",
			j.State, j.FinishedAt, j.CancelRequested, j.Retries, j.Counts, countsOf(want))
	}
	if j.Notify == nil || j.Notify.State != "pending" || j.Notify.Round != 0 {
		t.Errorf("Notify after retry = %+v, want state pending, round 0", j.Notify)
	}
	if !reflect.DeepEqual(j.Params, job.Params) {
		t.Errorf("Params after retry = %v", j.Params)
	}
	cancels, err := s.ListTaskCancels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(cancels, store.TaskRef{JobID: id, Index: 4}) {
		t.Errorf("the cancel request of retried task sim-3 is still there: %v", cancels)
	}
	// Pending again: refused until it ends.
	_, err = s.RetryTasks(ctx, id, store.RetryFilter{})
	checkRejected(t, "RetryTasks(retried job)", err, "pending")

	// A write of the run before the retry (JobUpdate.Run 1) is skipped,
	// in a batch with other changes that apply; one of this run (2)
	// applies.
	apply(t, s, &store.Batch{
		Jobs:  []store.JobUpdate{{ID: id, State: store.JobFailed, Counts: countsOf(before), FinishedAt: end.Add(time.Minute), WorkerSeconds: 99, Run: 1}},
		Tasks: []store.TaskUpdate{{JobID: id, Index: 7, State: store.TaskFailed, Attempts: 1, ExitCode: 3, Reason: "exit", StartedAt: end.Add(-time.Second), FinishedAt: end}},
	})
	if j := getJob(t, s, id); j.State != store.JobPending || j.WorkerSeconds == 99 || !j.FinishedAt.IsZero() {
		t.Errorf("a stale job update applied: state %s worker seconds %v finished %v", j.State, j.WorkerSeconds, j.FinishedAt)
	}
	apply(t, s, &store.Batch{Jobs: []store.JobUpdate{{ID: id, State: store.JobRunning, Counts: countsOf(want), StartedAt: end, Run: 2}}})
	if j := getJob(t, s, id); j.State != store.JobRunning {
		t.Errorf("an update of the job's run did not apply: state %s", j.State)
	}
	if err := s.Apply(ctx, &store.Batch{Jobs: []store.JobUpdate{{ID: "no-such-job", State: store.JobRunning, Run: 2}}}); !errors.Is(err, store.ErrNotFound) || !errors.Is(err, store.ErrRejected) {
		t.Errorf("a conditional update of an unknown job: %v, want not found, rejected", err)
	}

	// The second run: sim-2 succeeds at attempt 3, sim-3 at 2, merge and
	// report succeed, and the job fails again for side. Then retry the
	// failed tasks only: side and x.
	for i, a := range map[int]int32{3: 3, 4: 2, 5: 1, 6: 1} {
		after1[i].State, after1[i].Attempts, after1[i].Reason, after1[i].ExitCode = store.TaskSucceeded, a, "", 0
	}
	endRetryJob(t, s, id, after1, store.JobFailed, end.Add(time.Hour))
	before = loadTasks(t, s, id)
	res, err = s.RetryTasks(ctx, id, store.RetryFilter{States: []store.TaskState{store.TaskFailed}})
	if err != nil {
		t.Fatalf("RetryTasks(failed): %v", err)
	}
	if want := (store.RetryResult{Matched: []string{"side"}, Retried: 2}); !reflect.DeepEqual(res, want) {
		t.Errorf("RetryTasks(failed) = %+v, want %+v", res, want)
	}
	want = retryModel(before, []int32{7, 8})
	checkTasks(t, loadTasks(t, s, id), want)
	if j := getJob(t, s, id); j.Retries != 2 || j.State != store.JobPending || j.Counts != countsOf(want) {
		t.Errorf("job after the second retry: retries %d state %s counts %+v", j.Retries, j.State, j.Counts)
	}

	// A job without a webhook keeps none.
	id2 := newID(base, 2)
	tasks2 := newTasks(2)
	tasks2[0].After, tasks2[1].After = nil, []string{"t-0"}
	create(t, s, newJob(id2), tasks2)
	two := loadTasks(t, s, id2)
	two[0].State, two[0].Attempts = store.TaskCancelled, 0
	two[1].State, two[1].Attempts = store.TaskCancelled, 1
	endRetryJob(t, s, id2, two, store.JobCancelled, end)
	res, err = s.RetryTasks(ctx, id2, store.RetryFilter{KeyGlob: "t-1"})
	if err != nil {
		t.Fatalf("RetryTasks(cancelled job): %v", err)
	}
	if res.Retried != 1 || !slices.Equal(res.Matched, []string{"t-1"}) {
		t.Errorf("RetryTasks(t-1) = %+v", res)
	}
	if j := getJob(t, s, id2); j.Notify != nil || j.Params != nil || j.Retries != 1 {
		t.Errorf("job without webhook: Notify %+v Params %v Retries %d", j.Notify, j.Params, j.Retries)
	}

	// Succeeded tasks run again when named; their succeeded dependents
	// keep their success.
	id3 := newID(base, 3)
	tasks3 := newTasks(3)
	tasks3[0].After, tasks3[1].After, tasks3[2].After = nil, []string{"t-0"}, []string{"t-1"}
	create(t, s, newJob(id3), tasks3)
	three := loadTasks(t, s, id3)
	for i := range three {
		three[i].State, three[i].Attempts = store.TaskSucceeded, 1
	}
	endRetryJob(t, s, id3, three, store.JobSucceeded, end)
	before = loadTasks(t, s, id3)
	res, err = s.RetryTasks(ctx, id3, store.RetryFilter{KeyGlob: "t-1", States: []store.TaskState{store.TaskSucceeded}})
	if err != nil {
		t.Fatalf("RetryTasks(succeeded t-1): %v", err)
	}
	if res.Retried != 1 || !slices.Equal(res.Matched, []string{"t-1"}) {
		t.Errorf("RetryTasks(succeeded t-1) = %+v", res)
	}
	checkTasks(t, loadTasks(t, s, id3), retryModel(before, []int32{1}))
}
