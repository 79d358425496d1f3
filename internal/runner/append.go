package runner

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
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
// running tasks, at attempt (a dynamic DAG): the attempt must be the task's
// current one and still running, so that an ended attempt's token adds
// nothing. The tasks come compiled from a spec
// fragment (their After lists may name the job's tasks and each other);
// AddTasks gives them indices after the job's, checks their dependencies
// against the whole job (unknown keys, cycles, a glob of a task that already
// started), stores them, and schedules them: one whose parents all
// succeeded is ready at once. It returns the job's task count after the
// append. Because only a running task may add, and the job cannot end while
// a task runs, no job ends with an append on the way.
//
// Adding is idempotent, as a retried task (execution is at least once)
// needs: a task whose key the job already has and whose content is the
// same (command, env, cwd, dependencies, tier, retries, timeout) is left as
// it is, while the other tasks of the call are added; if nothing is new,
// nothing is stored. A key the job has with different content is refused,
// naming the key and what differs. The store write is fenced by the
// shard's lease: a runner that lost it stores nothing. It is made without
// the shard's lock, with only this job frozen: the shard's other jobs
// dispatch and commit meanwhile.
func (r *Runner) AddTasks(ctx context.Context, jobID, adder string, attempt int32, tasks []store.Task) (int64, error) {
	if len(tasks) == 0 {
		return 0, fmt.Errorf("%w: no tasks", ErrAppend)
	}
	s := r.shards[store.ShardOf(jobID)]
	if !s.leased.Load() {
		return 0, fmt.Errorf("job %s: %w", jobID, ErrNotOwner)
	}
	return s.addTasks(ctx, jobID, adder, attempt, tasks)
}

// ErrNotOwner is returned for a job whose shard this runner does not own
// now: the caller finds the owner (the shard's lease) and asks it.
var ErrNotOwner = errors.New("its shard is not owned by this runner now")

func (s *shard) addTasks(ctx context.Context, jobID, adder string, attempt int32, tasks []store.Task) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	jr := s.settle(jobID) // one append at a time per job
	if jr == nil && (s.loading[jobID] || !s.scanned) {
		return 0, fmt.Errorf("job %s is being loaded: %w", jobID, ErrNotOwner)
	}
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
	// A task adds for itself, and only while that attempt runs; a person
	// (adder "", a member of the job's team) adds while the job runs: the
	// lock held here, then the job frozen while the tasks are written,
	// keep it from ending meanwhile.
	if adder != "" {
		a, ok := index[adder]
		if !ok {
			return 0, fmt.Errorf("%w: job %s has no task %q", ErrAppend, jobID, adder)
		}
		if s := jr.core.State(a); s != sched.Running {
			return 0, fmt.Errorf("%w: task %q is %s: only a running task can add tasks to its job", ErrAppend, adder, s)
		}
		if cur := jr.core.Attempts(a); cur != attempt {
			return 0, fmt.Errorf("%w: attempt %d of task %q has ended (the task runs attempt %d): only the running attempt can add tasks", ErrAppend, attempt, adder, cur)
		}
	}
	cfgs := make([]sched.TaskConfig, 0, len(tasks))
	added := make([]store.Task, 0, len(tasks))
	existing := 0 // tasks of the call the job already has, as they are
	for _, t := range tasks {
		if j, dup := index[t.Key]; dup {
			if j < 0 || int(j) >= n {
				return 0, fmt.Errorf("%w: task %q is added twice", ErrAppend, t.Key)
			}
			if diff := differs(jr, j, &t); diff != "" {
				return 0, fmt.Errorf("%w: task %q already exists in job %s with a different %s", ErrAppend, t.Key, jobID, diff)
			}
			existing++
			index[t.Key] = -1 // a second mention in this call is "added twice"
			continue
		}
		t.JobID, t.Index, t.State = jobID, int32(n+len(added)), store.TaskBlocked
		t.RunTier = t.Tier
		index[t.Key] = t.Index
		keys = append(keys, t.Key)
		after = append(after, t.After)
		added = append(added, t)
		cfgs = append(cfgs, sched.TaskConfig{Tier: t.Tier, Retries: t.Retries, Timeout: time.Duration(t.TimeoutMS) * time.Millisecond})
	}
	if len(added) == 0 {
		s.log.Info("tasks added again: the job has them all already", "job", jobID, "by", adder, "attempt", attempt, "tasks", existing)
		return int64(n), nil
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
	// The write happens without the shard's lock, so that the shard's
	// other jobs go on meanwhile; this job is frozen (appending) until it
	// is done, so that the check above still holds for Extend below.
	frozen, gen, fence := make(chan struct{}), s.gen.Load(), s.fence()
	jr.appending = frozen
	s.mu.Unlock()
	err = s.cfg.Store.AppendTasksFenced(ctx, fence, jobID, added)
	s.mu.Lock()
	jr.appending = nil
	close(frozen)
	if err != nil {
		switch {
		case errors.Is(err, store.ErrFenced):
			s.lostLease()
		case errors.Is(err, store.ErrRejected):
			return 0, fmt.Errorf("%w: store refused the tasks: %w", ErrAppend, err)
		}
		return 0, fmt.Errorf("store the added tasks: %w", err)
	}
	if s.gen.Load() != gen || s.jobs[jobID] != jr {
		// The shard moved meanwhile: the tasks are stored, and the next
		// owner loads them. A retry finds them there (adding is idempotent).
		return 0, fmt.Errorf("job %s: tasks stored, but %w", jobID, ErrNotOwner)
	}
	if err := jr.core.Extend(g, cfgs, s.now()); err != nil {
		// CheckExtend passed and the job was frozen since: this cannot happen.
		s.log.Error("extend after a successful check", "job", jobID, "err", err)
		return 0, fmt.Errorf("extend job %s: %w", jobID, err)
	}
	for i := range added {
		jr.tasks.add(&added[i])
	}
	jr.job.TaskCount = int64(jr.tasks.len())
	jr.dirty = true
	s.log.Info("tasks added", "job", jobID, "by", adder, "attempt", attempt, "tasks", len(added), "existing", existing, "total", jr.tasks.len())
	done := s.afterEvents(jr, nil)
	s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.mu.Lock()
	return int64(jr.tasks.len()), nil
}

