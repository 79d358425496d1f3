package retention

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "haul.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// addJob stores a job of n tasks that ended (state) at finished; a zero
// finished leaves it running.
func addJob(t *testing.T, s store.Store, finished time.Time, n int) string {
	t.Helper()
	ctx := t.Context()
	job := &store.Job{ID: store.NewJobID(now.Add(-100*24*time.Hour), rand.Reader), Name: "sim", Namespace: "ml", State: store.JobPending,
		TaskCount: int64(n), Counts: store.TaskCounts{Blocked: int64(n)}, CreatedAt: now.Add(-100 * 24 * time.Hour)}
	tasks := make([]store.Task, n)
	for i := range tasks {
		tasks[i] = store.Task{JobID: job.ID, Index: int32(i), Key: fmt.Sprintf("t-%d", i), Argv: []string{"true"}, State: store.TaskBlocked}
	}
	if err := s.CreateJob(ctx, job, tasks); err != nil {
		t.Fatal(err)
	}
	u := store.JobUpdate{ID: job.ID, State: store.JobRunning, StartedAt: job.CreatedAt}
	if !finished.IsZero() {
		u.State, u.FinishedAt, u.Counts = store.JobSucceeded, finished, store.TaskCounts{Succeeded: int64(n)}
	}
	if err := s.Apply(ctx, &store.Batch{Jobs: []store.JobUpdate{u}}); err != nil {
		t.Fatal(err)
	}
	return job.ID
}

func export(t *testing.T, s store.Store) {
	t.Helper()
	for {
		b, ok, err := s.ClaimExportBatch(t.Context(), 100, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return
		}
		if err := s.FinishExportBatch(t.Context(), b.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func live(t *testing.T, s store.Store, id string) bool {
	t.Helper()
	_, err := s.GetJob(t.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func TestOnce(t *testing.T) {
	s := openStore(t)
	old1 := addJob(t, s, now.Add(-40*24*time.Hour), 3)
	old2 := addJob(t, s, now.Add(-31*24*time.Hour), 2)
	old3 := addJob(t, s, now.Add(-35*24*time.Hour), 1)
	recent := addJob(t, s, now.Add(-29*24*time.Hour), 2)
	running := addJob(t, s, time.Time{}, 2)
	export(t, s)
	unexported := addJob(t, s, now.Add(-60*24*time.Hour), 2)

	r := &Retainer{Store: s, Age: 30 * 24 * time.Hour, Limit: 2, History: "s3://hist/haul", Clock: func() time.Time { return now }}
	n, err := r.Once(t.Context())
	if err != nil || n != 3 {
		t.Fatalf("Once = %d, %v; want 3 (two calls of limit 2)", n, err)
	}
	for _, id := range []string{old1, old2, old3} {
		if live(t, s, id) {
			t.Errorf("job %s finished over 30 days ago, exported: still live", id)
		}
		a, err := s.GetArchivedJob(t.Context(), id)
		if err != nil || a.History != "s3://hist/haul" || a.State != store.JobSucceeded {
			t.Errorf("GetArchivedJob(%s) = %+v, %v", id, a, err)
		}
	}
	for _, id := range []string{recent, running, unexported} {
		if !live(t, s, id) {
			t.Errorf("job %s retired; want it kept", id)
		}
	}
	if n, err := r.Once(t.Context()); err != nil || n != 0 {
		t.Errorf("second Once = %d, %v; want 0", n, err)
	}
	// Two days later the recent job is due too.
	r.Clock = func() time.Time { return now.Add(48 * time.Hour) }
	if n, err := r.Once(t.Context()); err != nil || n != 1 || live(t, s, recent) {
		t.Errorf("Once two days later = %d, %v; want the recent job retired", n, err)
	}
}

func TestKeepForever(t *testing.T) {
	s := openStore(t)
	id := addJob(t, s, now.Add(-1000*24*time.Hour), 1)
	export(t, s)
	r := &Retainer{Store: s, Clock: func() time.Time { return now }}
	if n, err := r.Once(t.Context()); err != nil || n != 0 || !live(t, s, id) {
		t.Errorf("Age 0: Once = %d, %v; want nothing retired", n, err)
	}
}

func TestRun(t *testing.T) {
	s := openStore(t)
	export(t, s)
	r := &Retainer{Store: s, Age: time.Hour, Interval: 10 * time.Millisecond, Clock: func() time.Time { return now }}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	// A job that becomes due while Run loops is retired by a later tick.
	id := addJob(t, s, now.Add(-2*time.Hour), 5)
	export(t, s)
	deadline := time.Now().Add(10 * time.Second)
	for live(t, s, id) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not retire a due job within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v; want context.Canceled", err)
	}
}
