package reusesim

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// checkRun checks the invariants every simulation must keep.
func checkRun(t *testing.T, s *sim) {
	t.Helper()
	w, r := s.w, s.result
	name := w.Name + "/" + string(s.strategy)
	for i, n := range s.runs {
		if n != 1 {
			t.Fatalf("%s: task %d ran %d times, want once", name, i, n)
		}
	}
	total, longest := 0.0, 0.0
	for _, d := range w.Tasks {
		total += d
		longest = max(longest, d)
	}
	const eps = 1e-6
	if r.Tasks != len(w.Tasks) || r.BusySeconds < total-eps || r.BusySeconds > total+eps {
		t.Fatalf("%s: %d tasks, %v busy seconds; want %d and %v", name, r.Tasks, r.BusySeconds, len(w.Tasks), total)
	}
	minStartup := w.Startup * (1 - w.StartupJitter)
	if r.Makespan < total/float64(w.MaxWorkers)-eps || r.Makespan < longest+minStartup-eps {
		t.Fatalf("%s: makespan %v below total work / max workers (%v) or the longest task after a startup (%v)", name, r.Makespan, total/float64(w.MaxWorkers), longest+minStartup)
	}
	if r.WorkerSeconds < total+float64(r.Workers)*minStartup-eps {
		t.Fatalf("%s: %v worker-seconds below the work plus %d startups (%v)", name, r.WorkerSeconds, r.Workers, total+float64(r.Workers)*minStartup)
	}
	if r.PeakWorkers < 1 || r.PeakWorkers > w.MaxWorkers || r.Workers < r.PeakWorkers {
		t.Fatalf("%s: peak %d workers, %d started, max %d", name, r.PeakWorkers, r.Workers, w.MaxWorkers)
	}
	if s.strategy == OnePerTask && r.Workers != len(w.Tasks) {
		t.Fatalf("%s: %d workers for %d tasks", name, r.Workers, len(w.Tasks))
	}
	if got := float64(r.Tasks) / float64(r.Workers); math.Abs(r.TasksPerWorker-got) > eps {
		t.Fatalf("%s: tasks per worker %v, want %v", name, r.TasksPerWorker, got)
	}
}

func TestNamedWorkloadInvariants(t *testing.T) {
	t.Parallel()
	for seed := int64(1); seed <= 3; seed++ {
		for _, name := range Workloads() {
			w, err := NewWorkload(name, seed)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range Strategies() {
				s, err := simulate(w, st, seed)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				checkRun(t, s)
			}
		}
	}
}

// TestRandomWorkloads runs every strategy on small random workloads,
// including free startups, no grace, one worker and coarse ticks: each ends,
// runs every task once and keeps the invariants.
func TestRandomWorkloads(t *testing.T) {
	t.Parallel()
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 3))
		w := Workload{
			Name:          "random",
			Tasks:         make([]float64, 1+rng.IntN(200)),
			Startup:       []float64{0, 0.5, 5, 30, 120}[rng.IntN(5)],
			StartupJitter: rng.Float64() * 0.5,
			MaxWorkers:    1 + rng.IntN(40),
			IdleGrace:     []float64{0, 1, 10, 60}[rng.IntN(4)],
			Tick:          []float64{0.25, 1, 7}[rng.IntN(3)],
			HalfLife:      time.Duration(rng.IntN(3)) * time.Minute,
		}
		for i := range w.Tasks {
			w.Tasks[i] = math.Exp(rng.Float64()*9 - 3) // 0.05s to ~3h
		}
		for _, st := range Strategies() {
			s, err := simulate(w, st, int64(seed))
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			checkRun(t, s)
		}
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	for _, name := range Workloads() {
		a, err := Compare(name, 7)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Compare(name, 7)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: two runs with seed 7 differ:\n%s\n%s", name, Table(a), Table(b))
		}
		c, err := Compare(name, 8)
		if err != nil {
			t.Fatal(err)
		}
		if reflect.DeepEqual(a, c) {
			t.Fatalf("%s: seeds 7 and 8 give the same results", name)
		}
	}
	if a, b := RunTiers(7), RunTiers(7); !reflect.DeepEqual(a, b) {
		t.Fatalf("tiers: two runs with seed 7 differ:\n%s\n%s", a.Table(), b.Table())
	}
}

