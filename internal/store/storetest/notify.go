package storetest

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// ExerciseNotify runs the conformance suite of store.NotifyStore: which
// jobs are due to be sent to their webhooks, what a delivery records, and
// rounds (a retried job is due again; a record for an earlier round
// changes nothing). open is as for Exercise.
func ExerciseNotify(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("Due", func(t *testing.T) { t.Parallel(); testNotifyDue(t, open(t)) })
	t.Run("Record", func(t *testing.T) { t.Parallel(); testNotifyRecord(t, open(t)) })
	t.Run("Rounds", func(t *testing.T) { t.Parallel(); testNotifyRounds(t, open(t)) })
	t.Run("Refused", func(t *testing.T) { t.Parallel(); testNotifyRefused(t, open(t)) })
}

var notifyNow = base.Add(24 * time.Hour).UTC()

// notifyJob stores a job of 2 tasks with a webhook (none when hook is
// "") and, when state is set, ends it in that state at finished.
func notifyJob(t *testing.T, s store.Store, seed uint64, hook string, state store.JobState, finished time.Time) string {
	t.Helper()
	job := newJob(newID(base.Add(time.Duration(seed)*time.Millisecond), seed))
	job.Notify = nil
	if hook != "" {
		job.Notify = &store.JobNotify{Webhook: hook, On: []string{"failed", "succeeded"}}
	}
	tasks := newTasks(2)
	for i := range tasks {
		tasks[i].After = nil
	}
	create(t, s, job, tasks)
	if state != "" {
		end(t, s, job.ID, state, finished)
	}
	return job.ID
}

// end ends a job of 2 tasks in state: its task 0 succeeded, its task 1
// failed.
func end(t *testing.T, s store.Store, job string, state store.JobState, finished time.Time) {
	t.Helper()
	counts := store.TaskCounts{Succeeded: 1, Failed: 1}
	apply(t, s, &store.Batch{
		Tasks: []store.TaskUpdate{
			{JobID: job, Index: 0, State: store.TaskSucceeded, Attempts: 1, StartedAt: base, FinishedAt: finished},
			{JobID: job, Index: 1, State: store.TaskFailed, Attempts: 1, ExitCode: 1, StartedAt: base, FinishedAt: finished},
		},
		Jobs: []store.JobUpdate{{ID: job, State: state, Counts: counts, StartedAt: base, FinishedAt: finished}},
	})
}

// retry retries a job's failed task (RetryTasks) and ends the new run as
// the first ended.
func retry(t *testing.T, s store.Store, job string, finished time.Time) {
	t.Helper()
	if _, err := s.RetryTasks(t.Context(), job, store.RetryFilter{}); err != nil {
		t.Fatalf("RetryTasks(%s): %v", job, err)
	}
	if got := dueIDs(t, s, finished.Add(time.Hour)); slices.Contains(got, job) {
		t.Fatalf("job %s is due while its retry runs", job)
	}
	end(t, s, job, store.JobFailed, finished)
}

func due(t *testing.T, s store.Store, now time.Time, limit int) []store.Notification {
	t.Helper()
	ns, err := s.(store.NotifyStore).DueNotifications(t.Context(), now, limit)
	if err != nil {
		t.Fatalf("DueNotifications(%v, %d): %v", now, limit, err)
	}
	return ns
}

func dueIDs(t *testing.T, s store.Store, now time.Time) []string {
	t.Helper()
	var ids []string
	for _, n := range due(t, s, now, 0) {
		ids = append(ids, n.JobID)
	}
	return ids
}

func record(t *testing.T, s store.Store, job string, round int32, r store.NotifyResult) {
	t.Helper()
	if err := s.(store.NotifyStore).RecordNotification(t.Context(), job, round, r); err != nil {
		t.Fatalf("RecordNotification(%s, %d, %+v): %v", job, round, r, err)
	}
}

