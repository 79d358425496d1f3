package fleet

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/sched"
)

// TestRandomRuns drives a Fleet and a model (the rules of doc.go written
// the plain way: maps, a sort per Step, no slabs, no caches) through random
// event sequences (jobs added and ended, demands, task observations, polls,
// running counts, ends, adoptions, steps at random times, at NextWake and
// just before it) and checks after every call that both agree: the errors,
// what Ended reports, every Step's decisions in order, and every worker's
// state. It also checks, without the model, that
//
//   - no Step starts more workers than its slots, nor makes a job exceed
//     its max_workers, and without adoptions the runner's cap is never
//     exceeded;
//   - no Step decides two things for one worker, except Stop directly
//     followed by Lost; nothing is decided for a worker after its Lost; a
//     worker gets at most one Exit; Start names a new ID;
//   - NextWake is never later than the earliest liveness deadline, idle
//     grace end or backoff end, and a Step before NextWake decides nothing.
func TestRandomRuns(t *testing.T) {
	t.Parallel()
	runs := 300
	if testing.Short() {
		runs = 50
	}
	var st runStats
	for seed := range uint64(runs) {
		if err := randomRun(seed, &st); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	t.Logf("%d runs: %+v", runs, st)
	if st.Starts == 0 || st.Lost == 0 || st.Exits == 0 || st.Quiet == 0 || st.Adopted == 0 || st.Backoffs == 0 {
		t.Errorf("the runs did not exercise every rule: %+v", st)
	}
}

type runStats struct {
	Steps, Starts, Exits, Lost, Adopted, Backoffs, Quiet int
}

// mWorker, mTier and mJob are the model's state.
type mWorker struct {
	id, job                     string
	tier                        int32
	seq                         int // order of addition
	started, lastPoll, idleFrom time.Time
	running                     int
	polled, exiting             bool
}

type mTier struct {
	demand     Demand
	at         time.Time
	fails      int
	startAfter time.Time
	task       sched.Estimate
}

type mJob struct {
	Job
	ended bool
	tiers []mTier
}

type model struct {
	cfg     Config
	jobs    map[string]*mJob
	workers map[string]*mWorker
	startup map[string]*sched.Estimate // by namespace
	nsTask  map[string]*sched.Estimate
	seq     int // worker IDs
	added   int // order of addition
}

func newModel(cfg Config) *model {
	return &model{cfg: cfg.withDefaults(), jobs: map[string]*mJob{}, workers: map[string]*mWorker{},
		startup: map[string]*sched.Estimate{}, nsTask: map[string]*sched.Estimate{}}
}

func (m *model) est(tab map[string]*sched.Estimate, ns string) *sched.Estimate {
	if tab[ns] == nil {
		tab[ns] = &sched.Estimate{}
	}
	return tab[ns]
}

func (m *model) half(ns string) time.Duration {
	if d := m.cfg.NamespaceHalfLife[ns]; d > 0 {
		return d
	}
	return m.cfg.HalfLife
}

// jobWorkers returns a job's workers by tier, then order of addition.
func (m *model) jobWorkers(job string) []*mWorker {
	var ws []*mWorker
	for _, w := range m.workers {
		if w.job == job {
			ws = append(ws, w)
		}
	}
	slices.SortFunc(ws, func(a, b *mWorker) int { return cmp.Or(cmp.Compare(a.tier, b.tier), cmp.Compare(a.seq, b.seq)) })
	return ws
}

func (m *model) target(j *mJob, t int32, now time.Time, live int) int {
	tr := &j.tiers[t]
	in := sched.TargetInput{Queued: tr.demand.Ready, Running: tr.demand.Running, Live: live,
		RunningElapsed: tr.demand.Elapsed.Seconds(), IdleGrace: m.cfg.IdleTimeout.Seconds(), Max: 1 << 31}
	if d := now.Sub(tr.at); d > 0 {
		in.RunningElapsed += float64(tr.demand.Running) * d.Seconds()
	}
	if m.cfg.MaxWorkers > 0 {
		in.Max = m.cfg.MaxWorkers
	}
	if j.MaxWorkers > 0 {
		in.Max = min(in.Max, j.MaxWorkers)
	}
	if v, ok := tr.task.Value(); ok {
		in.TaskSeconds = v
	} else if v, ok := m.est(m.nsTask, j.Namespace).Value(); ok {
		in.TaskSeconds = v
	}
	in.StartupSeconds, _ = m.est(m.startup, j.Namespace).Value()
	return sched.TargetWorkers(in)
}

func (m *model) remove(w *mWorker, now time.Time) Gone {
	j := m.jobs[w.job]
	g := Gone{Job: w.job, Tier: w.tier, Started: w.started, Polled: w.polled}
	if !w.polled {
		tr := &j.tiers[w.tier]
		tr.fails++
		wait := StartBackoffMax
		if tr.fails <= 7 {
			wait = min(wait, StartBackoffBase*time.Duration(1<<(tr.fails-1)))
		}
		tr.startAfter = now.Add(wait)
		g.Failures, g.NextStart = tr.fails, tr.startAfter
	}
	delete(m.workers, w.id)
	if j.ended && len(m.jobWorkers(j.ID)) == 0 {
		delete(m.jobs, j.ID)
	}
	return g
}

func (m *model) step(now time.Time, slots int) []Decision {
	var out []Decision
	jobs := make([]*mJob, 0, len(m.jobs))
	for _, j := range m.jobs {
		jobs = append(jobs, j)
	}
	slices.SortFunc(jobs, func(a, b *mJob) int { return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID)) })
	for _, j := range jobs {
		for _, w := range m.jobWorkers(j.ID) {
			dl, why := w.lastPoll.Add(m.cfg.WorkerTimeout), fmt.Sprintf("no poll for %v", m.cfg.WorkerTimeout)
			if !w.polled {
				dl, why = w.started.Add(m.cfg.StartTimeout), fmt.Sprintf("no first poll within %v of its start", m.cfg.StartTimeout)
			}
			if !now.Before(dl) {
				out = append(out, Decision{Stop, w.id, j.ID, w.tier, why}, Decision{Lost, w.id, j.ID, w.tier, why})
				m.remove(w, now)
				slots++
			}
		}
	}
	for _, j := range jobs {
		if m.jobs[j.ID] == nil {
			continue
		}
		ws := m.jobWorkers(j.ID)
		if j.ended {
			for _, w := range ws {
				if !w.exiting {
					w.exiting = true
					out = append(out, Decision{Exit, w.id, j.ID, w.tier, "job ended"})
				}
			}
			continue
		}
		for t := range j.tiers {
			tr := &j.tiers[t]
			count := 0
			for _, w := range ws {
				if w.tier == int32(t) && !w.exiting {
					count++
				}
			}
			target := m.target(j, int32(t), now, count)
			for _, w := range ws {
				if w.tier != int32(t) || !w.polled || w.exiting || w.running > 0 || now.Before(w.idleFrom.Add(m.cfg.IdleTimeout)) {
					continue
				}
				why := fmt.Sprintf("idle past its %v grace, nothing waiting", m.cfg.IdleTimeout)
				if tr.demand.Waiting > 0 {
					if count <= max(1, target) {
						continue
					}
					why = fmt.Sprintf("idle past its %v grace, %d workers for a target of %d", m.cfg.IdleTimeout, count, target)
				}
				w.exiting = true
				count--
				out = append(out, Decision{Exit, w.id, j.ID, int32(t), why})
			}
			if now.Before(tr.startAfter) {
				continue
			}
			want := m.target(j, int32(t), now, count)
			for ; count < want && slots > 0 && (j.MaxWorkers == 0 || len(m.jobWorkers(j.ID)) < j.MaxWorkers); count++ {
				var id string
				for {
					m.seq++
					id = fmt.Sprintf("%s-%d-%s%d", j.ID, t, m.cfg.IDPrefix, m.seq)
					if m.workers[id] == nil {
						break
					}
				}
				m.added++
				m.workers[id] = &mWorker{id: id, job: j.ID, tier: int32(t), seq: m.added, started: now}
				slots--
				out = append(out, Decision{Start, id, j.ID, int32(t), ""})
			}
		}
	}
	return out
}

