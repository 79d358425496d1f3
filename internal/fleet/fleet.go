package fleet

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/haul-dev/haul/internal/sched"
)

// Defaults of Config, the same as the runner's.
const (
	DefaultIdleTimeout   = 3 * time.Second
	DefaultWorkerTimeout = 45 * time.Second
	DefaultStartTimeout  = 2 * time.Minute
	DefaultHalfLife      = 10 * time.Minute
)

// Start backoff: after n workers of a (job, tier) in a row ended before
// their first poll, the next start waits min(StartBackoffBase·2^(n-1),
// StartBackoffMax).
const (
	StartBackoffBase = time.Second
	StartBackoffMax  = time.Minute
)

// MaxTiers bounds Job.Tiers: a job with more tiers is refused as bad input.
const MaxTiers = 1 << 10

// Errors the events return, wrapped with the ID they concern.
var (
	ErrUnknownJob    = errors.New("unknown job")
	ErrUnknownWorker = errors.New("unknown worker")
	ErrJobExists     = errors.New("job already added")
	ErrWorkerExists  = errors.New("worker already known")
)

// Config configures a Fleet. A zero or negative duration takes its default.
type Config struct {
	// IdleTimeout is how long an idle worker waits for work before it may
	// be told to exit (default 3s). It is also the idle grace that reuse
	// targeting counts as the cost of a start.
	IdleTimeout time.Duration
	// WorkerTimeout is how long a worker that polled may go without
	// polling before it is declared lost (default 45s).
	WorkerTimeout time.Duration
	// StartTimeout is how long a started worker may take to poll for the
	// first time before it is declared lost (default 2m).
	StartTimeout time.Duration
	// HalfLife is how fast the estimates of task run time and worker
	// startup forget (default 10m); NamespaceHalfLife overrides it per
	// namespace (values <= 0 are ignored).
	HalfLife          time.Duration
	NamespaceHalfLife map[string]time.Duration
	// MaxWorkers is the runner's cap on workers across all its jobs, used
	// as the upper bound of every target (0: none). Starts are capped by
	// the slots passed to Step, not by this.
	MaxWorkers int
	// IDPrefix goes into the ID of every worker this Fleet starts:
	// "<job>-<tier>-<IDPrefix><n>", n counting from 1. Two Fleets that may
	// hold workers of the same job at the same time (a shard that left
	// this runner and came back) must have different prefixes, for
	// example the runner's incarnation and the shard lease's epoch.
	IDPrefix string
}

