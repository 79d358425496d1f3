package runner

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/fleet"
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/gen/haul/taskhost/v1/taskhostv1connect"
	"github.com/haul-dev/haul/internal/logs"
	"github.com/haul-dev/haul/internal/outcome"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
)

var _ taskhostv1connect.TaskHostServiceHandler = (*Runner)(nil)

// maxWait caps how long a Poll is held open waiting for work.
const maxWait = 30 * time.Second

// Poll is the taskhost protocol: a worker reports finished attempts and asks
// for work in one call. Everything the reply tells the worker (results
// accepted, attempts started) is durable in the store before it is sent.
//
// Any one message may be lost or repeated. Results are applied once (a
// result counts only while its attempt is the worker's). A worker sends
// one full poll at a time and lists what it runs on each; an attempt handed
// out by an earlier poll that the worker neither runs nor reports never
// reached it (the reply was lost) and is declared lost, to be retried
// without using a retry. An attempt the worker runs that the runner does
// not count as its own is cancelled in the reply. Cancels are sent on every
// reply until the attempt's result arrives. A poll with nothing to hand out
// is held until its wait ends or something changes: a worker never spins.
//
// A poll counts only with its worker's credential: the secret the runner
// made when it asked for the worker (WorkerSpec.Secret), as "Authorization:
// Bearer". Without it, or with another's, the answer is unauthenticated,
// in the same words whether the worker exists or not, before anything of
// the poll (results, running attempts, capacity) is looked at.
func (r *Runner) Poll(ctx context.Context, req *connect.Request[taskhostv1.PollRequest]) (*connect.Response[taskhostv1.PollResponse], error) {
	m := req.Msg
	if !provesWorker(r.workerKey, m.JobId, m.Tier, m.WorkerId, req.Header().Get("Authorization")) {
		return nil, connect.NewError(connect.CodeUnauthenticated, errWorkerCredential)
	}
	s := r.shards[store.ShardOf(m.JobId)]
	if !s.leased.Load() {
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("job %s is in shard %d, which this runner does not own now (it moved, or a failover is under way): ask a locator for its runner", m.JobId, s.n))
	}
	if err := r.takeLogs(ctx, m); err != nil {
		return nil, err
	}
	if m.ReportOnly && len(m.Results) == 0 {
		// Only logs (live output, entries): they need no worker state, so
		// a worker told to exit may still deliver its last entries.
		return connect.NewResponse(&taskhostv1.PollResponse{}), nil
	}
	return s.poll(ctx, m)
}

