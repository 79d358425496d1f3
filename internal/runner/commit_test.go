package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// A batch holding one job's row that the real store refuses (a NaN figure,
// which only a runner bug could put there: worker reports are bounded
// before) is not retried for ever: the other job's changes are written,
// the bad job's are written once more without the workers' figures and
// with a note naming the refusal, and health is good again.
func TestCommitterIsolatesARefusedJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "haul.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now().Truncate(time.Millisecond)
	for _, id := range []string{"good", "bad"} {
		job := &store.Job{ID: id, Name: id, Namespace: "ns", CreatedAt: now, Tiers: []store.Tier{{Name: "t", CPU: 1, MemoryBytes: 1 << 30}}, Spec: []byte("x")}
		if err := st.CreateJob(ctx, job, []store.Task{{Index: 0, Key: "k", Argv: []string{"true"}}}); err != nil {
			t.Fatal(err)
		}
	}
	c := newCommitter(st, slog.New(slog.DiscardHandler))
	var mu sync.Mutex
	var poisoned []string
	c.poisoned = func(id string, err error) { mu.Lock(); poisoned = append(poisoned, id); mu.Unlock() }
	attempt := func(job string, cpu float64) store.Attempt {
		return store.Attempt{JobID: job, TaskIndex: 0, Number: 1, WorkerID: "w", State: store.AttemptSucceeded,
			StartedAt: now, FinishedAt: now.Add(time.Second), Message: "fine", Usage: store.Usage{CPUUserSeconds: cpu}}
	}
	task := func(job string) store.TaskUpdate {
		return store.TaskUpdate{JobID: job, Index: 0, State: store.TaskSucceeded, Attempts: 1, StartedAt: now, FinishedAt: now.Add(time.Second)}
	}
	done := c.add(nil, []store.TaskUpdate{task("good"), task("bad")}, []store.Attempt{attempt("good", 1), attempt("bad", math.NaN())}, nil)
	flushed := make(chan struct{})
	go func() { c.flush(ctx, 0); close(flushed) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the batch was retried for ever")
	}
	<-flushed
	good, err := st.ListAttempts(ctx, "good", 0)
	if err != nil || len(good) != 1 || good[0].Usage.CPUUserSeconds != 1 || good[0].Message != "fine" {
		t.Fatalf("good job's attempt %+v (%v): want it written as sent", good, err)
	}
	bad, err := st.ListAttempts(ctx, "bad", 0)
	if err != nil || len(bad) != 1 || !strings.Contains(bad[0].Message, "refused") || bad[0].Usage.CPUUserSeconds != 0 {
		t.Fatalf("bad job's attempt %+v (%v): want it written without the figure, with a note", bad, err)
	}
	if task, err := st.GetTask(ctx, "bad", "k"); err != nil || task.State != store.TaskSucceeded {
		t.Fatalf("bad job's task %+v (%v): want its state written", task, err)
	}
	if len(poisoned) != 0 {
		t.Fatalf("poisoned %v: the scrubbed write should have been taken", poisoned)
	}
	if err := c.health(time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("health after the isolated refusal: %v", err)
	}
}

// Health reports a store that cannot be written for over a second, naming
// the error, and recovers with the next write.
func TestCommitterHealth(t *testing.T) {
	t.Parallel()
	c := newCommitter(nil, slog.New(slog.DiscardHandler))
	now := time.Now()
	c.failed(errors.New("disk full"))
	if err := c.health(now.Add(2 * time.Second)); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("health %v, want the failure named", err)
	}
	c.ok()
	if err := c.health(now.Add(3 * time.Second)); err != nil {
		t.Fatalf("health %v after a write", err)
	}
}

// countingStore counts the batches Apply writes and their task updates.
type countingStore struct {
	store.Store
	mu      sync.Mutex
	batches []int
	queued  []int // tasks of queued ranges, per batch
}

func (s *countingStore) Apply(ctx context.Context, b *store.Batch) error {
	s.mu.Lock()
	s.batches = append(s.batches, len(b.Tasks))
	s.queued = append(s.queued, rangeRows(b.Queued))
	s.mu.Unlock()
	return s.Store.Apply(ctx, b)
}

