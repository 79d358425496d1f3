package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haul-dev/haul/internal/metrics"
	"github.com/haul-dev/haul/internal/store"
)

// committer writes state changes to the store in batches (group commit):
// callers add their changes and wait; one goroutine writes everything added
// since the previous write in one transaction. Under load many pollers share
// one transaction and one fsync. Changes are written in the order they were
// added, and a later change to the same task or job replaces an earlier one
// in the same batch.
//
// Every write is fenced by the runner's lease. A write that fails is
// retried with backoff while the store is away (nothing is dropped), but a
// batch is never retried for ever because of one job's rows: when the
// store refuses a batch for its data, or a batch keeps failing, it is
// split by job; a job whose own changes the store refuses gets them
// written once more with the workers' free text and figures replaced by a
// note naming the refusal, and failing that, the job is failed (see
// poisoned). Every other job goes on.
type committer struct {
	st    store.Store
	log   *slog.Logger
	now   func() time.Time // the runner's clock, for health
	fence func() store.Fence
	// fenced is called when the store refused a write because the lease
	// is held by another runner; poisoned when one job's changes cannot be
	// written (the runner fails that job).
	fenced   func()
	poisoned func(jobID string, err error)
	metrics  *metrics.Runner

	mu      sync.Mutex
	pending *pendingBatch
	kick    chan struct{}
	// writingSince is when the Apply call in progress began (unix nanos;
	// 0: none): its fenced transaction holds the shard lease's row, so a
	// renewal of that lease waits for it (see Runner.leaseRound).
	writingSince atomic.Int64

	// What health reports: since when writes have failed, and why.
	hmu          sync.Mutex
	failingSince time.Time
	lastErr      error
}

type pendingBatch struct {
	b     store.Batch
	tasks map[taskRef]int // index into b.Tasks
	jobs  map[string]int  // index into b.Jobs
	done  chan struct{}   // closed when written (or abandoned)
}

type taskRef struct {
	job string
	idx int32
}

func newCommitter(st store.Store, log *slog.Logger) *committer {
	return &committer{st: st, log: log, now: time.Now, kick: make(chan struct{}, 1),
		fence: func() store.Fence { return store.Fence{} }, fenced: func() {}, poisoned: func(string, error) {}}
}

func newPending() *pendingBatch {
	return &pendingBatch{tasks: map[taskRef]int{}, jobs: map[string]int{}, done: make(chan struct{})}
}