// TestIssueTargets asserts the issue's targets on simulated figures: on
// short tasks, reuse targeting (learning from nothing) uses at least 30%
// fewer worker-seconds than a worker per task at a makespan no more than
// 10% longer; tiers request at least 5× less memory than max-sizing.
func TestIssueTargets(t *testing.T) {
	t.Parallel()
	for seed := int64(1); seed <= 5; seed++ {
		rs, err := Compare("short", seed)
		if err != nil {
			t.Fatal(err)
		}
		by := map[Strategy]Result{}
		for _, r := range rs {
			by[r.Strategy] = r
		}
		one := by[OnePerTask]
		for _, st := range []Strategy{Reuse, ReuseWarm} {
			r := by[st]
			if r.WorkerSeconds > 0.7*one.WorkerSeconds || r.Makespan > 1.1*one.Makespan {
				t.Errorf("seed %d: %s on short: %.0f worker-seconds and %.0fs makespan against one-per-task's %.0f and %.0fs\n%s",
					seed, st, r.WorkerSeconds, r.Makespan, one.WorkerSeconds, one.Makespan, Table(rs))
			}
		}
		// Reuse starts fewer workers than Spark for short tasks and so
		// spends fewer worker-seconds.
		if by[Reuse].WorkerSeconds >= by[Spark].WorkerSeconds {
			t.Errorf("seed %d: reuse %.0f worker-seconds, spark %.0f\n%s", seed, by[Reuse].WorkerSeconds, by[Spark].WorkerSeconds, Table(rs))
		}
		if tr := RunTiers(seed); tr.Reduction < 5 {
			t.Errorf("seed %d: tiers cut requested memory %.1f×, want at least 5×\n%s", seed, tr.Reduction, tr.Table())
		}
	}
}

func TestLongTasksScaleOut(t *testing.T) {
	t.Parallel()
	// With no history, the elapsed time of the first attempts shows the
	// tasks are long: reuse reaches Max workers as Spark does, and its
	// makespan is within a few startups of Spark's.
	rs, err := Compare("long", 1)
	if err != nil {
		t.Fatal(err)
	}
	by := map[Strategy]Result{}
	for _, r := range rs {
		by[r.Strategy] = r
	}
	if by[Reuse].PeakWorkers != DefaultMaxWorkers || by[Reuse].Makespan > by[Spark].Makespan+3*DefaultStartup {
		t.Fatalf("reuse on long tasks: peak %d, makespan %.0fs; spark %.0fs\n%s", by[Reuse].PeakWorkers, by[Reuse].Makespan, by[Spark].Makespan, Table(rs))
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	good, err := NewWorkload("short", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		change func(*Workload)
		want   string
	}{
		{func(w *Workload) { w.Tasks = nil }, "tasks: none"},
		{func(w *Workload) { w.Tasks = []float64{1, 0} }, "tasks[1]"},
		{func(w *Workload) { w.Tasks = []float64{math.NaN()} }, "tasks[0]"},
		{func(w *Workload) { w.Startup = -1 }, "startup"},
		{func(w *Workload) { w.StartupJitter = 2 }, "startup jitter"},
		{func(w *Workload) { w.MaxWorkers = 0 }, "max workers"},
		{func(w *Workload) { w.IdleGrace = math.Inf(1) }, "idle grace"},
		{func(w *Workload) { w.Tick = 0 }, "tick"},
	} {
		w := good
		tc.change(&w)
		if _, err := Run(w, Reuse, 1); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run: error %v, want one mentioning %q", err, tc.want)
		}
	}
	if _, err := Run(good, "fifo", 1); err == nil || !strings.Contains(err.Error(), `strategy "fifo"`) {
		t.Errorf("unknown strategy: error %v", err)
	}
	if _, err := Compare("huge", 1); err == nil || !strings.Contains(err.Error(), `workload "huge"`) {
		t.Errorf("unknown workload: error %v", err)
	}
}
