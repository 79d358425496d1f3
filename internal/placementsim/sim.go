package placementsim

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/sched"
)

// Config says what to simulate.
type Config struct {
	// Seed draws the workload and every jitter: the same Config always
	// gives the same Report.
	Seed int64
	// Scale is the fraction of the full workload: 1 is a billion tasks a
	// day on 48,192 cores; 0.001 a million tasks on a fleet a thousand
	// times smaller (clusters keep room for a few of the largest workers
	// and one pod creation a second).
	Scale float64
	// Duration is the simulated time, in whole seconds; the daily
	// workload repeats on later days.
	Duration time.Duration
	// OwnersFirst orders each batch of starts with the jobs of teams
	// that are within their quota first, instead of the Fleet's order
	// alone (priority, then oldest job). See placeBatch.
	OwnersFirst bool
	// Progress, when set, is called after each simulated hour with the
	// simulated time so far.
	Progress func(done time.Duration)
}

// Bounds of Config.
const (
	MinScale    = 1e-6
	MaxScale    = 1.0
	MaxDuration = 7 * 24 * time.Hour
)

// Validate reports what is wrong with c, or nil.
func (c Config) Validate() error {
	var errs []error
	if !(c.Scale >= MinScale && c.Scale <= MaxScale) {
		errs = append(errs, fmt.Errorf("scale %v: want a fraction of the billion-task day from %g to %g", c.Scale, MinScale, MaxScale))
	}
	if c.Duration < time.Second || c.Duration > MaxDuration {
		errs = append(errs, fmt.Errorf("duration %s: want from 1s to %s", c.Duration, MaxDuration))
	}
	return errors.Join(errs...)
}

// Model parameters that are not part of the scenario.
const (
	tick        = 1.0 // seconds
	idleGrace   = 3.0 // seconds: the runner's idle timeout (fleet.DefaultIdleTimeout)
	halfLife    = 10 * time.Minute
	askAhead    = 5.0 // seconds of pod creations asked for in one batch
	startJitter = 0.2 // ± on each cluster's start delay
	taskJitter  = 0.1 // ± on the task times the estimates observe
	noCap       = 1 << 20
	recountTick = 60 // ticks between recounts of every worker
)

// epoch is simulated time zero: a Monday, midnight UTC.
var epoch = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

type wstate uint8

const (
	wFree     wstate = iota
	wPlaced          // reserved, waiting for its pod to be created
	wStarting        // pod created, not polling yet
	wReady           // polling: runs the job's tasks
	wDraining        // reclaimed while running a task: exits when it ends
)

type worker struct {
	id       string
	job      *job
	team     int
	cluster  int
	borrowed bool
	reclaim  bool
	state    wstate
	gen      uint32
	placedAt float64
	pos      int // index in its job's ready list
	bidx     int // index in the snapshot's Borrowed, -1 when owned
}

type cohort struct {
	n  int64
	at int64 // tick
}

type job struct {
	spec    jobSpec
	id      string
	created time.Time
	size    vec
	res     placement.Resources

	fed     int64
	cohorts []cohort
	head    int
	queued  int64
	run     int64
	carry   float64
	elapsed float64

	ready    [2][]int32 // ready workers, owned [0] and borrowed [1]
	pending  int        // placed or starting, not reclaimed
	draining int
	idle     []cohort // idle workers by when they became idle
	idleN    int64
	est      sched.Estimate
	want     int
}

func (j *job) readyN() int64 { return int64(len(j.ready[0]) + len(j.ready[1])) }

type teamState struct {
	work     teamWork
	size     vec
	quota    bool
	lend     bool
	limit    vec
	split    []vec // per cluster, where hasSplit
	hasSplit []bool
	taskEst  sched.Estimate
	startEst sched.Estimate

	jobs, submitted, run  int64
	wait                  waitHist
	ownedSecs, borrowSecs float64
	started, reclaimed    int64
	refused               map[placement.BlockerKind]int64
}

type clusterState struct {
	name    string
	delay   float64
	cap     vec
	budget  float64
	tokens  float64
	queue   []timed // placed workers waiting for creation (w, gen)
	qhead   int
	created countHist
	over    int64
	total   int64
	utilSum [nRes]float64
	utilMax [nRes]float64
}

