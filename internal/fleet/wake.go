package fleet

import (
	"math"
	"time"

	"github.com/haul-dev/haul/internal/sched"
)

// horizon bounds how far ahead NextWake looks for a target that drifts:
// a change further away than this is taken as none.
const horizon = 100 * 365 * 24 * time.Hour

// NextWake returns the earliest time at which a Step may decide something
// it would not decide at the time of the last Step, if no event comes
// before: a liveness deadline, the end of an idle grace, the end of a
// start backoff, or the moment a target that drifts as running attempts
// age crosses the number of workers. After an event that may let a Step
// decide something at once it returns the latest time the Fleet was given
// (Step now). It returns the zero time when nothing is pending.
//
// Starts that the last Step could not make for want of slots are not
// pending: when slots free up (another shard's worker ended), Step again.
func (f *Fleet) NextWake() time.Time {
	if f.due {
		return f.now
	}
	if !f.dirty {
		return f.wake
	}
	var wake time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	lo := f.stepped
	for _, ji := range f.order {
		j := &f.jobs[ji]
		for t := range j.tiers {
			tr := &j.tiers[t]
			graced := false
			for _, wi := range tr.workers {
				w := &f.workers[wi]
				consider(f.deadline(w))
				if w.polled && !w.exiting && w.running == 0 {
					if end := w.idleFrom.Add(f.cfg.IdleTimeout); end.After(lo) {
						consider(end)
					} else {
						graced = true
					}
				}
			}
			if j.ended {
				continue // the last Step told them all to exit
			}
			if hold := later(tr.startAfter, tr.heldUntil); hold.After(lo) {
				consider(hold)
			} else if j.maxWorkers <= 0 || j.alive < j.maxWorkers {
				consider(f.startDrift(j, int32(t), lo))
			}
			if graced && tr.demand.Waiting > 0 {
				consider(f.retireDrift(j, int32(t), lo))
			}
		}
	}
	f.wake, f.dirty = wake, false
	return wake
}

// drift describes how a tier's target moves with time while its demand
// stays: the mean elapsed time of the running attempts grows by one second
// a second, and sched.TargetWorkers is a function of it.
type drift struct {
	in    sched.TargetInput // at lo
	lo    time.Time
	since time.Time // when the demand was recorded
	d     Demand
	// m0 is the running attempts' mean elapsed seconds at lo; task and
	// cost are TargetWorkers' task time and start cost, sanitised alike.
	m0, task, cost float64
}

// newDrift returns the drift of tier t from lo, and false when its target
// cannot change with time: nothing ready or nothing running (then elapsed
// time plays no part), a start that costs nothing, or an infinite task
// time (then the target is its cap).
func (f *Fleet) newDrift(j *job, t int32, lo time.Time) (drift, bool) {
	tr := &j.tiers[t]
	in := f.targetInput(j, t, lo, f.active(tr))
	if in.Queued == 0 || in.Running == 0 {
		return drift{}, false
	}
	// Before the demand was recorded its elapsed time stands still: the
	// drift starts then.
	if tr.demandAt.After(lo) {
		lo = tr.demandAt
		in.RunningElapsed = elapsedAt(tr.demand, tr.demandAt, lo)
	}
	dr := drift{in: in, lo: lo, since: tr.demandAt, d: tr.demand}
	dr.task = sanitise(in.TaskSeconds)
	dr.cost = sanitise(in.StartupSeconds) + sanitise(in.IdleGrace)
	if dr.cost == 0 || math.IsInf(in.TaskSeconds, 1) {
		return drift{}, false
	}
	dr.m0 = in.RunningElapsed / float64(in.Running)
	return dr, true
}

// sanitise maps NaN, infinite and negative seconds to 0, as TargetWorkers
// does for its time inputs.
func sanitise(s float64) float64 {
	if math.IsNaN(s) || math.IsInf(s, 0) || s < 0 {
		return 0
	}
	return s
}

