package sched

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/dag"
)

// TestRandomRuns drives jobs with random DAGs (task edges and group
// dependencies) through random event sequences — dispatch, every outcome,
// stale reports, clock ticks, task and job cancels, runner restarts — and
// checks after every step that
//
//   - no task becomes Running before all its parents (group members
//     included) Succeeded, nor before its retry backoff ended;
//   - every transition starts from the task's current state, and no
//     terminal state is ever left;
//   - the counts always sum to N and match the task states, the tier
//     counters match the counts;
//   - stale reports are ignored and change nothing;
//   - timeout kills come only after the deadline, once per attempt;
//
// and at the end that the job reached Done, every task entered exactly one
// terminal state exactly once, every upstream_failed task has a failed
// parent, and the outcome matches the states.
func TestRandomRuns(t *testing.T) {
	t.Parallel()
	runs := 1000
	if testing.Short() {
		runs = 50
	}
	var stats runStats
	for seed := range uint64(runs) {
		if err := randomRun(seed, &stats); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	t.Logf("%d runs: %+v", runs, stats)
}

type randomJob struct {
	g       *dag.Graph
	tasks   []TaskConfig
	cfg     Config
	parents [][]int32 // per task: every task that must succeed first, groups flattened
}

func randomGraph(r *rand.Rand) randomJob {
	n := 1 + r.IntN(40)
	var edges [][2]int32
	for c := 1; c < n; c++ {
		for range r.IntN(4) {
			edges = append(edges, [2]int32{int32(r.IntN(c)), int32(c)})
		}
	}
	var groups []string
	if n > 2 {
		for range r.IntN(4) {
			id := int32(n + len(groups))
			groups = append(groups, fmt.Sprintf("g%d-*", len(groups)))
			cut := 1 + r.IntN(n-1) // members < cut <= children
			for m := range cut {
				if r.IntN(2) == 0 {
					edges = append(edges, [2]int32{int32(m), id})
				}
			}
			for c := cut; c < n; c++ {
				if r.IntN(3) == 0 {
					edges = append(edges, [2]int32{id, int32(c)})
				}
			}
		}
	}
	g := csr(n, groups, edges)
	rj := randomJob{g: g, parents: make([][]int32, n)}
	members := make([][]int32, len(groups))
	for _, e := range edges {
		if int(e[1]) >= n {
			members[int(e[1])-n] = append(members[int(e[1])-n], e[0])
		}
	}
	for _, e := range edges {
		switch {
		case int(e[1]) >= n: // member -> group
		case int(e[0]) >= n:
			rj.parents[e[1]] = append(rj.parents[e[1]], members[int(e[0])-n]...)
		default:
			rj.parents[e[1]] = append(rj.parents[e[1]], e[0])
		}
	}
	rj.cfg = Config{
		Tiers:       1 + r.IntN(3),
		BackoffBase: time.Duration(1+r.IntN(3)) * time.Second,
		BackoffMax:  5 * time.Second,
		MaxLost:     1 + r.IntN(3),
	}
	for range n {
		tc := TaskConfig{Tier: int32(r.IntN(rj.cfg.Tiers)), Retries: int32(r.IntN(3))}
		if r.IntN(3) == 0 {
			tc.Timeout = time.Duration(1+r.IntN(20)) * time.Second
		}
		rj.tasks = append(rj.tasks, tc)
	}
	return rj
}

// wantBackoff is the documented delay before retry n:
// min(base*2^(n-1), max), for a config without zero fields.
func wantBackoff(cfg Config, n int32) time.Duration {
	d := float64(cfg.BackoffBase) * math.Pow(2, float64(n-1))
	return time.Duration(min(d, float64(cfg.BackoffMax)))
}

// model is what the test knows of each task, from the transitions alone.
type model struct {
	rj        randomJob
	j         *Job
	now       time.Time
	state     []State
	failures  []int32
	lost      []int32 // since the last restart, which forgets them
	tier      []int32 // the tier each task runs on, from its OOM transitions
	readyAt   []time.Time
	started   []time.Time // of the current attempt
	killed    []int32     // attempt that got a timeout kill
	terminals []int       // terminal transitions seen
	running   map[int32]int32
	cancelled bool
	// taskCancelled marks the tasks CancelTask was called for.
	taskCancelled []bool
	stats         *runStats
}

func (m *model) absorb() error { return m.absorbOut(m.j.Drain()) }

// finished reports an attempt's end and checks that the task's first
// transition is the one the outcome calls for.
func (m *model) finished(t, a int32, o Outcome) error {
	cancelling := m.cancelled || m.taskCancelled[t]
	if !m.j.Finished(t, a, o, m.now) {
		return fmt.Errorf("report of running task %d attempt %d ignored", t, a)
	}
	out := m.j.Drain()
	if len(out.Transitions) == 0 || out.Transitions[0].Task != t || out.Transitions[0].From != Running {
		return fmt.Errorf("report of task %d attempt %d: first transition is not its own: %v", t, a, out.Transitions)
	}
	tr := out.Transitions[0]
	var ok bool
	switch {
	case o == Success:
		ok = tr.To == Succeeded
	case cancelling:
		ok = tr.To == Cancelled
	case o == Failure:
		ok = tr.Reason == ReasonExit && (tr.To == Queued || tr.To == Failed)
	case o == Timeout:
		ok = tr.Reason == ReasonTimeout && (tr.To == Queued || tr.To == Failed)
	case o == Lost:
		ok = tr.Reason == ReasonLost && (tr.To == Queued || tr.To == Failed)
	case o == OOM:
		ok = tr.Reason == ReasonOOM && (tr.To == Queued || tr.To == Failed)
	case o == Killed:
		ok = tr.To == Cancelled || m.killed[t] == a && tr.Reason == ReasonTimeout
	}
	if !ok {
		return fmt.Errorf("task %d attempt %d reported %v: transition %+v", t, a, o, tr)
	}
	return m.absorbOut(out)
}

func (m *model) absorbOut(out Output) error {
	m.stats.Transitions += len(out.Transitions)
	m.stats.Kills += len(out.Kills)
	for _, tr := range out.Transitions {
		t := tr.Task
		if tr.From != m.state[t] {
			return fmt.Errorf("task %d: transition %v->%v, but it was %v", t, tr.From, tr.To, m.state[t])
		}
		if m.state[t].Terminal() {
			return fmt.Errorf("task %d: left terminal state %v for %v", t, tr.From, tr.To)
		}
		m.state[t] = tr.To
		if tr.To.Terminal() {
			m.terminals[t]++
		}
		switch {
		case tr.To == Running:
			for _, p := range m.rj.parents[t] {
				if m.state[p] != Succeeded {
					return fmt.Errorf("task %d running while its parent %d is %v", t, p, m.state[p])
				}
			}
			if m.now.Before(m.readyAt[t]) {
				return fmt.Errorf("task %d running at %v, before its backoff ended at %v", t, m.now, m.readyAt[t])
			}
			m.started[t] = m.now
			m.running[t] = tr.Attempt
		case tr.From == Running:
			delete(m.running, t)
			switch tr.Reason {
			case ReasonExit, ReasonTimeout:
				m.failures[t]++
				retries := m.rj.tasks[t].Retries
				if tr.To == Queued && m.failures[t] > retries || tr.To == Failed && m.failures[t] != retries+1 {
					return fmt.Errorf("task %d: %v after %d failures with %d retries", t, tr.To, m.failures[t], retries)
				}
				if tr.To == Queued {
					m.readyAt[t] = m.now.Add(wantBackoff(m.rj.cfg, m.failures[t]))
				}
			case ReasonOOM:
				last := int32(m.rj.cfg.Tiers - 1)
				if tr.To == Queued && m.tier[t] >= last || tr.To == Failed && m.tier[t] != last {
					return fmt.Errorf("task %d: %v after an OOM on tier %d of %d", t, tr.To, m.tier[t], last+1)
				}
				if tr.To == Queued {
					m.tier[t]++
				}
			case ReasonLost:
				m.lost[t]++
				maxLost := int32(m.rj.cfg.MaxLost)
				if tr.To == Queued && m.lost[t] > maxLost || tr.To == Failed && m.lost[t] != maxLost+1 {
					return fmt.Errorf("task %d: %v after %d lost attempts with max-lost %d", t, tr.To, m.lost[t], maxLost)
				}
			}
		}
	}
	for _, k := range out.Kills {
		if a, ok := m.running[k.Task]; !ok || a != k.Attempt {
			return fmt.Errorf("kill of task %d attempt %d, which is not running", k.Task, k.Attempt)
		}
		if k.Reason == ReasonTimeout {
			d := m.rj.tasks[k.Task].Timeout
			if d == 0 || m.now.Before(m.started[k.Task].Add(d)) {
				return fmt.Errorf("timeout kill of task %d attempt %d before its deadline", k.Task, k.Attempt)
			}
			if m.killed[k.Task] == k.Attempt {
				return fmt.Errorf("second timeout kill of task %d attempt %d", k.Task, k.Attempt)
			}
			m.killed[k.Task] = k.Attempt
		}
	}
	return m.check()
}

func (m *model) check() error {
	var recount [NumStates]int64
	for t, s := range m.state {
		if got := m.j.State(int32(t)); got != s {
			return fmt.Errorf("task %d is %v, but its transitions say %v", t, got, s)
		}
		if got := m.j.Tier(int32(t)); got != m.tier[t] {
			return fmt.Errorf("task %d is on tier %d, but its transitions say %d", t, got, m.tier[t])
		}
		recount[s]++
	}
	c := m.j.Counts()
	if c != recount {
		return fmt.Errorf("counts %v, states %v", c, recount)
	}
	var sum int64
	for _, x := range c {
		sum += x
	}
	if sum != int64(len(m.state)) {
		return fmt.Errorf("counts sum to %d, not %d", sum, len(m.state))
	}
	var waiting, running int
	for tier := range m.rj.cfg.Tiers {
		waiting += m.j.Waiting(int32(tier))
		running += m.j.Running(int32(tier))
		if m.j.Ready(int32(tier)) > m.j.Waiting(int32(tier)) {
			return fmt.Errorf("tier %d: more ready than waiting", tier)
		}
	}
	if int64(waiting) != c[Queued] || int64(running) != c[Running] {
		return fmt.Errorf("tiers: %d waiting, %d running; counts %v", waiting, running, c)
	}
	done := c[Blocked]+c[Queued]+c[Running] == 0
	if m.j.Done() != done {
		return fmt.Errorf("Done() = %v with counts %v", m.j.Done(), c)
	}
	return nil
}

// restart plays a runner restart: a new job restored from the stored states.
func (m *model) restart() error {
	j, err := New(m.rj.g, m.rj.tasks, m.rj.cfg)
	if err != nil {
		return err
	}
	for t, s := range m.state {
		if s == Blocked {
			continue
		}
		if m.j.Failures(int32(t)) != m.failures[t] {
			return fmt.Errorf("task %d: %d failures, its transitions say %d", t, m.j.Failures(int32(t)), m.failures[t])
		}
		if err := j.Restore(int32(t), s, m.j.Attempts(int32(t)), m.j.Failures(int32(t))); err != nil {
			return err
		}
		if err := j.RestoreTier(int32(t), m.tier[t]); err != nil {
			return err
		}
	}
	if m.cancelled {
		j.Cancel(m.now)
	}
	m.j = j
	m.stats.Restarts++
	clear(m.running)
	clear(m.lost)
	for t := range m.readyAt {
		m.readyAt[t] = time.Time{}
	}
	j.Start(m.now)
	// A cancel of a running task is not part of the stored state: the
	// runner repeats it after the restart.
	for t, c := range m.taskCancelled {
		if c {
			j.CancelTask(int32(t), m.now)
		}
	}
	return m.absorb()
}

// randomOutcome draws an outcome; flaky (0..100) is the percentage of
// attempts that do not succeed.
func randomOutcome(r *rand.Rand, flaky int) Outcome {
	if r.IntN(100) >= flaky {
		return Success
	}
	switch x := r.IntN(100); {
	case x < 50:
		return Failure
	case x < 70:
		return Timeout
	case x < 85:
		return Lost
	case x < 95:
		return OOM
	default:
		return Killed
	}
}

// runStats tells how much the random runs exercised.
type runStats struct {
	Tasks, Transitions, Kills, Restarts, Succeeded, Failed, Cancelled int
}

func randomRun(seed uint64, stats *runStats) error {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	rj := randomGraph(r)
	j, err := New(rj.g, rj.tasks, rj.cfg)
	if err != nil {
		return fmt.Errorf("new: %w", err)
	}
	n := rj.g.N
	m := &model{
		rj: rj, j: j,
		now:           time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		state:         make([]State, n),
		failures:      make([]int32, n),
		lost:          make([]int32, n),
		tier:          make([]int32, n),
		readyAt:       make([]time.Time, n),
		started:       make([]time.Time, n),
		killed:        make([]int32, n),
		terminals:     make([]int, n),
		running:       map[int32]int32{},
		taskCancelled: make([]bool, n),
		stats:         stats,
	}
	for t := range n {
		m.tier[t] = rj.tasks[t].Tier
	}
	stats.Tasks += n
	j.Start(m.now)
	if err := m.absorb(); err != nil {
		return err
	}
	randomRunning := func() (int32, int32, bool) {
		if len(m.running) == 0 {
			return 0, 0, false
		}
		off := r.IntN(n)
		for i := range n {
			t := int32((off + i) % n)
			if a, ok := m.running[t]; ok {
				return t, a, true
			}
		}
		return 0, 0, false
	}
	flaky := []int{0, 10, 30, 60}[r.IntN(4)]
	cancels := r.IntN(3) == 0  // some runs cancel tasks and the job
	restarts := r.IntN(2) == 0 // some runs restart the runner
	step := func(random bool) error {
		switch x := r.IntN(1000); {
		case x < 350:
			m.j.Next(int32(r.IntN(rj.cfg.Tiers)), m.now)
		case x < 700:
			if t, a, ok := randomRunning(); ok {
				o := randomOutcome(r, flaky)
				if !random && o == Killed {
					o = Success
				}
				return m.finished(t, a, o)
			}
		case x < 780:
			t := int32(r.IntN(n))
			a := m.j.Attempts(t) + int32(r.IntN(3)) - 1
			if cur, ok := m.running[t]; ok && cur == a {
				break
			}
			before := m.j.Counts()
			if m.j.Finished(t, a, randomOutcome(r, 50), m.now) {
				return fmt.Errorf("stale report for task %d attempt %d accepted", t, a)
			}
			if o := m.j.Drain(); len(o.Transitions)+len(o.Kills) > 0 || m.j.Counts() != before {
				return fmt.Errorf("stale report for task %d attempt %d changed something", t, a)
			}
		case x < 950:
			m.now = m.now.Add(time.Duration(r.IntN(4000)) * time.Millisecond)
			m.j.Tick(m.now)
		case x < 980 && random && cancels:
			t := int32(r.IntN(n))
			m.taskCancelled[t] = true
			m.j.CancelTask(t, m.now)
		case x < 982 && random && cancels:
			if !m.j.Done() {
				m.cancelled = true
			}
			m.j.Cancel(m.now)
		case x < 1000 && random && restarts:
			return m.restart()
		}
		return m.absorb()
	}
	for range r.IntN(400) {
		if err := step(true); err != nil {
			return err
		}
	}
	// Drive the job to its end: run everything ready, and when nothing is,
	// move the clock to the next wake-up.
	for i := 0; !m.j.Done(); i++ {
		if i > 100000 {
			return fmt.Errorf("job not done after %d steps: counts %v", i, m.j.Counts())
		}
		progress := false
		for tier := range rj.cfg.Tiers {
			for {
				if _, _, ok := m.j.Next(int32(tier), m.now); !ok {
					break
				}
				progress = true
			}
		}
		if err := m.absorb(); err != nil {
			return err
		}
		if len(m.running) > 0 {
			if err := step(false); err != nil {
				return err
			}
			continue
		}
		if progress {
			continue
		}
		wake := m.j.NextWake()
		if wake.IsZero() {
			return fmt.Errorf("stuck: nothing running, ready or pending; counts %v", m.j.Counts())
		}
		if wake.After(m.now) {
			m.now = wake
		}
		m.j.Tick(m.now)
		if err := m.absorb(); err != nil {
			return err
		}
	}
	// The end.
	for t := range n {
		if m.terminals[t] != 1 {
			return fmt.Errorf("task %d entered a terminal state %d times", t, m.terminals[t])
		}
		if m.state[t] == UpstreamFailed {
			failed := false
			for _, p := range rj.parents[t] {
				failed = failed || m.state[p] == Failed || m.state[p] == UpstreamFailed
			}
			if !failed {
				return fmt.Errorf("task %d upstream_failed, but no parent failed", t)
			}
		}
	}
	c := m.j.Counts()
	want := "failed"
	switch {
	case c[Succeeded] == int64(n):
		want = "succeeded"
	case m.cancelled:
		want = "cancelled"
	}
	switch want {
	case "succeeded":
		stats.Succeeded++
	case "failed":
		stats.Failed++
	default:
		stats.Cancelled++
	}
	if got := m.j.Outcome(); got != want {
		return fmt.Errorf("outcome %q, want %q (counts %v)", got, want, c)
	}
	return nil
}