func testNotifyDue(t *testing.T, s store.Store) {
	t0 := base.Add(time.Hour).UTC()
	if ns := due(t, s, notifyNow, 10); len(ns) != 0 {
		t.Fatalf("empty store: due %v", ns)
	}
	failed := notifyJob(t, s, 1, "https://hooks.example/a?x=1", store.JobFailed, t0.Add(2*time.Second))
	succeeded := notifyJob(t, s, 2, "https://hooks.example/b", store.JobSucceeded, t0)
	cancelled := notifyJob(t, s, 3, "https://hooks.example/c", store.JobCancelled, t0.Add(time.Second))
	notifyJob(t, s, 4, "https://hooks.example/d", "", time.Time{})               // pending
	notifyJob(t, s, 5, "https://hooks.example/e", store.JobRunning, time.Time{}) // running
	notifyJob(t, s, 6, "", store.JobFailed, t0)                                  // no webhook
	if got, want := dueIDs(t, s, notifyNow), []string{succeeded, cancelled, failed}; !reflect.DeepEqual(got, want) {
		t.Fatalf("due jobs %v, want %v (the ended ones with a webhook, oldest finish first)", got, want)
	}
	ns := due(t, s, notifyNow, 0)
	want := store.Notification{
		JobID: failed, Namespace: "perception", Name: "resim", State: store.JobFailed,
		Counts: store.TaskCounts{Succeeded: 1, Failed: 1}, FinishedAt: t0.Add(2 * time.Second),
		Webhook: "https://hooks.example/a?x=1", On: []string{"failed", "succeeded"},
	}
	if !reflect.DeepEqual(ns[2], want) {
		t.Errorf("due notification\n%+v, want\n%+v", ns[2], want)
	}
	if ns[2].Round() != 1 {
		t.Errorf("round %d, want 1", ns[2].Round())
	}
	if got := due(t, s, notifyNow, 2); len(got) != 2 || got[0].JobID != succeeded {
		t.Errorf("limit 2: %d due, first %v", len(got), got)
	}
}

func testNotifyRecord(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := base.Add(time.Hour).UTC()
	a := notifyJob(t, s, 1, "https://hooks.example/a", store.JobFailed, t0)
	b := notifyJob(t, s, 2, "https://hooks.example/b", store.JobSucceeded, t0.Add(time.Second))
	c := notifyJob(t, s, 3, "https://hooks.example/c", store.JobCancelled, t0.Add(2*time.Second))

	// a fails for now: not due before its next attempt, due from then on
	// with the attempts so far.
	next := notifyNow.Add(5 * time.Second)
	record(t, s, a, 1, store.NotifyResult{State: store.NotifyPending, Event: "failed", Attempts: 1, Error: "HTTP 500: boom", NextAt: next})
	if got, want := dueIDs(t, s, notifyNow), []string{b, c}; !reflect.DeepEqual(got, want) {
		t.Fatalf("before a's next attempt: due %v, want %v", got, want)
	}
	ns := due(t, s, next, 0)
	if len(ns) != 3 || ns[0].JobID != a || ns[0].Attempts != 1 {
		t.Fatalf("at a's next attempt: due %+v, want a first with 1 attempt", ns)
	}
	j := getJob(t, s, a)
	if n := j.Notify; n == nil || n.State != store.NotifyPending || n.Attempts != 1 || n.LastError != "HTTP 500: boom" ||
		!n.NextAt.Equal(next) || n.Round != 0 || n.Webhook != "https://hooks.example/a" {
		t.Errorf("GetJob after a failed attempt: notify %+v", n)
	}

	// a is delivered; b gave up; c skipped: none is due.
	at := next.Add(time.Second)
	record(t, s, a, 1, store.NotifyResult{State: store.NotifyDelivered, Event: "failed", Attempts: 2, DeliveredAt: at})
	record(t, s, b, 1, store.NotifyResult{State: store.NotifyFailed, Event: "succeeded", Attempts: 8, Error: "HTTP 404"})
	record(t, s, c, 1, store.NotifyResult{State: store.NotifySkipped, Event: "cancelled"})
	if got := dueIDs(t, s, at.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("all handled: due %v", got)
	}
	for _, tc := range []struct {
		job  string
		want store.JobNotify
	}{
		{a, store.JobNotify{State: store.NotifyDelivered, Event: "failed", Round: 1, Attempts: 2, DeliveredAt: at}},
		{b, store.JobNotify{State: store.NotifyFailed, Event: "succeeded", Round: 1, Attempts: 8, LastError: "HTTP 404"}},
		{c, store.JobNotify{State: store.NotifySkipped, Event: "cancelled", Round: 1}},
	} {
		n := getJob(t, s, tc.job).Notify
		if n == nil {
			t.Errorf("GetJob(%s): no notify", tc.job)
			continue
		}
		got := *n
		got.Webhook, got.On = "", nil
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("GetJob(%s) notify\n%+v, want\n%+v", tc.job, got, tc.want)
		}
	}
	// Recording the handled round again is allowed (a second notifier
	// that sent too): the last record wins, the round stays handled.
	if err := s.(store.NotifyStore).RecordNotification(ctx, a, 1, store.NotifyResult{State: store.NotifyDelivered, Event: "failed", Attempts: 3, DeliveredAt: at}); err != nil {
		t.Errorf("recording a handled round again: %v", err)
	}
	if got := dueIDs(t, s, at.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("all handled: due %v", got)
	}
}

