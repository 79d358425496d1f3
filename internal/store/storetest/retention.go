package storetest

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// ExerciseRetention runs the conformance suite of store.RetentionStore:
// only terminal, exported jobs finished before the cutoff are retired,
// with every row that references them; the archive row reads back; a
// rerun changes nothing; a pass stopped midway is finished by the next;
// and a job of 25,000 tasks goes in deletes of bounded size. open is as
// for Exercise.
func ExerciseRetention(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Retire", func(t *testing.T) { t.Parallel(); testRetire(t, open(t)) })
	t.Run("Resume", func(t *testing.T) { t.Parallel(); testRetireResume(t, open(t)) })
	t.Run("LargeJob", func(t *testing.T) { t.Parallel(); testRetireLarge(t, open(t)) })
}

const retireHistory = "s3://haul-history/prod?region=eu-west-1"

// endedJob stores a job of n tasks that ended in state at finished, with
// accounting, an attempt and a log entry for each task, a worker, and a
// task cancel request (made while it ran).
func endedJob(t *testing.T, s store.Store, seed uint64, n int, state store.JobState, finished time.Time) *store.Job {
	t.Helper()
	ctx := t.Context()
	job := newJob(newID(base.Add(time.Duration(seed)*time.Millisecond), seed))
	job.SubmittedBy = "alice@example.com"
	create(t, s, job, newTasks(n))
	if err := s.RequestTaskCancel(ctx, job.ID, 0); err != nil {
		t.Fatal(err)
	}
	atts := make([]store.Attempt, n)
	entries := make([]store.LogEntry, n)
	for i := range n {
		atts[i] = store.Attempt{JobID: job.ID, TaskIndex: int32(i), Number: 1, WorkerID: "w", State: store.AttemptSucceeded,
			Reason: "exit", StartedAt: base, FinishedAt: finished}
		entries[i] = logEntry(job.ID, int32(i), 1)
	}
	apply(t, s, &store.Batch{Attempts: atts, Jobs: []store.JobUpdate{{ID: job.ID, State: state,
		Counts:        store.TaskCounts{Succeeded: int64(n) - 1, Cancelled: 1},
		WorkerSeconds: 12.5, CostUSD: 0.75, StartedAt: base, FinishedAt: finished}}})
	if err := s.PutLogEntries(ctx, entries); err != nil {
		t.Fatal(err)
	}
	ws := []store.WorkerRecord{
		{ID: job.ID + "-w1", JobID: job.ID, Cluster: "local", Team: job.Namespace, StartedAt: base, EndedAt: finished, EndReason: "exit"},
		{ID: job.ID + "-w2", JobID: job.ID, Cluster: "local", Team: job.Namespace, StartedAt: base},
	}
	if err := s.PutWorkers(ctx, ws); err != nil {
		t.Fatal(err)
	}
	return job
}

// exportAll claims and finishes export batches until none is left.
func exportAll(t *testing.T, s store.Store, before time.Time) []int64 {
	t.Helper()
	var ids []int64
	for {
		b, ok := claim(t, s, 100, before)
		if !ok {
			return ids
		}
		if err := s.FinishExportBatch(t.Context(), b.ID, map[string]int64{"jobs": b.JobCount}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, b.ID)
	}
}

func retire(t *testing.T, s store.Store, ctx context.Context, before time.Time, limit int, history string) []string {
	t.Helper()
	ids, err := s.RetireJobs(ctx, before, limit, history)
	if err != nil {
		t.Fatalf("RetireJobs(%v, %d): %v", before, limit, err)
	}
	return ids
}

