package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// ExerciseHistory runs the conformance suite of store.HistoryStore: export
// batches claimed, redone after a crash, finished and listed; claims racing
// each other; and the paged bulk reader of a job's attempts. open is as for
// Exercise.
func ExerciseHistory(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Claim", func(t *testing.T) { t.Parallel(); testExportClaim(t, open(t)) })
	t.Run("Claim/Concurrent", func(t *testing.T) { t.Parallel(); testExportClaimConcurrent(t, open(t)) })
	t.Run("JobAttempts/Paging", func(t *testing.T) { t.Parallel(); testJobAttemptsPaging(t, open(t)) })
}

// finishedJob stores a job of n tasks that ended in state at finished.
func finishedJob(t *testing.T, s store.Store, seed uint64, n int, state store.JobState, finished time.Time) string {
	t.Helper()
	job := newJob(newID(base.Add(time.Duration(seed)*time.Millisecond), seed))
	create(t, s, job, newTasks(n))
	apply(t, s, &store.Batch{Jobs: []store.JobUpdate{{ID: job.ID, State: state, StartedAt: base, FinishedAt: finished}}})
	return job.ID
}

func claim(t *testing.T, s store.Store, maxJobs int, before time.Time) (store.ExportBatch, bool) {
	t.Helper()
	b, ok, err := s.ClaimExportBatch(t.Context(), maxJobs, before)
	if err != nil {
		t.Fatalf("ClaimExportBatch(%d, %v): %v", maxJobs, before, err)
	}
	return b, ok
}

func checkExported(t *testing.T, s store.Store, job string, wantBatch int64, wantDone bool) {
	t.Helper()
	b, done, err := s.JobExported(t.Context(), job)
	if err != nil || b != wantBatch || done != wantDone {
		t.Errorf("JobExported(%s) = %d, %v, %v; want %d, %v", job, b, done, err, wantBatch, wantDone)
	}
}

