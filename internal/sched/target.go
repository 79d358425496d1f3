package sched

import (
	"math"
	"time"
)

// Worker reuse targeting.
//
// A worker serves one job and one tier and runs that tier's tasks one after
// another. Starting a worker costs worker-seconds that run no task: its
// startup latency, and the idle grace it waits out when the queue ends. The
// runner asks TargetWorkers, every tick and for every (job, tier), how many
// workers there should be, from exponentially decayed estimates (Estimate)
// of task run time and startup latency; it starts workers up to the target
// and retires workers that stay idle past the grace. Starting a worker pays
// only while the work waiting per worker outlasts what the start costs.

// Estimate is an exponentially time-decayed mean. An observation made at
// time t weighs 2^(-(now-t)/halfLife) at time now, so an observation one
// half-life old counts half as much as a fresh one, and observations made
// at the same instant count equally. A half-life <= 0 means no decay: the
// plain mean of every observation.
//
// The zero Estimate has seen nothing. An Estimate never holds NaN or an
// infinity: Observe ignores a NaN, infinite or negative observation, and
// a clock that goes backwards decays nothing. It is a value type (copy it
// freely); it is not safe for concurrent use.
type Estimate struct {
	mean   float64   // the decayed mean of the observations so far
	weight float64   // the total decayed weight; 0 when nothing was observed
	at     time.Time // when the weights were last decayed
}

// Observe adds the observation x made at now, after decaying the weight of
// the earlier observations by the time since the last one. It reports
// whether x was used: false for a NaN, infinite or negative x.
func (e *Estimate) Observe(x float64, now time.Time, halfLife time.Duration) bool {
	if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 {
		return false
	}
	w := e.weight
	if w > 0 && halfLife > 0 && now.After(e.at) {
		// Decaying the weight alone keeps the mean: the sum and the weight
		// shrink by the same factor. exp2 underflows to 0 for a very old
		// history, which then simply no longer counts.
		w *= math.Exp2(-float64(now.Sub(e.at)) / float64(halfLife))
	}
	if !(w > 0) || math.IsInf(w, 0) { // nothing left, or a corrupted copy
		w = 0
	}
	w++
	if w == 1 {
		e.mean = x
		e.at = now
	} else {
		// The running-mean form (not sum/weight) cannot overflow: the mean
		// stays between the smallest and the largest observation.
		e.mean += (x - e.mean) / w
		if now.After(e.at) {
			e.at = now
		}
	}
	e.weight = w
	return true
}

// Value returns the estimate: the weighted mean of the observations, and
// ok=false (with 0) when nothing was observed.
func (e Estimate) Value() (v float64, ok bool) {
	if !(e.weight > 0) {
		return 0, false
	}
	return e.mean, true
}

// Weight returns the total decayed weight of the observations as of the
// last one: 0 when nothing was observed, 1 for a single fresh observation.
// A caller can use it as the estimate's confidence.
func (e Estimate) Weight() float64 {
	if !(e.weight > 0) {
		return 0
	}
	return e.weight
}

// TargetInput is what TargetWorkers decides from, for one (job, tier).
// Times are in seconds. A NaN, infinite (except TaskSeconds) or negative
// time counts as 0, a negative count as 0.
type TargetInput struct {
	// Queued is the number of tasks ready to run and waiting for a worker.
	Queued int
	// Running is the number of attempts running now (each on a worker).
	Running int
	// Live is the number of workers alive: starting, idle or busy. The
	// target does not depend on it (it is a total, which the runner
	// compares with Live to start the difference); it is part of the
	// input so that the input describes the whole (job, tier), and the
	// tests check that it changes nothing.
	Live int
	// RunningElapsed is how long the running attempts have run so far,
	// summed over them.
	RunningElapsed float64
	// TaskSeconds is the estimated run time of a task (Estimate.Value);
	// 0 means unknown. +Inf is taken as "longer than anything".
	TaskSeconds float64
	// StartupSeconds is the estimated startup latency of a worker, from
	// its creation to its first poll for work; 0 means unknown (or none).
	StartupSeconds float64
	// IdleGrace is how long an idle worker waits for work before it exits.
	IdleGrace float64
	// Max is the most workers the (job, tier) may have (its share of the
	// namespace's quota); <= 0 allows none.
	Max int
}

// TargetWorkers returns how many workers the (job, tier) should have now.
// The runner starts workers while it has fewer; it does not kill workers
// above the target: those retire when they have been idle for IdleGrace.
//
// With
//
//	cost  = StartupSeconds + IdleGrace                      // worker-seconds a start spends running nothing
//	task  = TaskSeconds, or RunningElapsed/Running when that is larger and at least cost/2
//	work  = Queued·task + (Running·task − RunningElapsed)   // queued work + what the running attempts still have to do
//
// the target is floor(work/cost): the most workers among which the
// outstanding work, shared out, still keeps each of them busy for at
// least the cost of starting one. The mean elapsed time of the running
// attempts is a lower bound on the task time that grows while they run, so
// a job of long tasks with no history scales out once its first attempts
// have run half as long as a start costs. Below that it says too little:
// a task seen running for 30 ms may well end at 31 ms, and starting
// workers on such evidence is how a job of 10 ms tasks would end up with
// a worker per queued task; waiting costs at most half a start. When cost
// is 0, every queued task may have a worker.
//
// Then, in this order:
//   - at least Running (a busy worker is never asked to go) and at least
//     1 while a task is queued, so a job never starves; in particular a job
//     whose task time is unknown (TaskSeconds 0, nothing running) gets one
//     worker, which teaches the estimate;
//   - at most Queued+Running (a worker more would have nothing to run);
//   - at most Max, and never negative.
//
// It is a pure function: the same input always gives the same target, and
// no input makes it panic.
func TargetWorkers(in TargetInput) int {
	limit := capacity(in)
	if limit == 0 {
		return 0
	}
	queued, running := max(in.Queued, 0), max(in.Running, 0)
	if queued == 0 {
		return min(running, limit)
	}
	want := max(running, 1)
	elapsed := seconds(in.RunningElapsed)
	task := in.TaskSeconds
	if math.IsNaN(task) || task < 0 {
		task = 0
	}
	cost := seconds(in.StartupSeconds) + seconds(in.IdleGrace)
	if running > 0 {
		if mean := elapsed / float64(running); mean >= cost/2 {
			task = max(task, mean)
		}
	}
	if task == 0 { // unknown: the one worker (or the running ones) will tell
		return min(want, limit)
	}
	work := float64(queued)*task + max(float64(running)*task-elapsed, 0)
	if cost == 0 || math.IsInf(work, 0) || math.IsNaN(work) {
		return limit
	}
	if w := math.Floor(work / cost); w >= float64(limit) {
		return limit
	} else if int(w) > want {
		want = int(w)
	}
	return min(want, limit)
}

// SparkTarget is Spark-style dynamic allocation, for comparison: a worker
// for every queued and running task, up to Max. It ignores the estimates.
func SparkTarget(in TargetInput) int {
	return capacity(in)
}

// capacity returns min(Max, Queued+Running), at least 0, without overflow.
func capacity(in TargetInput) int {
	limit := max(in.Max, 0)
	queued, running := max(in.Queued, 0), max(in.Running, 0)
	if queued < limit && running < limit-queued {
		limit = queued + running
	}
	return limit
}

// seconds sanitises a time input: NaN, infinite and negative count as 0.
func seconds(s float64) float64 {
	if math.IsNaN(s) || math.IsInf(s, 0) || s < 0 {
		return 0
	}
	return s
}
