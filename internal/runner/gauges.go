package runner

import (
	"time"

	"github.com/haul-dev/haul/internal/metrics"
	"github.com/haul-dev/haul/internal/store"
)

// publishMetrics sets the gauges that are counts of what the runner holds.
func (r *Runner) publishMetrics() {
	if r.metrics == nil || r.now().Sub(r.published) < time.Second {
		return
	}
	r.published = r.now()
	var counts store.TaskCounts
	var jobs int
	ws := map[string]int{}
	for _, s := range r.shards {
		if !s.leased.Load() {
			continue
		}
		s.mu.Lock()
		for _, jr := range s.jobs {
			if jr.done {
				continue
			}
			jobs++
			c := jr.job.Counts
			counts.Blocked += c.Blocked
			counts.Queued += c.Queued
			counts.Running += c.Running
			counts.Succeeded += c.Succeeded
			counts.Failed += c.Failed
			counts.UpstreamFailed += c.UpstreamFailed
			counts.Cancelled += c.Cancelled
		}
		for _, w := range s.workers {
			switch {
			case w.exiting:
				ws[metrics.WorkerExiting]++
			case w.lastSeen.IsZero():
				ws[metrics.WorkerStarting]++
			case len(w.running) == 0:
				ws[metrics.WorkerIdle]++
			default:
				ws[metrics.WorkerLive]++
			}
		}
		s.mu.Unlock()
	}
	r.metrics.SetTaskCounts(counts)
	r.metrics.SetJobsActive(jobs)
	for _, st := range []string{metrics.WorkerStarting, metrics.WorkerLive, metrics.WorkerIdle, metrics.WorkerExiting} {
		r.metrics.SetWorkers(st, ws[st])
	}
}
