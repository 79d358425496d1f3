// Package runner runs jobs: it loads active jobs from the store, keeps each
// job's scheduling state (a sched.Job) in memory, hands ready tasks to
// workers through the taskhost protocol (TaskHostService.Poll), records every
// state change in the store in batches before anyone can observe it, and asks
// a worker backend to start and stop workers.
//
// It imports the store, the scheduling core, the DAG builder and the
// generated taskhost protocol; it does not know which backend or store driver
// it runs on.
package runner

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/dag"
	"github.com/haul-dev/haul/internal/fleet"
	"github.com/haul-dev/haul/internal/metrics"
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/token"
)

// Backend starts and stops workers. The runner calls it outside its lock.
type Backend interface {
	// StartWorker starts one worker. The worker must call the runner's
	// TaskHostService at spec.RunnerURL with spec.ID.
	StartWorker(ctx context.Context, spec WorkerSpec) error
	// StopWorker stops a worker, forcibly if it still runs.
	StopWorker(ctx context.Context, id string) error
}

// NodeInfo describes the machine a worker runs on, for cost estimates.
type NodeInfo struct {
	PricePerHour float64
	CPU          float64
	MemoryBytes  int64
}

// NodeInfoer is implemented by backends that know what a worker's node
// costs and holds. A worker's cost is its lifetime times the node's price
// times the larger of the CPU and memory shares its tier requests.
type NodeInfoer interface {
	WorkerNode(id string) (NodeInfo, bool)
}

// WorkerSpec describes a worker to start: one job, one tier.
type WorkerSpec struct {
	ID        string
	JobID     string
	JobName   string
	Namespace string
	// Labels are the job's labels (for cost allocation on Kubernetes).
	Labels    map[string]string
	TierIndex int32
	Tier      store.Tier
	// Template is the job's worker pod override (Kubernetes).
	Template  store.WorkerTemplate
	RunnerURL string
	// LocatorURL is where the worker asks which runner owns its job
	// when RunnerURL stops answering for it (a failover, a shard moved):
	// TaskHostService.Locate, served by gateways and runners. Empty: the
	// worker only ever talks to RunnerURL.
	LocatorURL string
	BlobURL    string
	// Cluster is the cluster placement chose for the worker (empty for a
	// backend without clusters): the backend starts it there.
	Cluster string
	// Secret is the worker's own credential: the taskhost sends it as
	// "Authorization: Bearer <secret>" on every Poll, and the runner
	// accepts that worker's polls only with it. Backends hand it to the
	// worker without putting it where tasks or logs can see it.
	Secret string
}

// Config configures a Runner.
type Config struct {
	Store   store.Store
	Backend Backend
	Logger  *slog.Logger
	Clock   func() time.Time // default time.Now
	// RunnerURL is the address workers use to reach this runner.
	RunnerURL string
	// BlobURL is the object store workers write logs to; Blob is the
	// runner's own handle on it (for the live copies it stores, see
	// live.go; nil: opened from BlobURL when that names one).
	BlobURL string
	Blob    blob.Store
	// LiveAttemptBytes, LiveMemoryBytes and LivePackGrace bound the live
	// copies of running attempts' logs (see live.go; defaults 1 MiB per
	// attempt, 256 MiB in all, 2m).
	LiveAttemptBytes int
	LiveMemoryBytes  int
	LivePackGrace    time.Duration
	// MaxWorkers caps the workers this runner keeps alive across all jobs
	// (default: 2 per CPU, at least 4).
	MaxWorkers int
	// ScanInterval is how often the store is scanned for new and cancelled
	// jobs when nobody calls Wake (default 1s).
	ScanInterval time.Duration
	// WorkerTimeout is how long a worker may go without polling before its
	// attempts are declared lost (default 45s).
	WorkerTimeout time.Duration
	// StartTimeout is how long a started worker may take to first poll
	// (default 2m).
	StartTimeout time.Duration
	// IdleTimeout is how long a worker with nothing to do is kept before it
	// is told to exit, in case more work appears (default 3s).
	IdleTimeout time.Duration
	// Sched configures each job's scheduling core (backoff, lost attempts).
	Sched sched.Config
	// Holder names this runner in its lease (default: random).
	Holder string
	// LeaseTTL is how long the runner's lease lasts unless renewed
	// (default 10s); after a crash, a new runner waits at most this long.
	LeaseTTL time.Duration
	// HalfLife is how fast worker reuse targeting's estimates of task run
	// time and worker startup forget old observations (default 10m);
	// NamespaceHalfLife overrides it per namespace.
	HalfLife          time.Duration
	NamespaceHalfLife map[string]time.Duration
	// ServerURL is the API's address, given to tasks as HAUL_SERVER (so
	// they can add tasks to their job); empty: not given.
	ServerURL string
	// Tokens signs the attempt-scoped token each task gets as HAUL_TOKEN;
	// nil: no token (tasks cannot add tasks).
	Tokens token.Secret
	// WorkerKey derives each worker's credential (WorkerSecret); every
	// runner of a store must have the same, so that a worker proves itself
	// to whichever runner owns its job (default: random, which is right
	// only for a runner alone on its store).
	WorkerKey []byte
	// LocatorURL is given to workers as where to ask for their job's
	// runner after a failover (WorkerSpec.LocatorURL); empty: RunnerURL.
	LocatorURL string
	// AdoptGrace is how long attempts found running when a job is loaded
	// are kept for their workers to be adopted (default DefaultAdoptGrace).
	AdoptGrace time.Duration
	// Metrics records the runner's metrics (nil: none).
	Metrics *metrics.Runner
}