// differs compares task j of the job, as the runner holds it, with t, a
// task of the same key being added again, and returns what differs ("" if
// nothing): the field and both values, the stored one first. Env values
// are not shown (they may be secrets), only the names that differ.
func differs(jr *jobRun, j int32, t *store.Task) string {
	_, cwd, argv, env := jr.tasks.spec(j)
	switch {
	case !slices.Equal(argv, t.Argv):
		return fmt.Sprintf("command: %s in the job, %s added", quoteList(argv), quoteList(t.Argv))
	case !maps.Equal(env, t.Env):
		return fmt.Sprintf("env: %s differ", strings.Join(envDiff(env, t.Env), ", "))
	case cwd != t.Cwd:
		return fmt.Sprintf("cwd: %s in the job, %s added", quote(cwd), quote(t.Cwd))
	case !slices.Equal(jr.tasks.afterOf(j), t.After):
		return fmt.Sprintf("after: %s in the job, %s added", quoteList(jr.tasks.afterOf(j)), quoteList(t.After))
	case jr.core.FirstTier(j) != t.Tier:
		return fmt.Sprintf("tier: %d in the job, %d added", jr.core.FirstTier(j), t.Tier)
	case jr.core.Retries(j) != t.Retries:
		return fmt.Sprintf("retries: %d in the job, %d added", jr.core.Retries(j), t.Retries)
	case jr.core.Timeout(j) != time.Duration(t.TimeoutMS)*time.Millisecond:
		return fmt.Sprintf("timeout: %v in the job, %v added", jr.core.Timeout(j), time.Duration(t.TimeoutMS)*time.Millisecond)
	}
	return ""
}

// envDiff returns the sorted names of the variables that a and b do not
// both have with the same value.
func envDiff(a, b map[string]string) []string {
	var names []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			names = append(names, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return names
}

// maxQuoted bounds each value quoted in an error.
const maxQuoted = 200

func quote(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}

func quoteList(l []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, s := range l {
		if i > 0 {
			b.WriteString(", ")
		}
		if b.Len() > maxQuoted {
			fmt.Fprintf(&b, "... %d more", len(l)-i)
			break
		}
		b.WriteString(quote(s))
	}
	b.WriteByte(']')
	return b.String()
}
