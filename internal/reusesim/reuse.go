package reusesim

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/haul-dev/haul/internal/sched"
)

// Strategy is a way of deciding how many workers a job has.
type Strategy string

// The strategies Compare runs.
const (
	// Reuse is worker reuse targeting: every tick the target is
	// sched.TargetWorkers, from estimates of task run time and worker
	// startup learned during the run (they start unknown, as for a
	// namespace's first job); workers idle for IdleGrace retire.
	Reuse Strategy = "reuse"
	// ReuseWarm is Reuse with the estimates already learned, as for a
	// later job of a namespace that ran this kind of job before: they start
	// at the workload's mean task time and mean startup.
	ReuseWarm Strategy = "reuse-warm"
	// OnePerTask starts a fresh worker for each task, which exits when its
	// task ends; at most MaxWorkers are alive.
	OnePerTask Strategy = "one-per-task"
	// Spark is Spark-style dynamic allocation (sched.SparkTarget): a worker
	// for every queued and running task up to MaxWorkers; workers idle for
	// IdleGrace retire.
	Spark Strategy = "spark"
)

// Strategies returns every strategy, in the order Compare reports them.
func Strategies() []Strategy { return []Strategy{OnePerTask, Spark, Reuse, ReuseWarm} }

// Workload is one job of independent tasks on one tier, and the
// parameters of the simulation.
type Workload struct {
	Name string `json:"name"`
	// Tasks holds the run time of every task, in seconds, in queue order.
	Tasks []float64 `json:"-"`
	// Startup is the mean worker startup latency in seconds; each worker's
	// is drawn uniformly from Startup·(1±StartupJitter).
	Startup       float64 `json:"startup_seconds"`
	StartupJitter float64 `json:"startup_jitter"`
	// MaxWorkers is the most workers alive at once (the job's quota).
	MaxWorkers int `json:"max_workers"`
	// IdleGrace is how long, in seconds, an idle worker waits before it
	// exits (Reuse, ReuseWarm and Spark).
	IdleGrace float64 `json:"idle_grace_seconds"`
	// Tick is the interval, in seconds, at which the runner revises the
	// number of workers (every strategy).
	Tick float64 `json:"tick_seconds"`
	// HalfLife is the estimates' half-life (Reuse, ReuseWarm).
	HalfLife time.Duration `json:"half_life"`
}

// Defaults of the named workloads.
const (
	DefaultTasks      = 2000
	DefaultMaxWorkers = 100
	DefaultStartup    = 30.0 // seconds
	DefaultIdleGrace  = 10.0 // seconds
	DefaultTick       = 1.0  // seconds
	DefaultHalfLife   = 10 * time.Minute
	jitter            = 0.1 // ±10% on task run times and startups
)

// Workloads returns the names NewWorkload knows.
func Workloads() []string { return []string{"short", "long", "mix"} }

// NewWorkload returns a named workload of DefaultTasks tasks on at most
// DefaultMaxWorkers workers with a DefaultStartup-second startup, each run
// time and startup jittered by ±10%:
//
//	short  1 s tasks
//	long   10 min tasks
//	mix    90% 1 s and 10% 10 min tasks, shuffled
//
// The seed draws the jitter and the shuffle.
func NewWorkload(name string, seed int64) (Workload, error) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x7a5c))
	tasks := make([]float64, DefaultTasks)
	base := func(i int) float64 { return 1 }
	switch name {
	case "short":
	case "long":
		base = func(int) float64 { return 600 }
	case "mix":
		long := DefaultTasks / 10
		base = func(i int) float64 {
			if i < long {
				return 600
			}
			return 1
		}
	default:
		return Workload{}, fmt.Errorf("workload %q: want one of short, long, mix", name)
	}
	for i := range tasks {
		tasks[i] = base(i) * (1 + jitter*(2*rng.Float64()-1))
	}
	rng.Shuffle(len(tasks), func(i, j int) { tasks[i], tasks[j] = tasks[j], tasks[i] })
	return Workload{
		Name: name, Tasks: tasks,
		Startup: DefaultStartup, StartupJitter: jitter,
		MaxWorkers: DefaultMaxWorkers, IdleGrace: DefaultIdleGrace,
		Tick: DefaultTick, HalfLife: DefaultHalfLife,
	}, nil
}

