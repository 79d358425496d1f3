package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// ExerciseLogs runs the conformance suite of store.LogStore: log entries
// stored, replaced, paged and refused; worker records stored and replaced.
// open is as for Exercise.
func ExerciseLogs(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Entries", func(t *testing.T) { t.Parallel(); testLogEntries(t, open(t)) })
	t.Run("Entries/Refused", func(t *testing.T) { t.Parallel(); testLogEntriesRefused(t, open(t)) })
	t.Run("Workers", func(t *testing.T) { t.Parallel(); testWorkers(t, open(t)) })
	t.Run("WorkerRecords", func(t *testing.T) { t.Parallel(); testWorkerRecords(t, open(t)) })
	t.Run("AttemptsByWorker", func(t *testing.T) { t.Parallel(); testAttemptsByWorker(t, open(t)) })
	t.Run("Destinations", func(t *testing.T) { t.Parallel(); testLogDestinations(t, open(t)) })
	t.Run("Archives", func(t *testing.T) { t.Parallel(); testLogArchives(t, open(t)) })
}

func testLogDestinations(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := time.Unix(1_800_000_000, 5).UTC()
	a := store.LogDestination{Team: "ml", URL: "s3://ml-logs/haul/", AccessKeyID: "AKIA1", SecretAccessKey: "s3cret", UpdatedAt: at}
	b := store.LogDestination{Team: "web", URL: "s3://web/logs/?region=eu-west-1", AccessKeyID: "AKIA2", SecretAccessKey: "x", SessionToken: "tok", UpdatedAt: at}
	for _, d := range []store.LogDestination{b, a} {
		if err := s.PutLogDestination(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	a.URL, a.SecretAccessKey = "s3://ml-logs/v2/", "rotated"
	if err := s.PutLogDestination(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetLogDestination(ctx, "ml")
	if err != nil || !reflect.DeepEqual(*got, a) {
		t.Fatalf("get: %+v, %v; want %+v", got, err, a)
	}
	all, err := s.ListLogDestinations(ctx)
	if err != nil || !reflect.DeepEqual(all, []store.LogDestination{a, b}) {
		t.Fatalf("list: %+v, %v", all, err)
	}
	if err := s.DeleteLogDestination(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetLogDestination(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if err := s.DeleteLogDestination(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	bad := a
	bad.SecretAccessKey = "no\x00pe"
	err = s.PutLogDestination(ctx, bad)
	if !errors.Is(err, store.ErrRejected) || strings.Contains(err.Error(), "pe") && strings.Contains(err.Error(), "no") {
		t.Fatalf("a secret with a NUL: %v (want refused, without the secret)", err)
	}
}

func testLogArchives(t *testing.T, s store.Store) {
	ctx := context.Background()
	mk := func(seed uint64, dest string, finished time.Time) string {
		j := newJob(newID(base.Add(time.Duration(seed)), seed))
		j.LogDestination = dest
		create(t, s, j, newTasks(1))
		if !finished.IsZero() {
			apply(t, s, &store.Batch{Jobs: []store.JobUpdate{{ID: j.ID, State: store.JobSucceeded, StartedAt: base, FinishedAt: finished}}})
		}
		return j.ID
	}
	early := mk(1, "s3://a/b/", base.Add(time.Minute))
	late := mk(2, "s3://a/b/", base.Add(time.Hour))
	mk(3, "", base.Add(time.Minute)) // no destination
	mk(4, "s3://a/b/", time.Time{})  // running
	cut, now := base.Add(2*time.Minute), base.Add(2*time.Minute)
	due, err := s.JobsToArchive(ctx, cut, now, 10)
	if err != nil || len(due) != 1 || due[0].JobID != early || due[0].State != store.ArchivePending || due[0].Destination != "s3://a/b/" || due[0].Namespace != "perception" {
		t.Fatalf("due: %+v, %v; want only %s, pending", due, err, early)
	}
	// A failed try waits for its backoff.
	try := store.LogArchive{JobID: early, Destination: "s3://a/b/", State: store.ArchivePending, Tries: 1, Error: "access denied", NextAt: now.Add(time.Minute), UpdatedAt: now.UTC()}
	if err := s.PutLogArchive(ctx, try); err != nil {
		t.Fatal(err)
	}
	if due, err := s.JobsToArchive(ctx, cut, now, 10); err != nil || len(due) != 0 {
		t.Fatalf("during backoff: %+v, %v", due, err)
	}
	due, err = s.JobsToArchive(ctx, base.Add(2*time.Hour), now.Add(time.Minute), 10)
	if err != nil || len(due) != 2 || due[0].JobID != early || due[0].Tries != 1 || due[0].Error != "access denied" || due[1].JobID != late {
		t.Fatalf("after backoff: %+v, %v", due, err)
	}
	done := try
	done.State, done.Error, done.Objects, done.NextAt = store.ArchiveDone, "", 3, time.Time{}
	if err := s.PutLogArchive(ctx, done); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetLogArchive(ctx, early)
	if err != nil || !reflect.DeepEqual(*got, done) {
		t.Fatalf("get: %+v, %v; want %+v", got, err, done)
	}
	if due, err := s.JobsToArchive(ctx, base.Add(2*time.Hour), now.Add(time.Minute), 10); err != nil || len(due) != 1 || due[0].JobID != late {
		t.Fatalf("after done: %+v, %v", due, err)
	}
	if err := s.PutLogArchive(ctx, store.LogArchive{JobID: late, State: "lost"}); !errors.Is(err, store.ErrRejected) {
		t.Fatalf("bad state: %v", err)
	}
	if _, err := s.GetLogArchive(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
}

func logEntry(job string, task, attempt int32) store.LogEntry {
	at := time.Unix(1_800_000_000, int64(task)*1000+int64(attempt)).UTC()
	return store.LogEntry{
		JobID: job, TaskIndex: task, Attempt: attempt,
		Object: fmt.Sprintf("logs/%s/packs/w-%d", job, task%3), Offset: int64(task) * 100, Length: 90,
		StdoutBytes: 50, StderrBytes: 30, FirstAt: at, LastAt: at.Add(time.Second),
	}
}

func testLogEntries(t *testing.T, s store.Store) {
	ctx := context.Background()
	var want []store.LogEntry
	for task := range int32(25) {
		for a := int32(1); a <= 1+task%2; a++ {
			want = append(want, logEntry("job-a", task, a))
		}
	}
	other := logEntry("job-b", 0, 1)
	if err := s.PutLogEntries(ctx, append(want, other)); err != nil {
		t.Fatal(err)
	}
	// Sent again (a lost reply): nothing changes.
	if err := s.PutLogEntries(ctx, want[:5]); err != nil {
		t.Fatal(err)
	}
	// Paged by 7, the whole job in order.
	var got []store.LogEntry
	f := store.LogEntryFilter{JobID: "job-a", TaskIndex: -1, AfterTask: -1, Limit: 7}
	for {
		page, err := s.ListLogEntries(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if len(page) < f.Limit {
			break
		}
		last := page[len(page)-1]
		f.AfterTask, f.AfterAttempt = last.TaskIndex, last.Attempt
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("paged entries:\n got %d %+v\nwant %d %+v", len(got), got, len(want), want)
	}
	// One task; one attempt.
	one, err := s.ListLogEntries(ctx, store.LogEntryFilter{JobID: "job-a", TaskIndex: 3, AfterTask: -1})
	if err != nil || len(one) != 2 || one[0].Attempt != 1 || one[1].Attempt != 2 {
		t.Fatalf("task 3: %+v, %v", one, err)
	}
	one, err = s.ListLogEntries(ctx, store.LogEntryFilter{JobID: "job-a", TaskIndex: 3, Attempt: 2, AfterTask: -1})
	if err != nil || len(one) != 1 || !reflect.DeepEqual(one[0], logEntry("job-a", 3, 2)) {
		t.Fatalf("task 3 attempt 2: %+v, %v", one, err)
	}
	// Replaced: the archiver records where the log went.
	e := logEntry("job-a", 3, 2)
	e.Destination, e.ArchiveError, e.Truncated, e.Note = "s3://team/logs/", "access denied", true, "worker lost"
	if err := s.PutLogEntries(ctx, []store.LogEntry{e}); err != nil {
		t.Fatal(err)
	}
	one, err = s.ListLogEntries(ctx, store.LogEntryFilter{JobID: "job-a", TaskIndex: 3, Attempt: 2, AfterTask: -1})
	if err != nil || len(one) != 1 || !reflect.DeepEqual(one[0], e) {
		t.Fatalf("replaced entry: %+v, %v; want %+v", one, err, e)
	}
	none, err := s.ListLogEntries(ctx, store.LogEntryFilter{JobID: "job-c", TaskIndex: -1, AfterTask: -1})
	if err != nil || len(none) != 0 {
		t.Fatalf("unknown job: %+v, %v", none, err)
	}
}

func testLogEntriesRefused(t *testing.T, s store.Store) {
	ctx := context.Background()
	good := logEntry("job-a", 1, 1)
	if err := s.PutLogEntries(ctx, []store.LogEntry{good}); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(e *store.LogEntry){
		"no job":          func(e *store.LogEntry) { e.JobID = "" },
		"attempt 0":       func(e *store.LogEntry) { e.Attempt = 0 },
		"negative offset": func(e *store.LogEntry) { e.Offset = -1 },
		"parts too long":  func(e *store.LogEntry) { e.StdoutBytes = e.Length },
		"no object":       func(e *store.LogEntry) { e.Object = "" },
		"NUL in note":     func(e *store.LogEntry) { e.Note = "a\x00b" },
	} {
		bad := logEntry("job-a", 1, 1)
		bad.Offset = 999
		mutate(&bad)
		// A refused entry in a batch stores none of the batch.
		err := s.PutLogEntries(ctx, []store.LogEntry{logEntry("job-a", 2, 1), bad})
		if !errors.Is(err, store.ErrRejected) {
			t.Errorf("%s: err = %v, want ErrRejected", name, err)
		}
	}
	got, err := s.ListLogEntries(ctx, store.LogEntryFilter{JobID: "job-a", TaskIndex: -1, AfterTask: -1})
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], good) {
		t.Fatalf("after refusals: %+v, %v; want only %+v", got, err, good)
	}
	if _, err := s.ListLogEntries(ctx, store.LogEntryFilter{}); !errors.Is(err, store.ErrRejected) {
		t.Fatalf("list without a job: %v, want ErrRejected", err)
	}
}

func testWorkers(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := time.Unix(1_800_000_000, 0).UTC()
	w1 := store.WorkerRecord{ID: "w-1", JobID: "job-a", Tier: 0, Cluster: "local", Team: "ml", StartedAt: at}
	w2 := store.WorkerRecord{ID: "w-2", JobID: "job-a", Tier: 1, Cluster: "gpu", Team: "ml", StartedAt: at}
	w3 := store.WorkerRecord{ID: "w-3", JobID: "job-b", Cluster: "local", Team: "web", StartedAt: at}
	if err := s.PutWorkers(ctx, []store.WorkerRecord{w2, w1, w3}); err != nil {
		t.Fatal(err)
	}
	w1.EndedAt, w1.EndReason, w1.Attempts = at.Add(time.Minute), "exit", 12
	if err := s.PutWorkers(ctx, []store.WorkerRecord{w1}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListWorkers(ctx, "job-a")
	if err != nil || !reflect.DeepEqual(got, []store.WorkerRecord{w1, w2}) {
		t.Fatalf("workers of job-a: %+v, %v", got, err)
	}
	if err := s.PutWorkers(ctx, []store.WorkerRecord{{ID: "", JobID: "x"}}); !errors.Is(err, store.ErrRejected) {
		t.Fatalf("worker without ID: %v, want ErrRejected", err)
	}
}

// testWorkerRecords lists workers across jobs by each filter and pages
// through them by keyset, checked against a plain filter of the records.
func testWorkerRecords(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := newJob(newID(base, 1))
	a.Namespace, a.Labels = "ml", map[string]string{"run": "nightly", "team": "ml"}
	b := newJob(newID(base.Add(time.Second), 2))
	b.Namespace, b.Labels = "web", map[string]string{"run": "adhoc"}
	create(t, s, a, newTasks(1))
	create(t, s, b, newTasks(1))
	at := time.Unix(1_800_000_000, 0).UTC()
	var all []store.WorkerRecord
	for i := range 7 {
		j := a
		if i%2 == 1 {
			j = b
		}
		w := store.WorkerRecord{ID: fmt.Sprintf("%s-%d-%d", j.ID, i%3, i), JobID: j.ID, Tier: int32(i % 3),
			Cluster: []string{"local", "gpu"}[i%2], Team: j.Namespace, StartedAt: at.Add(time.Duration(i) * time.Second)}
		if i%3 != 2 {
			w.EndedAt, w.EndReason, w.Attempts = w.StartedAt.Add(time.Minute), "exit", int64(i)
		}
		all = append(all, w)
	}
	if err := s.PutWorkers(ctx, all); err != nil {
		t.Fatal(err)
	}
	want := func(keep func(w store.WorkerRecord) bool) []store.WorkerRecord {
		var out []store.WorkerRecord
		for _, w := range all {
			if keep(w) {
				out = append(out, w)
			}
		}
		slices.SortFunc(out, func(x, y store.WorkerRecord) int { return strings.Compare(y.ID, x.ID) })
		return out
	}
	tier1, yes, no := int32(1), true, false
	cases := []struct {
		name string
		f    store.WorkerFilter
		keep func(w store.WorkerRecord) bool
	}{
		{"all", store.WorkerFilter{}, func(store.WorkerRecord) bool { return true }},
		{"job", store.WorkerFilter{JobID: b.ID}, func(w store.WorkerRecord) bool { return w.JobID == b.ID }},
		{"tier", store.WorkerFilter{Tier: &tier1}, func(w store.WorkerRecord) bool { return w.Tier == 1 }},
		{"cluster", store.WorkerFilter{Cluster: "gpu"}, func(w store.WorkerRecord) bool { return w.Cluster == "gpu" }},
		{"running", store.WorkerFilter{Running: &yes}, func(w store.WorkerRecord) bool { return w.EndedAt.IsZero() }},
		{"ended", store.WorkerFilter{Running: &no}, func(w store.WorkerRecord) bool { return !w.EndedAt.IsZero() }},
		{"teams", store.WorkerFilter{Namespaces: []string{"ml"}}, func(w store.WorkerRecord) bool { return w.Team == "ml" }},
		{"no teams", store.WorkerFilter{Namespaces: []string{}}, func(store.WorkerRecord) bool { return false }},
		{"labels", store.WorkerFilter{JobLabels: map[string]string{"run": "nightly"}}, func(w store.WorkerRecord) bool { return w.JobID == a.ID }},
		{"labels none", store.WorkerFilter{JobLabels: map[string]string{"run": "nightly", "team": "web"}}, func(store.WorkerRecord) bool { return false }},
		{"combined", store.WorkerFilter{JobID: a.ID, Running: &no, Cluster: "local"}, func(w store.WorkerRecord) bool {
			return w.JobID == a.ID && !w.EndedAt.IsZero() && w.Cluster == "local"
		}},
	}
	for _, c := range cases {
		got, err := s.ListWorkerRecords(ctx, c.f)
		w := want(c.keep)
		if err != nil || (len(got) > 0 || len(w) > 0) && !reflect.DeepEqual(got, w) {
			t.Fatalf("%s: %+v, %v; want %+v", c.name, got, err, w)
		}
	}
	// Pages of 2, by keyset, give every record once, in order.
	var paged []store.WorkerRecord
	before := ""
	for range 10 {
		page, err := s.ListWorkerRecords(ctx, store.WorkerFilter{Before: before, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("page of %d, want at most 2", len(page))
		}
		paged = append(paged, page...)
		if len(page) < 2 {
			break
		}
		before = page[len(page)-1].ID
	}
	if w := want(func(store.WorkerRecord) bool { return true }); !reflect.DeepEqual(paged, w) {
		t.Fatalf("paged: %+v; want %+v", paged, w)
	}
}

// testAttemptsByWorker lists the attempts one worker ran, with their
// task keys, in the order they started.
func testAttemptsByWorker(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob(newID(base, 3))
	create(t, s, j, newTasks(3))
	att := func(task, n int32, worker string, start time.Duration) store.Attempt {
		return store.Attempt{JobID: j.ID, TaskIndex: task, Number: n, WorkerID: worker, State: store.AttemptSucceeded,
			StartedAt: base.Add(start), FinishedAt: base.Add(start + time.Second), Reason: "exit"}
	}
	w1, w2 := j.ID+"-0-1", j.ID+"-0-2"
	apply(t, s, &store.Batch{Attempts: []store.Attempt{
		att(2, 1, w1, time.Second), att(0, 1, w1, 3*time.Second), att(1, 1, w2, 2*time.Second), att(1, 2, w1, 4*time.Second),
	}})
	got, err := s.ListAttemptsByWorker(ctx, j.ID, w1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, wa := range got {
		if wa.Attempt.WorkerID != w1 || wa.Attempt.JobID != j.ID {
			t.Fatalf("attempt %+v of another worker", wa.Attempt)
		}
		keys = append(keys, fmt.Sprintf("%s#%d", wa.TaskKey, wa.Attempt.Number))
	}
	if want := []string{"t-2#1", "t-0#1", "t-1#2"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("attempts of %s: %v, want %v", w1, keys, want)
	}
	if got, err := s.ListAttemptsByWorker(ctx, j.ID, w1, 2); err != nil || len(got) != 2 {
		t.Fatalf("limit 2: %d attempts, %v", len(got), err)
	}
	if got, err := s.ListAttemptsByWorker(ctx, j.ID, "nobody", 0); err != nil || len(got) != 0 {
		t.Fatalf("unknown worker: %+v, %v", got, err)
	}
}