// Runner is the job-running service. Create it with New, then Start it.
// It owns some of the store's shards (see lease.go); each shard keeps its
// own jobs, workers, lock and committer.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics.Runner

	wakeCh    chan struct{}
	leaseKick chan struct{}
	shards    [store.NumShards]*shard
	// nworkers counts the workers of every shard, for MaxWorkers: a
	// shard reserves its slots here before its Fleet steps (see
	// shard.step), so that shards share the cap without a lock.
	nworkers atomic.Int64
	stopped  atomic.Bool
	started  atomic.Bool
	// workerKey derives every worker's credential (workerSecret).
	workerKey []byte

	// place is the runner's side of placement; nil when the backend has
	// no clusters (workers start unplaced).
	place *placer
	// live holds running attempts' recent output (live.go).
	live *liveLogs
	// workerRecs queues worker records for the store (workers.go).
	workerRecs chan store.WorkerRecord

	cancel context.CancelFunc
	wg     sync.WaitGroup
	loads  sync.WaitGroup
	done   chan struct{}

	// incarnation tells this runner's worker IDs from those of earlier
	// runners on the same store (leftover pods, processes).
	incarnation string

	healthMu  sync.Mutex
	memberErr error
	published time.Time // the last publishMetrics (loop only)
}

// jobRun is the in-memory state of one active job.
type jobRun struct {
	job   *store.Job
	core  *sched.Job
	tasks *taskTable
	// ready is closed (and replaced) whenever tasks may have become ready, to
	// wake workers waiting in a long poll.
	ready chan struct{}
	// workers of this job, by tier.
	workers  [][]string
	lastUsed time.Time
	done     bool
	// dirty: the job row must be written even without task changes (it
	// was just loaded and moved from pending to running).
	dirty bool
	// Per tier: how many attempts its workers run and the sum of their
	// start times (seconds after runBase, the job's load: small numbers,
	// so that adding and taking away loses no precision), so that the
	// time they have run is known without a walk over them (see
	// shard.demand).
	runN     []int
	runSince []float64
	runBase  time.Time
	// orphans are attempts found running when the job was loaded (a
	// failover): kept Running in the core until the worker that runs them
	// is adopted and reports them, or until orphansUntil, when those left
	// are lost.
	orphans      map[int32]orphan
	orphansUntil time.Time
	// appending is closed when an AddTasks in progress, which writes the
	// added tasks to the store without holding the shard's lock, is done;
	// nil when none is. Meanwhile the job's scheduling state is frozen:
	// everything that would change it waits (settle) or leaves it for the
	// next round, so that what AddTasks checked still holds when it
	// extends the job.
	appending chan struct{}
	// blocked is, per tier, the last refusal of a worker start by
	// placement (zero after a start was placed), for why.
	blocked []blockedTier
	// claimAsked is, per tier, when it last asked placement with
	// claim-only requests (the runner's cap left it no slot).
	claimAsked []time.Time
}

// settle waits, with s.mu held (released while waiting), until no
// AddTasks is in progress on job id, and returns the job as it is then
// (nil if it is gone).
func (s *shard) settle(id string) *jobRun {
	for {
		jr := s.jobs[id]
		if jr == nil || jr.appending == nil {
			return jr
		}
		ch := jr.appending
		s.mu.Unlock()
		<-ch
		s.mu.Lock()
	}
}

// orphan is an attempt kept for the worker the store says runs it.
type orphan struct {
	attempt int32
	worker  string
	kill    bool // a cancel is due when it is claimed
}

// worker is the shell's side of a worker: what it runs and what its polls
// must be told. Whether it should exist at all is the shard's Fleet's
// call (see shard.step).
type worker struct {
	id       string
	adopted  bool // started by another runner; taken in after a failover
	job      string
	tier     int32
	started  time.Time
	lastSeen time.Time       // zero until the first poll
	running  map[int32]int32 // task → attempt
	// since is when each running attempt started, in seconds after its
	// job's runBase, as added to the job's runSince (see hold).
	since map[int32]float64
	// handed is the poll generation that handed out each running attempt;
	// gen counts the worker's full polls (see reconcileWorker).
	handed map[int32]uint64
	gen    uint64
	// slots is how many attempts the worker runs at once, as its last
	// full poll said (its free capacity plus what it runs).
	slots   int
	cancels []attemptKill
	// exiting: the Fleet told it to exit (or its job ended): it is handed
	// nothing more and its next poll at which it runs nothing answers
	// exit. lost: the Fleet gave it up for not polling in time; it is
	// being stopped, and no longer counts in nworkers.
	exiting bool
	lost    bool
	// attempts counts the attempts handed to it; endWhy says why it ended
	// (set before removeWorker; "" reads as "exit").
	attempts int64
	endWhy   string
	// cluster and resources: where placement put it and what it holds
	// there ("" when unplaced: a backend without clusters).
	cluster   string
	resources placement.Resources
	// wake is closed (and replaced) when a held poll of this worker must
	// look again: a cancel to send, or slots freed by a report.
	wake chan struct{}
}

type attemptKill struct {
	task, attempt int32
	sent          bool
}

// wakeCh returns the channel closed at the worker's next notify. Call with
// r.mu held.
func (w *worker) wakeCh() <-chan struct{} {
	if w.wake == nil {
		w.wake = make(chan struct{})
	}
	return w.wake
}

// notify wakes a held poll of the worker. Call with s.mu held.
func (w *worker) notify() {
	if w.wake != nil {
		close(w.wake)
		w.wake = nil
	}
}

