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
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haul-dev/haul/internal/dag"
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
	// BlobURL is the object store workers write logs to.
	BlobURL string
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
}

// Runner is the job-running service. Create it with New, then Start it.
type Runner struct {
	cfg Config
	log *slog.Logger
	now func() time.Time
	com *committer

	wakeCh chan struct{}

	mu      sync.Mutex
	jobs    map[string]*jobRun
	workers map[string]*worker
	est     map[string]*nsEstimates // by namespace
	seq     int64
	stopped bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
	done   chan struct{}

	// leased is true while the runner holds its lease and may dispatch;
	// epoch counts the times it dropped its state (a waiter whose changes
	// were abandoned sees it change); fenced wakes the lease keeper when
	// the store refused a fenced write.
	leased atomic.Bool
	epoch  atomic.Uint64
	fenced chan struct{}
	// incarnation tells this runner's worker IDs from those of earlier
	// runners on the same store (leftover pods, processes).
	incarnation string

	healthMu sync.Mutex
	leaseErr error
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
	// Per tier: workers that ended before their first poll in a row, and
	// when the next may start (exponential backoff, so a worker that cannot
	// start is not restarted in a hot loop).
	startFails []int
	startAfter []time.Time
	// taskEst estimates the run time of the job's tasks, per tier.
	taskEst []sched.Estimate
}

type worker struct {
	id       string
	secret   []byte // its credential (WorkerSpec.Secret)
	job      string
	tier     int32
	started  time.Time
	lastSeen time.Time // zero until the first poll
	idleFrom time.Time
	running  map[int32]int32 // task → attempt
	// handed is the poll generation that handed out each running attempt;
	// gen counts the worker's full polls (see reconcileWorker).
	handed map[int32]uint64
	gen    uint64
	// slots is how many attempts the worker runs at once, as its last
	// full poll said (its free capacity plus what it runs).
	slots   int
	cancels []attemptKill
	exiting bool
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

// notify wakes a held poll of the worker. Call with r.mu held.
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
	if cfg.Holder == "" {
		cfg.Holder = newHolderID()
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 10 * time.Second
	}
	if cfg.HalfLife <= 0 {
		cfg.HalfLife = DefaultHalfLife
	}
	r := &Runner{
		cfg:         cfg,
		log:         cfg.Logger,
		now:         cfg.Clock,
		com:         newCommitter(cfg.Store, cfg.Logger),
		wakeCh:      make(chan struct{}, 1),
		jobs:        map[string]*jobRun{},
		workers:     map[string]*worker{},
		est:         map[string]*nsEstimates{},
		done:        make(chan struct{}),
		fenced:      make(chan struct{}, 1),
		incarnation: newHolderID()[:6],
	}
	r.com.now, r.com.fence, r.com.fenced, r.com.poisoned = cfg.Clock, r.fence, r.lostLease, r.poisonJob
	return r
}

// Start takes the store's runner lease (a *LeaseHeldError if another
// runner holds it), loads active jobs and runs the service until Stop or
// ctx ends. Losing the lease later does not stop it (see keepLease).
func (r *Runner) Start(ctx context.Context) error {
	if err := r.acquireLease(ctx); err != nil {
		return err
	}
	r.leased.Store(true)
	ctx, r.cancel = context.WithCancel(ctx)
	if err := r.scan(ctx); err != nil {
		r.cancel()
		return fmt.Errorf("load active jobs: %w", err)
	}
	r.wg.Add(3)
	go func() { defer r.wg.Done(); r.com.run(ctx) }()
	go func() { defer r.wg.Done(); r.loop(ctx) }()
	go func() { defer r.wg.Done(); r.keepLease(ctx) }()
	go func() { r.wg.Wait(); close(r.done) }()
	return nil
}

// Done is closed when the runner has stopped.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Stop stops the service and every worker it started. It is idempotent.
func (r *Runner) Stop() {
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.stopped = true
	ids := slices.Collect(maps.Keys(r.workers))
	r.mu.Unlock()
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	if r.cancel != nil && r.leased.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := r.cfg.Store.ReleaseLease(ctx, LeaseName, r.cfg.Holder); err != nil {
			r.log.Warn("release runner lease", "err", err)
		}
		cancel()
	}
	for _, id := range ids {
		if err := r.cfg.Backend.StopWorker(context.Background(), id); err != nil {
			r.log.Warn("stop worker", "worker", id, "err", err)
		}
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
		if !r.leased.Load() {
			continue // no dispatching without the lease
		}
		r.tick(ctx)
		r.reconcile(ctx)
	}
}