// at returns the target at time t.
func (dr *drift) at(t time.Time) int {
	in := dr.in
	in.RunningElapsed = elapsedAt(dr.d, dr.since, t)
	return sched.TargetWorkers(in)
}

// after returns lo plus s seconds, and false beyond the horizon.
func (dr *drift) after(s float64) (time.Time, bool) {
	if math.IsNaN(s) || s > horizon.Seconds() {
		return time.Time{}, false
	}
	return dr.lo.Add(time.Duration(max(s, 0) * 1e9)), true
}

// first returns the earliest time in (lo, hi] at which pred holds, given
// that it does not at lo, holds at hi and, between them, once it holds it
// keeps holding. guess is where it should start to hold: the search
// narrows to a millisecond around it when pred agrees.
func (dr *drift) first(pred func(time.Time) bool, hi, guess time.Time) time.Time {
	lo := dr.lo
	if a, b := guess.Add(-time.Millisecond), guess.Add(time.Millisecond); a.After(lo) && b.Before(hi) && !pred(a) && pred(b) {
		lo, hi = a, b
	}
	for n := hi.Sub(lo); n > 1; n = hi.Sub(lo) {
		mid := lo.Add(n / 2)
		if pred(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// startDrift returns when tier t's target first exceeds its workers that
// are not exiting, if its demand stays; zero if never, or if it does
// already (the last Step then had no slot for it).
//
// While the mean elapsed time m of the running attempts is below the start
// cost's half or the task estimate, TargetWorkers counts the task time as
// the estimate and the target only falls as m grows; past both it counts
// m, and the target rises with m: floor(Ready·m/cost), within its bounds.
// So if the target is below have+1 now, it first reaches have+1 at
// m* = max(cost/2, task, (have+1)·cost/Ready), and never before.
func (f *Fleet) startDrift(j *job, t int32, lo time.Time) time.Time {
	dr, ok := f.newDrift(j, t, lo)
	if !ok {
		return time.Time{}
	}
	have := dr.in.Live
	if have+1 > min(dr.in.Max, dr.in.Queued+dr.in.Running) || dr.at(dr.lo) > have {
		return time.Time{}
	}
	need := max(dr.cost/2, dr.task, float64(have+1)*dr.cost/float64(dr.in.Queued))
	guess, ok := dr.after(need - dr.m0)
	if !ok {
		return time.Time{}
	}
	// A second past the estimate is well clear of rounding.
	hi, ok := dr.after(need - dr.m0 + 1)
	pred := func(at time.Time) bool { return dr.at(at) > have }
	if !ok || !pred(hi) {
		return time.Time{}
	}
	return dr.first(pred, hi, guess)
}

// retireDrift returns when tier t's target first falls below its workers
// that are not exiting (and below 2), so that an idle worker past its
// grace retires, if its demand stays; zero if never.
//
// The target falls only while the mean elapsed time m is below the task
// estimate: the work left, Ready·task + Running·(task−m), shrinks. It is
// lowest at m = task, so the search ends there; the guess is where the work
// drops below count·cost.
func (f *Fleet) retireDrift(j *job, t int32, lo time.Time) time.Time {
	dr, ok := f.newDrift(j, t, lo)
	if !ok || dr.task == 0 || dr.m0 >= dr.task {
		return time.Time{}
	}
	count := dr.in.Live
	pred := func(at time.Time) bool { return count > max(1, dr.at(at)) }
	if count < 2 || pred(dr.lo) {
		return time.Time{}
	}
	// The end of the fall, rounded down so as not to pass it.
	end := dr.task - dr.m0
	if end > horizon.Seconds() {
		return time.Time{}
	}
	hi := dr.lo.Add(time.Duration(math.Floor(end * 1e9)))
	if !hi.After(dr.lo) || !pred(hi) {
		return time.Time{}
	}
	q, r := float64(dr.in.Queued), float64(dr.in.Running)
	guess, ok := dr.after(dr.task - (float64(count)*dr.cost-q*dr.task)/r - dr.m0)
	if !ok {
		guess = hi
	}
	return dr.first(pred, hi, guess)
}

// later returns the later of two times.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