// New returns a runner; call Start to run it.
func New(cfg Config) *Runner {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = max(4, 2*runtime.NumCPU())
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = time.Second
	}
	if cfg.WorkerTimeout <= 0 {
		cfg.WorkerTimeout = 45 * time.Second
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 3 * time.Second
	}
	if cfg.AdoptGrace <= 0 {
		cfg.AdoptGrace = DefaultAdoptGrace
	}
	if cfg.Holder == "" {
		cfg.Holder = newHolderID()
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.HalfLife <= 0 {
		cfg.HalfLife = DefaultHalfLife
	}
	cfg.LiveAttemptBytes = cmp.Or(max(0, cfg.LiveAttemptBytes), DefaultLiveAttemptBytes)
	cfg.LiveMemoryBytes = cmp.Or(max(0, cfg.LiveMemoryBytes), DefaultLiveMemoryBytes)
	cfg.LivePackGrace = cmp.Or(max(0, cfg.LivePackGrace), DefaultLivePackGrace)
	if cfg.Blob == nil && cfg.BlobURL != "" {
		if b, err := blob.Open(cfg.BlobURL); err == nil {
			cfg.Blob = b
		} else {
			cfg.Logger.Error("cannot open the object store; live logs of lost attempts will not be stored", "err", err)
		}
	}
	r := &Runner{
		cfg:         cfg,
		log:         cfg.Logger,
		now:         cfg.Clock,
		metrics:     cfg.Metrics,
		wakeCh:      make(chan struct{}, 1),
		leaseKick:   make(chan struct{}, 1),
		done:        make(chan struct{}),
		incarnation: newHolderID()[:6],
		workerKey:   cfg.WorkerKey,
	}
	if len(r.workerKey) == 0 {
		r.workerKey = []byte(rand.Text())
	}
	r.live = newLiveLogs(r)
	r.workerRecs = make(chan store.WorkerRecord, workerRecordQueue)
	for i := range r.shards {
		r.shards[i] = newShard(r, i)
	}
	if cb, ok := cfg.Backend.(Clusters); ok {
		r.place = newPlacer(r, cb.PlacementClusters())
	}
	return r
}

// DefaultLeaseTTL is how long a shard lease lasts unless renewed: after a
// runner dies, its shards move within about this long.
const DefaultLeaseTTL = 8 * time.Second

// DefaultAdoptGrace is how long a runner that takes a shard keeps the
// attempts it finds running for the workers that run them to come and be
// adopted, before it declares them lost.
const DefaultAdoptGrace = 15 * time.Second

// Start joins the store's runner group, takes the shards its share allows
// (see lease.go) and runs the service until Stop or ctx ends. Shards held
// by a runner that died are taken when their leases expire; losing a
// shard later does not stop the runner.
func (r *Runner) Start(ctx context.Context) error {
	ctx, r.cancel = context.WithCancel(ctx)
	if r.place != nil {
		if err := r.place.bootstrap(ctx); err != nil {
			r.cancel()
			return err
		}
	}
	r.leaseRound(ctx)
	if err := r.memberError(); err != nil {
		r.cancel()
		return err
	}
	r.scanLogged(ctx)
	r.started.Store(true)
	r.wg.Add(4)
	go func() { defer r.wg.Done(); r.loop(ctx) }()
	go func() { defer r.wg.Done(); r.keepLeases(ctx) }()
	go func() { defer r.wg.Done(); r.live.spillLoop(ctx) }()
	go func() { defer r.wg.Done(); r.writeWorkerRecords(ctx) }()
	if r.place != nil {
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.place.loop(ctx) }()
	}
	go func() { r.wg.Wait(); r.loads.Wait(); close(r.done) }()
	return nil
}

func (r *Runner) memberError() error {
	r.healthMu.Lock()
	defer r.healthMu.Unlock()
	return r.memberErr
}

// Done is closed when the runner has stopped.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Stop stops the service: it writes what is pending, gives its shards and
// its membership up so that other runners take them at once, and stops
// every worker its backend started. It is idempotent.
func (r *Runner) Stop() {
	if r.stopped.Swap(true) {
		return
	}
	var ids []string
	for _, s := range r.shards {
		s.mu.Lock()
		for id := range s.workers {
			ids = append(ids, id)
		}
		s.mu.Unlock()
	}
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	r.loads.Wait()
	if r.started.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, s := range r.shards {
			if s.leased.Load() {
				s.release(ctx, "runner stopping")
			}
		}
		if err := r.cfg.Store.ReleaseLease(ctx, store.MemberLease(r.cfg.Holder), r.cfg.Holder); err != nil {
			r.log.Warn("release membership lease", "err", err)
		}
		cancel()
	}
	for _, id := range ids {
		if err := r.cfg.Backend.StopWorker(context.Background(), id); err != nil {
			r.log.Warn("stop worker", "worker", id, "err", err)
		}
	}
	if r.place != nil && r.started.Load() && len(ids) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := r.cfg.Store.ReleaseReservations(ctx, ids); err != nil {
			r.log.Warn("release the stopped workers' reservations (they expire)", "err", err)
		}
		cancel()
	}
}

// Wake makes the runner scan the store now (a job was submitted or a cancel
// requested). It never blocks.
func (r *Runner) Wake() {
	select {
	case r.wakeCh <- struct{}{}:
	default:
	}
}

func (r *Runner) loop(ctx context.Context) {
	scan := time.NewTicker(r.cfg.ScanInterval)
	defer scan.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wakeCh:
			r.scanLogged(ctx)
		case <-scan.C:
			r.scanLogged(ctx)
		case <-tick.C:
		}
		for _, s := range r.shards {
			if s.leased.Load() {
				s.tick(ctx)
				s.step(ctx)
			}
		}
		r.publishMetrics()
	}
}

func (r *Runner) scanLogged(ctx context.Context) {
	if err := r.scan(ctx); err != nil && ctx.Err() == nil {
		r.log.Error("scan store for jobs", "err", err)
	}
}