func testNotifyRounds(t *testing.T, s store.Store) {
	ctx := t.Context()
	ns := s.(store.NotifyStore)
	t0 := base.Add(time.Hour).UTC()
	a := notifyJob(t, s, 1, "https://hooks.example/a", store.JobFailed, t0)
	b := notifyJob(t, s, 2, "https://hooks.example/b", store.JobFailed, t0)
	record(t, s, a, 1, store.NotifyResult{State: store.NotifyDelivered, Event: "failed", Attempts: 3, DeliveredAt: notifyNow})
	// b's first run fails for now; then it is retried before it was handled.
	record(t, s, b, 1, store.NotifyResult{State: store.NotifyPending, Event: "failed", Attempts: 1, Error: "timeout", NextAt: notifyNow})
	retry(t, s, a, t0.Add(time.Minute))
	retry(t, s, b, t0.Add(time.Minute))

	got := due(t, s, notifyNow, 0)
	if len(got) != 2 {
		t.Fatalf("after the retries: due %+v, want a and b", got)
	}
	for _, n := range got {
		if n.Retries != 1 || n.Round() != 2 {
			t.Errorf("job %s: retries %d, round %d; want 1, 2", n.JobID, n.Retries, n.Round())
		}
		if n.JobID == a && n.Attempts != 0 {
			t.Errorf("job a: round 2 starts at %d attempts, want 0 (round 1 was handled)", n.Attempts)
		}
	}
	// A record for round 1 is too late: it changes nothing.
	err := ns.RecordNotification(ctx, b, 1, store.NotifyResult{State: store.NotifyDelivered, Event: "failed", Attempts: 2, DeliveredAt: notifyNow})
	if !errors.Is(err, store.ErrNotifyRound) {
		t.Fatalf("recording round 1 of a job at round 2: %v, want ErrNotifyRound", err)
	}
	if n := getJob(t, s, b).Notify; n == nil || n.State == store.NotifyDelivered || n.Round != 0 {
		t.Errorf("the stale record changed the job: %+v", n)
	}
	record(t, s, a, 2, store.NotifyResult{State: store.NotifyDelivered, Event: "failed", Attempts: 1, DeliveredAt: notifyNow.Add(time.Minute)})
	if got, want := dueIDs(t, s, notifyNow), []string{b}; !reflect.DeepEqual(got, want) {
		t.Fatalf("a's round 2 delivered: due %v, want %v", got, want)
	}
	if n := getJob(t, s, a).Notify; n == nil || n.Round != 2 || n.Attempts != 1 || n.State != store.NotifyDelivered {
		t.Errorf("a after round 2: %+v", n)
	}
}

func testNotifyRefused(t *testing.T, s store.Store) {
	ctx := t.Context()
	ns := s.(store.NotifyStore)
	t0 := base.Add(time.Hour).UTC()
	a := notifyJob(t, s, 1, "https://hooks.example/a", store.JobFailed, t0)
	none := notifyJob(t, s, 2, "", store.JobFailed, t0)
	ok := store.NotifyResult{State: store.NotifyDelivered, Event: "failed", Attempts: 1, DeliveredAt: notifyNow}
	if err := ns.RecordNotification(ctx, "20250601-nope", 1, ok); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown job: %v, want ErrNotFound", err)
	}
	if err := ns.RecordNotification(ctx, none, 1, ok); !errors.Is(err, store.ErrRejected) {
		t.Errorf("job without a webhook: %v, want ErrRejected", err)
	}
	for _, tc := range []struct {
		name  string
		round int32
		r     store.NotifyResult
	}{
		{"unknown state", 1, store.NotifyResult{State: "sent"}},
		{"round 0", 0, ok},
		{"negative attempts", 1, store.NotifyResult{State: store.NotifyPending, Attempts: -1}},
		{"NUL in error", 1, store.NotifyResult{State: store.NotifyPending, Attempts: 1, Error: "a\x00b"}},
		{"invalid UTF-8", 1, store.NotifyResult{State: store.NotifyPending, Attempts: 1, Error: "\xff"}},
	} {
		if err := ns.RecordNotification(ctx, a, tc.round, tc.r); !errors.Is(err, store.ErrRejected) {
			t.Errorf("%s: %v, want ErrRejected", tc.name, err)
		}
	}
	if _, err := ns.DueNotifications(ctx, time.Time{}, 1); !errors.Is(err, store.ErrRejected) {
		t.Errorf("DueNotifications at the zero time: %v, want ErrRejected", err)
	}
	if got := dueIDs(t, s, notifyNow); len(got) != 1 || got[0] != a {
		t.Errorf("after refused records: due %v, want [%s]", got, a)
	}
}
