package runner

import (
	"github.com/haul-dev/haul/internal/store"
)

// account adds a finished attempt to its job's requested-versus-used
// summary: the tier's memory and CPU for as long as the attempt ran
// (requested) against its average RSS and CPU time (used). Call with r.mu
// held.
func (s *shard) account(jr *jobRun, w *worker, a *store.Attempt) {
	u := &jr.job.Usage
	if a.OOM() {
		u.OOMAttempts++
	}
	u.PeakRSSBytes = max(u.PeakRSSBytes, a.Usage.PeakRSSBytes)
	wall := a.FinishedAt.Sub(a.StartedAt).Seconds()
	if wall <= 0 {
		return
	}
	if int(w.tier) < len(jr.job.Tiers) {
		tier := jr.job.Tiers[w.tier]
		u.MemoryRequestedByteSeconds += float64(tier.MemoryBytes) * wall
		u.CPURequestedSeconds += tier.CPU * wall
	}
	u.MemoryUsedByteSeconds += float64(a.Usage.AvgRSSBytes) * wall
	u.CPUUsedSeconds += a.Usage.CPUUserSeconds + a.Usage.CPUSystemSeconds
}