// scan loads the jobs of owned shards that became active (each in its own
// goroutine, so that loading a big job delays no other) and applies cancel
// requests.
func (r *Runner) scan(ctx context.Context) error {
	var gens [store.NumShards]uint64
	any := false
	for i, s := range r.shards {
		gens[i] = s.gen.Load()
		any = any || s.leased.Load()
	}
	if !any {
		return nil
	}
	active, err := r.cfg.Store.ListActiveJobs(ctx)
	if err != nil {
		return err
	}
	for i := range active {
		j := &active[i]
		s := r.shards[store.ShardOf(j.ID)]
		if !s.leased.Load() || s.gen.Load() != gens[s.n] {
			continue
		}
		s.mu.Lock()
		jr, loaded := s.jobs[j.ID]
		start := !loaded && !s.loading[j.ID]
		if start {
			s.loading[j.ID] = true
		}
		if loaded && j.CancelRequested && jr.appending == nil && !jr.core.Done() {
			jr.core.Cancel(s.now())
			s.afterEvents(jr, nil)
		}
		s.mu.Unlock()
		if start {
			r.loads.Add(1)
			go func(j store.Job, gen uint64) {
				defer r.loads.Done()
				if err := s.load(ctx, &j, gen); err != nil && ctx.Err() == nil {
					s.log.Error("load job", "job", j.ID, "shard", s.n, "err", err)
				}
			}(*j, gens[s.n])
		}
	}
	for _, s := range r.shards {
		s.mu.Lock()
		if s.leased.Load() && s.gen.Load() == gens[s.n] {
			s.scanned = true
		}
		s.mu.Unlock()
	}
	cancels, err := r.cfg.Store.ListTaskCancels(ctx)
	if err != nil {
		return err
	}
	for _, c := range cancels {
		s := r.shards[store.ShardOf(c.JobID)]
		if !s.leased.Load() {
			continue
		}
		s.mu.Lock()
		jr := s.jobs[c.JobID]
		if jr != nil && jr.appending == nil && !jr.done && int(c.Index) < jr.tasks.len() && !jr.core.State(c.Index).Terminal() {
			jr.core.CancelTask(c.Index, s.now())
			s.afterEvents(jr, nil)
		}
		s.mu.Unlock()
	}
	return nil
}