type sim struct {
	sc       scenario
	seed     int64
	rng      *rand.Rand
	t        int64 // current tick
	snap     placement.Snapshot
	clusters []*clusterState
	cidx     map[string]int
	teams    []*teamState
	tidx     map[string]int

	pending   []jobSpec // jobs of the current day not yet arrived
	nextDay   int
	active    []*job
	jobSeq    int64
	workers   []worker
	free      []int32
	byID      map[string]int32
	workerSeq int64
	starting  timeHeap
	draining  timeHeap
	seq       uint64

	use  [][][2]vec // team, cluster, borrowed
	nUse [][][2]int

	rep Report
}

// Run simulates cfg and returns what it measured.
func Run(cfg Config) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	sc := dayScenario(cfg.Seed, cfg.Scale)
	sc.ownersFirst = cfg.OwnersFirst
	sc.progress = cfg.Progress
	r, err := runScenario(sc, cfg.Seed, cfg.Duration)
	r.Scale = cfg.Scale
	return r, err
}

// scenario is what a simulation runs: the fleet, the quotas and the
// teams' work.
type scenario struct {
	clusters []placement.Cluster
	delays   []float64 // seconds from pod creation to first poll, per cluster
	quotas   []placement.Quota
	teams    []teamWork
	// jobs returns the jobs submitted on a day (0-based), sorted by
	// submit time, all within that day.
	jobs func(day int) []jobSpec
	// ownersFirst, progress: see Config.
	ownersFirst bool
	progress    func(time.Duration)
}

// teamWork is how a team's jobs ask for workers.
type teamWork struct {
	name     string
	worker   placement.Resources
	selector map[string]string
	priority int32
}

// dayScenario is the built-in scenario at a scale: the clusters and
// teams of scenario.go, each day's jobs drawn from the seed.
func dayScenario(seed int64, scale float64) scenario {
	clusters := buildClusters(scale)
	sc := scenario{clusters: clusters, quotas: buildQuotas(scale)}
	for _, c := range clusterSpecs {
		sc.delays = append(sc.delays, c.delay)
	}
	for _, t := range teamSpecs {
		tw := teamWork{name: t.name, worker: t.size.resources(), priority: t.priority}
		if t.general {
			tw.selector = map[string]string{"pool": "general"}
		}
		sc.teams = append(sc.teams, tw)
	}
	sc.jobs = func(d int) []jobSpec { return genDay(seed, d, scale) }
	return sc
}

// toVec converts r to the simulation's vector; it knows the GPU types
// a100 and t4 only.
func toVec(r placement.Resources) (vec, error) {
	v := vec{r.MilliCPU, r.Memory, 0, 0}
	for t, n := range r.GPU {
		switch t {
		case "a100":
			v[rA100] = n
		case "t4":
			v[rT4] = n
		default:
			return vec{}, fmt.Errorf("GPU type %q: the simulation knows a100 and t4", t)
		}
	}
	return v, nil
}

// runScenario simulates sc for a duration with a seed for the jitters.
func runScenario(sc scenario, seed int64, duration time.Duration) (Report, error) {
	if duration < time.Second || duration > MaxDuration {
		return Report{}, fmt.Errorf("duration %s: want from 1s to %s", duration, MaxDuration)
	}
	s, err := newSim(sc, seed)
	if err != nil {
		return Report{}, err
	}
	ticks := int64(duration / time.Second)
	for s.t = 0; s.t < ticks; s.t++ {
		if err := s.step(); err != nil {
			return Report{}, err
		}
		if sc.progress != nil && (s.t+1)%3600 == 0 {
			sc.progress(time.Duration(s.t+1) * time.Second)
		}
	}
	return s.report(), nil
}