// poll is Poll for a job of this shard, from a worker whose credential
// was checked.
func (s *shard) poll(ctx context.Context, m *taskhostv1.PollRequest) (*connect.Response[taskhostv1.PollResponse], error) {
	deadline := s.now().Add(min(time.Duration(max(0, m.WaitMs))*time.Millisecond, maxWait))
	gen := s.gen.Load()

	s.mu.Lock()
	jr := s.settle(m.JobId)
	w := s.workers[m.WorkerId]
	now := s.now()
	if w == nil {
		// A worker this runner did not start, or no longer knows: the job
		// moved here (a failover, a rebalance). Adopt it while its job runs.
		if jr == nil {
			loading := s.loading[m.JobId] || !s.scanned
			s.mu.Unlock()
			if loading {
				return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("job %s is being loaded by this runner; retry", m.JobId))
			}
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("worker %q: job %s is not running: %w", m.WorkerId, m.JobId, ErrUnknownWorker))
		}
		if jr.done || m.Tier < 0 || int(m.Tier) >= len(jr.workers) {
			s.mu.Unlock()
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("worker %q: %w", m.WorkerId, ErrUnknownWorker))
		}
		w = s.adopt(jr, m.WorkerId, m.Tier, now)
	}
	w.lastSeen = now
	if s.fleet != nil && !w.lost {
		// Its first poll resets its tier's start backoff and teaches the
		// startup estimate.
		if err := s.fleet.Polled(w.id, now); err != nil {
			s.log.Debug("poll of a worker the fleet does not hold", "worker", w.id, "err", err)
		}
	}
	var attempts []store.Attempt
	info := map[int32]resultInfo{}
	reported := make(map[int32]int32, len(m.Results))
	for _, res := range m.Results {
		reported[res.TaskIndex] = res.Attempt
		s.claim(jr, w, res.TaskIndex, res.Attempt)
		if a, ok := w.running[res.TaskIndex]; !ok || a != res.Attempt {
			continue // already reported, or not this worker's
		}
		s.releaseAttempt(jr, w, res.TaskIndex)
		if jr == nil || !jr.core.Finished(res.TaskIndex, res.Attempt, outcomeOf(res), now) {
			continue
		}
		s.live.ended(m.JobId, res.TaskIndex, res.Attempt, false, res.LogBytes, res.OutputBytes, now)
		a := attemptFromResult(jr, w, res, now)
		s.account(jr, w, &a)
		if a.State == store.AttemptSucceeded || a.State == store.AttemptFailed && !a.OOM() {
			s.observeTask(jr, w.tier, a.FinishedAt.Sub(a.StartedAt), now)
		}
		s.metrics.AttemptEnded(outcomeOf(res).String())
		attempts = append(attempts, a)
		info[res.TaskIndex] = resultInfo{exit: res.ExitCode, reason: a.Reason, started: a.StartedAt, finished: a.FinishedAt, peak: a.Usage.PeakRSSBytes}
	}
	resp := &taskhostv1.PollResponse{}
	var strangers []*taskhostv1.AttemptRef
	if !m.ReportOnly {
		w.gen++
		w.slots = max(0, int(m.Capacity)) + len(m.Running)
		var lost []store.Attempt
		lost, strangers = s.reconcileWorker(jr, w, m.Running, reported, now)
		attempts = append(attempts, lost...)
		if w.adopted && jr != nil {
			// What the store says this worker ran and it neither runs nor
			// reported never reached it, or ended unreported: lost now.
			s.expireOrphans(jr, now, w.id)
		}
	}
	s.setRunning(w, now)
	var done <-chan struct{}
	if jr != nil {
		done = s.afterEventsCtx(jr, attempts, info)
	}
	if len(m.Results) > 0 {
		w.notify() // a held poll of this worker has free slots now
	}
	s.mu.Unlock()

	for !m.ReportOnly {
		s.mu.Lock()
		w = s.workers[m.WorkerId]
		if w == nil {
			s.mu.Unlock()
			if s.gen.Load() != gen {
				break // the shard moved away meanwhile: answered below
			}
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("worker %q: %w", m.WorkerId, ErrUnknownWorker))
		}
		jr = s.settle(w.job)
		if s.workers[m.WorkerId] != w {
			s.mu.Unlock()
			continue // it ended while the job was frozen: look again
		}
		now = s.now()
		var started []store.Attempt
		if jr != nil && !w.exiting {
			for free := w.slots - len(w.running); free > 0; free-- {
				task, attempt, ok := jr.core.Next(w.tier, now)
				if !ok {
					break
				}
				s.hold(jr, w, task, attempt, now)
				w.handed[task] = w.gen
				started = append(started, store.Attempt{
					JobID: jr.job.ID, TaskIndex: task, Number: attempt, Tier: w.tier, WorkerID: w.id,
					State: store.AttemptRunning, StartedAt: now,
				})
				if q := jr.tasks.queuedAt(task); !q.IsZero() {
					s.metrics.ObserveDispatch(now.Sub(q))
				}
				resp.Assignments = append(resp.Assignments, s.assignment(jr, task, attempt))
			}
		}
		if len(started) > 0 {
			done = s.afterEvents(jr, started)
			jr.lastUsed = now
			s.setRunning(w, now)
		}
		// Cancels ride on every reply until the attempt's result arrives;
		// only ones not sent before end the wait.
		fresh := len(strangers) > 0
		resp.Cancel = append(resp.Cancel[:0], strangers...)
		for i := range w.cancels {
			k := &w.cancels[i]
			resp.Cancel = append(resp.Cancel, &taskhostv1.AttemptRef{TaskIndex: k.task, Attempt: k.attempt})
			fresh = fresh || !k.sent
			k.sent = true
		}
		if len(resp.Assignments) > 0 || fresh {
			s.mu.Unlock()
			break
		}
		// Idle: exit when nothing more can come for this worker (its job
		// ended, or the Fleet retired it: step wakes this wait then),
		// else wait.
		if len(w.running) == 0 && (jr == nil || jr.done || w.exiting) {
			w.exiting = true
			resp.Exit = true
			s.mu.Unlock()
			break
		}
		wait := deadline.Sub(now)
		ready, wake := jr.ready, w.wakeCh()
		s.mu.Unlock()
		if wait <= 0 {
			break
		}
		t := time.NewTimer(wait)
		stopped := false
		select {
		case <-ready:
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
		case <-s.done:
			// The runner stopped: nobody steps this shard any more, so
			// nothing would end this wait before its deadline.
			stopped = true
		}
		t.Stop()
		if ctx.Err() != nil || stopped {
			break
		}
	}
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("state not yet durable: %w", ctx.Err()))
		case <-s.done:
			// The runner stopped: its committer writes nothing more, so
			// this reply's changes may never be durable. The next owner
			// finds the attempts running in the store and adopts the worker.
			return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("job %s: this runner stopped before the state was durable; ask a locator for its runner", m.JobId))
		}
	}
	if s.stopped.Load() && len(resp.Assignments) == 0 && !resp.Exit {
		// The runner stopped while the poll waited: the worker asks a
		// locator for the runner that takes the job next.
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("job %s: this runner stopped; ask a locator for its runner", m.JobId))
	}
	if s.gen.Load() != gen {
		// The shard moved away meanwhile: what this reply would say may
		// not be durable. The worker asks a locator for the next owner,
		// which adopts it and its attempts.
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("job %s: its shard %d moved away from this runner; ask a locator for its runner", m.JobId, s.n))
	}
	if resp.Exit {
		s.mu.Lock()
		if w := s.workers[m.WorkerId]; w != nil {
			s.removeWorker(w)
		}
		s.mu.Unlock()
	}
	return connect.NewResponse(resp), nil
}

