package runner

import (
	"time"

	"github.com/haul-dev/haul/internal/fleet"
)

// DefaultHalfLife is how fast the estimates behind worker reuse targeting
// forget: an observation counts half as much after this long.
const DefaultHalfLife = fleet.DefaultHalfLife

// demand is what a job's tier has to run now, as the shard's Fleet takes
// it for reuse targeting and retirement: the core's waiting, ready and
// running counts, and how long the attempts its workers run have run so
// far (from the running sums hold keeps, in constant time: this runs
// after every batch of events). Call with s.mu held.
func (s *shard) demand(jr *jobRun, tier int32, now time.Time) fleet.Demand {
	d := fleet.Demand{Waiting: jr.core.Waiting(tier), Ready: jr.core.Ready(tier), Running: jr.core.Running(tier)}
	if n := jr.runN[tier]; n > 0 {
		secs := float64(n)*now.Sub(jr.runBase).Seconds() - jr.runSince[tier]
		d.Elapsed = time.Duration(max(0, secs) * float64(time.Second))
	}
	return d
}

// setDemand tells the Fleet what each tier of a job has to run now. Call
// it after the job's core changed, with s.mu held. A job that ended has
// no demand to tell: the Fleet only tells its workers to exit.
func (s *shard) setDemand(jr *jobRun, now time.Time) {
	if s.fleet == nil || jr.done {
		return
	}
	for t := range jr.workers {
		if err := s.fleet.SetDemand(jr.job.ID, int32(t), s.demand(jr, int32(t), now), now); err != nil {
			s.log.Error("worker fleet refused a demand", "job", jr.job.ID, "tier", t, "err", err)
		}
	}
}

// observeTask records the run time of a finished attempt for reuse
// targeting: for its job's tier, and for its namespace (the prior of the
// namespace's next jobs). Call with s.mu held.
func (s *shard) observeTask(jr *jobRun, tier int32, d time.Duration, now time.Time) {
	if s.fleet == nil || d < 0 {
		return
	}
	if err := s.fleet.ObserveTask(jr.job.ID, tier, d, now); err != nil {
		s.log.Debug("task run time not observed", "job", jr.job.ID, "tier", tier, "err", err)
	}
}