func newSim(sc scenario, seed int64) (*sim, error) {
	if len(sc.delays) != len(sc.clusters) {
		return nil, fmt.Errorf("scenario: %d start delays for %d clusters", len(sc.delays), len(sc.clusters))
	}
	s := &sim{
		sc:   sc,
		seed: seed,
		rng:  rand.New(rand.NewPCG(uint64(seed), 0x91ace)),
		cidx: map[string]int{},
		tidx: map[string]int{},
		byID: map[string]int32{},
	}
	s.snap.Clusters = sc.clusters
	s.snap.Quotas = sc.quotas
	for i, c := range sc.clusters {
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("scenario: %w", err)
		}
		if _, dup := s.cidx[c.Name]; dup {
			return nil, fmt.Errorf("scenario: cluster %q twice", c.Name)
		}
		v, err := toVec(c.Capacity)
		if err != nil {
			return nil, fmt.Errorf("scenario: cluster %s: %w", c.Name, err)
		}
		s.clusters = append(s.clusters, &clusterState{name: c.Name, delay: sc.delays[i], cap: v, budget: c.PodsPerSecond})
		s.cidx[c.Name] = i
	}
	for i, t := range sc.teams {
		if _, dup := s.tidx[t.name]; dup {
			return nil, fmt.Errorf("scenario: team %q twice", t.name)
		}
		size, err := toVec(t.worker)
		if err != nil {
			return nil, fmt.Errorf("scenario: team %s: %w", t.name, err)
		}
		if size[rCPU] <= 0 {
			return nil, fmt.Errorf("scenario: team %s: a worker needs some CPU", t.name)
		}
		s.teams = append(s.teams, &teamState{work: t, size: size, split: make([]vec, len(sc.clusters)),
			hasSplit: make([]bool, len(sc.clusters)), refused: map[placement.BlockerKind]int64{}})
		s.tidx[t.name] = i
	}
	for _, q := range sc.quotas {
		if err := q.Validate(); err != nil {
			return nil, fmt.Errorf("scenario: %w", err)
		}
		ti, ok := s.tidx[q.Team]
		if !ok {
			return nil, fmt.Errorf("scenario: quota of unknown team %q", q.Team)
		}
		ts := s.teams[ti]
		if ts.quota {
			return nil, fmt.Errorf("scenario: team %q has two quotas", q.Team)
		}
		var err error
		if ts.limit, err = toVec(q.Limit); err != nil {
			return nil, fmt.Errorf("scenario: quota of %s: %w", q.Team, err)
		}
		ts.quota, ts.lend = true, q.Lend
		for _, name := range slices.Sorted(maps.Keys(q.Clusters)) {
			ci, ok := s.cidx[name]
			if !ok {
				return nil, fmt.Errorf("scenario: quota of %s splits unknown cluster %q", q.Team, name)
			}
			if ts.split[ci], err = toVec(q.Clusters[name]); err != nil {
				return nil, fmt.Errorf("scenario: quota of %s: %w", q.Team, err)
			}
			ts.hasSplit[ci] = true
		}
	}
	s.use = make([][][2]vec, len(s.teams))
	s.nUse = make([][][2]int, len(s.teams))
	for i := range s.teams {
		s.use[i] = make([][2]vec, len(s.clusters))
		s.nUse[i] = make([][2]int, len(s.clusters))
	}
	return s, nil
}

func (s *sim) now() time.Time { return epoch.Add(time.Duration(s.t) * time.Second) }

// step runs one tick.
func (s *sim) step() error {
	t := float64(s.t)
	s.arrive()
	for len(s.draining) > 0 && s.draining[0].at <= t {
		x := heap.Pop(&s.draining).(timed)
		w := &s.workers[x.w]
		if w.gen != x.gen || w.state != wDraining {
			continue
		}
		s.teams[w.team].run++
		s.rep.TasksRun++
		w.job.draining--
		s.release(x.w)
	}
	for len(s.starting) > 0 && s.starting[0].at <= t {
		x := heap.Pop(&s.starting).(timed)
		w := &s.workers[x.w]
		if w.gen != x.gen || w.state != wStarting {
			continue
		}
		if w.reclaim { // told to exit at its first poll
			s.release(x.w)
			continue
		}
		w.job.pending--
		s.teams[w.team].startEst.Observe(t-w.placedAt, s.now(), halfLife)
		s.toReady(x.w)
	}
	kept := s.active[:0]
	for _, j := range s.active {
		s.runJob(j)
		if j.fed == j.spec.tasks && j.queued == 0 && j.run == 0 && j.readyN() == 0 && j.pending == 0 && j.draining == 0 {
			continue
		}
		kept = append(kept, j)
	}
	clear(s.active[len(kept):])
	s.active = kept
	if err := s.placeBatch(); err != nil {
		return err
	}
	s.createPods()
	s.rebuildUsage()
	s.expireClaims()
	for _, id := range placement.Rebalance(&s.snap) {
		s.reclaim(id)
	}
	s.check()
	return nil
}