// adopt takes in a worker this runner did not start: its job moved here.
// It counts as polled from now, in the shell and in the Fleet (no cap
// refuses it: it exists and may run attempts); the attempts it runs that
// the shard kept for it (orphans) become its own as it reports them. Call
// with s.mu held.
func (s *shard) adopt(jr *jobRun, id string, tier int32, now time.Time) *worker {
	w := &worker{id: id, job: jr.job.ID, tier: tier, started: now, adopted: true,
		running: map[int32]int32{}, handed: map[int32]uint64{}}
	s.workers[id] = w
	jr.workers[tier] = append(jr.workers[tier], id)
	s.nworkers.Add(1)
	if s.fleet != nil {
		if err := s.fleet.Adopt(fleet.Adoption{ID: id, Job: jr.job.ID, Tier: tier}, now); err != nil {
			s.log.Error("worker fleet refused an adopted worker", "worker", id, "job", jr.job.ID, "err", err)
		}
	}
	s.log.Info("worker adopted", "worker", id, "job", jr.job.ID, "tier", tier, "shard", s.n)
	return w
}

// claim makes a kept attempt (an orphan: found running when the job was
// loaded) the worker's own when that worker reports it: the one the store
// says runs it. Call with s.mu held.
func (s *shard) claim(jr *jobRun, w *worker, task, attempt int32) {
	if jr == nil || len(jr.orphans) == 0 {
		return
	}
	o, ok := jr.orphans[task]
	if !ok || o.attempt != attempt || o.worker != w.id {
		return
	}
	delete(jr.orphans, task)
	s.hold(jr, w, task, attempt, jr.tasks.startedAt(task))
	w.handed[task] = w.gen
	if o.kill {
		w.cancels = append(w.cancels, attemptKill{task: task, attempt: attempt})
	}
}

// errWorkerCredential answers a poll whose credential is not its worker's:
// the same words whether the worker exists or not, so that a caller learns
// nothing from it.
var errWorkerCredential = errors.New("this worker's credential was not accepted (send the worker's own secret as Authorization: Bearer; a worker the runner does not know must exit)")

// provesWorker reports whether a poll or locate naming worker id of job and tier
// carries that worker's credential as "Authorization: Bearer": the secret
// derived from the runner group's key (workerSecret of key), compared in constant
// time. Any runner can check any worker's credential, so a worker proves
// itself to the runner its job moved to.
func provesWorker(key []byte, job string, tier int32, id, auth string) bool {
	got, ok := strings.CutPrefix(auth, "Bearer ")
	want := workerSecret(key, job, tier, id)
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 && ok && id != ""
}

