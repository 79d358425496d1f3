package sched

import (
	"slices"
	"time"
)

// Transition is one change of a task's state.
type Transition struct {
	Task     int32
	From, To State
	// Attempt is the attempt the change is about: the one that started
	// (to Running) or ended (from Running); otherwise the task's attempt
	// count.
	Attempt int32
	// Reason is "" or one of the Reason constants: "exit", "timeout",
	// "lost" (the attempt ended so), "upstream", "cancelled", "invalid".
	Reason string
}

// Kill asks the caller to kill a running attempt.
type Kill struct {
	Task, Attempt int32
	Reason        string // "timeout" or "cancelled"
}

// Output is what happened since the previous Drain, in order.
type Output struct {
	Transitions []Transition
	Kills       []Kill
}

// outputKeep is the largest buffer Drain recycles; a larger one (after Start
// queued a million tasks, say) is left to the garbage collector.
const outputKeep = 1 << 14

// Drain returns the transitions and kills recorded since the previous call
// and resets them. The returned slices are the job's buffers: they stay
// valid until the next call of Drain, which recycles them.
func (j *Job) Drain() Output {
	out := j.out
	next := j.spare
	if cap(next.Transitions) > outputKeep {
		next.Transitions = nil
	}
	if cap(next.Kills) > outputKeep {
		next.Kills = nil
	}
	j.out = Output{Transitions: next.Transitions[:0], Kills: next.Kills[:0]}
	j.spare = out
	return out
}

func (j *Job) emit(t int32, from, to State, attempt int32, reason string) {
	j.out.Transitions = append(j.out.Transitions, Transition{Task: t, From: from, To: to, Attempt: attempt, Reason: reason})
}

func (j *Job) kill(t, attempt int32, reason string) {
	j.out.Kills = append(j.out.Kills, Kill{Task: t, Attempt: attempt, Reason: reason})
}

func (j *Job) tierOf(t int32) *tierQueue { return &j.tiers[j.tier[t]] }

// move changes task t's state, clears its flags, keeps the counters and
// records the transition. A task moved to Queued must then be enqueued or
// delayed.
func (j *Job) move(t int32, to State, attempt int32, reason string) {
	b := j.state[t]
	from := State(b & stateMask)
	k := j.tierOf(t)
	switch from {
	case Queued:
		k.waiting--
		if b&flagBackoff != 0 {
			j.nBackoff--
		} else {
			k.ready--
		}
	case Running:
		k.running--
	}
	switch to {
	case Queued:
		k.waiting++
	case Running:
		k.running++
	}
	j.counts[from]--
	j.counts[to]++
	j.state[t] = uint8(to)
	if !j.quiet {
		j.emit(t, from, to, attempt, reason)
	}
}

// enqueue makes a Queued task ready: it goes to the back of its tier's ring.
func (j *Job) enqueue(t int32) {
	k := j.tierOf(t)
	k.ready++
	k.ring.push(t)
}

// delay parks a Queued task until at (unix nanoseconds).
func (j *Job) delay(t int32, at int64) {
	j.state[t] |= flagBackoff
	j.nBackoff++
	j.backoff.push(timed{at: at, task: t})
	if len(j.backoff) > 2*j.nBackoff+64 {
		j.backoff.filter(func(e timed) bool { return j.state[e.task] == uint8(Queued)|flagBackoff })
	}
}

// releaseDue makes ready every task whose backoff ended at or before at.
func (j *Job) releaseDue(at int64) {
	for len(j.backoff) > 0 && j.backoff[0].at <= at {
		e := j.backoff.pop()
		if j.state[e.task] != uint8(Queued)|flagBackoff {
			continue // cancelled or upstream-failed meanwhile
		}
		j.state[e.task] = uint8(Queued)
		j.nBackoff--
		j.enqueue(e.task)
	}
}