func testExportClaim(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, ok := claim(t, s, 10, time.Time{}); ok {
		t.Fatal("empty store: a batch was claimed")
	}
	t0 := base.Add(time.Hour)
	// Finished in this order: c, a, b (a and b at the same time: ID
	// order); d later than the cutoff; e still running; f failed, g
	// cancelled.
	a := finishedJob(t, s, 1, 2, store.JobSucceeded, t0.Add(2*time.Minute))
	b := finishedJob(t, s, 2, 1, store.JobFailed, t0.Add(2*time.Minute))
	if a > b {
		a, b = b, a
	}
	c := finishedJob(t, s, 3, 1, store.JobSucceeded, t0.Add(time.Minute))
	d := finishedJob(t, s, 4, 1, store.JobSucceeded, t0.Add(time.Hour))
	e := newJob(newID(base, 5))
	create(t, s, e, newTasks(1))
	apply(t, s, &store.Batch{Jobs: []store.JobUpdate{{ID: e.ID, State: store.JobRunning, StartedAt: base}}})
	f := finishedJob(t, s, 6, 1, store.JobCancelled, t0.Add(3*time.Minute))
	cutoff := t0.Add(30 * time.Minute)

	b1, ok := claim(t, s, 2, cutoff)
	if !ok || b1.State != store.ExportWriting || b1.JobCount != 2 || !slices.Equal(b1.Jobs, []string{c, a}) || b1.ID <= 0 {
		t.Fatalf("first claim = %+v, %v; want a writing batch of [%s %s]", b1, ok, c, a)
	}
	checkExported(t, s, c, b1.ID, false)
	checkExported(t, s, b, 0, false)
	// Not finished: the same batch again (a crashed writer's batch is
	// redone before any other).
	again, ok := claim(t, s, 5, cutoff)
	if !ok || again.ID != b1.ID || !slices.Equal(again.Jobs, b1.Jobs) || again.JobCount != 2 {
		t.Fatalf("claim while batch %d writes = %+v, %v; want it again", b1.ID, again, ok)
	}
	if ids, err := s.JobsOfBatch(ctx, b1.ID); err != nil || !slices.Equal(ids, b1.Jobs) {
		t.Errorf("JobsOfBatch(%d) = %v, %v; want %v", b1.ID, ids, err, b1.Jobs)
	}
	rows := map[string]int64{"jobs": 2, "tasks": 3}
	if err := s.FinishExportBatch(ctx, b1.ID, rows); err != nil {
		t.Fatal(err)
	}
	checkExported(t, s, a, b1.ID, true)
	// Then the rest before the cutoff, in a new, later batch.
	b2, ok := claim(t, s, 5, cutoff)
	if !ok || b2.ID <= b1.ID || !slices.Equal(b2.Jobs, []string{b, f}) {
		t.Fatalf("second claim = %+v, %v; want a batch after %d of [%s %s]", b2, ok, b1.ID, b, f)
	}
	if err := s.FinishExportBatch(ctx, b2.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := claim(t, s, 5, cutoff); ok {
		t.Fatal("nothing left before the cutoff: a batch was claimed")
	}
	// No cutoff: d; the running job never.
	b3, ok := claim(t, s, 5, time.Time{})
	if !ok || !slices.Equal(b3.Jobs, []string{d}) {
		t.Fatalf("claim without cutoff = %+v, %v; want [%s]", b3, ok, d)
	}
	checkExported(t, s, e.ID, 0, false)

	list, err := s.ListExportBatches(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].ID != b3.ID || list[1].ID != b2.ID || list[2].ID != b1.ID {
		t.Fatalf("ListExportBatches = %+v; want batches %d %d %d", list, b3.ID, b2.ID, b1.ID)
	}
	if l := list[2]; l.State != store.ExportDone || !reflect.DeepEqual(l.Rows, rows) || l.JobCount != 2 || l.Jobs != nil ||
		l.FinishedAt.IsZero() || l.CreatedAt.IsZero() || l.FinishedAt.Before(l.CreatedAt) {
		t.Errorf("batch %d listed as %+v; want done with rows %v", b1.ID, l, rows)
	}
	if l := list[1]; l.State != store.ExportDone || l.Rows == nil || len(l.Rows) != 0 {
		t.Errorf("batch %d (finished with nil counts) listed as %+v; want done, empty counts", b2.ID, l)
	}
	if l := list[0]; l.State != store.ExportWriting || l.Rows != nil || !l.FinishedAt.IsZero() {
		t.Errorf("batch %d listed as %+v; want writing", b3.ID, l)
	}
	if l, err := s.ListExportBatches(ctx, 1); err != nil || len(l) != 1 || l[0].ID != b3.ID {
		t.Errorf("ListExportBatches(1) = %+v, %v", l, err)
	}
	// Finishing again replaces the counts; an unknown batch is not found.
	if err := s.FinishExportBatch(ctx, b1.ID, map[string]int64{"jobs": 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishExportBatch(ctx, b3.ID+100, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("FinishExportBatch(unknown) = %v; want ErrNotFound", err)
	}
	if ids, err := s.JobsOfBatch(ctx, b3.ID+100); err != nil || len(ids) != 0 {
		t.Errorf("JobsOfBatch(unknown) = %v, %v; want none", ids, err)
	}
	if _, _, err := s.JobExported(ctx, "no-such-job"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("JobExported(unknown) = %v; want ErrNotFound", err)
	}
}

// testExportClaimConcurrent races claimers that each finish what they
// claim: every finished job ends in exactly one batch, batches never share
// a job, and a batch handed to two claimers is handed whole (same jobs).
func testExportClaimConcurrent(t *testing.T, s store.Store) {
	const jobs, claimers = 40, 6
	want := map[string]bool{}
	for i := range jobs {
		want[finishedJob(t, s, uint64(100+i), 1, store.JobSucceeded, base.Add(time.Duration(i)*time.Second))] = true
	}
	var (
		mu      sync.Mutex
		batches = map[int64][]string{}
		errs    []error
		wg      sync.WaitGroup
	)
	for range claimers {
		wg.Go(func() {
			ctx := context.Background()
			for {
				b, ok, err := s.ClaimExportBatch(ctx, 3, time.Time{})
				if err == nil && ok {
					err = s.FinishExportBatch(ctx, b.ID, map[string]int64{"jobs": b.JobCount})
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if ok {
					if prev, seen := batches[b.ID]; seen && !slices.Equal(prev, b.Jobs) {
						errs = append(errs, fmt.Errorf("batch %d handed out as %v and as %v", b.ID, prev, b.Jobs))
					}
					batches[b.ID] = b.Jobs
				}
				mu.Unlock()
				if err != nil || !ok {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	seen := map[string]int64{}
	for id, js := range batches {
		if len(js) == 0 || len(js) > 3 {
			t.Errorf("batch %d holds %d jobs; want 1..3", id, len(js))
		}
		for _, j := range js {
			if other, dup := seen[j]; dup {
				t.Errorf("job %s in batches %d and %d", j, other, id)
			}
			seen[j] = id
			checkExported(t, s, j, id, true)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d jobs exported; want %d", len(seen), len(want))
	}
}

func testJobAttemptsPaging(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 7))
	create(t, s, job, newTasks(30))
	other := newJob(newID(base, 8))
	create(t, s, other, newTasks(2))
	// Task i has i%4 attempts (none for every fourth), with usage.
	var want []store.Attempt
	for i := range int32(30) {
		for n := int32(1); n <= i%4; n++ {
			a := store.Attempt{JobID: job.ID, TaskIndex: i, Number: n, Tier: n - 1, WorkerID: fmt.Sprintf("w-%d", n),
				State: store.AttemptFailed, ExitCode: 137, Signal: 9, Reason: store.ReasonOOM, Message: "killed",
				StartedAt: norm(base.Add(time.Duration(i) * time.Second)), FinishedAt: norm(base.Add(time.Duration(i)*time.Second + time.Minute)),
				Enforcement: "cgroup-v2",
				Usage: store.Usage{CPUUserSeconds: float64(i) + 0.5, CPUSystemSeconds: 0.25, PeakRSSBytes: int64(i) << 20, AvgRSSBytes: int64(i) << 19,
					GPUNote: "no GPU: the tier requests none"}}
			if n == 3 {
				a.State, a.Reason, a.ExitCode, a.Signal = store.AttemptSucceeded, "exit", 0, 0
				a.Usage.GPUs, a.Usage.GPUNote = slices.Clone(usageGPUs[:2]), ""
			}
			want = append(want, a)
		}
	}
	apply(t, s, &store.Batch{Attempts: want})
	apply(t, s, &store.Batch{Attempts: []store.Attempt{{JobID: other.ID, TaskIndex: 0, Number: 1, WorkerID: "x", State: store.AttemptRunning}}})

	for _, limit := range []int{1, 7, 45, 1000} {
		var got []store.Attempt
		afterTask, afterAttempt := int32(-1), int32(0)
		pages := 0
		for {
			page, err := s.ListJobAttempts(ctx, job.ID, afterTask, afterAttempt, limit)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			got = append(got, page...)
			if len(page) < limit {
				break
			}
			last := page[len(page)-1]
			afterTask, afterAttempt = last.TaskIndex, last.Number
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("limit %d: paged %d attempts; want %d, exactly (first difference at %d)", limit, len(got), len(want), firstDiff(got, want))
		}
		if wantPages := len(want)/limit + 1; pages != wantPages {
			t.Errorf("limit %d: %d pages; want %d", limit, pages, wantPages)
		}
	}
	// Starting after the middle of a task.
	page, err := s.ListJobAttempts(ctx, job.ID, 3, 1, 2)
	if err != nil || len(page) != 2 || page[0].TaskIndex != 3 || page[0].Number != 2 || page[1].TaskIndex != 3 || page[1].Number != 3 {
		t.Errorf("ListJobAttempts(after 3#1, 2) = %+v, %v; want 3#2, 3#3", page, err)
	}
	if page, err := s.ListJobAttempts(ctx, "no-such-job", -1, 0, 10); err != nil || len(page) != 0 {
		t.Errorf("ListJobAttempts(unknown job) = %v, %v; want none", page, err)
	}
}

func firstDiff(got, want []store.Attempt) int {
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			return i
		}
	}
	return min(len(got), len(want))
}