func (c Config) withDefaults() Config {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.WorkerTimeout <= 0 {
		c.WorkerTimeout = DefaultWorkerTimeout
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.HalfLife <= 0 {
		c.HalfLife = DefaultHalfLife
	}
	c.MaxWorkers = max(c.MaxWorkers, 0)
	return c
}

// Job describes a job whose workers the Fleet keeps.
type Job struct {
	ID        string
	Namespace string
	// Tiers is the number of worker tiers, at least 1.
	Tiers int
	// MaxWorkers caps the job's workers across its tiers, exiting ones
	// included; 0 means no cap of its own.
	MaxWorkers int
	// Created orders jobs for starts: the oldest job gets slots first
	// (ties broken by ID), after Priority: a job of higher priority gets
	// slots before any job of lower priority.
	Created  time.Time
	Priority int32
}

// Demand is what a (job, tier) has to run, read from the job's scheduling
// core (sched.Job Waiting, Ready, Running).
type Demand struct {
	// Waiting is the number of queued tasks, those in a retry backoff
	// included: while it is above 0 the tier is not done with workers.
	Waiting int
	// Ready is the number of queued tasks a worker could take now.
	Ready int
	// Running is the number of attempts running.
	Running int
	// Elapsed is how long the running attempts have run so far, summed
	// over them, as of the time passed with the demand. The Fleet ages it
	// by Running for every second after that.
	Elapsed time.Duration
}

// Adoption describes a worker the Fleet did not start, taken over from
// another runner: it polled this one with a valid credential.
type Adoption struct {
	ID   string
	Job  string
	Tier int32
	// Running is the number of attempts it runs.
	Running int
}

// State is a worker's state. A worker that ended or was lost is gone: the
// Fleet forgets it.
type State uint8

const (
	// Starting: asked for, has not polled yet.
	Starting State = iota
	// Live: polled, runs at least one attempt.
	Live
	// Idle: polled, runs nothing.
	Idle
	// Exiting: told to exit (Exit), not yet ended.
	Exiting
	// NumStates is the number of states.
	NumStates
)

var stateNames = [NumStates]string{"starting", "live", "idle", "exiting"}

func (s State) String() string {
	if s < NumStates {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", s)
}

// Worker is what the Fleet knows of one worker.
type Worker struct {
	ID    string
	Job   string
	Tier  int32
	State State
	// Started is when the Fleet started or adopted it.
	Started time.Time
	// LastPoll is its latest poll; zero before the first.
	LastPoll time.Time
	// IdleSince is when it last had nothing to run (meaningful when Idle).
	IdleSince time.Time
	// Running is the number of attempts it runs.
	Running int
}

// Gone is what Ended tells about a worker that ended.
type Gone struct {
	Job     string
	Tier    int32
	Started time.Time
	// Polled says whether it ever polled. When it did not, its start
	// counts as failed: Failures is then the (job, tier)'s failures in a
	// row and NextStart when its next worker may start.
	Polled    bool
	Failures  int
	NextStart time.Time
}

// Kind is what a decision asks the runner to do.
type Kind uint8

const (
	// Start: start worker ID for (Job, Tier). The Fleet counts it as
	// Starting at once; if the start fails, call Ended.
	Start Kind = iota
	// Stop: stop worker ID forcibly (it is silent). Always followed by a
	// Lost for the same worker.
	Stop
	// Exit: tell worker ID to exit: hand it nothing more, answer its next
	// poll at which it runs nothing with exit, then call Ended.
	Exit
	// Lost: worker ID is gone (it was stopped by the Stop just before);
	// the attempts it ran are lost. The Fleet has forgotten it already.
	Lost
)

var kindNames = [...]string{"start", "stop", "exit", "lost"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Decision is one thing the runner must do. Job and Tier are set for every
// kind; Why says why for Stop, Exit and Lost.
type Decision struct {
	Kind Kind
	ID   string
	Job  string
	Tier int32
	Why  string
}

func (d Decision) String() string {
	if d.Kind == Start {
		return fmt.Sprintf("start %s/%d %s", d.Job, d.Tier, d.ID)
	}
	return fmt.Sprintf("%s %s (%s)", d.Kind, d.ID, d.Why)
}

// Fleet holds the workers of one runner shard: every job's, every tier's.
// It is not safe for concurrent use; the shard serialises calls to it.
type Fleet struct {
	cfg Config

	jobs     []job // slab; free entries have id ""
	jobFree  []int32
	jobIndex map[string]int32
	order    []int32 // the jobs by (Created, ID)

	workers     []worker // slab; free entries have id ""
	workerFree  []int32
	workerIndex map[string]int32

	est map[string]nsEstimates // by namespace
	seq uint64

	now     time.Time // the latest time passed in
	stepped time.Time // the time of the last Step
	// due: an event since the last Step may let a Step decide something
	// at once. dirty: the cached wake must be computed again.
	due, dirty bool
	wake       time.Time

	out     []Decision
	starved []Starved
}

// Starved is a (job, tier) that wanted Want more workers in the last Step
// but got no slot for them (the runner's cap was used up).
type Starved struct {
	Job  string
	Tier int32
	Want int
}

// Starved returns the tiers the last Step left without the slots they
// wanted, in the order the Step looked at them. The slice is the Fleet's:
// it is valid until the next Step.
func (f *Fleet) Starved() []Starved { return f.starved }

type job struct {
	id         string
	ns         string
	created    time.Time
	priority   int32
	maxWorkers int
	ended      bool
	alive      int // workers in any state, exiting included
	tiers      []tier
}

type tier struct {
	workers  []int32 // slab indexes, in the order they were added
	demand   Demand
	demandAt time.Time
	// Workers that ended before their first poll, in a row, and when the
	// next may start.
	fails      int
	startAfter time.Time
	// heldUntil: placement refused a start; none until then.
	heldUntil time.Time
	task      sched.Estimate // run time of this tier's tasks
}

type worker struct {
	id       string
	job      int32
	tier     int32
	started  time.Time
	lastPoll time.Time
	idleFrom time.Time
	running  int
	polled   bool
	exiting  bool
	// retire is why the shell asked the worker to go (Retire), until the
	// Step that tells it to exit.
	retire string
}

// nsEstimates are one namespace's estimates of worker startup and task
// run time: the prior of its jobs that have no history of their own.
type nsEstimates struct {
	startup sched.Estimate
	task    sched.Estimate
}

// New returns an empty Fleet.
func New(cfg Config) *Fleet {
	return &Fleet{
		cfg:         cfg.withDefaults(),
		jobIndex:    map[string]int32{},
		workerIndex: map[string]int32{},
		est:         map[string]nsEstimates{},
	}
}

// Config returns the configuration in effect, defaults filled in.
func (f *Fleet) Config() Config { return f.cfg }

// see records the latest time passed in.
func (f *Fleet) see(now time.Time) {
	if now.After(f.now) {
		f.now = now
	}
}

// changed marks that a Step may have something to decide now.
func (f *Fleet) changed() { f.due, f.dirty = true, true }

func (f *Fleet) lookupJob(id string) (*job, error) {
	i, ok := f.jobIndex[id]
	if !ok {
		return nil, fmt.Errorf("job %q: %w", id, ErrUnknownJob)
	}
	return &f.jobs[i], nil
}

func (f *Fleet) lookupTier(id string, t int32) (*job, *tier, error) {
	j, err := f.lookupJob(id)
	if err != nil {
		return nil, nil, err
	}
	if t < 0 || int(t) >= len(j.tiers) {
		return nil, nil, fmt.Errorf("job %q has %d tiers, no tier %d", id, len(j.tiers), t)
	}
	return j, &j.tiers[t], nil
}

func (f *Fleet) lookupWorker(id string) (int32, *worker, error) {
	i, ok := f.workerIndex[id]
	if !ok {
		return 0, nil, fmt.Errorf("worker %q: %w", id, ErrUnknownWorker)
	}
	return i, &f.workers[i], nil
}

// less orders jobs for starts: highest priority first, then oldest, then
// by ID.
func (f *Fleet) less(a, b int32) int {
	ja, jb := &f.jobs[a], &f.jobs[b]
	return cmp.Or(cmp.Compare(jb.priority, ja.priority), ja.created.Compare(jb.created), cmp.Compare(ja.id, jb.id))
}

// AddJob adds a job with no workers and no demand yet.
func (f *Fleet) AddJob(j Job) error {
	switch {
	case j.ID == "":
		return errors.New("add job: empty ID")
	case j.Tiers < 1 || j.Tiers > MaxTiers:
		return fmt.Errorf("add job %q: %d tiers, want 1 to %d", j.ID, j.Tiers, MaxTiers)
	case j.MaxWorkers < 0:
		return fmt.Errorf("add job %q: max_workers %d is negative", j.ID, j.MaxWorkers)
	}
	if _, ok := f.jobIndex[j.ID]; ok {
		return fmt.Errorf("add job %q: %w", j.ID, ErrJobExists)
	}
	rec := job{id: j.ID, ns: j.Namespace, created: j.Created, priority: j.Priority, maxWorkers: j.MaxWorkers, tiers: make([]tier, j.Tiers)}
	var i int32
	if n := len(f.jobFree); n > 0 {
		i = f.jobFree[n-1]
		f.jobFree = f.jobFree[:n-1]
		f.jobs[i] = rec
	} else {
		i = int32(len(f.jobs))
		f.jobs = append(f.jobs, rec)
	}
	f.jobIndex[j.ID] = i
	at, _ := slices.BinarySearchFunc(f.order, i, f.less)
	f.order = slices.Insert(f.order, at, i)
	f.changed()
	return nil
}

// EndJob says a job ended (every task is terminal): the next Step tells
// each of its workers to exit. The Fleet forgets the job when its last
// worker is gone (at once if it has none).
func (f *Fleet) EndJob(id string) error {
	j, err := f.lookupJob(id)
	if err != nil {
		return fmt.Errorf("end job: %w", err)
	}
	if j.ended {
		return nil
	}
	j.ended = true
	f.forgetIfDone(f.jobIndex[id])
	f.changed()
	return nil
}

// forgetIfDone forgets job i if it ended and has no worker left.
func (f *Fleet) forgetIfDone(i int32) {
	j := &f.jobs[i]
	if !j.ended || j.alive > 0 {
		return
	}
	at, ok := slices.BinarySearchFunc(f.order, i, f.less)
	if ok {
		f.order = slices.Delete(f.order, at, at+1)
	}
	delete(f.jobIndex, j.id)
	f.jobs[i] = job{}
	f.jobFree = append(f.jobFree, i)
}

// SetDemand records what a (job, tier) has to run as of now. Call it
// whenever the job's scheduling core changed those counts.
func (f *Fleet) SetDemand(jobID string, t int32, d Demand, now time.Time) error {
	_, tr, err := f.lookupTier(jobID, t)
	if err != nil {
		return fmt.Errorf("set demand: %w", err)
	}
	if d.Waiting < 0 || d.Ready < 0 || d.Running < 0 || d.Elapsed < 0 {
		return fmt.Errorf("set demand of job %q tier %d: negative figure in %+v", jobID, t, d)
	}
	if d.Ready > d.Waiting {
		return fmt.Errorf("set demand of job %q tier %d: %d ready but only %d waiting", jobID, t, d.Ready, d.Waiting)
	}
	f.see(now)
	tr.demand, tr.demandAt = d, now
	f.changed()
	return nil
}

// ObserveTask records that an attempt of the (job, tier) ran for d (the
// runner reports those that succeeded or failed for a reason of their
// own, not OOM or lost). It feeds the job tier's estimate and its
// namespace's.
func (f *Fleet) ObserveTask(jobID string, t int32, d time.Duration, now time.Time) error {
	j, tr, err := f.lookupTier(jobID, t)
	if err != nil {
		return fmt.Errorf("observe task: %w", err)
	}
	if d < 0 {
		return fmt.Errorf("observe task of job %q tier %d: negative run time %v", jobID, t, d)
	}
	f.see(now)
	h := f.halfLife(j.ns)
	tr.task.Observe(d.Seconds(), now, h)
	e := f.est[j.ns]
	e.task.Observe(d.Seconds(), now, h)
	f.est[j.ns] = e
	f.changed()
	return nil
}

func (f *Fleet) halfLife(ns string) time.Duration {
	if d, ok := f.cfg.NamespaceHalfLife[ns]; ok && d > 0 {
		return d
	}
	return f.cfg.HalfLife
}

// Polled records a poll of a worker. Its first poll makes it Idle (until
// SetRunning says it runs something), resets its (job, tier)'s start
// backoff and teaches the namespace's startup estimate.
func (f *Fleet) Polled(id string, now time.Time) error {
	_, w, err := f.lookupWorker(id)
	if err != nil {
		return fmt.Errorf("polled: %w", err)
	}
	f.see(now)
	w.lastPoll = now
	f.dirty = true
	if w.polled {
		return nil
	}
	w.polled = true
	w.idleFrom = now
	j := &f.jobs[w.job]
	tr := &j.tiers[w.tier]
	tr.fails, tr.startAfter = 0, time.Time{}
	if d := now.Sub(w.started); d >= 0 {
		e := f.est[j.ns]
		e.startup.Observe(d.Seconds(), now, f.halfLife(j.ns))
		f.est[j.ns] = e
	}
	f.due = true
	return nil
}

// SetRunning records how many attempts a worker runs now. A worker whose
// count drops to 0 is idle from now.
func (f *Fleet) SetRunning(id string, n int, now time.Time) error {
	_, w, err := f.lookupWorker(id)
	if err != nil {
		return fmt.Errorf("set running: %w", err)
	}
	if n < 0 {
		return fmt.Errorf("set running of worker %q: negative count %d", id, n)
	}
	if !w.polled {
		return fmt.Errorf("set running of worker %q: it has not polled yet", id)
	}
	f.see(now)
	if n == 0 && w.running > 0 {
		w.idleFrom = now
		f.dirty = true
	}
	w.running = n
	return nil
}

// Adopt adds a worker another runner started, as polled now: Live when it
// runs something, else Idle. Caps do not refuse it (it exists already and
// may run attempts); while its tier has more workers than its target, no
// worker starts there and idle ones retire.
func (f *Fleet) Adopt(a Adoption, now time.Time) error {
	if a.ID == "" {
		return errors.New("adopt: empty worker ID")
	}
	if a.Running < 0 {
		return fmt.Errorf("adopt worker %q: negative running count %d", a.ID, a.Running)
	}
	if _, ok := f.workerIndex[a.ID]; ok {
		return fmt.Errorf("adopt: worker %q: %w", a.ID, ErrWorkerExists)
	}
	if _, _, err := f.lookupTier(a.Job, a.Tier); err != nil {
		return fmt.Errorf("adopt worker %q: %w", a.ID, err)
	}
	f.see(now)
	f.add(worker{id: a.ID, job: f.jobIndex[a.Job], tier: a.Tier, started: now, lastPoll: now, idleFrom: now, running: a.Running, polled: true})
	f.changed()
	return nil
}

// add puts a worker in the slab and its tier.
func (f *Fleet) add(w worker) int32 {
	var i int32
	if n := len(f.workerFree); n > 0 {
		i = f.workerFree[n-1]
		f.workerFree = f.workerFree[:n-1]
		f.workers[i] = w
	} else {
		i = int32(len(f.workers))
		f.workers = append(f.workers, w)
	}
	f.workerIndex[w.id] = i
	j := &f.jobs[w.job]
	j.alive++
	j.tiers[w.tier].workers = append(j.tiers[w.tier].workers, i)
	return i
}

// remove forgets worker i; a start that never polled counts as failed
// unless refused is set (placement refused it: no start was tried). It
// returns what Ended reports.
func (f *Fleet) remove(i int32, now time.Time, refused bool) Gone {
	w := f.workers[i]
	j := &f.jobs[w.job]
	tr := &j.tiers[w.tier]
	g := Gone{Job: j.id, Tier: w.tier, Started: w.started, Polled: w.polled}
	if !w.polled && !refused {
		tr.fails++
		tr.startAfter = now.Add(startBackoff(tr.fails))
		g.Failures, g.NextStart = tr.fails, tr.startAfter
	}
	if k := slices.Index(tr.workers, i); k >= 0 {
		tr.workers = slices.Delete(tr.workers, k, k+1)
	}
	j.alive--
	delete(f.workerIndex, w.id)
	f.workers[i] = worker{}
	f.workerFree = append(f.workerFree, i)
	f.forgetIfDone(w.job)
	f.changed()
	return g
}

// startBackoff is the wait before the next start after n failed starts in
// a row: min(StartBackoffBase·2^(n-1), StartBackoffMax).
func startBackoff(n int) time.Duration {
	if n < 1 {
		return 0
	}
	return min(StartBackoffBase<<min(n-1, 16), StartBackoffMax)
}

// Ended says a worker ended: its process exited, its pod is gone, its
// start failed, or the runner answered its poll with exit. The Fleet
// forgets it; known is false for a worker it does not know (one already
// forgotten, for example after a Lost). A worker that never polled counts
// as a failed start of its (job, tier).
func (f *Fleet) Ended(id string, now time.Time) (g Gone, known bool) {
	i, ok := f.workerIndex[id]
	if !ok {
		return Gone{}, false
	}
	f.see(now)
	return f.remove(i, now, false), true
}

// Refused says placement refused the start of worker id (a quota, a full
// or disabled cluster): the Fleet forgets it without counting a failed
// start, and its (job, tier) starts no worker before until. It fails for
// a worker that is not starting.
func (f *Fleet) Refused(id string, until, now time.Time) error {
	i, w, err := f.lookupWorker(id)
	if err != nil {
		return fmt.Errorf("refused: %w", err)
	}
	if w.polled || w.exiting {
		return fmt.Errorf("refused: worker %q is %s, not starting", id, w.state())
	}
	f.see(now)
	tr := &f.jobs[w.job].tiers[w.tier]
	if until.After(tr.heldUntil) {
		tr.heldUntil = until
	}
	f.remove(i, now, true)
	return nil
}

// Retire asks that a worker go: the next Step tells it to exit (Exit with
// why), so that it finishes what it runs and takes nothing more; for
// example when the capacity it borrowed is wanted back or its cluster
// drains. Retiring a worker told to exit already does nothing.
func (f *Fleet) Retire(id, why string, now time.Time) error {
	_, w, err := f.lookupWorker(id)
	if err != nil {
		return fmt.Errorf("retire: %w", err)
	}
	if w.exiting || w.retire != "" {
		return nil
	}
	if why == "" {
		why = "retired"
	}
	f.see(now)
	w.retire = why
	f.changed()
	return nil
}

// TierStatus is what the Fleet knows of a (job, tier)'s workers, for
// explaining why its tasks wait.
type TierStatus struct {
	// Target is the tier's worker target now; Active its workers not
	// exiting; Starting those of them that have not polled, the oldest
	// asked for at StartingSince.
	Target, Active, Starting int
	StartingSince            time.Time
	// JobWorkers is the job's workers in all tiers and states; MaxWorkers
	// the job's cap (0: none).
	JobWorkers, MaxWorkers int
	// BackoffUntil: after failed starts, no start before then. HeldUntil:
	// placement refused a start, none before then. Zero when past.
	BackoffUntil, HeldUntil time.Time
}

// TierStatus returns what the Fleet knows of a (job, tier) at now.
func (f *Fleet) TierStatus(jobID string, t int32, now time.Time) (TierStatus, error) {
	j, tr, err := f.lookupTier(jobID, t)
	if err != nil {
		return TierStatus{}, fmt.Errorf("tier status: %w", err)
	}
	st := TierStatus{Active: f.active(tr), JobWorkers: j.alive, MaxWorkers: j.maxWorkers}
	st.Target = f.target(j, t, now, st.Active)
	for _, i := range tr.workers {
		if w := &f.workers[i]; !w.polled && !w.exiting {
			st.Starting++
			if st.StartingSince.IsZero() || w.started.Before(st.StartingSince) {
				st.StartingSince = w.started
			}
		}
	}
	if now.Before(tr.startAfter) {
		st.BackoffUntil = tr.startAfter
	}
	if now.Before(tr.heldUntil) {
		st.HeldUntil = tr.heldUntil
	}
	return st, nil
}

// Worker returns what the Fleet knows of a worker; false if it does not
// know it.
func (f *Fleet) Worker(id string) (Worker, bool) {
	i, ok := f.workerIndex[id]
	if !ok {
		return Worker{}, false
	}
	w := &f.workers[i]
	return Worker{ID: w.id, Job: f.jobs[w.job].id, Tier: w.tier, State: w.state(), Started: w.started,
		LastPoll: w.lastPoll, IdleSince: w.idleFrom, Running: w.running}, true
}

func (w *worker) state() State {
	switch {
	case w.exiting:
		return Exiting
	case !w.polled:
		return Starting
	case w.running > 0:
		return Live
	}
	return Idle
}

// Counts returns the number of workers in each state.
func (f *Fleet) Counts() [NumStates]int {
	var c [NumStates]int
	for i := range f.workers {
		if w := &f.workers[i]; w.id != "" {
			c[w.state()]++
		}
	}
	return c
}

// JobWorkers returns the number of workers of a job, exiting ones
// included, and whether the Fleet still knows the job (it forgets an
// ended job when its last worker is gone).
func (f *Fleet) JobWorkers(id string) (n int, known bool) {
	i, ok := f.jobIndex[id]
	if !ok {
		return 0, false
	}
	return f.jobs[i].alive, true
}

// Len returns the number of jobs the Fleet holds.
func (f *Fleet) Len() int { return len(f.order) }