// load builds the in-memory state of a job from the store, recovering from a
// previous runner's crash: attempts that were running are lost and retried.
func (s *shard) load(ctx context.Context, j *store.Job, gen uint64) error {
	defer func() {
		s.mu.Lock()
		delete(s.loading, j.ID)
		s.mu.Unlock()
	}()
	// Read the tasks a page at a time into the packed table, so that a
	// million store rows (about 300 bytes each) are never all in memory.
	n := int(j.TaskCount)
	keys := make([]string, 0, n)
	after := make([][]string, 0, n)
	cfgs := make([]sched.TaskConfig, 0, n)
	table := newTaskTable(n)
	states := make([]sched.State, 0, n)
	attempts := make([]int32, 0, n)
	// Tasks that ran and did not end (their attempts are read below), and
	// tasks that moved up a tier.
	var special []store.Task
	for last := int32(-1); ; {
		// The page's index range is bounded as well as its length: on
		// PostgreSQL, a job just copied in has no statistics yet, and an
		// unbounded range was planned as a bitmap of every task of the
		// job, sorted, for each page (half a second a page at 1M tasks).
		first := int64(len(keys))
		page, err := s.cfg.Store.ListTasks(ctx, store.TaskFilter{JobID: j.ID, After: last, Limit: loadPage,
			FirstIndex: int32(first), EndIndex: int32(min(first+loadPage, math.MaxInt32))})
		if err != nil {
			return err
		}
		for i := range page {
			t := &page[i]
			if int(t.Index) != len(keys) {
				return fmt.Errorf("job %s: task %d stored at position %d", j.ID, t.Index, len(keys))
			}
			keys = append(keys, t.Key)
			after = append(after, t.After)
			cfgs = append(cfgs, sched.TaskConfig{Tier: t.Tier, Retries: t.Retries, Timeout: time.Duration(t.TimeoutMS) * time.Millisecond})
			table.add(t)
			states = append(states, stateOf(t.State))
			attempts = append(attempts, t.Attempts)
			if !t.State.Terminal() && t.Attempts > 0 || t.RunTier != t.Tier {
				special = append(special, store.Task{Index: t.Index, Key: t.Key, State: t.State, Attempts: t.Attempts, Tier: t.Tier, RunTier: t.RunTier, RetryBase: t.RetryBase})
			}
		}
		if len(page) < loadPage {
			break
		}
		last = page[len(page)-1].Index
	}
	g, err := dag.Build(keys, after)
	if err != nil {
		return fmt.Errorf("job %s: rebuild graph: %w", j.ID, err)
	}
	sc := s.cfg.Sched
	sc.Tiers = max(1, len(j.Tiers))
	core := sched.NewJob(g, cfgs, sc)

	for i, st := range states {
		if st != sched.Blocked || attempts[i] > 0 {
			core.Restore(int32(i), st, attempts[i], 0)
		}
	}
	// Attempts that were running when the previous runner stopped are
	// kept for their workers (orphans), or lost when no worker can claim
	// them.
	var lost []store.Attempt
	orphans := map[int32]orphan{}
	for i := range special {
		t := &special[i]
		if t.RunTier != t.Tier {
			if err := core.RestoreTier(t.Index, t.RunTier); err != nil {
				s.log.Warn("restore task tier", "job", j.ID, "task", t.Key, "err", err)
			}
		}
		if t.State.Terminal() || t.Attempts == 0 {
			continue
		}
		atts, err := s.cfg.Store.ListAttempts(ctx, j.ID, t.Index)
		if err != nil {
			return err
		}
		var failed int32
		for _, a := range atts {
			switch a.State {
			case store.AttemptFailed:
				// The failures before the job's latest retry do not count
				// against the task's retries: a retried task gets them all
				// again (sched: Restart).
				if a.Number > t.RetryBase {
					failed++
				}
			case store.AttemptRunning:
				if a.Number == t.Attempts && t.State == store.TaskRunning && a.WorkerID != "" {
					// Its worker may still run it: kept for adoption.
					orphans[t.Index] = orphan{attempt: a.Number, worker: a.WorkerID}
					continue
				}
				a.State = store.AttemptLost
				a.Reason = "lost"
				a.Message = "the runner restarted while this attempt ran"
				a.FinishedAt = s.now()
				lost = append(lost, a)
			}
		}
		core.Restore(t.Index, stateOf(t.State), t.Attempts, failed)
		if _, kept := orphans[t.Index]; kept {
			if err := core.Keep(t.Index); err != nil {
				return fmt.Errorf("job %s: keep task %d: %w", j.ID, t.Index, err)
			}
		}
	}
	now := s.now()
	jr := &jobRun{job: j, core: core, tasks: table, ready: make(chan struct{}), workers: make([][]string, sc.Tiers), lastUsed: now, dirty: true,
		runN: make([]int, sc.Tiers), runSince: make([]float64, sc.Tiers), runBase: now, orphans: orphans, orphansUntil: now.Add(s.cfg.AdoptGrace),
		blocked: make([]blockedTier, sc.Tiers), claimAsked: make([]time.Time, sc.Tiers)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[j.ID]; ok || s.gen.Load() != gen || !s.leased.Load() {
		return nil // loaded already, or the shard moved meanwhile
	}
	s.jobs[j.ID] = jr
	if err := s.fleet.AddJob(fleet.Job{ID: j.ID, Namespace: j.Namespace, Tiers: sc.Tiers, MaxWorkers: int(j.MaxWorkers), Created: j.CreatedAt, Priority: j.Priority}); err != nil {
		// Its tasks are dispatched to adopted workers only; say why.
		s.log.Error("job gets no workers: the worker fleet refused it", "job", j.ID, "err", err)
	}
	if j.State == store.JobPending {
		j.State = store.JobRunning
		j.StartedAt = now
	}
	core.Start(now)
	// Tasks stored queued (roots, from their submission) are ready from
	// the load on, as those the core queues now: for the dispatch wait.
	for i := range int32(table.len()) {
		if table.queued[i] == 0 && core.State(i) == sched.Queued {
			table.queued[i] = now.UnixNano()
		}
	}
	if j.CancelRequested {
		core.Cancel(now)
	}
	s.log.Info("job loaded", "job", j.ID, "shard", s.n, "tasks", table.len(), "lost_attempts", len(lost), "kept_attempts", len(orphans))
	s.afterEvents(jr, lost)
	s.setDemand(jr, now) // even when loading changed nothing
	return nil
}

// upstreamReason is the stored reason of a task that became
// upstream_failed: "upstream: sim-7 failed", naming the failed task whose
// failure reached it (its parent or a further ancestor), or "upstream"
// when the core does not know it. ListTasks's reason filter "upstream"
// matches both.
func upstreamReason(jr *jobRun, task int32) string {
	c, ok := jr.core.UpstreamCause(task)
	if !ok || int(c) >= jr.tasks.len() {
		return sched.ReasonUpstream
	}
	return sched.ReasonUpstream + ": " + jr.tasks.key(c) + " failed"
}

// afterEvents drains the core's output for one job into the committer and
// the workers. extra attempts are written with the same batch. Call with
// r.mu held. It returns the channel closed when the changes are durable.
func (s *shard) afterEvents(jr *jobRun, extra []store.Attempt) <-chan struct{} {
	return s.afterEventsCtx(jr, extra, nil)
}

// results carries what a taskhost reported, to fill exit codes and times.
type resultInfo struct {
	exit     int32
	reason   string
	started  time.Time
	finished time.Time
	peak     int64 // peak RSS
}

func (s *shard) afterEventsCtx(jr *jobRun, extra []store.Attempt, info map[int32]resultInfo) <-chan struct{} {
	now := s.now()
	for _, a := range extra {
		if a.State != store.AttemptRunning {
			s.live.ended(a.JobID, a.TaskIndex, a.Number, a.State == store.AttemptLost, -1, 0, now)
		}
	}
	out := jr.core.Drain()
	var tasks []store.TaskUpdate
	var queued []store.QueuedRange
	wakeWorkers := false
	for _, tr := range out.Transitions {
		tt := jr.tasks
		if tr.From == sched.Blocked && tr.To == sched.Queued {
			// Written as ranges of indexes: the update would repeat what
			// the task's row holds but its state (store.QueuedRange).
			tt.queued[tr.Task] = now.UnixNano()
			wakeWorkers = true
			if n := len(queued); n > 0 && queued[n-1].End == tr.Task {
				queued[n-1].End++
			} else {
				queued = append(queued, store.QueuedRange{JobID: jr.job.ID, First: tr.Task, End: tr.Task + 1})
			}
			continue
		}
		u := store.TaskUpdate{
			JobID: jr.job.ID, Index: tr.Task, RunTier: jr.core.Tier(tr.Task), State: storeState(tr.To),
			Attempts: jr.core.Attempts(tr.Task), Reason: tr.Reason,
		}
		in, reported := info[tr.Task]
		reported = reported && tr.From == sched.Running
		if reported {
			tt.exit[tr.Task] = in.exit
			if in.reason != "" && tr.To != sched.Succeeded {
				u.Reason = in.reason
			}
		}
		u.ExitCode = tt.exit[tr.Task]
		if tr.To == sched.UpstreamFailed {
			u.Reason = upstreamReason(jr, tr.Task)
		}
		switch {
		case tr.To == sched.Running:
			tt.started[tr.Task] = now.UnixNano()
			u.Reason = ""
		case tr.To == sched.Queued:
			tt.queued[tr.Task] = now.UnixNano()
			wakeWorkers = true
		case tr.To.Terminal():
			u.FinishedAt = now
			if reported && !in.finished.IsZero() {
				u.FinishedAt = in.finished
			}
			if reported {
				u.PeakRSSBytes = in.peak
			}
		}
		u.StartedAt = tt.startedAt(tr.Task)
		tasks = append(tasks, u)
	}
	for _, k := range out.Kills {
		s.killAttempt(jr, k.Task, k.Attempt)
	}
	if wakeWorkers {
		close(jr.ready)
		jr.ready = make(chan struct{})
	}
	var jobs []store.JobUpdate
	if len(queued) > 0 || len(tasks) > 0 || len(extra) > 0 || jr.dirty {
		jr.dirty = false
		if jr.core.Done() && !jr.done {
			jr.done = true
			jr.job.State = store.JobState(jr.core.Outcome())
			jr.job.FinishedAt = now
			s.log.Info("job finished", "job", jr.job.ID, "state", jr.job.State)
			close(jr.ready)
			jr.ready = make(chan struct{})
			if s.fleet != nil {
				_ = s.fleet.EndJob(jr.job.ID) // unknown only if AddJob refused it
			}
		}
		c := jr.core.Counts()
		jr.job.Counts = store.TaskCounts{
			Blocked: c[sched.Blocked], Queued: c[sched.Queued], Running: c[sched.Running],
			Succeeded: c[sched.Succeeded], Failed: c[sched.Failed],
			UpstreamFailed: c[sched.UpstreamFailed], Cancelled: c[sched.Cancelled],
		}
		// Run: once the job ended, a retry may make it pending again
		// while this runner still holds it (its workers' time is still
		// counted); this write must not end the retried job.
		jobs = append(jobs, store.JobUpdate{ID: jr.job.ID, State: jr.job.State, Counts: jr.job.Counts, StartedAt: jr.job.StartedAt, FinishedAt: jr.job.FinishedAt,
			WorkerSeconds: jr.job.WorkerSeconds, CostUSD: jr.job.CostUSD, Usage: jr.job.Usage, Run: jr.job.Retries + 1})
	}
	if len(out.Transitions) > 0 {
		s.setDemand(jr, now)
	}
	if len(queued) == 0 && len(tasks) == 0 && len(extra) == 0 && len(jobs) == 0 {
		done := make(chan struct{})
		close(done)
		return done
	}
	return s.com.add(queued, tasks, extra, jobs)
}

// killAttempt tells the worker running an attempt to kill it. Call with s.mu held.
func (s *shard) killAttempt(jr *jobRun, task, attempt int32) {
	for _, ids := range jr.workers {
		for _, id := range ids {
			w := s.workers[id]
			if w == nil {
				continue
			}
			if a, ok := w.running[task]; ok && a == attempt {
				w.cancels = append(w.cancels, attemptKill{task: task, attempt: attempt})
				w.notify()
				return
			}
		}
	}
	if o, ok := jr.orphans[task]; ok && o.attempt == attempt {
		o.kill = true // sent when its worker is adopted
		jr.orphans[task] = o
	}
}

// expireOrphans declares lost the kept attempts that no adopted worker
// claimed in time. Call with s.mu held.
func (s *shard) expireOrphans(jr *jobRun, now time.Time, only string) {
	var lost []store.Attempt
	for task, o := range jr.orphans {
		if only != "" && o.worker != only {
			continue
		}
		delete(jr.orphans, task)
		if !jr.core.Finished(task, o.attempt, sched.Lost, now) {
			continue
		}
		lost = append(lost, store.Attempt{
			JobID: jr.job.ID, TaskIndex: task, Number: o.attempt, Tier: jr.core.Tier(task), WorkerID: o.worker,
			State: store.AttemptLost, Reason: "lost", Message: "the job moved to another runner and worker " + o.worker + " did not come back with this attempt",
			StartedAt: jr.tasks.startedAt(task), FinishedAt: now,
		})
	}
	if len(lost) > 0 {
		s.log.Warn("kept attempts lost: their worker did not claim them", "job", jr.job.ID, "attempts", len(lost))
		if s.place != nil && only == "" {
			// Workers that did not come back in the grace are gone: their
			// reservations free their room now, not at their expiry.
			gone := map[string]bool{}
			for _, a := range lost {
				if s.workers[a.WorkerID] == nil && !gone[a.WorkerID] {
					gone[a.WorkerID] = true
					s.place.release(a.WorkerID)
				}
			}
		}
		s.afterEvents(jr, lost)
	}
}

// tick releases retries, enforces timeouts, expires kept attempts and
// forgets finished jobs that have no worker left. Worker liveness is the
// Fleet's (see step).
func (s *shard) tick(ctx context.Context) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, jr := range s.jobs {
		if jr.appending != nil {
			continue // frozen while tasks are added; the next tick sees it
		}
		if w := jr.core.NextWake(); !w.IsZero() && !now.Before(w) {
			jr.core.Tick(now)
			s.afterEvents(jr, nil)
			// Retries whose backoff ended are ready without a transition:
			// wake the held polls of the job's workers to look again.
			close(jr.ready)
			jr.ready = make(chan struct{})
		}
		if len(jr.orphans) > 0 && !now.Before(jr.orphansUntil) {
			s.expireOrphans(jr, now, "")
		}
		if jr.done && s.jobWorkers(jr) == 0 {
			delete(s.jobs, id)
		}
	}
}

