package token_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
	"github.com/haul-dev/haul/internal/token"
)

// TestIdentify runs against a real SQLite store: a token proves its task
// while its attempt runs, and nothing once the attempt ended or a later
// attempt started.
func TestIdentify(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "haul.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now()
	job := &store.Job{ID: "job-1", Name: "j", Namespace: "team", State: store.JobPending, CreatedAt: now, Tiers: []store.Tier{{Name: "small"}}}
	tasks := []store.Task{{Index: 0, Key: "a", Argv: []string{"true"}, State: store.TaskQueued}, {Index: 1, Key: "b", Argv: []string{"true"}, State: store.TaskQueued}}
	if err := st.CreateJob(ctx, job, tasks); err != nil {
		t.Fatal(err)
	}
	run := func(index, attempt int32, state store.TaskState) {
		t.Helper()
		a := store.AttemptRunning
		if state != store.TaskRunning {
			a = store.AttemptSucceeded
		}
		if err := st.Apply(ctx, &store.Batch{
			Tasks:    []store.TaskUpdate{{JobID: job.ID, Index: index, State: state, Attempts: attempt, StartedAt: now}},
			Attempts: []store.Attempt{{JobID: job.ID, TaskIndex: index, Number: attempt, WorkerID: "w", State: a, StartedAt: now}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	secret, _ := token.New()
	id := token.Identifier{Secret: secret, Store: st}
	refused := func(what, tok string, wantExpired bool) {
		t.Helper()
		got, err := id.Identify(ctx, tok)
		if err == nil || !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: Identify = %v, %v; want unauthenticated", what, got, err)
			return
		}
		if wantExpired && !errors.Is(err, token.ErrExpired) {
			t.Errorf("%s: %v; want it to say the token expired with its attempt", what, err)
		}
	}

	run(0, 1, store.TaskRunning)
	tok := secret.ForAttempt(job.ID, "a", 1)
	got, err := id.Identify(ctx, tok)
	if err != nil {
		t.Fatalf("a running attempt's token: %v", err)
	}
	want := auth.Identity{Kind: auth.KindTask, Subject: "task:job-1/a#1", Job: job.ID, Task: "a", Attempt: 1, Via: "task"}
	if got.Kind != want.Kind || got.Subject != want.Subject || got.Job != want.Job || got.Task != want.Task || got.Attempt != want.Attempt || got.Via != want.Via || got.PlatformAdmin || len(got.Teams) != 0 {
		t.Errorf("identity = %+v, want %+v", *got, want)
	}
	if err := auth.Allow(got, auth.AddTasks, auth.Object{Team: "team", Job: job.ID}); err != nil {
		t.Errorf("the task may not add tasks to its own job: %v", err)
	}
	if err := auth.Allow(got, auth.AddTasks, auth.Object{Team: "team", Job: "job-2"}); err == nil {
		t.Error("the task may add tasks to another job")
	}

	refused("another secret's token", func() string { o, _ := token.New(); return o.ForAttempt(job.ID, "a", 1) }(), false)
	refused("a queued task's token", secret.ForAttempt(job.ID, "b", 1), true)
	refused("an attempt that never ran", secret.ForAttempt(job.ID, "a", 2), true)
	refused("an unknown task", secret.ForAttempt(job.ID, "zz", 1), true)
	refused("an unknown job", secret.ForAttempt("job-9", "a", 1), true)

	// The attempt is lost and retried: the old token stops, the new works.
	run(0, 2, store.TaskRunning)
	refused("a superseded attempt's token", tok, true)
	if _, err := id.Identify(ctx, secret.ForAttempt(job.ID, "a", 2)); err != nil {
		t.Errorf("the new attempt's token: %v", err)
	}
	// It ends: no token of the task works.
	run(0, 2, store.TaskSucceeded)
	refused("a finished attempt's token", secret.ForAttempt(job.ID, "a", 2), true)

	// A store that is away is not "unauthenticated".
	st.Close()
	if _, err := id.Identify(ctx, secret.ForAttempt(job.ID, "a", 2)); err == nil || errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("with the store closed: %v, want an error that is not unauthenticated", err)
	}
}