// Validate reports what is wrong with w, or nil.
func (w Workload) Validate() error {
	var errs []error
	if len(w.Tasks) == 0 {
		errs = append(errs, errors.New("tasks: none"))
	}
	for i, d := range w.Tasks {
		if !(d > 0) || math.IsInf(d, 0) {
			errs = append(errs, fmt.Errorf("tasks[%d]: run time %v, want a positive number of seconds", i, d))
			break
		}
	}
	if !(w.Startup >= 0) || math.IsInf(w.Startup, 0) {
		errs = append(errs, fmt.Errorf("startup: %v, want >= 0 seconds", w.Startup))
	}
	if !(w.StartupJitter >= 0 && w.StartupJitter <= 1) {
		errs = append(errs, fmt.Errorf("startup jitter: %v, want 0 to 1", w.StartupJitter))
	}
	if w.MaxWorkers < 1 {
		errs = append(errs, fmt.Errorf("max workers: %d, want at least 1", w.MaxWorkers))
	}
	if !(w.IdleGrace >= 0) || math.IsInf(w.IdleGrace, 0) {
		errs = append(errs, fmt.Errorf("idle grace: %v, want >= 0 seconds", w.IdleGrace))
	}
	if !(w.Tick > 0) || math.IsInf(w.Tick, 0) {
		errs = append(errs, fmt.Errorf("tick: %v, want a positive number of seconds", w.Tick))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("workload %q: %w", w.Name, err)
	}
	return nil
}

// Result is what one strategy cost on one workload.
type Result struct {
	Workload   string   `json:"workload"`
	Strategy   Strategy `json:"strategy"`
	Tasks      int      `json:"tasks"`
	MaxWorkers int      `json:"max_workers"`
	// Makespan is when the last task ended, in seconds from the submit.
	Makespan float64 `json:"makespan_seconds"`
	// WorkerSeconds sums every worker's lifetime, from its creation to its
	// exit: startup, tasks and idle time.
	WorkerSeconds float64 `json:"worker_seconds"`
	// BusySeconds sums the tasks' run times (the same for every strategy).
	BusySeconds float64 `json:"busy_seconds"`
	// Workers is how many workers were started.
	Workers        int     `json:"workers"`
	TasksPerWorker float64 `json:"tasks_per_worker"`
	// PeakWorkers is the most workers alive at once.
	PeakWorkers int `json:"peak_workers"`
	// Utilization is BusySeconds/WorkerSeconds: the share of the workers'
	// time spent running tasks.
	Utilization float64 `json:"utilization"`
}

// Compare runs every strategy on the named workload drawn from seed and
// returns their results in the order of Strategies.
func Compare(workload string, seed int64) ([]Result, error) {
	w, err := NewWorkload(workload, seed)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, s := range Strategies() {
		r, err := Run(w, s, seed)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Run simulates the workload under the strategy. The seed draws the
// workers' startup latencies: the n-th worker started takes as long to
// start under every strategy.
func Run(w Workload, s Strategy, seed int64) (Result, error) {
	r, err := simulate(w, s, seed)
	if err != nil {
		return Result{}, err
	}
	return r.result, nil
}

// Worker states.
const (
	starting uint8 = iota
	idle
	busy
	gone
)

type worker struct {
	created float64
	state   uint8
	task    int32  // the task it runs (busy), or is bound to (OnePerTask, starting); -1 if none
	idleGen uint32 // counts the worker's idle spells, to match its retire event
}

// Event kinds, in the order they are handled at the same instant: a worker
// that becomes ready or frees up takes work before an idle worker retires,
// and the tick that revises the target sees all of it.
const (
	evReady uint8 = iota
	evFinish
	evRetire
	evTick
)

type event struct {
	at     float64
	kind   uint8
	worker int32
	gen    uint32
	seq    uint64
}

type events []event

func (q events) Len() int      { return len(q) }
func (q events) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q events) Less(i, j int) bool {
	a, b := &q[i], &q[j]
	if a.at != b.at {
		return a.at < b.at
	}
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	return a.seq < b.seq
}
func (q *events) Push(x any) { *q = append(*q, x.(event)) }
func (q *events) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// sim is one simulation in progress; tests read its bookkeeping.
type sim struct {
	w        Workload
	strategy Strategy
	rng      *rand.Rand
	q        events
	seq      uint64
	now      float64

	workers []worker
	queue   []int32 // FIFO of tasks waiting for a worker
	head    int
	runs    []int32   // attempts started per task
	started []float64 // when each task's attempt started

	live, running, done int
	runningStart        float64 // sum of the running attempts' start times
	taskEst, startEst   sched.Estimate

	result Result
}

// epoch anchors the estimates' clock; only differences matter.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func (r *sim) clock() time.Time {
	return epoch.Add(time.Duration(r.now * float64(time.Second)))
}

func (r *sim) push(at float64, kind uint8, w int32, gen uint32) {
	r.seq++
	heap.Push(&r.q, event{at: at, kind: kind, worker: w, gen: gen, seq: r.seq})
}