// add queues changes and returns a channel closed once they are durable
// (or abandoned: see abandon).
func (c *committer) add(queued []store.QueuedRange, tasks []store.TaskUpdate, attempts []store.Attempt, jobs []store.JobUpdate) <-chan struct{} {
	c.mu.Lock()
	if c.pending == nil {
		c.pending = newPending()
	}
	p := c.pending
	// A task is queued from blocked once per load of its job, before any
	// other change of it: its range goes first whatever came before.
	p.b.Queued = append(p.b.Queued, queued...)
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

// abandon drops what is pending and releases its waiters: the runner lost
// its lease, and these changes are no longer its to write. Waiters tell by
// the runner's epoch.
func (c *committer) abandon() {
	c.mu.Lock()
	p := c.pending
	c.pending = nil
	c.mu.Unlock()
	if p != nil {
		close(p.done)
	}
}

// run writes batches until ctx ends. When ctx ends, what is pending is
// written once more before returning.
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

// splitAfter is how many failed writes in a row make a batch split by job,
// whatever the error: a write that keeps failing may be one job's fault
// though the store does not say so.
const splitAfter = 3

// maxChunk bounds the task updates one transaction writes. A batch with
// more (loading a million-task job queues every ready task at once) is
// written in chunks, each fenced in its own transaction, so that no write
// holds the shard lease's row, and with it the lease's renewal, for long;
// the attempts and job rows go with the last chunk. Waiters are released
// when every chunk is written.
const maxChunk = 50_000

// flush writes the pending batch; tries <= 0 means until it is written,
// abandoned, or ctx ends.
func (c *committer) flush(ctx context.Context, tries int) {
	c.mu.Lock()
	p := c.pending
	c.pending = nil
	c.mu.Unlock()
	if p == nil {
		return
	}
	for rangeRows(p.b.Queued)+len(p.b.Tasks) > maxChunk {
		chunk, rest := nextChunk(p.b)
		switch c.write(ctx, &chunk, tries) {
		case fenced:
			close(p.done)
			return
		case gaveUp:
			return
		}
		p.b = rest
	}
	switch c.write(ctx, &p.b, tries) {
	case written, fenced:
		close(p.done) // fenced: the shard is dropped; waiters see its tenure end
	}
}

// nextChunk splits off what one transaction of a big batch writes: its
// first maxChunk queued tasks (ranges go before the updates), or else its
// first maxChunk task updates. The rest keeps the attempts and job rows,
// which go with the last chunk.
func nextChunk(b store.Batch) (head, rest store.Batch) {
	rest = b
	if len(b.Queued) > 0 {
		head.Queued, rest.Queued = takeRanges(b.Queued, maxChunk)
	} else {
		head.Tasks, rest.Tasks = b.Tasks[:maxChunk], b.Tasks[maxChunk:]
	}
	return head, rest
}

// rangeRows counts the tasks of queued ranges.
func rangeRows(rs []store.QueuedRange) int {
	n := 0
	for _, r := range rs {
		n += int(r.End - r.First)
	}
	return n
}

// takeRanges splits rs after its first max tasks (cutting a range in two
// where needed).
func takeRanges(rs []store.QueuedRange, max int) (head, rest []store.QueuedRange) {
	for i, r := range rs {
		n := int(r.End - r.First)
		if n < max {
			head = append(head, r)
			max -= n
			continue
		}
		cut := r
		cut.End = r.First + int32(max)
		head = append(head, cut)
		if cut.End < r.End {
			r.First = cut.End
			return head, append([]store.QueuedRange{r}, rs[i+1:]...)
		}
		return head, rs[i+1:]
	}
	return head, nil
}

// What write did with a batch.
const (
	written = iota
	fenced
	gaveUp // ctx ended or tries ran out: not durable, waiters stay blocked
)

// write writes b, retrying with backoff while the store is away; tries <=
// 0 means until it is written, fenced, or ctx ends.
func (c *committer) write(ctx context.Context, b *store.Batch, tries int) int {
	delay := 50 * time.Millisecond
	for n := 1; ; n++ {
		b.Fence = c.fence()
		began := time.Now()
		c.writingSince.Store(began.UnixNano())
		err := c.st.Apply(ctx, b)
		c.writingSince.Store(0)
		c.metrics.ObserveCommit(time.Since(began), rangeRows(b.Queued)+len(b.Tasks)+len(b.Attempts)+len(b.Jobs), err)
		if err == nil {
			c.ok()
			return written
		}
		c.failed(err)
		c.log.Error("write state changes", "err", err, "tasks", len(b.Tasks), "attempt", n)
		if errors.Is(err, store.ErrFenced) {
			c.fenced()
			return fenced
		}
		if errors.Is(err, store.ErrRejected) || n >= splitAfter {
			rest, wasFenced := c.split(ctx, b)
			if wasFenced {
				c.fenced()
				return fenced
			}
			if rest == nil {
				c.ok()
				return written
			}
			*b = *rest // what is left failed as the store being away: retry it
		}
		if (tries > 0 && n >= tries) || ctx.Err() != nil {
			// Leave waiters blocked: their changes are not durable and they
			// must not report them. The process is shutting down.
			return gaveUp
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// split writes a batch one job at a time. A job whose changes the store
// refuses (store.ErrRejected) gets them written once more with what its
// workers reported replaced by a note, and failing that is poisoned. It
// returns what failed for another reason (the store is away), nil when
// everything was written or given up on, and whether a write was fenced.
func (c *committer) split(ctx context.Context, b *store.Batch) (*store.Batch, bool) {
	parts := splitByJob(b)
	var rest *store.Batch
	for _, id := range sortedKeys(parts) {
		part := parts[id]
		part.Fence = c.fence()
		err := c.st.Apply(ctx, part)
		if err == nil {
			continue
		}
		if errors.Is(err, store.ErrFenced) {
			return nil, true
		}
		if !errors.Is(err, store.ErrRejected) {
			if rest == nil {
				rest = &store.Batch{}
			}
			mergeInto(rest, part)
			continue
		}
		// This job's changes are refused: write them once more with what
		// workers reported (free text, usage figures) replaced by a note.
		scrubbed := scrub(part, fmt.Sprintf("the store refused what the worker reported (%v); its figures and message were dropped", err))
		scrubbed.Fence = c.fence()
		err2 := c.st.Apply(ctx, scrubbed)
		switch {
		case err2 == nil:
			c.log.Error("a job's changes were refused by the store; written without the workers' reports", "job", id, "err", err)
		case errors.Is(err2, store.ErrFenced):
			return nil, true
		case errors.Is(err2, store.ErrRejected):
			c.log.Error("a job's changes are refused by the store: failing the job", "job", id, "err", err2)
			c.poisoned(id, err2)
		default:
			if rest == nil {
				rest = &store.Batch{}
			}
			mergeInto(rest, part)
		}
	}
	return rest, false
}

func (c *committer) ok() {
	c.hmu.Lock()
	c.failingSince, c.lastErr = time.Time{}, nil
	c.hmu.Unlock()
}

func (c *committer) failed(err error) {
	c.hmu.Lock()
	if c.failingSince.IsZero() {
		c.failingSince = c.now()
	}
	c.lastErr = err
	c.hmu.Unlock()
}

func (c *committer) err() error {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	return c.lastErr
}

// health reports the store writes failing for over a second, or nil.
func (c *committer) health(now time.Time) error {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	if c.lastErr == nil || now.Sub(c.failingSince) < time.Second {
		return nil
	}
	return fmt.Errorf("cannot write to the store for %v: %w", now.Sub(c.failingSince).Round(time.Second), c.lastErr)
}

// splitByJob groups a batch's changes by job, keeping their order.
func splitByJob(b *store.Batch) map[string]*store.Batch {
	parts := map[string]*store.Batch{}
	part := func(id string) *store.Batch {
		p := parts[id]
		if p == nil {
			p = &store.Batch{}
			parts[id] = p
		}
		return p
	}
	for _, r := range b.Queued {
		p := part(r.JobID)
		p.Queued = append(p.Queued, r)
	}
	for _, t := range b.Tasks {
		p := part(t.JobID)
		p.Tasks = append(p.Tasks, t)
	}
	for _, a := range b.Attempts {
		p := part(a.JobID)
		p.Attempts = append(p.Attempts, a)
	}
	for _, j := range b.Jobs {
		p := part(j.ID)
		p.Jobs = append(p.Jobs, j)
	}
	return parts
}

func sortedKeys(m map[string]*store.Batch) []string {
	return slices.Sorted(maps.Keys(m))
}

// mergeInto appends src's changes to dst.
func mergeInto(dst, src *store.Batch) {
	dst.Queued = append(dst.Queued, src.Queued...)
	dst.Tasks = append(dst.Tasks, src.Tasks...)
	dst.Attempts = append(dst.Attempts, src.Attempts...)
	dst.Jobs = append(dst.Jobs, src.Jobs...)
}

// scrub returns a copy of a job's changes without what its workers
// reported: attempt messages, usage and GPU figures, and the job's usage
// sums, with note as each attempt's message.
func scrub(b *store.Batch, note string) *store.Batch {
	out := &store.Batch{Queued: slices.Clone(b.Queued), Tasks: slices.Clone(b.Tasks), Attempts: slices.Clone(b.Attempts), Jobs: slices.Clone(b.Jobs)}
	for i := range out.Attempts {
		a := &out.Attempts[i]
		a.Message = note
		a.Usage = store.Usage{}
		a.Enforcement = clean(a.Enforcement)
		a.Reason = clean(a.Reason)
	}
	for i := range out.Jobs {
		out.Jobs[i].Usage = store.JobUsage{}
		out.Jobs[i].CostUSD = finite(out.Jobs[i].CostUSD)
		out.Jobs[i].WorkerSeconds = finite(out.Jobs[i].WorkerSeconds)
	}
	return out
}
