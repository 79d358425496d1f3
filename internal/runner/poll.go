package runner

import (
	"context"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/gen/haul/taskhost/v1/taskhostv1connect"
	"github.com/haul-dev/haul/internal/logs"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
)

var _ taskhostv1connect.TaskHostServiceHandler = (*Runner)(nil)

// maxWait caps how long a Poll is held open waiting for work.
const maxWait = 30 * time.Second

// Poll is the taskhost protocol: a worker reports finished attempts and asks
// for work in one call. Everything the reply tells the worker (results
// accepted, attempts started) is durable in the store before it is sent.
func (r *Runner) Poll(ctx context.Context, req *connect.Request[taskhostv1.PollRequest]) (*connect.Response[taskhostv1.PollResponse], error) {
	m := req.Msg
	deadline := r.now().Add(min(time.Duration(m.WaitMs)*time.Millisecond, maxWait))

	r.mu.Lock()
	w := r.workers[m.WorkerId]
	if w == nil || w.job != m.JobId {
		r.mu.Unlock()
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("worker %q of job %q: %w", m.WorkerId, m.JobId, ErrUnknownWorker))
	}
	jr := r.jobs[w.job]
	now := r.now()
	if w.lastSeen.IsZero() && jr != nil {
		jr.startFails[w.tier] = 0 // this tier's workers can start
		r.observeStartup(jr, now.Sub(w.started), now)
	}
	w.lastSeen = now
	var attempts []store.Attempt
	info := map[int32]resultInfo{}
	for _, res := range m.Results {
		if w.running[res.TaskIndex] != res.Attempt {
			continue // already reported, or not this worker's
		}
		delete(w.running, res.TaskIndex)
		if len(w.running) == 0 {
			w.idleFrom = now
		}
		if jr == nil || !jr.core.Finished(res.TaskIndex, res.Attempt, outcomeOf(res), now) {
			continue
		}
		a := attemptFromResult(jr, w, res, now)
		r.account(jr, w, &a)
		if a.State == store.AttemptSucceeded || a.State == store.AttemptFailed && !a.OOM() {
			r.observeTask(jr, w.tier, a.FinishedAt.Sub(a.StartedAt), now)
		}
		attempts = append(attempts, a)
		info[res.TaskIndex] = resultInfo{exit: res.ExitCode, reason: a.Reason, started: a.StartedAt, finished: a.FinishedAt}
	}
	var done <-chan struct{}
	if jr != nil {
		done = r.afterEventsCtx(jr, attempts, info)
	}
	r.mu.Unlock()

	resp := &taskhostv1.PollResponse{}
	for {
		r.mu.Lock()
		w = r.workers[m.WorkerId]
		if w == nil {
			r.mu.Unlock()
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("worker %q: %w", m.WorkerId, ErrUnknownWorker))
		}
		jr = r.jobs[w.job]
		now = r.now()
		free := int(m.Capacity) - len(w.running)
		var started []store.Attempt
		if jr != nil && !w.exiting {
			for ; free > 0; free-- {
				task, attempt, ok := jr.core.Next(w.tier, now)
				if !ok {
					break
				}
				w.running[task] = attempt
				started = append(started, store.Attempt{
					JobID: jr.job.ID, TaskIndex: task, Number: attempt, Tier: w.tier, WorkerID: w.id,
					State: store.AttemptRunning, StartedAt: now,
				})
				resp.Assignments = append(resp.Assignments, r.assignment(jr, task, attempt))
			}
		}
		if len(started) > 0 {
			done = r.afterEvents(jr, started)
			jr.lastUsed = now
		}
		for _, k := range w.cancels {
			resp.Cancel = append(resp.Cancel, &taskhostv1.AttemptRef{TaskIndex: k.task, Attempt: k.attempt})
		}
		w.cancels = nil
		if len(resp.Assignments) > 0 || len(w.running) > 0 || len(resp.Cancel) > 0 {
			w.idleFrom = now
			r.mu.Unlock()
			break
		}
		// Idle. Exit when nothing more can come for this worker, else wait.
		if jr == nil || jr.done || w.exiting || r.shouldRetire(jr, w, now) {
			w.exiting = true
			resp.Exit = true
			r.mu.Unlock()
			break
		}
		ready := jr.ready
		wait := min(deadline.Sub(now), w.idleFrom.Add(r.cfg.IdleTimeout).Sub(now))
		r.mu.Unlock()
		if wait <= 0 || m.Capacity <= 0 {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ready:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		if ctx.Err() != nil {
			break
		}
	}
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("state not yet durable: %w", ctx.Err()))
		}
	}
	if resp.Exit {
		r.mu.Lock()
		if w := r.workers[m.WorkerId]; w != nil {
			r.removeWorker(w)
		}
		r.mu.Unlock()
	}
	return connect.NewResponse(resp), nil
}

// shouldRetire reports whether an idle worker should exit: it has been idle
// for IdleTimeout (the grace period) and its tier has no work waiting (tasks
// in backoff count as waiting), or more workers of its tier exist than
// reuse targeting wants. Call with r.mu held.
func (r *Runner) shouldRetire(jr *jobRun, w *worker, now time.Time) bool {
	if now.Sub(w.idleFrom) < r.cfg.IdleTimeout {
		return false
	}
	return jr.core.Waiting(w.tier) == 0 || len(jr.workers[w.tier]) > max(1, r.target(jr, w.tier, now))
}