// A batch of more task updates than maxChunk (a loaded million-task job
// queues every task at once) is written in chunks of at most maxChunk,
// the job row with the last; its waiters are released once all are
// written, and every update is in the store.
func TestCommitterChunksBigBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	real, n, now := bigJob(t, "big")
	updates := make([]store.TaskUpdate, n)
	for i := range updates {
		updates[i] = store.TaskUpdate{JobID: "big", Index: int32(i), State: store.TaskQueued}
	}
	st := &countingStore{Store: real}
	c := newCommitter(st, slog.New(slog.DiscardHandler))
	done := c.add(nil, updates, nil, []store.JobUpdate{{ID: "big", State: store.JobRunning, Counts: store.TaskCounts{Queued: int64(n)}, StartedAt: now}})
	c.flush(ctx, 0)
	select {
	case <-done:
	default:
		t.Fatal("waiters not released after the chunks were written")
	}
	if want := []int{maxChunk, maxChunk, 7}; !slices.Equal(st.batches, want) {
		t.Fatalf("batches of %v task updates, want %v", st.batches, want)
	}
	j, err := real.GetJob(ctx, "big")
	if err != nil || j.State != store.JobRunning {
		t.Fatalf("job %+v (%v): want running, written with the last chunk", j, err)
	}
	queued, err := real.ListTasks(ctx, store.TaskFilter{JobID: "big", States: []store.TaskState{store.TaskQueued}, After: -1, Limit: n + 1})
	if err != nil || len(queued) != n {
		t.Fatalf("%d tasks queued in the store (%v), want %d", len(queued), err, n)
	}
}

// Queued ranges are written before the task updates of their batch, in
// chunks of at most maxChunk tasks (a range cut where needed): a fan-out's
// million ready tasks cost the committer a few ranges, not a million
// updates, and no transaction holds the shard's lease row for long.
func TestCommitterChunksQueuedRanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	real, n, now := bigJob(t, "fan")
	st := &countingStore{Store: real}
	c := newCommitter(st, slog.New(slog.DiscardHandler))
	ranges := []store.QueuedRange{{JobID: "fan", First: 0, End: maxChunk + 3}, {JobID: "fan", First: maxChunk + 3, End: int32(n)}}
	// Task 5 is queued and then taken in the same batch.
	done := c.add(ranges, []store.TaskUpdate{{JobID: "fan", Index: 5, State: store.TaskRunning, Attempts: 1, StartedAt: now}}, nil,
		[]store.JobUpdate{{ID: "fan", State: store.JobRunning, Counts: store.TaskCounts{Queued: int64(n - 1), Running: 1}, StartedAt: now}})
	c.flush(ctx, 0)
	select {
	case <-done:
	default:
		t.Fatal("waiters not released after the chunks were written")
	}
	if want := []int{maxChunk, maxChunk, 7}; !slices.Equal(st.queued, want) {
		t.Errorf("batches of %v queued tasks, want %v", st.queued, want)
	}
	if want := []int{0, 0, 1}; !slices.Equal(st.batches, want) {
		t.Errorf("batches of %v task updates, want %v", st.batches, want)
	}
	got, err := real.LoadTasks(ctx, "fan")
	if err != nil {
		t.Fatal(err)
	}
	for i, tk := range got {
		want := store.TaskQueued
		if i == 5 {
			want = store.TaskRunning
		}
		if tk.State != want {
			t.Fatalf("task %d: %s, want %s", i, tk.State, want)
		}
	}
}

func TestTakeRanges(t *testing.T) {
	t.Parallel()
	rs := []store.QueuedRange{{JobID: "a", First: 0, End: 3}, {JobID: "b", First: 10, End: 20}, {JobID: "a", First: 5, End: 6}}
	for _, c := range []struct {
		max        int
		head, rest []store.QueuedRange
	}{
		{2, []store.QueuedRange{{JobID: "a", First: 0, End: 2}}, []store.QueuedRange{{JobID: "a", First: 2, End: 3}, rs[1], rs[2]}},
		{3, rs[:1], rs[1:]},
		{8, []store.QueuedRange{rs[0], {JobID: "b", First: 10, End: 15}}, []store.QueuedRange{{JobID: "b", First: 15, End: 20}, rs[2]}},
		{14, rs, nil},
		{100, rs, nil},
	} {
		head, rest := takeRanges(rs, c.max)
		if !slices.Equal(head, c.head) || !slices.Equal(rest, c.rest) {
			t.Errorf("takeRanges(%d) = %v, %v; want %v, %v", c.max, head, rest, c.head, c.rest)
		}
	}
}

// bigJob stores job id with 2*maxChunk+7 tasks, each after a parent (so
// stored blocked: the tests see what the committer writes), in a SQLite
// store closed with the test.
func bigJob(t *testing.T, id string) (*sqlite.Store, int, time.Time) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "haul.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	n := 2*maxChunk + 7
	now := time.Now().Truncate(time.Millisecond)
	tasks := make([]store.Task, n)
	for i := range tasks {
		tasks[i] = store.Task{Index: int32(i), Key: fmt.Sprintf("t-%d", i), Argv: []string{"true"}, After: []string{"root"}}
	}
	job := &store.Job{ID: id, Name: id, Namespace: "ns", CreatedAt: now, Tiers: []store.Tier{{Name: "t", CPU: 1, MemoryBytes: 1 << 30}}, Spec: []byte("x")}
	if err := st.CreateJob(ctx, job, tasks); err != nil {
		t.Fatal(err)
	}
	return st, n, now
}