// arrive adds the jobs submitted by now and feeds their tasks.
func (s *sim) arrive() {
	t := float64(s.t)
	if t >= float64(s.nextDay)*day {
		s.pending = append(s.pending, s.sc.jobs(s.nextDay)...)
		s.nextDay++
	}
	n := 0
	for n < len(s.pending) && s.pending[n].submit <= t {
		sp := s.pending[n]
		n++
		ts := s.teams[sp.team]
		s.jobSeq++
		j := &job{
			spec:    sp,
			id:      ts.work.name + "-" + strconv.FormatInt(s.jobSeq, 10),
			created: epoch.Add(time.Duration(sp.submit) * time.Second),
			size:    ts.size,
			res:     ts.work.worker,
		}
		ts.jobs++
		ts.submitted += sp.tasks
		s.rep.Jobs++
		s.rep.TasksSubmitted += sp.tasks
		s.active = append(s.active, j)
	}
	s.pending = s.pending[n:]
	for _, j := range s.active {
		if j.fed == j.spec.tasks {
			continue
		}
		target := j.spec.tasks
		if j.spec.feed > 0 {
			frac := (t - j.spec.submit + 1) / j.spec.feed
			if frac < 1 {
				target = int64(float64(j.spec.tasks) * frac)
			}
		}
		if d := target - j.fed; d > 0 {
			j.cohorts = append(j.cohorts, cohort{n: d, at: s.t})
			j.queued += d
			j.fed = target
		}
	}
}

// runJob ends and starts the job's tasks for this tick, retires its idle
// workers and sets how many more it wants.
func (s *sim) runJob(j *job) {
	ts := s.teams[j.spec.team]
	d := j.spec.taskSecs
	if j.run > 0 {
		j.elapsed += float64(j.run) * tick
		j.carry += float64(j.run) * tick / d
		c := min(int64(j.carry), j.run)
		j.carry -= float64(c)
		if c > 0 {
			j.elapsed -= j.elapsed / float64(j.run) * float64(c)
			j.run -= c
			ts.run += c
			s.rep.TasksRun += c
			obs := d * (1 + taskJitter*(2*s.rng.Float64()-1))
			j.est.Observe(obs, s.now(), halfLife)
			ts.taskEst.Observe(obs, s.now(), halfLife)
		}
		if j.run == 0 {
			j.carry, j.elapsed = 0, 0
		}
	}
	if free := j.readyN() - j.run; free > 0 && j.queued > 0 {
		n := min(free, j.queued)
		j.queued -= n
		j.run += n
		for n > 0 {
			c := &j.cohorts[j.head]
			k := min(n, c.n)
			ts.wait.add(s.t-c.at, k)
			c.n -= k
			n -= k
			if c.n == 0 {
				j.head++
			}
		}
		if j.head > 64 && j.head*2 > len(j.cohorts) {
			j.cohorts = append(j.cohorts[:0], j.cohorts[j.head:]...)
			j.head = 0
		}
	}
	s.syncIdle(j)
	// Idle retirement: workers idle for the grace exit (only when nothing
	// is queued, since a free worker takes a queued task at once).
	var retire int64
	for len(j.idle) > 0 && float64(s.t-j.idle[0].at) >= idleGrace {
		retire += j.idle[0].n
		j.idle = j.idle[1:]
	}
	if retire > 0 {
		j.idleN -= retire
		for range retire {
			b := 1 // borrowed workers first: their room goes back to its owners
			if len(j.ready[1]) == 0 {
				b = 0
			}
			l := j.ready[b]
			wi := l[len(l)-1]
			j.ready[b] = l[:len(l)-1]
			s.release(wi)
		}
	}
	taskSecs, ok := j.est.Value()
	if !ok {
		taskSecs, _ = ts.taskEst.Value()
	}
	startup, _ := ts.startEst.Value()
	maxW := noCap
	if j.spec.maxWork > 0 {
		maxW = j.spec.maxWork
	}
	live := int(j.readyN()) + j.pending
	target := sched.TargetWorkers(sched.TargetInput{
		Queued:         int(j.queued),
		Running:        int(j.run),
		Live:           live,
		RunningElapsed: j.elapsed,
		TaskSeconds:    taskSecs,
		StartupSeconds: startup,
		IdleGrace:      idleGrace,
		Max:            maxW,
	})
	j.want = max(0, target-live)
}

