package sched

import (
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/dag"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestStateNames(t *testing.T) {
	t.Parallel()
	for s := range State(NumStates) {
		got, err := ParseState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseState(%q) = %v, %v", s.String(), got, err)
		}
		if want := s >= Succeeded; s.Terminal() != want {
			t.Errorf("%v.Terminal() = %v", s, s.Terminal())
		}
	}
	if _, err := ParseState("done"); err == nil {
		t.Error("ParseState(done): no error")
	}
	if State(9).String() != "state(9)" || State(9).Terminal() {
		t.Error("an unknown state has a name or is terminal")
	}
	for o := range Killed + 1 {
		if got, err := ParseOutcome(o.String()); err != nil || got != o {
			t.Errorf("ParseOutcome(%q) = %v, %v", o.String(), got, err)
		}
	}
}

func TestValidateGraph(t *testing.T) {
	t.Parallel()
	good := func() *dag.Graph { return csr(3, []string{"x-*"}, [][2]int32{{0, 1}, {0, 3}, {1, 3}, {3, 2}}) }
	tasks := make([]TaskConfig, 3)
	cfg := Config{Tiers: 1}
	if err := Validate(good(), tasks, cfg); err != nil {
		t.Fatalf("valid graph: %v", err)
	}
	for _, tc := range []struct {
		name   string
		break_ func(g *dag.Graph)
		want   string
	}{
		{"nil", nil, "nil graph"},
		{"offsets", func(g *dag.Graph) { g.ChildOff = g.ChildOff[:2] }, "ChildOff has 2 entries, want 5"},
		{"decreasing", func(g *dag.Graph) { g.ChildOff[1], g.ChildOff[2] = 3, 2 }, "ChildOff decreases at node 1"},
		{"end", func(g *dag.Graph) { g.Child = g.Child[:3] }, "ChildOff ends at 4 but Child has 3 entries"},
		{"range", func(g *dag.Graph) { g.Child[0] = 9 }, "task 0 has child 9, out of range"},
		{"self", func(g *dag.Graph) { g.Child[0] = 0 }, "task 0 depends on itself"},
		{"nparents", func(g *dag.Graph) { g.NParents[2] = 2 }, "task 2 has 1 parent edges but NParents says 2"},
		{"short nparents", func(g *dag.Graph) { g.NParents = g.NParents[:1] }, "NParents has 1 entries, want 4"},
		{"cycle", func(g *dag.Graph) { g.Child[3] = 0; g.NParents[0], g.NParents[2] = 1, 0 }, "cycle"},
	} {
		g := good()
		if tc.break_ == nil {
			g = nil
		} else {
			tc.break_(g)
		}
		err := Validate(g, tasks, cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
		// NewJob never panics: it hands back a job that fails at Start.
		j := NewJob(g, tasks, cfg)
		if j.Err() == nil {
			t.Errorf("%s: NewJob has no error", tc.name)
		}
		j.Start(t0)
		if !j.Done() || j.Outcome() != "failed" {
			t.Errorf("%s: invalid job not done and failed: %v %q", tc.name, j.Counts(), j.Outcome())
		}
		for _, tr := range j.Drain().Transitions {
			if tr.To != Failed || tr.Reason != ReasonInvalid {
				t.Errorf("%s: transition %+v", tc.name, tr)
			}
		}
		if err := j.Restore(0, Succeeded, 1, 0); err == nil {
			t.Errorf("%s: restore into an invalid job accepted", tc.name)
		}
	}
	if err := Validate(good(), tasks[:2], cfg); err == nil || !strings.Contains(err.Error(), "2 task configs for a graph of 3 tasks") {
		t.Errorf("short tasks: %v", err)
	}
	if err := Validate(good(), []TaskConfig{{}, {Timeout: -time.Second}, {}}, cfg); err == nil || !strings.Contains(err.Error(), "task 1: timeout -1s is negative") {
		t.Errorf("negative timeout: %v", err)
	}
	for _, c := range []Config{{Tiers: 1, BackoffBase: -1}, {Tiers: 1, BackoffMax: -1}, {Tiers: 1, MaxLost: -1}, {Tiers: 300}} {
		if err := Validate(good(), tasks, c); err == nil || !strings.HasPrefix(err.Error(), "config: ") {
			t.Errorf("config %+v: %v", c, err)
		}
	}
}

// setup builds and starts a job of independent tasks with the given config.
func setup(t *testing.T, n int, tc TaskConfig, cfg Config) *Job {
	t.Helper()
	tasks := make([]TaskConfig, n)
	for i := range tasks {
		tasks[i] = tc
	}
	j, err := New(csr(n, nil, nil), tasks, cfg)
	if err != nil {
		t.Fatal(err)
	}
	j.Start(t0)
	return j
}

func TestQueriesOutOfRange(t *testing.T) {
	t.Parallel()
	j := setup(t, 2, TaskConfig{}, Config{Tiers: 1})
	for _, task := range []int32{-1, 2} {
		if j.State(task) != Blocked || j.Attempts(task) != 0 || j.Tier(task) != 0 {
			t.Errorf("task %d: queries answer", task)
		}
		if j.CancelTask(task, t0) {
			t.Errorf("CancelTask(%d) = true", task)
		}
		if j.Finished(task, 1, Success, t0) {
			t.Errorf("Finished(%d) = true", task)
		}
		if err := j.Restore(task, Succeeded, 0, 0); err == nil {
			t.Errorf("Restore(%d): no error", task)
		}
	}
	for _, tier := range []int32{-1, 1} {
		if _, _, ok := j.Next(tier, t0); ok || j.Ready(tier) != 0 || j.Waiting(tier) != 0 || j.Running(tier) != 0 {
			t.Errorf("tier %d: answers", tier)
		}
	}
	if j.Tasks() != 2 || j.Ready(0) != 2 {
		t.Errorf("Tasks %d, Ready %d", j.Tasks(), j.Ready(0))
	}
}

func TestBeforeStart(t *testing.T) {
	t.Parallel()
	j, err := New(csr(1, nil, nil), make([]TaskConfig, 1), Config{Tiers: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := j.Next(0, t0); ok {
		t.Error("Next before Start handed out a task")
	}
	j.Tick(t0)
	if j.Done() || j.Outcome() != "" || !j.NextWake().IsZero() {
		t.Error("a job that did not start is done or has a wake-up")
	}
	j.Start(t0)
	j.Start(t0) // a no-op
	if out := j.Drain(); len(out.Transitions) != 1 {
		t.Errorf("two Starts: %+v", out.Transitions)
	}
	// An empty job is done (and succeeded) once started.
	e, err := New(csr(0, nil, nil), nil, Config{Tiers: 1})
	if err != nil {
		t.Fatal(err)
	}
	e.Start(t0)
	if !e.Done() || e.Outcome() != "succeeded" {
		t.Errorf("empty job: done %v, outcome %q", e.Done(), e.Outcome())
	}
}

func TestDrainRecyclesBuffers(t *testing.T) {
	t.Parallel()
	j := setup(t, 4, TaskConfig{}, Config{Tiers: 1})
	first := j.Drain()
	if len(first.Transitions) != 4 {
		t.Fatalf("start: %d transitions", len(first.Transitions))
	}
	j.Next(0, t0)
	second := j.Drain()
	if first.Transitions[0].To != Queued || second.Transitions[0].To != Running {
		t.Error("the previous output changed before the next Drain")
	}
	if out := j.Drain(); len(out.Transitions)+len(out.Kills) != 0 {
		t.Errorf("nothing happened, got %+v", out)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	j := setup(t, 0, TaskConfig{}, Config{Tiers: 1, BackoffBase: time.Second, BackoffMax: 10 * time.Second})
	for n, want := range map[int32]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 1000: 10 * time.Second} {
		if got := j.backoffFor(n); got != want {
			t.Errorf("retry %d waits %v, want %v", n, got, want)
		}
	}
	d := setup(t, 0, TaskConfig{}, Config{Tiers: 1})
	if d.backoffFor(1) != DefaultBackoffBase || d.backoffFor(100) != DefaultBackoffMax || d.cfg.MaxLost != DefaultMaxLost {
		t.Error("defaults not applied")
	}
}

// TestHeapsStaySmall checks that attempts that end before their deadline,
// and retries cancelled in their backoff, do not pile up in the heaps.
func TestHeapsStaySmall(t *testing.T) {
	t.Parallel()
	const n = 10000
	j := setup(t, n, TaskConfig{Timeout: time.Hour, Retries: 1}, Config{Tiers: 1})
	for {
		task, a, ok := j.Next(0, t0)
		if !ok {
			break
		}
		j.Finished(task, a, Failure, t0) // into a 1s backoff
		j.CancelTask(task, t0)
		j.Drain()
	}
	if len(j.deadlines) > 100 || len(j.backoff) > 100 {
		t.Errorf("heaps hold %d deadlines and %d backoffs with nothing running or waiting", len(j.deadlines), len(j.backoff))
	}
	if !j.Done() || !j.NextWake().IsZero() {
		t.Errorf("done %v, next wake %v", j.Done(), j.NextWake())
	}
	if j.tiers[0].ring.buf != nil {
		t.Errorf("empty ring keeps %d slots", len(j.tiers[0].ring.buf))
	}
}

func TestNextWake(t *testing.T) {
	t.Parallel()
	j := setup(t, 2, TaskConfig{Timeout: 30 * time.Second, Retries: 1}, Config{Tiers: 1, BackoffBase: 5 * time.Second})
	a, _, _ := j.Next(0, t0)
	b, _, _ := j.Next(0, t0.Add(time.Second))
	if w := j.NextWake(); !w.Equal(t0.Add(30 * time.Second)) {
		t.Errorf("wake %v, want the first deadline", w)
	}
	j.Finished(a, 1, Failure, t0.Add(2*time.Second))
	if w := j.NextWake(); !w.Equal(t0.Add(7 * time.Second)) {
		t.Errorf("wake %v, want the end of the backoff", w)
	}
	j.CancelTask(a, t0.Add(3*time.Second))
	if w := j.NextWake(); !w.Equal(t0.Add(31 * time.Second)) {
		t.Errorf("wake %v, want b's deadline", w)
	}
	j.Tick(t0.Add(31 * time.Second))
	if k := j.Drain().Kills; len(k) != 1 || k[0] != (Kill{Task: b, Attempt: 1, Reason: ReasonTimeout}) {
		t.Errorf("kills %+v", k)
	}
	if w := j.NextWake(); !w.IsZero() {
		t.Errorf("wake %v after the only deadline fired", w)
	}
}
