package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/haul-dev/haul/internal/dag"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
)

// ErrAppend is wrapped by AddTasks's errors that are the caller's to fix
// (bad dependencies, a task that is not running, a finished job), as
// opposed to the store failing. It has a method Rejected() bool, so that a
// caller can tell it without importing this package.
var ErrAppend error = rejected{}

type rejected struct{}

func (rejected) Error() string  { return "cannot add tasks" }
func (rejected) Rejected() bool { return true }

// AddTasks appends tasks to a running job on behalf of adder, one of its
// running tasks (a dynamic DAG). The tasks come compiled from a spec
// fragment (their After lists may name the job's tasks and each other);
// AddTasks gives them indices after the job's, checks their dependencies
// against the whole job (unknown keys, cycles, a glob of a task that already
// started), stores them, and schedules them: one whose parents all
// succeeded is ready at once. It returns the job's task count after the
// append. Because only a running task may add, and the job cannot end while
// a task runs, no job ends with an append on the way.
func (r *Runner) AddTasks(ctx context.Context, jobID, adder string, tasks []store.Task) (int64, error) {
	if len(tasks) == 0 {
		return 0, fmt.Errorf("%w: no tasks", ErrAppend)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	jr := r.jobs[jobID]
	if jr == nil || jr.done {
		return 0, fmt.Errorf("%w: job %s is not running", ErrAppend, jobID)
	}
	n := jr.tasks.len()
	index := make(map[string]int32, n+len(tasks))
	keys := make([]string, 0, n+len(tasks))
	after := make([][]string, 0, n+len(tasks))
	for i := range int32(n) {
		k := jr.tasks.key(i)
		index[k] = i
		keys = append(keys, k)
		after = append(after, jr.tasks.afterOf(i))
	}
	a, ok := index[adder]
	if !ok {
		return 0, fmt.Errorf("%w: job %s has no task %q", ErrAppend, jobID, adder)
	}
	if s := jr.core.State(a); s != sched.Running {
		return 0, fmt.Errorf("%w: task %q is %s: only a running task can add tasks to its job", ErrAppend, adder, s)
	}
	cfgs := make([]sched.TaskConfig, len(tasks))
	added := make([]store.Task, len(tasks))
	for i, t := range tasks {
		if j, dup := index[t.Key]; dup {
			if int(j) < n {
				return 0, fmt.Errorf("%w: task %q already exists in job %s", ErrAppend, t.Key, jobID)
			}
			return 0, fmt.Errorf("%w: task %q is added twice", ErrAppend, t.Key)
		}
		t.JobID, t.Index, t.State = jobID, int32(n+i), store.TaskBlocked
		t.RunTier = t.Tier
		index[t.Key] = t.Index
		keys = append(keys, t.Key)
		after = append(after, t.After)
		added[i] = t
		cfgs[i] = sched.TaskConfig{Tier: t.Tier, Retries: t.Retries, Timeout: time.Duration(t.TimeoutMS) * time.Millisecond}
	}
	g, err := dag.Build(keys, after)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrAppend, err)
	}
	if err := jr.core.CheckExtend(g, cfgs); err != nil {
		var sg *sched.StartedGlobError
		if errors.As(err, &sg) {
			return 0, fmt.Errorf("%w: a new task matches the dependency %q of task %q, which already started: give it a key that does not match", ErrAppend, sg.Glob, keys[sg.Task])
		}
		return 0, fmt.Errorf("%w: %w", ErrAppend, err)
	}
	// Durable first: the tasks exist in the store before anything runs.
	if err := r.cfg.Store.AppendTasks(ctx, jobID, added); err != nil {
		return 0, fmt.Errorf("store the added tasks: %w", err)
	}
	if err := jr.core.Extend(g, cfgs, r.now()); err != nil {
		// CheckExtend passed under the same lock: this cannot happen.
		r.log.Error("extend after a successful check", "job", jobID, "err", err)
		return 0, fmt.Errorf("extend job %s: %w", jobID, err)
	}
	for i := range added {
		jr.tasks.add(&added[i])
	}
	jr.job.TaskCount = int64(jr.tasks.len())
	jr.dirty = true
	r.log.Info("tasks added", "job", jobID, "by", adder, "tasks", len(added), "total", jr.tasks.len())
	done := r.afterEvents(jr, nil)
	r.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
	r.mu.Lock()
	return int64(jr.tasks.len()), nil
}