// syncIdle brings the job's idle cohorts in line with its idle workers:
// new idle workers join as of now; workers that took a task leave the
// newest cohorts first.
func (s *sim) syncIdle(j *job) {
	idle := j.readyN() - j.run
	switch {
	case idle > j.idleN:
		j.idle = append(j.idle, cohort{n: idle - j.idleN, at: s.t})
	case idle < j.idleN:
		for drop := j.idleN - idle; drop > 0; {
			last := &j.idle[len(j.idle)-1]
			k := min(drop, last.n)
			last.n -= k
			drop -= k
			if last.n == 0 {
				j.idle = j.idle[:len(j.idle)-1]
			}
		}
	}
	j.idleN = idle
}

// placeBatch asks placement for the starts the jobs want, at most what
// the clusters can create in the next askAhead seconds, shared between
// the jobs: the Fleet's order (higher priority, then older) and an even
// share first, then the rest in that order.
//
// With ownersFirst, jobs of teams that have room for a worker in their
// quota come before the others of the same priority. Placement decides a
// batch in order, so in the Fleet's order an older borrowing job can take
// the room a reclaim just freed before the owner that asked for it gets
// there, and the owner has to reclaim again.
func (s *sim) placeBatch() error {
	budget := 0
	for _, c := range s.clusters {
		budget += max(0, int(math.Ceil(c.budget*askAhead))-(len(c.queue)-c.qhead))
	}
	var wanting []*job
	for _, j := range s.active {
		if j.want > 0 {
			wanting = append(wanting, j)
		}
	}
	if budget == 0 || len(wanting) == 0 {
		return nil
	}
	slices.SortStableFunc(wanting, func(a, b *job) int {
		pa, pb := s.teams[a.spec.team].work.priority, s.teams[b.spec.team].work.priority
		if pa != pb {
			return cmp.Compare(pb, pa)
		}
		if s.sc.ownersFirst {
			if oa, ob := s.hasRoom(a), s.hasRoom(b); oa != ob {
				if oa {
					return -1
				}
				return 1
			}
		}
		return a.created.Compare(b.created)
	})
	ask := make([]int, len(wanting))
	quantum := max(1, budget/len(wanting))
	for i, j := range wanting {
		if budget == 0 {
			break
		}
		ask[i] = min(j.want, quantum, budget)
		budget -= ask[i]
	}
	for i, j := range wanting {
		if budget == 0 {
			break
		}
		more := min(j.want-ask[i], budget)
		ask[i] += more
		budget -= more
	}
	var reqs []placement.Request
	var owners []*job
	for i, j := range wanting {
		ts := s.teams[j.spec.team]
		for range ask[i] {
			s.workerSeq++
			reqs = append(reqs, placement.Request{
				ID:           "w" + strconv.FormatInt(s.workerSeq, 10),
				Team:         ts.work.name,
				Job:          j.id,
				Priority:     ts.work.priority,
				Created:      j.created,
				Resources:    j.res,
				NodeSelector: ts.work.selector,
			})
			owners = append(owners, j)
		}
	}
	s.rebuildUsage()
	s.expireClaims()
	before := len(s.snap.Borrowed)
	results, reclaim := placement.Place(&s.snap, reqs, s.now())
	s.rep.PlaceCalls++
	if len(results) != len(reqs) {
		return fmt.Errorf("tick %d: placement answered %d of %d requests", s.t, len(results), len(reqs))
	}
	next := before
	for i, r := range results {
		j := owners[i]
		ts := s.teams[j.spec.team]
		if !r.Placed {
			ts.refused[r.Blocker.Kind]++
			s.rep.Refused++
			continue
		}
		ci, ok := s.cidx[r.Reservation.Cluster]
		if !ok {
			return fmt.Errorf("tick %d: placement chose unknown cluster %q for %s", s.t, r.Reservation.Cluster, r.ID)
		}
		bidx := -1
		if r.Reservation.Borrowed {
			if next >= len(s.snap.Borrowed) || s.snap.Borrowed[next].ID != r.ID {
				return fmt.Errorf("tick %d: borrowed reservation %s is not where placement said it appends it", s.t, r.ID)
			}
			bidx = next
			next++
		}
		s.addWorker(j, r.ID, ci, r.Reservation.Borrowed, bidx)
	}
	if next != len(s.snap.Borrowed) {
		return fmt.Errorf("tick %d: placement appended %d borrowed reservations, placed %d", s.t, len(s.snap.Borrowed)-before, next-before)
	}
	for _, id := range reclaim {
		s.reclaim(id)
	}
	return nil
}