// checkLive checks that a job and all its rows are in the live tables.
func checkLive(t *testing.T, s store.Store, job *store.Job, tasks int) {
	t.Helper()
	ctx := t.Context()
	getJob(t, s, job.ID)
	if got := loadTasks(t, s, job.ID); len(got) != tasks {
		t.Errorf("job %s: %d tasks live; want %d", job.ID, len(got), tasks)
	}
	if as, err := s.ListAttempts(ctx, job.ID, 0); err != nil || len(as) != 1 {
		t.Errorf("job %s: ListAttempts(0) = %d, %v; want 1", job.ID, len(as), err)
	}
	if es, err := s.ListLogEntries(ctx, store.LogEntryFilter{JobID: job.ID, TaskIndex: -1, AfterTask: -1}); err != nil || len(es) != tasks {
		t.Errorf("job %s: %d log entries, %v; want %d", job.ID, len(es), err, tasks)
	}
	if ws, err := s.ListWorkers(ctx, job.ID); err != nil || len(ws) != 2 {
		t.Errorf("job %s: %d workers, %v; want 2", job.ID, len(ws), err)
	}
}

// checkGone checks that no live row of a job is left.
func checkGone(t *testing.T, s store.Store, id string) {
	t.Helper()
	ctx := t.Context()
	if _, err := s.GetJob(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetJob(retired %s) = %v; want ErrNotFound", id, err)
	}
	if _, err := s.LoadTasks(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LoadTasks(retired %s) = %v; want ErrNotFound", id, err)
	}
	if ts, err := s.ListTasks(ctx, store.TaskFilter{JobID: id, After: -1}); err == nil && len(ts) > 0 {
		t.Errorf("ListTasks(retired %s) = %d tasks", id, len(ts))
	}
	if as, err := s.ListJobAttempts(ctx, id, -1, 0, 10); err != nil || len(as) != 0 {
		t.Errorf("retired %s: attempts %d, %v; want none", id, len(as), err)
	}
	if es, err := s.ListLogEntries(ctx, store.LogEntryFilter{JobID: id, TaskIndex: -1, AfterTask: -1}); err != nil || len(es) != 0 {
		t.Errorf("retired %s: log entries %d, %v; want none", id, len(es), err)
	}
	if ws, err := s.ListWorkers(ctx, id); err != nil || len(ws) != 0 {
		t.Errorf("retired %s: workers %d, %v; want none", id, len(ws), err)
	}
	if _, _, err := s.JobExported(ctx, id); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("JobExported(retired %s) = %v; want ErrNotFound", id, err)
	}
}

func archived(t *testing.T, s store.Store, id string) *store.ArchivedJob {
	t.Helper()
	a, err := s.GetArchivedJob(t.Context(), id)
	if err != nil {
		t.Fatalf("GetArchivedJob(%s): %v", id, err)
	}
	return a
}