// backoffFor returns the delay before retry n (n >= 1).
func (j *Job) backoffFor(n int32) time.Duration {
	d, limit := j.cfg.BackoffBase, j.cfg.BackoffMax
	for i := int32(1); i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// release records that node v succeeded: children whose last parent this was
// become Queued at once; groups whose last member this was complete and
// release their own children.
func (j *Job) release(v int32) {
	stack := append(j.stack[:0], v)
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range j.g.Children(v) {
			j.remaining[c]--
			if j.remaining[c] != 0 || State(j.state[c]) != Blocked {
				continue
			}
			if j.g.IsGroup(c) {
				j.state[c] = uint8(Succeeded)
				stack = append(stack, c)
				continue
			}
			j.move(c, Queued, j.attempts[c], "")
			j.enqueue(c)
		}
	}
	j.stack = stack[:0]
}

// propagate moves every descendant of node v that is not terminal to state
// to (UpstreamFailed or Cancelled). It stops at terminal nodes: their own
// descendants were handled when they became terminal. A Running descendant
// cannot exist (it would need v to have succeeded) and is left alone.
func (j *Job) propagate(v int32, to State, reason string) {
	cause := int32(-1)
	if to == UpstreamFailed {
		cause = j.causeOf(v)
	}
	stack := append(j.stack[:0], v)
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range j.g.Children(v) {
			s := State(j.state[c] & stateMask)
			if s.Terminal() || s == Running {
				continue
			}
			if j.g.IsGroup(c) {
				j.state[c] = uint8(to)
			} else {
				if cause >= 0 {
					j.setCause(c, cause)
				}
				j.move(c, to, j.attempts[c], reason)
			}
			stack = append(stack, c)
		}
	}
	j.stack = stack[:0]
}

// Next pops the oldest ready task of the tier (FIFO by the time the
// scheduler saw it become ready) and marks it Running with attempt =
// attempts+1. It first releases retries whose backoff ended by now.
// ok is false when no task of that tier is ready now, before Start, and for
// an unknown tier.
func (j *Job) Next(tier int32, now time.Time) (task int32, attempt int32, ok bool) {
	if !j.started || tier < 0 || int(tier) >= len(j.tiers) {
		return -1, 0, false
	}
	at := now.UnixNano()
	j.releaseDue(at)
	k := &j.tiers[tier]
	for k.ring.n > 0 {
		t := k.ring.pop()
		if j.state[t] != uint8(Queued) {
			continue // stale: cancelled or upstream-failed while queued
		}
		a := j.attempts[t] + 1
		j.attempts[t] = a
		j.move(t, Running, a, "")
		if d := j.kinds[j.kindOf[t]].timeout; d > 0 {
			j.deadlines.push(timed{at: at + d, task: t, attempt: a})
			if len(j.deadlines) > 2*int(j.counts[Running])+64 {
				j.deadlines.filter(j.deadlineLive)
			}
		}
		return t, a, true
	}
	return -1, 0, false
}

// deadlineLive reports whether a deadline entry may still lead to a Kill.
func (j *Job) deadlineLive(e timed) bool {
	b := j.state[e.task]
	return State(b&stateMask) == Running && j.attempts[e.task] == e.attempt && b&(flagKillTimeout|flagKillCancel) == 0
}

