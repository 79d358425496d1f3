package runner

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

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
	// poll whose changes were abandoned can tell; fencedFlag is set by a
	// fenced write the store refused. renewed is the last renewal (lease
	// loop only).
	leased     atomic.Bool
	epoch      atomic.Int64
	gen        atomic.Uint64
	fencedFlag atomic.Bool
	renewed    time.Time

	mu      sync.Mutex
	jobs    map[string]*jobRun
	workers map[string]*worker
	est     map[string]*nsEstimates // by namespace
	// loading holds the jobs being loaded now (loads run outside mu);
	// scanned is set once a scan of this tenure has seen every active
	// job, so that a poll for a job not in jobs is told the truth: the
	// job is gone (NotFound), not "still loading" (Unavailable).
	loading map[string]bool
	scanned bool
	com     *committer
	comStop context.CancelFunc
	comDone chan struct{}
}

func newShard(r *Runner, n int) *shard {
	return &shard{Runner: r, n: n, lease: store.ShardLease(n),
		jobs: map[string]*jobRun{}, workers: map[string]*worker{}, est: map[string]*nsEstimates{}, loading: map[string]bool{}}
}

// start begins a tenure under the lease epoch: fresh state, a committer
// fenced by the epoch. The shard's jobs are loaded by the next scan.
func (s *shard) start(ctx context.Context, epoch int64, now time.Time) {
	s.mu.Lock()
	s.epoch.Store(epoch)
	s.gen.Add(1)
	s.jobs, s.workers, s.loading, s.scanned = map[string]*jobRun{}, map[string]*worker{}, map[string]bool{}, false
	com := newCommitter(s.cfg.Store, s.log.With("shard", s.n))
	com.now, com.fence, com.fenced, com.poisoned, com.metrics = s.now, s.fence, s.lostLease, s.poisonJob, s.metrics
	cctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	s.com, s.comStop, s.comDone = com, stop, done
	s.mu.Unlock()
	s.renewed = now
	s.fencedFlag.Store(false)
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
	for _, w := range s.workers {
		w.notify()
	}
	s.nworkers.Add(-int64(len(s.workers)))
	s.jobs, s.workers, s.loading, s.scanned = map[string]*jobRun{}, map[string]*worker{}, map[string]bool{}, false
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