func (s *shard) jobWorkers(jr *jobRun) int {
	n := 0
	for _, ids := range jr.workers {
		n += len(ids)
	}
	return n
}

// WorkerOOMKilled is called when a worker was killed for running out of
// memory as a whole (a Kubernetes container OOMKilled: the kernel killed
// the taskhost itself, which could not report): the attempts it was
// running ended OOM and move up a tier, as if the taskhost had reported
// them so.
func (r *Runner) WorkerOOMKilled(id, why string) {
	r.workerEnded(id, why, true)
}

// WorkerGone is called when a worker has ended (its process exited, its pod
// vanished, or it stopped polling). Attempts it was running are lost.
func (r *Runner) WorkerGone(id, why string) {
	r.workerEnded(id, why, false)
}

func (r *Runner) workerEnded(id, why string, oom bool) {
	for _, s := range r.shards {
		s.mu.Lock()
		_, ok := s.workers[id]
		s.mu.Unlock()
		if ok {
			s.workerEnded(id, why, oom)
			return
		}
	}
}

func (s *shard) workerEnded(id, why string, oom bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.workers[id]
	if w == nil {
		return
	}
	s.settle(w.job)
	if s.workers[id] != w {
		return // ended meanwhile
	}
	w.endWhy = why
	g, known := s.removeWorker(w)
	jr := s.jobs[w.job]
	now := s.now()
	if known && !g.Polled && !s.stopped.Load() {
		s.log.Error("worker ended before it polled; backing off", "worker", id, "job", w.job, "tier", w.tier, "why", why,
			"failures_in_a_row", g.Failures, "next_start_in", g.NextStart.Sub(now))
	}
	if jr == nil || len(w.running) == 0 {
		return
	}
	var lost []store.Attempt
	for task, attempt := range w.running {
		outcome := sched.Lost
		if oom {
			outcome = sched.OOM
		}
		if jr.core.Finished(task, attempt, outcome, now) {
			a := store.Attempt{
				JobID: jr.job.ID, TaskIndex: task, Number: attempt, Tier: w.tier, WorkerID: id,
				State: store.AttemptLost, Reason: "lost", Message: "worker " + why,
				StartedAt: jr.tasks.startedAt(task), FinishedAt: now,
			}
			if oom {
				a.State, a.Reason, a.Enforcement = store.AttemptFailed, store.ReasonOOM, "container"
				a.Message = "out of memory on tier " + tierLabel(jr.job, w.tier) + ": the worker was " + why
				s.account(jr, w, &a)
			}
			lost = append(lost, a)
		}
	}
	s.log.Warn("worker gone with tasks running", "worker", id, "why", why, "oom", oom, "attempts", len(lost))
	s.afterEvents(jr, lost)
}