func (r *Runner) scanLogged(ctx context.Context) {
	if !r.leased.Load() {
		return
	}
	if err := r.scan(ctx); err != nil && ctx.Err() == nil {
		r.log.Error("scan store for jobs", "err", err)
	}
}

// scan loads jobs that became active and applies cancel requests.
func (r *Runner) scan(ctx context.Context) error {
	active, err := r.cfg.Store.ListActiveJobs(ctx)
	if err != nil {
		return err
	}
	for i := range active {
		j := &active[i]
		r.mu.Lock()
		jr, loaded := r.jobs[j.ID]
		r.mu.Unlock()
		if !loaded {
			if err := r.load(ctx, j); err != nil {
				r.log.Error("load job", "job", j.ID, "err", err)
				continue
			}
			continue
		}
		if j.CancelRequested {
			r.mu.Lock()
			if !jr.core.Done() {
				jr.core.Cancel(r.now())
				r.afterEvents(jr, nil)
			}
			r.mu.Unlock()
		}
	}
	cancels, err := r.cfg.Store.ListTaskCancels(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cancels {
		jr := r.jobs[c.JobID]
		if jr == nil || jr.done || int(c.Index) >= jr.tasks.len() || jr.core.State(c.Index).Terminal() {
			continue
		}
		jr.core.CancelTask(c.Index, r.now())
		r.afterEvents(jr, nil)
	}
	return nil
}

// load builds the in-memory state of a job from the store, recovering from a
// previous runner's crash: attempts that were running are lost and retried.
func (r *Runner) load(ctx context.Context, j *store.Job) error {
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
		page, err := r.cfg.Store.ListTasks(ctx, store.TaskFilter{JobID: j.ID, After: last, Limit: loadPage})
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
				special = append(special, store.Task{Index: t.Index, Key: t.Key, State: t.State, Attempts: t.Attempts, Tier: t.Tier, RunTier: t.RunTier})
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
	sc := r.cfg.Sched
	sc.Tiers = max(1, len(j.Tiers))
	core := sched.NewJob(g, cfgs, sc)

	for i, st := range states {
		if st != sched.Blocked || attempts[i] > 0 {
			core.Restore(int32(i), st, attempts[i], 0)
		}
	}
	// Attempts that were running when the previous runner stopped are lost.
	var lost []store.Attempt
	for i := range special {
		t := &special[i]
		if t.RunTier != t.Tier {
			if err := core.RestoreTier(t.Index, t.RunTier); err != nil {
				r.log.Warn("restore task tier", "job", j.ID, "task", t.Key, "err", err)
			}
		}
		if t.State.Terminal() || t.Attempts == 0 {
			continue
		}
		atts, err := r.cfg.Store.ListAttempts(ctx, j.ID, t.Index)
		if err != nil {
			return err
		}
		var failed int32
		for _, a := range atts {
			switch a.State {
			case store.AttemptFailed:
				failed++
			case store.AttemptRunning:
				a.State = store.AttemptLost
				a.Reason = "lost"
				a.Message = "the runner restarted while this attempt ran"
				a.FinishedAt = r.now()
				lost = append(lost, a)
			}
		}
		core.Restore(t.Index, stateOf(t.State), t.Attempts, failed)
	}
	now := r.now()
	jr := &jobRun{job: j, core: core, tasks: table, ready: make(chan struct{}), workers: make([][]string, sc.Tiers), lastUsed: now, dirty: true,
		startFails: make([]int, sc.Tiers), startAfter: make([]time.Time, sc.Tiers), taskEst: make([]sched.Estimate, sc.Tiers)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.jobs[j.ID]; ok {
		return nil
	}
	r.jobs[j.ID] = jr
	if j.State == store.JobPending {
		j.State = store.JobRunning
		j.StartedAt = now
	}
	core.Start(now)
	if j.CancelRequested {
		core.Cancel(now)
	}
	r.log.Info("job loaded", "job", j.ID, "tasks", table.len(), "lost_attempts", len(lost))
	r.afterEvents(jr, lost)
	return nil
}

// afterEvents drains the core's output for one job into the committer and
// the workers. extra attempts are written with the same batch. Call with
// r.mu held. It returns the channel closed when the changes are durable.
func (r *Runner) afterEvents(jr *jobRun, extra []store.Attempt) <-chan struct{} {
	return r.afterEventsCtx(jr, extra, nil)
}

// results carries what a taskhost reported, to fill exit codes and times.
type resultInfo struct {
	exit     int32
	reason   string
	started  time.Time
	finished time.Time
}

func (r *Runner) afterEventsCtx(jr *jobRun, extra []store.Attempt, info map[int32]resultInfo) <-chan struct{} {
	now := r.now()
	out := jr.core.Drain()
	var tasks []store.TaskUpdate
	wakeWorkers := false
	for _, tr := range out.Transitions {
		tt := jr.tasks
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
		switch {
		case tr.To == sched.Running:
			tt.started[tr.Task] = now.UnixNano()
			u.Reason = ""
		case tr.To == sched.Queued:
			wakeWorkers = true
		case tr.To.Terminal():
			u.FinishedAt = now
			if reported && !in.finished.IsZero() {
				u.FinishedAt = in.finished
			}
		}
		u.StartedAt = tt.startedAt(tr.Task)
		tasks = append(tasks, u)
	}
	for _, k := range out.Kills {
		r.killAttempt(jr, k.Task, k.Attempt)
	}
	if wakeWorkers {
		close(jr.ready)
		jr.ready = make(chan struct{})
	}
	var jobs []store.JobUpdate
	if len(tasks) > 0 || len(extra) > 0 || jr.dirty {
		jr.dirty = false
		if jr.core.Done() && !jr.done {
			jr.done = true
			jr.job.State = store.JobState(jr.core.Outcome())
			jr.job.FinishedAt = now
			r.log.Info("job finished", "job", jr.job.ID, "state", jr.job.State)
			close(jr.ready)
			jr.ready = make(chan struct{})
		}
		c := jr.core.Counts()
		jr.job.Counts = store.TaskCounts{
			Blocked: c[sched.Blocked], Queued: c[sched.Queued], Running: c[sched.Running],
			Succeeded: c[sched.Succeeded], Failed: c[sched.Failed],
			UpstreamFailed: c[sched.UpstreamFailed], Cancelled: c[sched.Cancelled],
		}
		jobs = append(jobs, store.JobUpdate{ID: jr.job.ID, State: jr.job.State, Counts: jr.job.Counts, StartedAt: jr.job.StartedAt, FinishedAt: jr.job.FinishedAt,
			WorkerSeconds: jr.job.WorkerSeconds, CostUSD: jr.job.CostUSD, Usage: jr.job.Usage})
	}
	if len(tasks) == 0 && len(extra) == 0 && len(jobs) == 0 {
		done := make(chan struct{})
		close(done)
		return done
	}
	return r.com.add(tasks, extra, jobs)
}

// killAttempt tells the worker running an attempt to kill it. Call with r.mu held.
func (r *Runner) killAttempt(jr *jobRun, task, attempt int32) {
	for _, ids := range jr.workers {
		for _, id := range ids {
			w := r.workers[id]
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
}

// tick releases retries and enforces timeouts, declares silent workers lost
// and forgets finished jobs.
func (r *Runner) tick(ctx context.Context) {
	now := r.now()
	var gone []string
	r.mu.Lock()
	for _, jr := range r.jobs {
		if w := jr.core.NextWake(); !w.IsZero() && !now.Before(w) {
			jr.core.Tick(now)
			r.afterEvents(jr, nil)
		}
	}
	for id, w := range r.workers {
		switch {
		case w.lastSeen.IsZero() && now.Sub(w.started) > r.cfg.StartTimeout:
			gone = append(gone, id)
		case !w.lastSeen.IsZero() && now.Sub(w.lastSeen) > r.cfg.WorkerTimeout:
			gone = append(gone, id)
		}
	}
	r.mu.Unlock()
	// Stop a silent worker before its attempts are declared lost and
	// retried: a frozen worker's tasks must be gone before they run again.
	for _, id := range gone {
		if err := r.cfg.Backend.StopWorker(ctx, id); err != nil {
			r.log.Warn("stop silent worker", "worker", id, "err", err)
		}
		r.WorkerGone(id, "stopped polling")
	}
	r.mu.Lock()
	for id, jr := range r.jobs {
		if jr.done && r.jobWorkers(jr) == 0 {
			delete(r.jobs, id)
		}
	}
	r.mu.Unlock()
}

func (r *Runner) jobWorkers(jr *jobRun) int {
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
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[id]
	if w == nil {
		return
	}
	r.removeWorker(w)
	jr := r.jobs[w.job]
	now := r.now()
	if jr != nil && w.lastSeen.IsZero() && !r.stopped {
		jr.startFails[w.tier]++
		wait := min(time.Second<<min(jr.startFails[w.tier]-1, 6), time.Minute)
		jr.startAfter[w.tier] = now.Add(wait)
		r.log.Error("worker ended before it polled; backing off", "worker", id, "job", w.job, "tier", w.tier, "why", why, "failures_in_a_row", jr.startFails[w.tier], "next_start_in", wait)
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
				r.account(jr, w, &a)
			}
			lost = append(lost, a)
		}
	}
	r.log.Warn("worker gone with tasks running", "worker", id, "why", why, "oom", oom, "attempts", len(lost))
	r.afterEvents(jr, lost)
}

// removeWorker forgets a worker that ended and adds its lifetime and cost
// to its job. Call with r.mu held.
func (r *Runner) removeWorker(w *worker) {
	delete(r.workers, w.id)
	jr := r.jobs[w.job]
	if jr == nil || int(w.tier) >= len(jr.workers) {
		return
	}
	jr.workers[w.tier] = slices.DeleteFunc(jr.workers[w.tier], func(s string) bool { return s == w.id })
	life := r.now().Sub(w.started).Seconds()
	if life <= 0 {
		return
	}
	jr.job.WorkerSeconds += life
	if ni, ok := r.cfg.Backend.(NodeInfoer); ok && int(w.tier) < len(jr.job.Tiers) {
		if node, ok := ni.WorkerNode(w.id); ok {
			jr.job.CostUSD += life / 3600 * node.PricePerHour * tierShare(jr.job.Tiers[w.tier], node)
		}
	}
	jr.dirty = true
	r.afterEvents(jr, nil)
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

// reconcile starts workers where worker reuse targeting wants more than a
// job's tier has (see target).
func (r *Runner) reconcile(ctx context.Context) {
	var starts []WorkerSpec
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	total := len(r.workers)
	jobs := slices.SortedFunc(maps.Values(r.jobs), func(a, b *jobRun) int {
		return a.job.CreatedAt.Compare(b.job.CreatedAt)
	})
	for _, jr := range jobs {
		if jr.done {
			continue
		}
		jobTotal := r.jobWorkers(jr)
		for tier := range jr.workers {
			t := int32(tier)
			if r.now().Before(jr.startAfter[tier]) {
				continue
			}
			want := r.target(jr, t, r.now())
			have := len(jr.workers[tier])
			for have < want && total < r.cfg.MaxWorkers && (jr.job.MaxWorkers <= 0 || jobTotal < int(jr.job.MaxWorkers)) {
				r.seq++
				id := fmt.Sprintf("%s-%d-%s%d", jr.job.ID, tier, r.incarnation, r.seq)
				now := r.now()
				secret := rand.Text() // 26 base32 characters: 130 random bits
				r.workers[id] = &worker{id: id, secret: []byte(secret), job: jr.job.ID, tier: t, started: now, idleFrom: now, running: map[int32]int32{}, handed: map[int32]uint64{}}
				jr.workers[tier] = append(jr.workers[tier], id)
				spec := WorkerSpec{ID: id, JobID: jr.job.ID, JobName: jr.job.Name, Namespace: jr.job.Namespace, Labels: jr.job.Labels,
					TierIndex: t, Template: jr.job.Worker, RunnerURL: r.cfg.RunnerURL, BlobURL: r.cfg.BlobURL, Secret: secret}
				if tier < len(jr.job.Tiers) {
					spec.Tier = jr.job.Tiers[tier]
				}
				starts = append(starts, spec)
				have++
				total++
				jobTotal++
			}
		}
	}
	r.mu.Unlock()
	for _, s := range starts {
		if err := r.cfg.Backend.StartWorker(ctx, s); err != nil {
			r.log.Error("start worker", "worker", s.ID, "job", s.JobID, "err", err)
			r.WorkerGone(s.ID, "failed to start: "+err.Error())
		}
	}
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
func (r *Runner) poisonJob(jobID string, why error) {
	r.mu.Lock()
	jr := r.jobs[jobID]
	if jr == nil {
		r.mu.Unlock()
		return
	}
	delete(r.jobs, jobID)
	var ids []string
	for _, tier := range jr.workers {
		for _, id := range tier {
			if w := r.workers[id]; w != nil {
				delete(r.workers, id)
				w.notify()
			}
			ids = append(ids, id)
		}
	}
	jr.done = true
	close(jr.ready)
	jr.ready = make(chan struct{})
	now := r.now()
	u := store.JobUpdate{ID: jobID, State: store.JobFailed, Counts: jr.job.Counts, StartedAt: jr.job.StartedAt, FinishedAt: now}
	r.mu.Unlock()
	r.log.Error("job failed: the store refuses its state changes", "job", jobID, "err", why)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.cfg.Store.Apply(ctx, &store.Batch{Fence: r.fence(), Jobs: []store.JobUpdate{u}}); err != nil {
		r.log.Error("mark the poisoned job failed", "job", jobID, "err", err)
	}
	for _, id := range ids {
		if err := r.cfg.Backend.StopWorker(ctx, id); err != nil {
			r.log.Warn("stop worker of a failed job", "worker", id, "err", err)
		}
	}
}