// reconcileWorker compares what a worker says it runs with what the runner
// handed it. An attempt handed out by an earlier poll (lower generation)
// that the worker neither runs nor reported never reached it: it is lost.
// An attempt the worker runs that is not its own any more is cancelled.
// Call with s.mu held; it returns the attempts to record as lost and the
// ones to cancel.
func (s *shard) reconcileWorker(jr *jobRun, w *worker, running []*taskhostv1.AttemptRef, reported map[int32]int32, now time.Time) (lost []store.Attempt, strangers []*taskhostv1.AttemptRef) {
	runs := make(map[int32]int32, len(running))
	for _, ref := range running {
		runs[ref.TaskIndex] = ref.Attempt
		s.claim(jr, w, ref.TaskIndex, ref.Attempt)
		if a, ok := w.running[ref.TaskIndex]; !ok || a != ref.Attempt {
			strangers = append(strangers, &taskhostv1.AttemptRef{TaskIndex: ref.TaskIndex, Attempt: ref.Attempt})
		}
	}
	for task, attempt := range w.running {
		if w.handed[task] >= w.gen {
			continue
		}
		if a, ok := runs[task]; ok && a == attempt {
			continue
		}
		if a, ok := reported[task]; ok && a == attempt {
			continue
		}
		s.releaseAttempt(jr, w, task)
		if jr == nil || !jr.core.Finished(task, attempt, sched.Lost, now) {
			continue
		}
		lost = append(lost, store.Attempt{
			JobID: jr.job.ID, TaskIndex: task, Number: attempt, Tier: w.tier, WorkerID: w.id,
			State: store.AttemptLost, Reason: "lost", Message: "the worker never received this assignment (a reply was lost); retried",
			StartedAt: jr.tasks.startedAt(task), FinishedAt: now,
		})
	}
	if len(lost) > 0 {
		s.log.Warn("assignments lost on the way to a worker", "worker", w.id, "attempts", len(lost))
	}
	return lost, strangers
}

// hold records that a worker runs a task's attempt, started at since (for
// the demand's elapsed run time: see shard.demand). Call with s.mu held.
func (s *shard) hold(jr *jobRun, w *worker, task, attempt int32, since time.Time) {
	w.running[task] = attempt
	w.attempts++
	if w.since == nil {
		w.since = map[int32]float64{}
	}
	at := since.Sub(jr.runBase).Seconds()
	w.since[task] = at
	jr.runSince[w.tier] += at
	jr.runN[w.tier]++
}

// unhold takes a held attempt out of its job's running sums (jr may be
// nil: the job is gone). Call with s.mu held.
func (s *shard) unhold(jr *jobRun, w *worker, task int32) {
	since, ok := w.since[task]
	if !ok {
		return
	}
	delete(w.since, task)
	if jr != nil && int(w.tier) < len(jr.runN) {
		jr.runSince[w.tier] -= since
		jr.runN[w.tier]--
	}
}

// releaseAttempt forgets that a worker runs a task's attempt, with any
// cancel pending for it. Call with s.mu held.
func (s *shard) releaseAttempt(jr *jobRun, w *worker, task int32) {
	s.unhold(jr, w, task)
	delete(w.running, task)
	delete(w.handed, task)
	w.cancels = slices.DeleteFunc(w.cancels, func(k attemptKill) bool { return k.task == task })
}

// setRunning tells the Fleet how many attempts a worker runs now: it is
// idle from the moment that drops to 0. Call with s.mu held.
func (s *shard) setRunning(w *worker, now time.Time) {
	if s.fleet == nil || w.lost {
		return
	}
	if err := s.fleet.SetRunning(w.id, len(w.running), now); err != nil {
		s.log.Debug("running count of a worker the fleet does not hold", "worker", w.id, "err", err)
	}
}