// removeWorker forgets a worker that ended, in the shell and in the
// Fleet, and adds its lifetime and cost to its job. It returns what the
// Fleet said of it (known is false when the Fleet had given it up
// already). Call with s.mu held.
func (s *shard) removeWorker(w *worker) (g fleet.Gone, known bool) {
	if _, ok := s.workers[w.id]; ok && !w.lost {
		s.nworkers.Add(-1)
	}
	delete(s.workers, w.id)
	if s.place != nil && (w.cluster != "" || w.adopted) {
		s.place.release(w.id)
	}
	now := s.now()
	s.recordWorker(s.workerRecord(w, now, cmp.Or(w.endWhy, "exit")))
	if s.fleet != nil {
		g, known = s.fleet.Ended(w.id, now)
	}
	jr := s.jobs[w.job]
	for task := range w.running {
		s.unhold(jr, w, task)
	}
	if jr == nil || int(w.tier) >= len(jr.workers) {
		return g, known
	}
	jr.workers[w.tier] = slices.DeleteFunc(jr.workers[w.tier], func(s string) bool { return s == w.id })
	life := now.Sub(w.started).Seconds()
	if life <= 0 {
		return g, known
	}
	jr.job.WorkerSeconds += life
	priced := false
	if ni, ok := s.cfg.Backend.(NodeInfoer); ok && int(w.tier) < len(jr.job.Tiers) {
		if node, ok := ni.WorkerNode(w.id); ok && node.PricePerHour > 0 {
			jr.job.CostUSD += life / 3600 * node.PricePerHour * tierShare(jr.job.Tiers[w.tier], node)
			priced = true
		}
	}
	if !priced && s.place != nil && w.cluster != "" {
		jr.job.CostUSD += life / 3600 * s.place.hourlyPrice(w.cluster, w.resources)
	}
	jr.dirty = true
	s.afterEvents(jr, nil)
	return g, known
}

// tierShare is the part of a node a tier's request takes: the larger of its
// CPU and memory shares, at most the whole node.
func tierShare(t store.Tier, n NodeInfo) float64 {
	share := 0.0
	if n.CPU > 0 {
		share = t.CPU / n.CPU
	}
	if n.MemoryBytes > 0 {
		share = max(share, float64(t.MemoryBytes)/float64(n.MemoryBytes))
	}
	return min(share, 1)
}