func testRetire(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := base.Add(time.Hour)
	cutoff := t0.Add(30 * time.Minute)
	// a and b: retired (a finished first). d: exported but finished after
	// the cutoff. c: in a batch still writing. e: running. f: finished
	// before the cutoff but not exported.
	a := endedJob(t, s, 1, 5, store.JobSucceeded, t0)
	b := endedJob(t, s, 2, 2, store.JobFailed, t0.Add(time.Minute))
	d := endedJob(t, s, 3, 3, store.JobSucceeded, t0.Add(time.Hour))
	batches := exportAll(t, s, time.Time{})
	c := endedJob(t, s, 4, 2, store.JobCancelled, t0)
	writing, ok := claim(t, s, 10, time.Time{})
	if !ok || !slices.Equal(writing.Jobs, []string{c.ID}) {
		t.Fatalf("claim = %+v, %v; want a batch of %s", writing, ok, c.ID)
	}
	e := newJob(newID(base, 5))
	create(t, s, e, newTasks(2))
	apply(t, s, &store.Batch{Jobs: []store.JobUpdate{{ID: e.ID, State: store.JobRunning, StartedAt: base}}})
	f := endedJob(t, s, 6, 2, store.JobSucceeded, t0)

	if got := retire(t, s, ctx, cutoff, 10, retireHistory); !slices.Equal(got, []string{a.ID, b.ID}) {
		t.Fatalf("RetireJobs = %v; want [%s %s]", got, a.ID, b.ID)
	}
	checkGone(t, s, a.ID)
	checkGone(t, s, b.ID)
	checkLive(t, s, c, 2)
	checkLive(t, s, d, 3)
	checkLive(t, s, f, 2)
	getJob(t, s, e.ID)
	if cs, err := s.ListTaskCancels(ctx); err != nil {
		t.Fatal(err)
	} else {
		for _, r := range cs {
			if r.JobID == a.ID || r.JobID == b.ID {
				t.Errorf("task cancel of retired job %s left", r.JobID)
			}
		}
	}
	for _, id := range []string{c.ID, d.ID, e.ID, f.ID, "no-such-job"} {
		if _, err := s.GetArchivedJob(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetArchivedJob(%s) = %v; want ErrNotFound", id, err)
		}
	}

	got := archived(t, s, a.ID)
	want := store.ArchivedJob{
		ID: a.ID, Name: a.Name, Namespace: a.Namespace, Labels: a.Labels, State: store.JobSucceeded, TaskCount: 5,
		Counts:  store.TaskCounts{Succeeded: 4, Cancelled: 1},
		CostUSD: 0.75, WorkerSeconds: 12.5, CreatedAt: norm(a.CreatedAt), StartedAt: norm(base), FinishedAt: norm(t0),
		SubmittedBy: "alice@example.com", ExportBatch: batches[0], History: retireHistory,
	}
	if got.ArchivedAt.IsZero() || got.Retiring {
		t.Errorf("archive row of %s: archived at %v, retiring %v; want a time, not retiring", a.ID, got.ArchivedAt, got.Retiring)
	}
	archivedAt := got.ArchivedAt
	got.ArchivedAt = time.Time{}
	if !equalArchived(*got, want) {
		t.Errorf("GetArchivedJob(%s) =\n %+v\nwant\n %+v", a.ID, *got, want)
	}
	if gb := archived(t, s, b.ID); gb.State != store.JobFailed || gb.TaskCount != 2 {
		t.Errorf("archive row of %s = %+v; want failed, 2 tasks", b.ID, gb)
	}

	// A rerun retires nothing and changes no archive row.
	if got := retire(t, s, ctx, cutoff, 10, "elsewhere"); len(got) != 0 {
		t.Errorf("rerun: RetireJobs = %v; want none", got)
	}
	if again := archived(t, s, a.ID); !again.ArchivedAt.Equal(archivedAt) || again.History != retireHistory {
		t.Errorf("rerun changed the archive row of %s: %+v", a.ID, again)
	}
	checkLive(t, s, d, 3)

	// The limit: finishing c's batch and moving the cutoff makes c, f
	// (after export) and d retirable, one per call, oldest first.
	if err := s.FinishExportBatch(ctx, writing.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got := retire(t, s, ctx, time.Time{}, 1, retireHistory); !slices.Equal(got, []string{c.ID}) {
		t.Errorf("RetireJobs(limit 1) = %v; want [%s]", got, c.ID)
	}
	if got := retire(t, s, ctx, time.Time{}, 0, retireHistory); !slices.Equal(got, []string{d.ID}) {
		t.Errorf("RetireJobs(limit 0) = %v; want [%s] (f is not exported)", got, d.ID)
	}
	checkLive(t, s, f, 2)
	getJob(t, s, e.ID)

	// Listing: newest ID first, by namespace, paged by ID.
	all := []string{a.ID, b.ID, c.ID, d.ID}
	slices.Sort(all)
	slices.Reverse(all)
	list, err := s.ListArchivedJobs(ctx, "", "", 0)
	if err != nil || !slices.Equal(archivedIDs(list), all) {
		t.Errorf("ListArchivedJobs = %v, %v; want %v", archivedIDs(list), err, all)
	}
	if list, err := s.ListArchivedJobs(ctx, a.Namespace, all[1], 2); err != nil || !slices.Equal(archivedIDs(list), all[2:4]) {
		t.Errorf("ListArchivedJobs(%s, before %s, 2) = %v, %v; want %v", a.Namespace, all[1], archivedIDs(list), err, all[2:4])
	}
	if list, err := s.ListArchivedJobs(ctx, "other-team", "", 10); err != nil || len(list) != 0 {
		t.Errorf("ListArchivedJobs(other-team) = %v, %v; want none", archivedIDs(list), err)
	}
}

func equalArchived(a, b store.ArchivedJob) bool {
	return maps.Equal(a.Labels, b.Labels) && reflect.DeepEqual(a, b)
}

func archivedIDs(as []store.ArchivedJob) []string {
	ids := make([]string, len(as))
	for i, a := range as {
		ids[i] = a.ID
	}
	return ids
}

// testRetireResume stops a pass after its first bounded delete of tasks
// (the context is cancelled, as a crash would stop it): the job stays live,
// marked retiring, with fewer tasks; the next pass finishes it whatever
// its cutoff, keeping the history text it was marked with.
func testRetireResume(t *testing.T, s store.Store) {
	t0 := base.Add(time.Hour)
	job := endedJob(t, s, 1, 30, store.JobSucceeded, t0)
	exportAll(t, s, time.Time{})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ctx = store.WithRetireBatchRows(ctx, 10)
	ctx = store.WithRetireProgress(ctx, func(_, table string, _ int64) {
		if table == "tasks" {
			cancel()
		}
	})
	got, err := s.RetireJobs(ctx, t0.Add(time.Hour), 5, retireHistory)
	if err == nil || len(got) != 0 {
		t.Fatalf("RetireJobs stopped midway = %v, %v; want an error, nothing retired", got, err)
	}
	getJob(t, s, job.ID)
	if n := len(loadTasks(t, s, job.ID)); n != 20 {
		t.Errorf("stopped after one batch of 10: %d tasks live; want 20", n)
	}
	if a := archived(t, s, job.ID); !a.Retiring || a.History != retireHistory {
		t.Errorf("archive row while stopped = %+v; want retiring, history %q", a, retireHistory)
	}
	if got := retire(t, s, t.Context(), t0.Add(-time.Hour), 5, "elsewhere"); !slices.Equal(got, []string{job.ID}) {
		t.Fatalf("resumed RetireJobs = %v; want [%s]", got, job.ID)
	}
	checkGone(t, s, job.ID)
	if a := archived(t, s, job.ID); a.Retiring || a.History != retireHistory || a.TaskCount != 30 {
		t.Errorf("archive row after resuming = %+v; want retired, history %q, 30 tasks", a, retireHistory)
	}
}

// testRetireLarge retires a job of 25,000 tasks (an attempt and a log
// entry each) and checks that no delete statement took more than the
// default batch of rows.
func testRetireLarge(t *testing.T, s store.Store) {
	const n = 25_000
	t0 := base.Add(time.Hour)
	job := endedJob(t, s, 1, n, store.JobSucceeded, t0)
	exportAll(t, s, time.Time{})
	var (
		mu      sync.Mutex
		deletes = map[string][]int64{}
	)
	ctx := store.WithRetireProgress(t.Context(), func(id, table string, rows int64) {
		mu.Lock()
		defer mu.Unlock()
		if id != job.ID {
			t.Errorf("progress of job %s; want %s", id, job.ID)
		}
		deletes[table] = append(deletes[table], rows)
	})
	start := time.Now()
	if got := retire(t, s, ctx, t0.Add(time.Hour), 1, retireHistory); !slices.Equal(got, []string{job.ID}) {
		t.Fatalf("RetireJobs = %v; want [%s]", got, job.ID)
	}
	t.Logf("retired a job of %d tasks, %d attempts, %d log entries in %v", n, n, n, time.Since(start))
	checkGone(t, s, job.ID)
	batch := []int64{store.DefaultRetireBatchRows, store.DefaultRetireBatchRows, n - 2*store.DefaultRetireBatchRows}
	for table, want := range map[string][]int64{
		"attempts": batch, "log_entries": batch, "tasks": batch, "workers": {2}, "task_cancels": {1}, "jobs": {1},
	} {
		if got := deletes[table]; !slices.Equal(got, want) {
			t.Errorf("deletes from %s: %v rows per statement; want %v", table, got, want)
		}
	}
	if a := archived(t, s, job.ID); a.TaskCount != n || a.Counts.Succeeded != n-1 {
		t.Errorf("archive row = %+v; want %d tasks", a, n)
	}
}