// assignment builds what a worker needs to run one attempt. The environment
// is complete: the job's env, overridden by the task's, then haul's own
// variables: HAUL_JOB, HAUL_TASK, HAUL_ATTEMPT, and HAUL_SERVER and
// HAUL_TOKEN so that the task can add tasks to its job.
func (r *Runner) assignment(jr *jobRun, task, attempt int32) *taskhostv1.Assignment {
	key, cwd, argv, taskEnv := jr.tasks.spec(task)
	env := make(map[string]string, len(jr.job.Env)+len(taskEnv)+5)
	maps.Copy(env, jr.job.Env)
	maps.Copy(env, taskEnv)
	env["HAUL_JOB"] = jr.job.ID
	env["HAUL_TASK"] = key
	env["HAUL_ATTEMPT"] = strconv.Itoa(int(attempt))
	if r.cfg.ServerURL != "" {
		env["HAUL_SERVER"] = r.cfg.ServerURL
	}
	if jr.token != "" {
		env["HAUL_TOKEN"] = jr.token
	}
	return &taskhostv1.Assignment{
		TaskIndex: task,
		Attempt:   attempt,
		Key:       key,
		Argv:      argv,
		Env:       env,
		Cwd:       cwd,
		TimeoutMs: jr.core.Timeout(task).Milliseconds(),
		LogPrefix: logs.Prefix(jr.job.ID, task, attempt),
	}
}

func outcomeOf(res *taskhostv1.AttemptResult) sched.Outcome {
	switch {
	case res.Reason == "timeout":
		return sched.Timeout
	case res.Reason == "cancelled":
		return sched.Killed
	case res.Reason == store.ReasonOOM:
		return sched.OOM
	case res.Reason == "exit" && res.ExitCode == 0, res.Reason == "" && res.ExitCode == 0 && res.Signal == 0:
		return sched.Success
	}
	return sched.Failure
}

func attemptFromResult(jr *jobRun, w *worker, res *taskhostv1.AttemptResult, now time.Time) store.Attempt {
	a := store.Attempt{
		JobID: jr.job.ID, TaskIndex: res.TaskIndex, Number: res.Attempt, Tier: w.tier, WorkerID: w.id,
		ExitCode: res.ExitCode, Signal: res.Signal, Reason: clean(res.Reason), Message: clean(res.Message),
		StartedAt:   time.Unix(0, res.StartedUnixNanos),
		FinishedAt:  time.Unix(0, res.FinishedUnixNanos),
		Enforcement: clean(res.Enforcement),
	}
	if u := res.GetUsage(); u != nil {
		a.Usage = store.Usage{
			CPUUserSeconds: finite(u.CpuUserSeconds), CPUSystemSeconds: finite(u.CpuSystemSeconds),
			PeakRSSBytes: max(0, u.PeakRssBytes), AvgRSSBytes: max(0, u.AvgRssBytes), GPUNote: clean(u.GpuNote),
		}
		for _, g := range u.Gpus {
			a.Usage.GPUs = append(a.Usage.GPUs, store.GPUUsage{Index: g.Index, Name: clean(g.Name),
				PeakMemoryBytes: max(0, g.PeakMemoryBytes), AvgUtilizationPercent: finite(g.AvgUtilizationPercent)})
		}
	}
	if res.StartedUnixNanos == 0 {
		a.StartedAt = jr.tasks.startedAt(res.TaskIndex)
	}
	if res.FinishedUnixNanos == 0 {
		a.FinishedAt = now
	}
	if a.Reason == store.ReasonOOM {
		// Name the tier, and what happens next, for whoever reads the
		// attempt among a million.
		what := fmt.Sprintf("out of memory on tier %s, the job's last", tierLabel(jr.job, w.tier))
		if int(w.tier)+1 < len(jr.job.Tiers) {
			what = fmt.Sprintf("out of memory on tier %s; retrying on tier %s", tierLabel(jr.job, w.tier), tierLabel(jr.job, w.tier+1))
		}
		a.Message = strings.TrimSuffix(what+": "+strings.TrimPrefix(a.Message, "out of memory: "), ": ")
	}
	switch outcomeOf(res) {
	case sched.Success:
		a.State = store.AttemptSucceeded
		a.Reason = ""
	case sched.Killed:
		a.State = store.AttemptCancelled
	default:
		a.State = store.AttemptFailed
		if a.Reason == "" {
			a.Reason = "exit"
		}
	}
	return a
}

// finite turns what a worker reported into a usable non-negative number: NaN,
// infinities and negatives become 0 (the store rejects them, and one bad
// report must not fail a batch of other tasks' changes).
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0
	}
	return f
}

// clean makes text a worker reported storable: valid UTF-8 without NUL
// bytes (the store refuses those, and one bad report must not fail a batch).
func clean(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// tierLabel names a job's tier for messages: its name, or its index.
func tierLabel(j *store.Job, tier int32) string {
	if tier >= 0 && int(tier) < len(j.Tiers) && j.Tiers[tier].Name != "" {
		return strconv.Quote(j.Tiers[tier].Name)
	}
	return strconv.Itoa(int(tier))
}
