package storetest

import (
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// A queued range writes each of its tasks as a TaskUpdate from blocked to
// queued would (state queued, no reason, no finish; attempts, exit code,
// start and run tier as stored), before the batch's task updates; a range
// naming a task that does not exist fails the whole batch and writes
// nothing; a malformed range is refused.
func testApplyQueued(t *testing.T, s store.Store) {
	ctx := t.Context()
	job := newJob(newID(base, 1))
	tasks := newTasks(10) // each after a parent: stored blocked
	create(t, s, job, tasks)
	started := base.Add(time.Minute)
	// Task 3 ran once and failed, then went back to blocked (a job retry).
	apply(t, s, &store.Batch{Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 3, RunTier: 1, State: store.TaskBlocked,
		Attempts: 1, ExitCode: 7, Reason: "exit", StartedAt: started, FinishedAt: started.Add(time.Second)}}})

	apply(t, s, &store.Batch{
		Queued: []store.QueuedRange{{JobID: job.ID, First: 2, End: 6}, {JobID: job.ID, First: 8, End: 9}},
		// Task 4 is queued by the range and then taken, in one batch.
		Tasks: []store.TaskUpdate{{JobID: job.ID, Index: 4, RunTier: 1, State: store.TaskRunning, Attempts: 1, StartedAt: started}},
	})
	want := storedTasks(job.ID, tasks)
	for _, i := range []int{2, 3, 5, 8} {
		want[i].State = store.TaskQueued
	}
	want[3].Attempts, want[3].ExitCode, want[3].StartedAt, want[3].RunTier = 1, 7, started, 1
	want[4].State, want[4].Attempts, want[4].StartedAt, want[4].RunTier = store.TaskRunning, 1, started, 1
	checkTasks(t, loadTasks(t, s, job.ID), want)

	// Task 10 does not exist: nothing of the batch is written.
	err := s.Apply(ctx, &store.Batch{
		Queued: []store.QueuedRange{{JobID: job.ID, First: 0, End: 2}, {JobID: job.ID, First: 9, End: 11}},
		Jobs:   []store.JobUpdate{{ID: job.ID, State: store.JobRunning, StartedAt: started}},
	})
	checkNotFound(t, "Apply(a range past the last task)", err, job.ID)
	checkRejected(t, "Apply(a range past the last task)", err, "9..10")
	checkTasks(t, loadTasks(t, s, job.ID), want)
	if got := getJob(t, s, job.ID); got.State != store.JobPending {
		t.Errorf("job %s after a failed batch: %s, want pending", job.ID, got.State)
	}
	err = s.Apply(ctx, &store.Batch{Queued: []store.QueuedRange{{JobID: "no-such-job", First: 0, End: 1}}})
	checkNotFound(t, "Apply(a range of an unknown job)", err, "no-such-job")

	for _, bad := range []store.QueuedRange{{JobID: job.ID, First: 5, End: 5}, {JobID: job.ID, First: -1, End: 2}, {First: 0, End: 1}} {
		err := s.Apply(ctx, &store.Batch{Queued: []store.QueuedRange{bad}})
		checkRejected(t, "Apply(queued range "+bad.JobID+")", err, "queued range")
	}
	checkTasks(t, loadTasks(t, s, job.ID), want)
}