// expireClaims does what the store does before each placement: it drops
// the claims expired by now, and forgets what the last Place made and
// dropped (the store would have written it).
func (s *sim) expireClaims() {
	now := s.now()
	s.snap.Claims = slices.DeleteFunc(s.snap.Claims, func(c placement.Claim) bool { return !c.ExpiresAt.After(now) })
	s.snap.ClaimsMade, s.snap.ClaimsDropped = s.snap.ClaimsMade[:0], s.snap.ClaimsDropped[:0]
}

// hasRoom reports whether j's team has room for one more worker of j in
// its quota.
func (s *sim) hasRoom(j *job) bool {
	ts := s.teams[j.spec.team]
	if !ts.quota {
		return false
	}
	owned := j.size
	for ci := range s.clusters {
		owned = owned.add(s.use[j.spec.team][ci][0])
	}
	return owned.exceeds(ts.limit) < 0
}

// addWorker records a placed worker and queues its pod creation.
func (s *sim) addWorker(j *job, id string, ci int, borrowed bool, bidx int) {
	var wi int32
	if n := len(s.free); n > 0 {
		wi = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		s.workers = append(s.workers, worker{})
		wi = int32(len(s.workers) - 1)
	}
	w := &s.workers[wi]
	*w = worker{id: id, job: j, team: j.spec.team, cluster: ci, borrowed: borrowed, state: wPlaced,
		gen: w.gen + 1, placedAt: float64(s.t), bidx: bidx}
	s.byID[id] = wi
	b := boolIdx(borrowed)
	s.use[w.team][ci][b] = s.use[w.team][ci][b].add(j.size)
	s.nUse[w.team][ci][b]++
	j.pending++
	ts := s.teams[w.team]
	ts.started++
	s.rep.WorkersStarted++
	c := s.clusters[ci]
	c.queue = append(c.queue, timed{w: wi, gen: w.gen})
}

func boolIdx(b bool) int {
	if b {
		return 1
	}
	return 0
}

// createPods creates the queued pods of each cluster that its token
// bucket allows this tick (at most its budget a second) and schedules
// their first poll after the cluster's start delay.
func (s *sim) createPods() {
	t := float64(s.t)
	for _, c := range s.clusters {
		c.tokens = math.Min(c.tokens+c.budget*tick, c.budget*tick)
		made := 0
		for c.qhead < len(c.queue) && c.tokens >= 1 {
			x := c.queue[c.qhead]
			c.qhead++
			w := &s.workers[x.w]
			if w.gen != x.gen || w.state != wPlaced {
				continue // dropped before its pod was created
			}
			c.tokens--
			made++
			w.state = wStarting
			delay := c.delay * (1 + startJitter*(2*s.rng.Float64()-1))
			s.seq++
			heap.Push(&s.starting, timed{at: t + math.Max(tick, math.Ceil(delay)), seq: s.seq, w: x.w, gen: w.gen})
		}
		if c.qhead > 1024 && c.qhead*2 > len(c.queue) {
			c.queue = append(c.queue[:0], c.queue[c.qhead:]...)
			c.qhead = 0
		}
		c.created.add(made)
		c.total += int64(made)
		if float64(made) > c.budget {
			c.over++
		}
	}
}

