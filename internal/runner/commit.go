package runner

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// committer writes state changes to the store in batches (group commit):
// callers add their changes and wait; one goroutine writes everything added
// since the previous write in one transaction. Under load many pollers share
// one transaction and one fsync. Changes are written in the order they were
// added, and a later change to the same task or job replaces an earlier one
// in the same batch.
type committer struct {
	st  store.Store
	log *slog.Logger

	mu      sync.Mutex
	pending *pendingBatch
	kick    chan struct{}
}

type pendingBatch struct {
	b     store.Batch
	tasks map[taskRef]int // index into b.Tasks
	jobs  map[string]int  // index into b.Jobs
	done  chan struct{}   // closed when written
}

type taskRef struct {
	job string
	idx int32
}

func newCommitter(st store.Store, log *slog.Logger) *committer {
	return &committer{st: st, log: log, kick: make(chan struct{}, 1)}
}

func newPending() *pendingBatch {
	return &pendingBatch{tasks: map[taskRef]int{}, jobs: map[string]int{}, done: make(chan struct{})}
}

// add queues changes and returns a channel closed once they are durable.
func (c *committer) add(tasks []store.TaskUpdate, attempts []store.Attempt, jobs []store.JobUpdate) <-chan struct{} {
	c.mu.Lock()
	if c.pending == nil {
		c.pending = newPending()
	}
	p := c.pending
	for _, t := range tasks {
		k := taskRef{t.JobID, t.Index}
		if i, ok := p.tasks[k]; ok {
			p.b.Tasks[i] = t
			continue
		}
		p.tasks[k] = len(p.b.Tasks)
		p.b.Tasks = append(p.b.Tasks, t)
	}
	p.b.Attempts = append(p.b.Attempts, attempts...)
	for _, j := range jobs {
		if i, ok := p.jobs[j.ID]; ok {
			p.b.Jobs[i] = j
			continue
		}
		p.jobs[j.ID] = len(p.b.Jobs)
		p.b.Jobs = append(p.b.Jobs, j)
	}
	done := p.done
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return done
}

// run writes batches until ctx ends. A failed write is retried with backoff
// (a store outage pauses the runner; nothing is dropped). When ctx ends, what
// is pending is written once more before returning.
func (c *committer) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			c.flush(context.WithoutCancel(ctx), 3)
			return
		case <-c.kick:
		}
		c.flush(ctx, 0)
	}
}

// flush writes the pending batch; tries <= 0 means until success or ctx ends.
func (c *committer) flush(ctx context.Context, tries int) {
	c.mu.Lock()
	p := c.pending
	c.pending = nil
	c.mu.Unlock()
	if p == nil {
		return
	}
	delay := 50 * time.Millisecond
	for n := 1; ; n++ {
		err := c.st.Apply(ctx, &p.b)
		if err == nil {
			close(p.done)
			return
		}
		c.log.Error("write state changes", "err", err, "tasks", len(p.b.Tasks), "attempt", n)
		if (tries > 0 && n >= tries) || ctx.Err() != nil {
			// Leave waiters blocked: their changes are not durable and they
			// must not report them. The process is shutting down.
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}