// deadlines returns the earliest time the model knows something is due
// after now: a liveness deadline, an idle grace end, a backoff end.
func (m *model) deadlines(now time.Time) time.Time {
	var first time.Time
	see := func(t time.Time) {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	for _, w := range m.workers {
		if w.polled {
			see(w.lastPoll.Add(m.cfg.WorkerTimeout))
		} else {
			see(w.started.Add(m.cfg.StartTimeout))
		}
		if j := m.jobs[w.job]; w.polled && !w.exiting && w.running == 0 && !j.ended {
			if end := w.idleFrom.Add(m.cfg.IdleTimeout); end.After(now) {
				see(end)
			}
		}
	}
	for _, j := range m.jobs {
		for _, tr := range j.tiers {
			if !j.ended && tr.startAfter.After(now) {
				see(tr.startAfter)
			}
		}
	}
	return first
}

// run is one random run's state.
type run struct {
	r       *rand.Rand
	f       *Fleet
	m       *model
	now     time.Time
	cap     int // the runner's cap, which slots derive from
	adopted bool
	// Across the run: workers told to exit, gone, and started.
	exited  map[string]bool
	gone    map[string]bool
	started map[string]bool
	st      *runStats
	jobs    int // jobs added so far, for IDs
}

func randomRun(seed uint64, st *runStats) error {
	r := rand.New(rand.NewPCG(seed, 0xf1ee7))
	cfg := Config{
		IdleTimeout:   time.Duration(1+r.IntN(4)) * time.Second,
		WorkerTimeout: time.Duration(5+r.IntN(20)) * time.Second,
		StartTimeout:  time.Duration(5+r.IntN(30)) * time.Second,
		HalfLife:      time.Duration(1+r.IntN(10)) * time.Minute,
		MaxWorkers:    r.IntN(12),
		IDPrefix:      []string{"", "x"}[r.IntN(2)],
	}
	if r.IntN(2) == 0 {
		cfg.NamespaceHalfLife = map[string]time.Duration{"n1": 30 * time.Second}
	}
	ru := &run{r: r, f: New(cfg), m: newModel(cfg), now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		cap: 2 + r.IntN(20), exited: map[string]bool{}, gone: map[string]bool{}, started: map[string]bool{}, st: st}
	for range 300 + r.IntN(300) {
		if err := ru.event(); err != nil {
			return err
		}
	}
	return nil
}

// pick returns a random key of a map, in a reproducible way, or "".
func pick[V any](r *rand.Rand, tab map[string]V) string {
	if len(tab) == 0 {
		return ""
	}
	keys := make([]string, 0, len(tab))
	for k := range tab {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys[r.IntN(len(keys))]
}

// agree checks that the Fleet and the model both accepted or both refused.
func agree(what string, got, want error) error {
	if (got == nil) != (want == nil) {
		return fmt.Errorf("%s: fleet says %v, model %v", what, got, want)
	}
	return nil
}

func (ru *run) event() error {
	r, f, m := ru.r, ru.f, ru.m
	switch x := r.IntN(100); {
	case x < 6: // add a job
		ru.jobs++
		j := Job{ID: fmt.Sprintf("j%d", ru.jobs), Namespace: []string{"n1", "n2"}[r.IntN(2)], Tiers: 1 + r.IntN(3),
			MaxWorkers: r.IntN(5), Created: ru.now.Add(-time.Duration(r.IntN(3)) * time.Second)}
		if r.IntN(20) == 0 && ru.jobs > 1 {
			j.ID = fmt.Sprintf("j%d", 1+r.IntN(ru.jobs-1)) // maybe a duplicate
		}
		var want error
		if m.jobs[j.ID] != nil {
			want = ErrJobExists
		} else {
			m.jobs[j.ID] = &mJob{Job: j, tiers: make([]mTier, j.Tiers)}
		}
		return agree("add job "+j.ID, f.AddJob(j), want)
	case x < 9: // end a job
		id := pick(r, m.jobs)
		if id == "" {
			id = "nojob"
		}
		var want error
		if j := m.jobs[id]; j == nil {
			want = ErrUnknownJob
		} else {
			j.ended = true
			if len(m.jobWorkers(id)) == 0 {
				delete(m.jobs, id)
			}
		}
		return agree("end job "+id, f.EndJob(id), want)
	case x < 25: // a tier's demand
		id := pick(r, m.jobs)
		if id == "" {
			return nil
		}
		j := m.jobs[id]
		t := int32(r.IntN(len(j.tiers) + 1)) // sometimes out of range
		d := Demand{Waiting: r.IntN(7), Running: r.IntN(5), Elapsed: time.Duration(r.IntN(20000)) * time.Millisecond}
		d.Ready = r.IntN(d.Waiting + 1)
		var want error
		if int(t) >= len(j.tiers) {
			want = fmt.Errorf("no tier")
		} else {
			j.tiers[t].demand, j.tiers[t].at = d, ru.now
		}
		return agree("demand", f.SetDemand(id, t, d, ru.now), want)
	case x < 30: // a task's run time
		id := pick(r, m.jobs)
		if id == "" {
			return nil
		}
		j := m.jobs[id]
		t := int32(r.IntN(len(j.tiers)))
		d := time.Duration(r.IntN(20000)) * time.Millisecond
		j.tiers[t].task.Observe(d.Seconds(), ru.now, m.half(j.Namespace))
		m.est(m.nsTask, j.Namespace).Observe(d.Seconds(), ru.now, m.half(j.Namespace))
		return agree("observe", f.ObserveTask(id, t, d, ru.now), nil)
	case x < 45: // a poll
		id := pick(r, m.workers)
		if id == "" || r.IntN(30) == 0 {
			id = "ghost"
		}
		var want error
		if w := m.workers[id]; w == nil {
			want = ErrUnknownWorker
		} else {
			w.lastPoll = ru.now
			if !w.polled {
				w.polled, w.idleFrom = true, ru.now
				j := m.jobs[w.job]
				j.tiers[w.tier].fails, j.tiers[w.tier].startAfter = 0, time.Time{}
				if d := ru.now.Sub(w.started); d >= 0 {
					m.est(m.startup, j.Namespace).Observe(d.Seconds(), ru.now, m.half(j.Namespace))
				}
			}
		}
		return agree("poll "+id, f.Polled(id, ru.now), want)
	case x < 55: // a running count
		id := pick(r, m.workers)
		if id == "" {
			return nil
		}
		w, n := m.workers[id], r.IntN(3)
		var want error
		if !w.polled {
			want = fmt.Errorf("not polled")
		} else {
			if n == 0 && w.running > 0 {
				w.idleFrom = ru.now
			}
			w.running = n
		}
		return agree("running "+id, f.SetRunning(id, n, ru.now), want)
	case x < 62: // a worker ends
		id := pick(r, m.workers)
		if id == "" || r.IntN(10) == 0 {
			id = pick(r, ru.gone) // already forgotten
		}
		g, known := f.Ended(id, ru.now)
		w := m.workers[id]
		if known != (w != nil) {
			return fmt.Errorf("ended %q: known %v, the model says %v", id, known, w != nil)
		}
		if w == nil {
			return nil
		}
		want := m.remove(w, ru.now)
		if g != want {
			return fmt.Errorf("ended %q: %+v, want %+v", id, g, want)
		}
		if !g.Polled {
			ru.st.Backoffs++
		}
		ru.gone[id] = true
		return ru.compare()
	case x < 65: // adoption
		id := pick(r, m.jobs)
		if id == "" {
			return nil
		}
		j := m.jobs[id]
		a := Adoption{ID: fmt.Sprintf("adopted-%d", r.IntN(1000)), Job: id, Tier: int32(r.IntN(len(j.tiers))), Running: r.IntN(3)}
		var want error
		if m.workers[a.ID] != nil || ru.gone[a.ID] {
			if m.workers[a.ID] != nil {
				want = ErrWorkerExists
			} else {
				return nil // a gone worker's ID: the checks across the run would be confused
			}
		} else {
			m.added++
			m.workers[a.ID] = &mWorker{id: a.ID, job: id, tier: a.Tier, seq: m.added, started: ru.now, lastPoll: ru.now, idleFrom: ru.now, running: a.Running, polled: true}
			ru.adopted = true
			ru.st.Adopted++
		}
		return agree("adopt "+a.ID, f.Adopt(a, ru.now), want)
	default: // time passes and the runner steps
		switch y := r.IntN(10); {
		case y < 6:
			ru.now = ru.now.Add(time.Duration(r.IntN(3000)) * time.Millisecond)
		case y < 8:
			if w := f.NextWake(); w.After(ru.now) {
				ru.now = w
			}
		default:
			if w := f.NextWake(); w.After(ru.now.Add(time.Nanosecond)) {
				ru.now = w.Add(-time.Nanosecond)
			}
		}
		return ru.step()
	}
}

// step runs a Step on both and checks the decisions and NextWake.
func (ru *run) step() error {
	f, m := ru.f, ru.m
	alive := len(m.workers)
	slots := max(0, ru.cap-alive)
	before := map[string]*mWorker{}
	for id, w := range m.workers {
		c := *w
		before[id] = &c
	}
	got := slices.Clone(f.Step(ru.now, slots))
	want := m.step(ru.now, slots)
	ru.st.Steps++
	if !slices.Equal(got, want) {
		return fmt.Errorf("step at %v with %d slots:\n got %v\nwant %v", ru.now, slots, got, want)
	}
	if err := ru.invariants(got, before, slots); err != nil {
		return fmt.Errorf("step at %v: %v: %v", ru.now, err, got)
	}
	if err := ru.compare(); err != nil {
		return err
	}
	// NextWake: not later than any deadline, and nothing happens before it.
	wake := f.NextWake()
	if dl := m.deadlines(ru.now); !dl.IsZero() && (wake.IsZero() || wake.After(dl)) {
		return fmt.Errorf("step at %v: next wake %v, after the deadline %v", ru.now, wake, dl)
	}
	if !wake.IsZero() && !wake.After(ru.now) {
		return fmt.Errorf("step at %v: next wake %v is not after it", ru.now, wake)
	}
	if ru.r.IntN(3) == 0 && (wake.IsZero() || wake.Sub(ru.now) > time.Nanosecond) {
		span := time.Hour
		if !wake.IsZero() {
			span = min(wake.Sub(ru.now), time.Minute)
		}
		at := ru.now.Add(time.Duration(ru.r.Int64N(int64(span))))
		if !wake.IsZero() && ru.r.IntN(2) == 0 {
			at = wake.Add(-time.Nanosecond) // the last instant before it
		}
		slots = max(0, ru.cap-len(m.workers))
		if d := f.Step(at, slots); len(d) > 0 {
			return fmt.Errorf("step at %v, before the next wake %v: %v", at, wake, d)
		}
		if d := m.step(at, slots); len(d) > 0 {
			return fmt.Errorf("the model decides at %v, before the next wake %v: %v", at, wake, d)
		}
		ru.st.Quiet++
		ru.now = at
	}
	return nil
}

// invariants checks one Step's decisions against the rules, without the
// model's help (before is the model's workers before the Step).
func (ru *run) invariants(ds []Decision, before map[string]*mWorker, slots int) error {
	seen := map[string]bool{}
	starts, lostBefore := 0, ru.st.Lost
	for i, d := range ds {
		switch d.Kind {
		case Start:
			starts++
			if before[d.ID] != nil || ru.started[d.ID] || seen[d.ID] {
				return fmt.Errorf("start of a worker ID in use or used: %s", d.ID)
			}
			ru.started[d.ID] = true
			ru.st.Starts++
		case Stop:
			if i+1 >= len(ds) || ds[i+1].Kind != Lost || ds[i+1].ID != d.ID {
				return fmt.Errorf("stop of %s not followed by its lost", d.ID)
			}
			if before[d.ID] == nil || seen[d.ID] {
				return fmt.Errorf("stop of %s, unknown or decided already", d.ID)
			}
		case Lost:
			if i == 0 || ds[i-1].Kind != Stop || ds[i-1].ID != d.ID {
				return fmt.Errorf("lost %s without its stop first", d.ID)
			}
			ru.gone[d.ID] = true
			ru.st.Lost++
			continue
		case Exit:
			if before[d.ID] == nil || ru.exited[d.ID] || seen[d.ID] {
				return fmt.Errorf("exit of %s: unknown, exiting already or decided already", d.ID)
			}
			ru.exited[d.ID] = true
			ru.st.Exits++
		}
		seen[d.ID] = true
	}
	if lost := ru.st.Lost - lostBefore; starts > slots+lost {
		return fmt.Errorf("%d starts for %d slots and %d lost workers", starts, slots, lost)
	}
	perJob := map[string]int{}
	for _, w := range ru.m.workers {
		perJob[w.job]++
	}
	for _, d := range ds {
		if j := ru.m.jobs[d.Job]; d.Kind == Start && j.MaxWorkers > 0 && perJob[d.Job] > j.MaxWorkers {
			return fmt.Errorf("job %s has %d workers after a start, max_workers %d", d.Job, perJob[d.Job], j.MaxWorkers)
		}
	}
	if !ru.adopted && len(ru.m.workers) > ru.cap {
		return fmt.Errorf("%d workers, the runner's cap is %d", len(ru.m.workers), ru.cap)
	}
	return nil
}

// compare checks every worker's state, the counts and the Fleet's own
// bookkeeping against the model.
func (ru *run) compare() error {
	f, m := ru.f, ru.m
	if err := f.verify(); err != nil {
		return err
	}
	var want [NumStates]int
	for id, w := range m.workers {
		got, ok := f.Worker(id)
		if !ok {
			return fmt.Errorf("worker %s: unknown to the fleet", id)
		}
		s := Idle
		switch {
		case w.exiting:
			s = Exiting
		case !w.polled:
			s = Starting
		case w.running > 0:
			s = Live
		}
		want[s]++
		if got.State != s || got.Job != w.job || got.Tier != w.tier || got.Running != w.running || !got.Started.Equal(w.started) {
			return fmt.Errorf("worker %s: %+v, the model has %+v", id, got, *w)
		}
	}
	if c := f.Counts(); c != want {
		return fmt.Errorf("counts %v, the model has %v", c, want)
	}
	if f.Len() != len(m.jobs) {
		return fmt.Errorf("%d jobs, the model has %d", f.Len(), len(m.jobs))
	}
	for id := range m.jobs {
		if n, ok := f.JobWorkers(id); !ok || n != len(m.jobWorkers(id)) {
			return fmt.Errorf("job %s: %d workers (known %v), the model has %d", id, n, ok, len(m.jobWorkers(id)))
		}
	}
	return nil
}