// toReady makes a started worker ready for its job's tasks.
func (s *sim) toReady(wi int32) {
	w := &s.workers[wi]
	w.state = wReady
	b := boolIdx(w.borrowed)
	w.pos = len(w.job.ready[b])
	w.job.ready[b] = append(w.job.ready[b], wi)
}

// reclaim handles a reservation placement marked for reclaim: the worker
// finishes its current task, if it runs one, and exits.
func (s *sim) reclaim(id string) {
	wi, ok := s.byID[id]
	if !ok {
		return
	}
	w := &s.workers[wi]
	if w.reclaim {
		return
	}
	w.reclaim = true
	s.teams[w.team].reclaimed++
	s.rep.Reclaimed++
	if w.bidx >= 0 {
		s.snap.Borrowed[w.bidx].Reclaim = true
	}
	j := w.job
	switch w.state {
	case wPlaced:
		j.pending--
		s.release(wi)
	case wStarting:
		j.pending-- // exits at its first poll
	case wReady:
		busy := s.rng.Float64()*float64(j.readyN()) < float64(j.run)
		s.removeReady(wi)
		if busy {
			mean := j.elapsed / float64(j.run)
			j.elapsed -= mean
			j.run--
			if j.run == 0 {
				j.carry, j.elapsed = 0, 0
			}
			j.draining++
			w.state = wDraining
			s.seq++
			heap.Push(&s.draining, timed{at: float64(s.t) + math.Ceil(j.spec.taskSecs*s.rng.Float64()), seq: s.seq, w: wi, gen: w.gen})
		} else {
			s.release(wi)
		}
		s.syncIdle(j)
	}
}

// removeReady takes a ready worker off its job's ready list.
func (s *sim) removeReady(wi int32) {
	w := &s.workers[wi]
	b := boolIdx(w.borrowed)
	l := w.job.ready[b]
	last := l[len(l)-1]
	l[w.pos] = last
	s.workers[last].pos = w.pos
	w.job.ready[b] = l[:len(l)-1]
}

// release ends a worker's reservation.
func (s *sim) release(wi int32) {
	w := &s.workers[wi]
	b := boolIdx(w.borrowed)
	s.use[w.team][w.cluster][b] = s.use[w.team][w.cluster][b].sub(w.job.size)
	s.nUse[w.team][w.cluster][b]--
	if w.bidx >= 0 {
		last := len(s.snap.Borrowed) - 1
		if w.bidx != last {
			moved := s.snap.Borrowed[last]
			s.snap.Borrowed[w.bidx] = moved
			s.workers[s.byID[moved.ID]].bidx = w.bidx
		}
		s.snap.Borrowed[last] = placement.Reservation{}
		s.snap.Borrowed = s.snap.Borrowed[:last]
	}
	delete(s.byID, w.id)
	*w = worker{gen: w.gen, bidx: -1}
	s.free = append(s.free, wi)
}

// rebuildUsage sets the snapshot's usage from the running totals.
func (s *sim) rebuildUsage() {
	s.snap.Usage = s.snap.Usage[:0]
	for ti, ts := range s.teams {
		for ci, c := range s.clusters {
			for b := range 2 {
				if s.nUse[ti][ci][b] == 0 {
					continue
				}
				s.snap.Usage = append(s.snap.Usage, placement.Usage{
					Team: ts.work.name, Cluster: c.name, Borrowed: b == 1,
					Held: s.use[ti][ci][b].resources(), Workers: s.nUse[ti][ci][b],
				})
			}
		}
	}
}