func simulate(w Workload, s Strategy, seed int64) (*sim, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	if !slices.Contains(Strategies(), s) {
		return nil, fmt.Errorf("strategy %q: want one of one-per-task, spark, reuse, reuse-warm", s)
	}
	n := len(w.Tasks)
	r := &sim{
		w: w, strategy: s,
		rng:     rand.New(rand.NewPCG(uint64(seed), 0x57a7)),
		queue:   make([]int32, n),
		runs:    make([]int32, n),
		started: make([]float64, n),
		result:  Result{Workload: w.Name, Strategy: s, Tasks: n, MaxWorkers: w.MaxWorkers},
	}
	total := 0.0
	for i, d := range w.Tasks {
		r.queue[i] = int32(i)
		total += d
	}
	r.result.BusySeconds = total
	if s == ReuseWarm {
		r.taskEst.Observe(total/float64(n), r.clock(), w.HalfLife)
		r.startEst.Observe(w.Startup, r.clock(), w.HalfLife)
	}
	// A bound no strategy can reach unless the simulation is broken: every
	// task run alone, each on a fresh worker, one tick apart.
	limit := total + float64(n+1)*(w.Startup*(1+w.StartupJitter)+w.IdleGrace+2*w.Tick)
	r.push(0, evTick, -1, 0)
	for r.q.Len() > 0 {
		e := heap.Pop(&r.q).(event)
		if e.at > limit {
			return nil, fmt.Errorf("simulation of %s/%s ran past %.0f s with %d of %d tasks done", w.Name, s, limit, r.done, n)
		}
		r.now = e.at
		switch e.kind {
		case evReady:
			r.ready(e.worker)
		case evFinish:
			r.finish(e.worker)
		case evRetire:
			if wk := &r.workers[e.worker]; wk.state == idle && wk.idleGen == e.gen {
				r.exit(e.worker)
			}
		case evTick:
			if r.done < n {
				r.tick()
				r.push(r.w.Tick*math.Round(r.now/r.w.Tick+1), evTick, -1, 0)
			}
		}
	}
	if r.done != n || r.live != 0 {
		return nil, fmt.Errorf("simulation of %s/%s ended with %d of %d tasks done and %d workers alive", w.Name, s, r.done, n, r.live)
	}
	r.result.Workers = len(r.workers)
	r.result.TasksPerWorker = float64(n) / float64(len(r.workers))
	r.result.Utilization = r.result.BusySeconds / r.result.WorkerSeconds
	return r, nil
}

// tick revises the number of workers, as the runner does every tick.
func (r *sim) tick() {
	switch r.strategy {
	case OnePerTask:
		for r.live < r.w.MaxWorkers && r.head < len(r.queue) {
			t := r.queue[r.head]
			r.head++
			r.start(t)
		}
	case Spark, Reuse, ReuseWarm:
		in := sched.TargetInput{
			Queued:         len(r.queue) - r.head,
			Running:        r.running,
			RunningElapsed: max(float64(r.running)*r.now-r.runningStart, 0),
			IdleGrace:      r.w.IdleGrace,
			Max:            r.w.MaxWorkers,
		}
		in.TaskSeconds, _ = r.taskEst.Value()
		in.StartupSeconds, _ = r.startEst.Value()
		target := sched.SparkTarget(in)
		if r.strategy != Spark {
			target = sched.TargetWorkers(in)
		}
		for r.live < target {
			r.start(-1)
		}
	}
}

// start creates a worker (bound to task t under OnePerTask).
func (r *sim) start(t int32) {
	id := int32(len(r.workers))
	r.workers = append(r.workers, worker{created: r.now, state: starting, task: t})
	r.live++
	r.result.PeakWorkers = max(r.result.PeakWorkers, r.live)
	startup := r.w.Startup * (1 + r.w.StartupJitter*(2*r.rng.Float64()-1))
	r.push(r.now+startup, evReady, id, 0)
}

func (r *sim) ready(id int32) {
	wk := &r.workers[id]
	r.startEst.Observe(r.now-wk.created, r.clock(), r.w.HalfLife)
	if wk.task >= 0 {
		r.runTask(id, wk.task)
		return
	}
	r.takeWork(id)
}

// takeWork gives the worker the oldest queued task, or makes it idle.
func (r *sim) takeWork(id int32) {
	if r.head < len(r.queue) {
		t := r.queue[r.head]
		r.head++
		r.runTask(id, t)
		return
	}
	wk := &r.workers[id]
	wk.state, wk.task = idle, -1
	wk.idleGen++
	r.push(r.now+r.w.IdleGrace, evRetire, id, wk.idleGen)
}

func (r *sim) runTask(id, t int32) {
	wk := &r.workers[id]
	wk.state, wk.task = busy, t
	r.runs[t]++
	r.started[t] = r.now
	r.running++
	r.runningStart += r.now
	r.push(r.now+r.w.Tasks[t], evFinish, id, 0)
}

func (r *sim) finish(id int32) {
	wk := &r.workers[id]
	t := wk.task
	r.running--
	r.runningStart -= r.started[t]
	if r.running == 0 {
		r.runningStart = 0 // no rounding residue
	}
	r.done++
	r.result.Makespan = max(r.result.Makespan, r.now)
	r.taskEst.Observe(r.now-r.started[t], r.clock(), r.w.HalfLife)
	if r.strategy == OnePerTask {
		r.exit(id)
		return
	}
	r.takeWork(id)
}

func (r *sim) exit(id int32) {
	wk := &r.workers[id]
	wk.state, wk.task = gone, -1
	r.live--
	r.result.WorkerSeconds += r.now - wk.created
}
