package fleet

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/haul-dev/haul/internal/sched"
)

// Step decides, as of now, what the runner must do, given that it may
// have slots more workers than it has (its share of the runner's cap,
// which its shards share). First it declares lost every worker past its
// deadline (Stop, then Lost); their slots count as free for this Step's
// starts. Then, for each job in order (oldest first), it tells the workers
// of an ended job to exit, retires idle workers (Exit) and starts workers
// (Start) where a tier has fewer than its target. The returned slice is
// the Fleet's: it is valid until the next Step.
func (f *Fleet) Step(now time.Time, slots int) []Decision {
	f.see(now)
	f.stepped = now
	f.dirty = true
	f.out = f.out[:0]
	f.starved = f.starved[:0]
	slots = max(slots, 0)
	// Losing its last worker forgets an ended job, which leaves the order.
	for k := 0; k < len(f.order); k++ {
		ji := f.order[k]
		slots += f.liveness(ji, now)
		if f.jobs[ji].id == "" {
			k--
		}
	}
	for _, ji := range f.order {
		j := &f.jobs[ji]
		for t := range j.tiers {
			if j.ended {
				f.exitAll(j, int32(t))
				continue
			}
			f.retireAsked(j, int32(t))
			f.retire(j, int32(t), now)
			slots = f.start(ji, int32(t), now, slots)
		}
	}
	// Every rule was applied at now: nothing is left to decide until time
	// passes or an event comes.
	f.due = false
	return f.out
}

// liveness declares lost the workers of job ji that did not poll in time:
// Stop then Lost, and the Fleet forgets them (and the job, when it ended
// and they were its last). It returns how many it lost.
func (f *Fleet) liveness(ji int32, now time.Time) (lost int) {
	j := &f.jobs[ji] // the slab does not move while workers are removed
	jobID := j.id
	for t := 0; t < len(j.tiers); t++ {
		for k := 0; k < len(j.tiers[t].workers); {
			wi := j.tiers[t].workers[k]
			w := &f.workers[wi]
			if now.Before(f.deadline(w)) {
				k++
				continue
			}
			why := f.lostWhy(w)
			f.out = append(f.out,
				Decision{Kind: Stop, ID: w.id, Job: jobID, Tier: int32(t), Why: why},
				Decision{Kind: Lost, ID: w.id, Job: jobID, Tier: int32(t), Why: why})
			f.remove(wi, now, false) // deletes it from the tier
			lost++
			if j.id == "" {
				return lost // it was the last worker of an ended job: forgotten
			}
		}
	}
	return lost
}

// deadline returns when worker w is lost unless it polls.
func (f *Fleet) deadline(w *worker) time.Time {
	if !w.polled {
		return w.started.Add(f.cfg.StartTimeout)
	}
	return w.lastPoll.Add(f.cfg.WorkerTimeout)
}

// lostWhy says why worker w is lost at its deadline.
func (f *Fleet) lostWhy(w *worker) string {
	if !w.polled {
		return fmt.Sprintf("no first poll within %v of its start", f.cfg.StartTimeout)
	}
	return fmt.Sprintf("no poll for %v", f.cfg.WorkerTimeout)
}

// exitAll tells every worker of an ended job's tier to exit.
func (f *Fleet) exitAll(j *job, t int32) {
	for _, i := range j.tiers[t].workers {
		if w := &f.workers[i]; !w.exiting {
			w.exiting = true
			f.out = append(f.out, Decision{Kind: Exit, ID: w.id, Job: j.id, Tier: t, Why: "job ended"})
		}
	}
}

// retireAsked tells the workers of a tier the shell asked to retire
// (Retire) to exit.
func (f *Fleet) retireAsked(j *job, t int32) {
	for _, i := range j.tiers[t].workers {
		if w := &f.workers[i]; w.retire != "" && !w.exiting {
			w.exiting = true
			f.out = append(f.out, Decision{Kind: Exit, ID: w.id, Job: j.id, Tier: t, Why: w.retire})
		}
	}
}

// graced reports whether w is idle and has been since IdleTimeout or more.
func (f *Fleet) graced(w *worker, now time.Time) bool {
	return w.polled && !w.exiting && w.running == 0 && !now.Before(w.idleFrom.Add(f.cfg.IdleTimeout))
}

// active returns the number of workers of a tier that are not exiting.
func (f *Fleet) active(tr *tier) int {
	n := 0
	for _, i := range tr.workers {
		if !f.workers[i].exiting {
			n++
		}
	}
	return n
}