// assignment builds what a worker needs to run one attempt. The environment
// is complete: the job's env, overridden by the task's, then haul's own
// variables: HAUL_JOB, HAUL_TASK, HAUL_ATTEMPT, and HAUL_SERVER and
// HAUL_TOKEN (scoped to this attempt) so that the task can read its job and
// add tasks to it.
func (s *shard) assignment(jr *jobRun, task, attempt int32) *taskhostv1.Assignment {
	key, cwd, argv, taskEnv := jr.tasks.spec(task)
	env := make(map[string]string, len(jr.job.Env)+len(taskEnv)+len(jr.job.SecretEnv)+5)
	maps.Copy(env, jr.job.Env)
	maps.Copy(env, taskEnv)
	// The job's secret_env (loaded by ListActiveJobs only) travels in the
	// assignment alone: never logged, never in a read of the API.
	maps.Copy(env, jr.job.SecretEnv)
	env["HAUL_JOB"] = jr.job.ID
	env["HAUL_TASK"] = key
	env["HAUL_ATTEMPT"] = strconv.Itoa(int(attempt))
	if s.cfg.ServerURL != "" {
		env["HAUL_SERVER"] = s.cfg.ServerURL
	}
	if len(s.cfg.Tokens) > 0 {
		// Scoped to this attempt: it stops working when the attempt ends.
		env["HAUL_TOKEN"] = s.cfg.Tokens.ForAttempt(jr.job.ID, key, attempt)
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

// outcomeOf is how an attempt a worker reported ended: the protocol's
// AttemptOutcome, mapped in one place (internal/outcome).
func outcomeOf(res *taskhostv1.AttemptResult) sched.Outcome { return outcome.FromResult(res) }

// Bounds on what a worker reports, checked where it enters the runner:
// nothing a worker sends can make a row the store refuses or a sum that
// overflows. Text over its bound is cut with a note saying so.
const (
	maxMessageBytes = 4 << 10
	maxShortText    = 256
	maxBytesFigure  = 1 << 50 // 1 PiB of memory
	maxCores        = 1 << 12 // CPU seconds per wall second
	maxGPUs         = 64
	clockSlack      = time.Minute
)

func attemptFromResult(jr *jobRun, w *worker, res *taskhostv1.AttemptResult, now time.Time) store.Attempt {
	a := store.Attempt{
		JobID: jr.job.ID, TaskIndex: res.TaskIndex, Number: res.Attempt, Tier: w.tier, WorkerID: w.id,
		ExitCode: res.ExitCode, Signal: min(max(0, res.Signal), 128), Reason: cut(outcome.ResultReason(res), maxShortText), Message: cut(res.Message, maxMessageBytes),
		StartedAt:   time.Unix(0, res.StartedUnixNanos),
		FinishedAt:  time.Unix(0, res.FinishedUnixNanos),
		Enforcement: cut(res.Enforcement, maxShortText),
	}
	// Times: the worker's clock, unless it is implausible next to the
	// runner's own record of the attempt.
	handed := jr.tasks.startedAt(res.TaskIndex)
	if res.StartedUnixNanos == 0 || a.StartedAt.Before(handed.Add(-clockSlack)) || a.StartedAt.After(now.Add(clockSlack)) {
		a.StartedAt = handed
	}
	if res.FinishedUnixNanos == 0 || a.FinishedAt.Before(a.StartedAt) || a.FinishedAt.After(now.Add(clockSlack)) {
		a.FinishedAt = now
	}
	wall := max(a.FinishedAt.Sub(a.StartedAt).Seconds(), 1)
	if u := res.GetUsage(); u != nil {
		a.Usage = store.Usage{
			CPUUserSeconds: bounded(u.CpuUserSeconds, wall*maxCores), CPUSystemSeconds: bounded(u.CpuSystemSeconds, wall*maxCores),
			PeakRSSBytes: min(max(0, u.PeakRssBytes), maxBytesFigure), AvgRSSBytes: min(max(0, u.AvgRssBytes), maxBytesFigure),
			GPUNote: cut(u.GpuNote, maxShortText),
		}
		for _, g := range u.Gpus[:min(len(u.Gpus), maxGPUs)] {
			a.Usage.GPUs = append(a.Usage.GPUs, store.GPUUsage{Index: min(max(0, g.Index), maxGPUs*16), Name: cut(g.Name, maxShortText),
				PeakMemoryBytes: min(max(0, g.PeakMemoryBytes), maxBytesFigure), AvgUtilizationPercent: bounded(g.AvgUtilizationPercent, 100)})
		}
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
	o := outcomeOf(res)
	a.State = outcome.StoreState(o)
	if o == sched.Success {
		a.Reason = ""
	} else if a.Reason == "" {
		a.Reason = outcome.Reason(o)
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

// bounded is finite, capped at hi: a figure no process can reach is
// recorded as the most it could be, so that sums never overflow.
func bounded(f, hi float64) float64 { return min(finite(f), hi) }

// cut is clean, limited to n bytes: longer text is cut at a character
// boundary and says how much was cut.
func cut(s string, n int) string {
	s = clean(s)
	if len(s) <= n {
		return s
	}
	note := fmt.Sprintf(" … (%d more bytes cut)", len(s)-n)
	return strings.ToValidUTF8(s[:n], "") + note
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
