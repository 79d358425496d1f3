package runner

import (
	"time"

	"github.com/haul-dev/haul/internal/sched"
)

// DefaultHalfLife is how fast the estimates behind worker reuse targeting
// forget: an observation counts half as much after this long.
const DefaultHalfLife = 10 * time.Minute

// nsEstimates are one namespace's estimates of worker startup latency and
// task run time, each an exponentially decaying mean.
type nsEstimates struct {
	startup sched.Estimate
	task    sched.Estimate
}

// halfLife returns the namespace's configured half-life.
func (r *Runner) halfLife(ns string) time.Duration {
	if d, ok := r.cfg.NamespaceHalfLife[ns]; ok && d > 0 {
		return d
	}
	return r.cfg.HalfLife
}

// estimates returns the namespace's estimates, creating them. Call with s.mu held.
func (s *shard) estimates(ns string) *nsEstimates {
	e := s.est[ns]
	if e == nil {
		e = &nsEstimates{}
		s.est[ns] = e
	}
	return e
}

// observeStartup records how long a worker took from being asked for to its
// first poll. Call with s.mu held.
func (s *shard) observeStartup(jr *jobRun, d time.Duration, now time.Time) {
	if d < 0 {
		return
	}
	s.estimates(jr.job.Namespace).startup.Observe(d.Seconds(), now, s.halfLife(jr.job.Namespace))
}

// observeTask records the run time of a finished attempt, for its job and
// tier and for its namespace (the prior of the namespace's next jobs). Call
// with r.mu held.
func (s *shard) observeTask(jr *jobRun, tier int32, d time.Duration, now time.Time) {
	if d < 0 || int(tier) >= len(jr.taskEst) {
		return
	}
	h := s.halfLife(jr.job.Namespace)
	jr.taskEst[tier].Observe(d.Seconds(), now, h)
	s.estimates(jr.job.Namespace).task.Observe(d.Seconds(), now, h)
}

// target is how many workers a job's tier should have now: worker reuse
// targeting (sched.TargetWorkers) over the tier's queue, its live workers
// and the namespace's estimates. Call with s.mu held.
func (s *shard) target(jr *jobRun, tier int32, now time.Time) int {
	e := s.estimates(jr.job.Namespace)
	in := sched.TargetInput{
		Queued:    jr.core.Ready(tier),
		Running:   jr.core.Running(tier),
		Live:      len(jr.workers[tier]),
		IdleGrace: s.cfg.IdleTimeout.Seconds(),
		Max:       s.cfg.MaxWorkers,
	}
	if jr.job.MaxWorkers > 0 {
		in.Max = min(in.Max, int(jr.job.MaxWorkers))
	}
	if v, ok := jr.taskEst[tier].Value(); ok {
		in.TaskSeconds = v
	} else if v, ok := e.task.Value(); ok {
		in.TaskSeconds = v
	}
	if v, ok := e.startup.Value(); ok {
		in.StartupSeconds = v
	}
	for _, id := range jr.workers[tier] {
		if w := s.workers[id]; w != nil {
			for task := range w.running {
				in.RunningElapsed += max(0, now.Sub(jr.tasks.startedAt(task)).Seconds())
			}
		}
	}
	return sched.TargetWorkers(in)
}
