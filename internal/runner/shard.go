package runner

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haul-dev/haul/internal/fleet"
	"github.com/haul-dev/haul/internal/store"
)

// shard is the in-memory state of one logical shard this runner owns: its
// jobs, their workers, its own lock and its own committer, so that a job
// flooding one shard slows no other shard's polls or commits. It embeds
// the Runner for what all shards share (configuration, clock, log, the
// worker backend and the cap on workers).
type shard struct {
	*Runner
	n     int
	lease string // store.ShardLease(n)

	// leased is true while the runner holds the shard's lease and may
	// dispatch its jobs; epoch is the lease's epoch in this tenure (every
	// write is fenced by it); gen counts tenures and drops, so that a
	// poll whose changes were abandoned can tell. renewed is the last
	// renewal (lease loop only).
	leased  atomic.Bool
	epoch   atomic.Int64
	gen     atomic.Uint64
	renewed time.Time

	mu      sync.Mutex
	jobs    map[string]*jobRun
	workers map[string]*worker
	// fleet decides the shard's workers (starts, exits, liveness, start
	// backoff, reuse targeting); the shell (this package) carries its
	// decisions out. It lives for one tenure: nil while the shard is not
	// owned. Call it with mu held.
	fleet *fleet.Fleet
	// loading holds the jobs being loaded now (loads run outside mu);
	// scanned is set once a scan of this tenure has seen every active
	// job, so that a poll for a job not in jobs is told the truth: the
	// job is gone (NotFound), not "still loading" (Unavailable).
	loading map[string]bool
	scanned bool
	// claimAt is when the shard last sent claim-only requests (see
	// claimStarved). Guarded by mu.
	claimAt time.Time
	com     *committer
	comStop context.CancelFunc
	comDone chan struct{}
}

func newShard(r *Runner, n int) *shard {
	return &shard{Runner: r, n: n, lease: store.ShardLease(n),
		jobs: map[string]*jobRun{}, workers: map[string]*worker{}, loading: map[string]bool{}}
}

// start begins a tenure under the lease epoch: fresh state, a committer
// fenced by the epoch. The shard's jobs are loaded by the next scan.
func (s *shard) start(ctx context.Context, epoch int64, now time.Time) {
	s.mu.Lock()
	s.epoch.Store(epoch)
	gen := s.gen.Add(1)
	s.jobs, s.workers, s.loading, s.scanned = map[string]*jobRun{}, map[string]*worker{}, map[string]bool{}, false
	s.fleet = fleet.New(s.fleetConfig(epoch, gen))
	com := newCommitter(s.cfg.Store, s.log.With("shard", s.n))
	com.now, com.fence, com.fenced, com.poisoned, com.metrics = s.now, s.fence, s.lostLease, s.poisonJob, s.metrics
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	s.com, s.comStop, s.comDone = com, stop, done
	s.mu.Unlock()
	s.renewed = now
	s.leased.Store(true)
	go func() { defer close(done); com.run(cctx) }()
}

// drop forgets the shard's jobs and workers: the lease is lost or given
// up, and another runner may own these jobs now. Attempts that ran are
// found running in the store by the next owner, which adopts the workers
// that still run them. Workers are not stopped: they look for the next
// owner (Locate) and carry on there.
func (s *shard) drop(why string) {
	was := s.leased.Swap(false)
	s.clear(s.gen.Add(1), was, why)
}

// clear forgets the shard's state unless a new tenure began since gen.
func (s *shard) clear(gen uint64, was bool, why string) {
	s.mu.Lock()
	if s.gen.Load() != gen {
		s.mu.Unlock()
		return
	}
	for _, jr := range s.jobs {
		close(jr.ready)
		jr.ready = make(chan struct{})
	}
	n := 0
	for _, w := range s.workers {
		w.notify()
		if !w.lost {
			n++ // a lost one gave its place back already (see step)
		}
	}
	s.nworkers.Add(-int64(n))
	s.jobs, s.workers, s.loading, s.scanned = map[string]*jobRun{}, map[string]*worker{}, map[string]bool{}, false
	s.fleet = nil
	com, stop := s.com, s.comStop
	s.com, s.comStop = nil, nil
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	if com != nil {
		com.abandon()
	}
	if was {
		s.log.Warn("shard dropped", "shard", s.n, "why", why)
		s.metrics.SetShardOwned(s.n, false)
	}
}

// fleetConfig configures the Fleet of a tenure begun at the lease's epoch.
// The worker IDs it makes carry the runner's incarnation (no other runner,
// nor an earlier run of this one, has it), the epoch and the tenure's gen:
// a runner can hold a shard again at the same epoch (it renewed its lease
// after dropping the shard), and workers of the earlier tenure may still
// run and come back to be adopted, so the epoch alone would not do.
func (s *shard) fleetConfig(epoch int64, gen uint64) fleet.Config {
	return fleet.Config{
		IdleTimeout:       s.cfg.IdleTimeout,
		WorkerTimeout:     s.cfg.WorkerTimeout,
		StartTimeout:      s.cfg.StartTimeout,
		HalfLife:          s.cfg.HalfLife,
		NamespaceHalfLife: s.cfg.NamespaceHalfLife,
		MaxWorkers:        s.cfg.MaxWorkers,
		IDPrefix:          fmt.Sprintf("%se%dg%d-", s.incarnation, epoch, gen),
	}
}