// step runs the shard's Fleet and carries out what it decides: Start asks
// the backend for a worker (outside the lock), Exit marks a worker exiting
// and wakes its held poll, Stop and Lost stop a silent worker through the
// backend before its attempts are declared lost and retried, so that a
// frozen worker's attempts are gone before they run again.
//
// The cap on workers is shared by every shard: the shard reserves the
// free slots in nworkers before the Step and gives back those its Starts
// did not use (and one for each worker lost).
func (s *shard) step(ctx context.Context) {
	var starts []WorkerSpec
	var lost []fleet.Decision
	s.mu.Lock()
	if s.fleet == nil || s.stopped.Load() {
		s.mu.Unlock()
		return
	}
	now := s.now()
	slots := s.reserve()
	used := 0
	for _, d := range s.fleet.Step(now, slots) {
		switch d.Kind {
		case fleet.Start:
			jr := s.jobs[d.Job]
			if jr == nil {
				s.fleet.Ended(d.ID, now) // cannot happen: the Fleet forgets jobs after the shell
				continue
			}
			used++
			starts = append(starts, s.newWorker(jr, d.ID, d.Tier, now))
		case fleet.Exit:
			if w := s.workers[d.ID]; w != nil {
				w.exiting = true
				w.notify()
			}
		case fleet.Lost:
			if w := s.workers[d.ID]; w != nil && !w.lost {
				w.lost, w.exiting = true, true
				w.notify()
				used--
			}
			lost = append(lost, d)
		}
	}
	s.nworkers.Add(int64(used - slots))
	starved := slices.Clone(s.fleet.Starved())
	s.mu.Unlock()
	s.claimStarved(ctx, starved)
	for _, d := range lost {
		s.log.Warn("worker lost", "worker", d.ID, "job", d.Job, "tier", d.Tier, "why", d.Why)
		if err := s.cfg.Backend.StopWorker(ctx, d.ID); err != nil {
			s.log.Warn("stop silent worker", "worker", d.ID, "err", err)
		}
		s.workerEnded(d.ID, "lost: "+d.Why, false)
	}
	starts = s.placeStarts(ctx, starts)
	for _, spec := range starts {
		if err := s.cfg.Backend.StartWorker(ctx, spec); err != nil {
			s.log.Error("start worker", "worker", spec.ID, "job", spec.JobID, "err", err)
			s.workerEnded(spec.ID, "failed to start: "+err.Error(), false)
		}
	}
}

// reserve takes every free slot of the runner's cap (MaxWorkers less the
// workers of all shards) for one Step and returns how many it took.
func (s *shard) reserve() int {
	for {
		n := s.nworkers.Load()
		free := int64(s.cfg.MaxWorkers) - n
		if free <= 0 {
			return 0
		}
		if s.nworkers.CompareAndSwap(n, n+free) {
			return int(free)
		}
	}
}

// newWorker records a worker the Fleet started and returns what the
// backend needs to start it, its credential included. Call with s.mu held.
func (s *shard) newWorker(jr *jobRun, id string, tier int32, now time.Time) WorkerSpec {
	w := &worker{id: id, job: jr.job.ID, tier: tier, started: now, running: map[int32]int32{}, handed: map[int32]uint64{}}
	s.workers[id] = w
	jr.workers[tier] = append(jr.workers[tier], id)
	s.recordWorker(s.workerRecord(w, time.Time{}, ""))
	locator := s.cfg.LocatorURL
	if locator == "" {
		locator = s.cfg.RunnerURL
	}
	spec := WorkerSpec{ID: id, JobID: jr.job.ID, JobName: jr.job.Name, Namespace: jr.job.Namespace, Labels: jr.job.Labels,
		TierIndex: tier, Template: jr.job.Worker, RunnerURL: s.cfg.RunnerURL, LocatorURL: locator, BlobURL: s.cfg.BlobURL,
		Secret: workerSecret(s.workerKey, jr.job.ID, tier, id)}
	if int(tier) < len(jr.job.Tiers) {
		spec.Tier = jr.job.Tiers[tier]
	}
	return spec
}

// loadPage is how many task rows load reads at a time.
const loadPage = 20_000

// ErrUnknownWorker is returned to a worker this runner did not start (for
// example after a restart): it must exit.
var ErrUnknownWorker = errors.New("unknown worker")

func stateOf(s store.TaskState) sched.State {
	switch s {
	case store.TaskQueued:
		return sched.Queued
	case store.TaskRunning:
		return sched.Running
	case store.TaskSucceeded:
		return sched.Succeeded
	case store.TaskFailed:
		return sched.Failed
	case store.TaskUpstreamFailed:
		return sched.UpstreamFailed
	case store.TaskCancelled:
		return sched.Cancelled
	}
	return sched.Blocked
}

func storeState(s sched.State) store.TaskState { return store.TaskState(s.String()) }

// poisonJob fails a job whose changes the store refuses even without what
// its workers reported (the committer gave up on them): every other job
// goes on. The job is dropped from memory and its workers stopped; its row
// is marked failed if the store takes that much.
func (s *shard) poisonJob(jobID string, why error) {
	s.mu.Lock()
	jr := s.jobs[jobID]
	if jr == nil {
		s.mu.Unlock()
		return
	}
	delete(s.jobs, jobID)
	now := s.now()
	var ids []string
	for _, tier := range jr.workers {
		for _, id := range tier {
			if w := s.workers[id]; w != nil {
				delete(s.workers, id)
				if !w.lost {
					s.nworkers.Add(-1)
				}
				if s.place != nil && (w.cluster != "" || w.adopted) {
					s.place.release(id)
				}
				w.notify()
			}
			if s.fleet != nil {
				s.fleet.Ended(id, now)
			}
			ids = append(ids, id)
		}
	}
	if s.fleet != nil {
		_ = s.fleet.EndJob(jobID) // it has no worker left: forgotten
	}
	jr.done = true
	close(jr.ready)
	jr.ready = make(chan struct{})
	u := store.JobUpdate{ID: jobID, State: store.JobFailed, Counts: jr.job.Counts, StartedAt: jr.job.StartedAt, FinishedAt: now, Run: jr.job.Retries + 1}
	s.mu.Unlock()
	s.log.Error("job failed: the store refuses its state changes", "job", jobID, "err", why)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Store.Apply(ctx, &store.Batch{Fence: s.fence(), Jobs: []store.JobUpdate{u}}); err != nil {
		s.log.Error("mark the poisoned job failed", "job", jobID, "err", err)
	}
	for _, id := range ids {
		if err := s.cfg.Backend.StopWorker(ctx, id); err != nil {
			s.log.Warn("stop worker of a failed job", "worker", id, "err", err)
		}
	}
}