// Finished records the end of an attempt and reports whether it was taken
// into account. A stale report (the task is not Running, or attempt is not
// its current attempt, or the task is unknown) changes nothing and returns
// false.
//
//   - Success: the task Succeeded (even if it was being cancelled); children
//     whose last parent it was become Queued at once, and groups complete
//     when their last member succeeds.
//   - Failure, Timeout: while failures so far <= the task's retries it goes
//     back to Queued, ready after the backoff; else it Failed and every
//     descendant that is not terminal becomes UpstreamFailed.
//   - Lost: re-queued at once without using a retry, up to MaxLost lost
//     attempts; then Failed with reason "lost".
//   - Killed: Cancelled, and its descendants too. (Killed reported for an
//     attempt that got only a timeout Kill, and no cancel, counts as Timeout.)
//   - OOM: re-queued at once on the next tier, without using a retry or a
//     backoff (the reason is the tier, not the task); on the last tier the
//     task Failed with reason "oom" and its descendants UpstreamFailed.
//
// If the job or the task is being cancelled, every outcome but Success ends
// the task Cancelled. An unknown outcome counts as Failure.
func (j *Job) Finished(task, attempt int32, o Outcome, now time.Time) bool {
	if !j.started || task < 0 || task >= j.n {
		return false
	}
	b := j.state[task]
	if State(b&stateMask) != Running || j.attempts[task] != attempt {
		return false
	}
	if o > OOM {
		o = Failure
	}
	cancelling := j.cancelled || b&flagCancelPending != 0
	if o == Killed && !cancelling && b&flagKillTimeout != 0 {
		o = Timeout
	}
	switch {
	case o == Success:
		j.move(task, Succeeded, attempt, "")
		j.release(task)
	case cancelling || o == Killed:
		j.move(task, Cancelled, attempt, ReasonCancelled)
		j.propagate(task, Cancelled, ReasonCancelled)
	case o == OOM:
		if next := int(j.tier[task]) + 1; next < len(j.tiers) {
			j.move(task, Queued, attempt, ReasonOOM)
			// move counted the task as waiting on its old tier: move it up.
			j.tierOf(task).waiting--
			j.tier[task] = uint8(next)
			j.tierOf(task).waiting++
			j.enqueue(task)
		} else {
			j.move(task, Failed, attempt, ReasonOOM)
			j.propagate(task, UpstreamFailed, ReasonUpstream)
		}
	case o == Lost:
		if int(j.lost[task]) < j.cfg.MaxLost {
			j.lost[task]++
			j.move(task, Queued, attempt, ReasonLost)
			j.enqueue(task)
		} else {
			j.move(task, Failed, attempt, ReasonLost)
			j.propagate(task, UpstreamFailed, ReasonUpstream)
		}
	default: // Failure, Timeout
		reason := ReasonExit
		if o == Timeout {
			reason = ReasonTimeout
		}
		j.failures[task]++
		if n := j.failures[task]; n <= j.kinds[j.kindOf[task]].retries {
			j.move(task, Queued, attempt, reason)
			j.delay(task, now.UnixNano()+int64(j.backoffFor(n)))
		} else {
			j.move(task, Failed, attempt, reason)
			j.propagate(task, UpstreamFailed, ReasonUpstream)
		}
	}
	return true
}

// Cancel cancels the job: every task that is not terminal and not Running
// becomes Cancelled at once; every Running attempt gets a Kill (reason
// "cancelled") and its task becomes Cancelled when the attempt is reported
// finished (a Success still counts as Succeeded). Idempotent; a no-op on a
// job that is Done. Called before Start, it takes effect in Start.
func (j *Job) Cancel(now time.Time) {
	if j.cancelled || j.Done() {
		return
	}
	j.cancelled = true
	if j.started {
		j.cancelAll()
	}
}

func (j *Job) cancelAll() {
	for t := int32(0); t < j.n; t++ {
		b := j.state[t]
		switch s := State(b & stateMask); {
		case s == Running:
			if b&flagKillCancel == 0 {
				j.state[t] |= flagKillCancel
				j.kill(t, j.attempts[t], ReasonCancelled)
			}
		case !s.Terminal():
			j.move(t, Cancelled, j.attempts[t], ReasonCancelled)
		}
	}
	for v := j.n; v < int32(len(j.state)); v++ {
		if !State(j.state[v]).Terminal() {
			j.state[v] = uint8(Cancelled)
		}
	}
	// Every queued task is gone: drop the rings and the backoff heap.
	for i := range j.tiers {
		j.tiers[i].ring.reset()
	}
	j.backoff = nil
	j.nBackoff = 0
}