// retire tells idle workers of a tier to exit: those idle for IdleTimeout
// or more, while the tier has nothing waiting or more workers than its
// target (and more than one).
func (f *Fleet) retire(j *job, t int32, now time.Time) {
	tr := &j.tiers[t]
	target := -1 // computed once, when needed
	count := -1
	for _, i := range tr.workers {
		w := &f.workers[i]
		if !f.graced(w, now) {
			continue
		}
		if tr.demand.Waiting > 0 {
			if count < 0 {
				count = f.active(tr)
				target = f.target(j, t, now, count)
			}
			if count <= max(1, target) {
				continue
			}
		}
		why := fmt.Sprintf("idle past its %v grace, nothing waiting", f.cfg.IdleTimeout)
		if tr.demand.Waiting > 0 {
			why = fmt.Sprintf("idle past its %v grace, %d workers for a target of %d", f.cfg.IdleTimeout, count, target)
		}
		w.exiting = true
		if count > 0 {
			count--
		}
		f.out = append(f.out, Decision{Kind: Exit, ID: w.id, Job: j.id, Tier: t, Why: why})
	}
}

// start starts workers for a tier up to its target, within the job's cap
// and the slots left; it returns the slots left.
func (f *Fleet) start(ji int32, t int32, now time.Time, slots int) int {
	j := &f.jobs[ji]
	tr := &j.tiers[t]
	if now.Before(tr.startAfter) || now.Before(tr.heldUntil) || j.maxWorkers > 0 && j.alive >= j.maxWorkers {
		return slots
	}
	if slots == 0 && tr.demand.Ready == 0 {
		return slots // nothing to want: skip the target
	}
	have := f.active(tr)
	want := f.target(j, t, now, have)
	for ; have < want && slots > 0 && (j.maxWorkers <= 0 || j.alive < j.maxWorkers); have++ {
		id := f.newID(j.id, t)
		f.add(worker{id: id, job: ji, tier: t, started: now})
		slots--
		f.out = append(f.out, Decision{Kind: Start, ID: id, Job: j.id, Tier: t})
	}
	if slots == 0 && have < want && (j.maxWorkers <= 0 || j.alive < j.maxWorkers) {
		n := want - have
		if j.maxWorkers > 0 {
			n = min(n, j.maxWorkers-j.alive)
		}
		f.starved = append(f.starved, Starved{Job: j.id, Tier: t, Want: n})
	}
	return slots
}

// newID returns the next free worker ID of the sequence.
func (f *Fleet) newID(jobID string, t int32) string {
	var buf [64]byte
	for {
		f.seq++
		// "<job>-<tier>-<prefix><n>", without fmt: a Step may start
		// thousands.
		b := append(append(buf[:0], jobID...), '-')
		b = append(strconv.AppendInt(b, int64(t), 10), '-')
		b = strconv.AppendUint(append(b, f.cfg.IDPrefix...), f.seq, 10)
		id := string(b)
		if _, taken := f.workerIndex[id]; !taken {
			return id
		}
	}
}

// targetInput is the input of sched.TargetWorkers for a tier at time at,
// live being its workers that are not exiting.
func (f *Fleet) targetInput(j *job, t int32, at time.Time, live int) sched.TargetInput {
	tr := &j.tiers[t]
	d := tr.demand
	in := sched.TargetInput{
		Queued:         d.Ready,
		Running:        d.Running,
		Live:           live,
		RunningElapsed: elapsedAt(d, tr.demandAt, at),
		IdleGrace:      f.cfg.IdleTimeout.Seconds(),
		Max:            math.MaxInt32,
	}
	if f.cfg.MaxWorkers > 0 {
		in.Max = f.cfg.MaxWorkers
	}
	if j.maxWorkers > 0 {
		in.Max = min(in.Max, j.maxWorkers)
	}
	e := f.est[j.ns]
	if v, ok := tr.task.Value(); ok {
		in.TaskSeconds = v
	} else if v, ok := e.task.Value(); ok {
		in.TaskSeconds = v
	}
	if v, ok := e.startup.Value(); ok {
		in.StartupSeconds = v
	}
	return in
}

// elapsedAt is the running attempts' summed run time at time at, in
// seconds, from the demand recorded at since: it grows by Running each
// second (and never shrinks when the clock goes back).
func elapsedAt(d Demand, since, at time.Time) float64 {
	e := d.Elapsed.Seconds()
	if dt := at.Sub(since); dt > 0 && d.Running > 0 {
		e += float64(d.Running) * dt.Seconds()
	}
	return e
}

// target is how many workers tier t of job j should have at now.
func (f *Fleet) target(j *job, t int32, now time.Time, live int) int {
	return sched.TargetWorkers(f.targetInput(j, t, now, live))
}

// Target returns how many workers a (job, tier) should have at now, by
// reuse targeting (sched.TargetWorkers) over its demand and the estimates.
func (f *Fleet) Target(jobID string, t int32, now time.Time) (int, error) {
	j, tr, err := f.lookupTier(jobID, t)
	if err != nil {
		return 0, fmt.Errorf("target: %w", err)
	}
	return f.target(j, t, now, f.active(tr)), nil
}