// check counts quota and capacity violations from the running totals,
// recounts every worker once a minute, and samples utilisation and
// worker-seconds.
func (s *sim) check() {
	if s.t%recountTick == 0 {
		s.recount()
	}
	for ti, ts := range s.teams {
		var owned vec
		for ci := range s.clusters {
			owned = owned.add(s.use[ti][ci][0])
			ts.ownedSecs += float64(s.nUse[ti][ci][0]) * tick
			ts.borrowSecs += float64(s.nUse[ti][ci][1]) * tick
		}
		if owned.exceeds(ts.limit) >= 0 {
			s.rep.QuotaViolations++
		}
		for ci := range s.clusters {
			if ts.hasSplit[ci] && s.use[ti][ci][0].exceeds(ts.split[ci]) >= 0 {
				s.rep.QuotaViolations++
			}
		}
	}
	for ci, c := range s.clusters {
		var held vec
		for ti := range s.teams {
			held = held.add(s.use[ti][ci][0]).add(s.use[ti][ci][1])
		}
		if held.exceeds(c.cap) >= 0 {
			s.rep.CapacityViolations++
		}
		for r := range nRes {
			if c.cap[r] > 0 {
				u := float64(held[r]) / float64(c.cap[r])
				c.utilSum[r] += u
				c.utilMax[r] = math.Max(c.utilMax[r], u)
			}
		}
	}
}

// recount adds up every live worker's reservation and compares the sums
// with the running totals and the snapshot's borrowed list.
func (s *sim) recount() {
	use := make([][][2]vec, len(s.teams))
	for i := range use {
		use[i] = make([][2]vec, len(s.clusters))
	}
	borrowed := 0
	for i := range s.workers {
		w := &s.workers[i]
		if w.state == wFree {
			continue
		}
		b := boolIdx(w.borrowed)
		use[w.team][w.cluster][b] = use[w.team][w.cluster][b].add(w.job.size)
		if w.borrowed {
			borrowed++
			if w.bidx < 0 || w.bidx >= len(s.snap.Borrowed) || s.snap.Borrowed[w.bidx].ID != w.id {
				s.rep.AccountingErrors++
			}
		}
	}
	if borrowed != len(s.snap.Borrowed) {
		s.rep.AccountingErrors++
	}
	for ti := range s.teams {
		for ci := range s.clusters {
			if use[ti][ci] != s.use[ti][ci] {
				s.rep.AccountingErrors++
			}
		}
	}
}

func (s *sim) report() Report {
	s.recount()
	r := s.rep
	r.Seed = s.seed
	r.OwnersFirst = s.sc.ownersFirst
	r.DurationSeconds = float64(s.t)
	for _, j := range s.active {
		r.TasksQueued += j.queued
	}
	ticks := float64(max(s.t, 1))
	for _, c := range s.clusters {
		cr := ClusterReport{
			Name:              c.name,
			Capacity:          c.cap.resources(),
			PodsBudget:        c.budget,
			PodsMean:          float64(c.created.sum) / ticks,
			PodsP99:           c.created.quantile(0.99),
			PodsPeak:          c.created.max(),
			SecondsOverBudget: c.over,
			PodsCreated:       c.total,
			StartDelaySeconds: c.delay,
		}
		for res := range nRes {
			if c.cap[res] > 0 {
				cr.Utilization = append(cr.Utilization, Utilization{Resource: resNames[res], Mean: c.utilSum[res] / ticks, Peak: c.utilMax[res]})
			}
		}
		r.Clusters = append(r.Clusters, cr)
	}
	for _, ts := range s.teams {
		tr := TeamReport{
			Team: ts.work.name, Lend: ts.lend,
			Jobs: ts.jobs, TasksSubmitted: ts.submitted, TasksRun: ts.run,
			WaitP50: ts.wait.quantile(0.5), WaitP99: ts.wait.quantile(0.99),
			WorkersStarted: ts.started, Reclaimed: ts.reclaimed,
		}
		if ts.quota {
			q := ts.limit.resources()
			tr.Quota = &q
		}
		if all := ts.ownedSecs + ts.borrowSecs; all > 0 {
			tr.BorrowedShare = ts.borrowSecs / all
		}
		if len(ts.refused) > 0 {
			tr.Refused = map[placement.BlockerKind]int64{}
			for k, n := range ts.refused {
				tr.Refused[k] = n
			}
		}
		r.Teams = append(r.Teams, tr)
	}
	return r
}