// CancelTask cancels one task the way Cancel cancels the job, and every
// descendant that is not terminal becomes Cancelled at once. It returns false
// for an unknown index; it is a no-op for a terminal task. Called before
// Start, it cancels the task at once (even one restored as Running) and Start
// cancels the descendants.
func (j *Job) CancelTask(task int32, now time.Time) bool {
	if task < 0 || task >= j.n {
		return false
	}
	b := j.state[task]
	s := State(b & stateMask)
	if !j.started {
		// Nothing runs yet (a restored Running attempt is lost anyway):
		// Start propagates the cancel to the descendants.
		if !s.Terminal() {
			j.counts[s]--
			j.counts[Cancelled]++
			j.state[task] = uint8(Cancelled)
			j.emit(task, s, Cancelled, j.attempts[task], ReasonCancelled)
		}
		return true
	}
	switch {
	case s.Terminal():
		return true
	case s == Running:
		j.state[task] |= flagCancelPending
		if b&flagKillCancel == 0 {
			j.state[task] |= flagKillCancel
			j.kill(task, j.attempts[task], ReasonCancelled)
		}
	default:
		j.move(task, Cancelled, j.attempts[task], ReasonCancelled)
	}
	j.propagate(task, Cancelled, ReasonCancelled)
	return true
}

// Tick releases retries whose backoff ended by now and emits a Kill (reason
// "timeout") for every Running attempt past its timeout, once per attempt
// and not after a cancel Kill; the task stays Running until Finished
// reports the attempt's end (Timeout, or Lost).
func (j *Job) Tick(now time.Time) {
	if !j.started {
		return
	}
	at := now.UnixNano()
	j.releaseDue(at)
	for len(j.deadlines) > 0 && j.deadlines[0].at <= at {
		e := j.deadlines.pop()
		if j.deadlineLive(e) {
			j.state[e.task] |= flagKillTimeout
			j.kill(e.task, e.attempt, ReasonTimeout)
		}
	}
}

// NextWake returns the earliest time at which Tick would do something: the
// end of a backoff or an attempt's deadline. It is the zero time when
// nothing is pending.
func (j *Job) NextWake() time.Time {
	for len(j.backoff) > 0 && j.state[j.backoff[0].task] != uint8(Queued)|flagBackoff {
		j.backoff.pop()
	}
	for len(j.deadlines) > 0 && !j.deadlineLive(j.deadlines[0]) {
		j.deadlines.pop()
	}
	var at int64
	ok := false
	if len(j.backoff) > 0 {
		at, ok = j.backoff[0].at, true
	}
	if len(j.deadlines) > 0 && (!ok || j.deadlines[0].at < at) {
		at, ok = j.deadlines[0].at, true
	}
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, at).UTC()
}

// causeOf returns the Failed task behind task v's failure: v itself when
// it failed, the task that made it UpstreamFailed otherwise (-1: unknown,
// as for a task restored UpstreamFailed).
func (j *Job) causeOf(v int32) int32 {
	if v < 0 || v >= j.n {
		return -1
	}
	if State(j.state[v]&stateMask) == Failed {
		return v
	}
	if int(v) < len(j.upCause) {
		return j.upCause[v]
	}
	return -1
}

func (j *Job) setCause(t, cause int32) {
	if n := max(int(j.n), int(t)+1); len(j.upCause) < n {
		from := len(j.upCause)
		j.upCause = slices.Grow(j.upCause, n-from)[:n]
		for i := from; i < n; i++ {
			j.upCause[i] = -1
		}
	}
	j.upCause[t] = cause
}

// UpstreamCause returns, for a task that became UpstreamFailed, the Failed
// task whose failure reached it (its parent or a further ancestor), so
// that the caller can say which one; ok is false for any other task, and
// for one restored UpstreamFailed (Restore) whose cause was not recorded.
func (j *Job) UpstreamCause(task int32) (cause int32, ok bool) {
	if task < 0 || task >= j.n || State(j.state[task]&stateMask) != UpstreamFailed {
		return -1, false
	}
	if c := j.causeOf(task); c >= 0 {
		return c, true
	}
	return -1, false
}
