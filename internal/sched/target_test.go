package sched

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var estT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestEstimate(t *testing.T) {
	t.Parallel()
	const h = time.Minute
	at := func(s float64) time.Time { return estT0.Add(time.Duration(s * float64(time.Second))) }
	for _, tc := range []struct {
		name       string
		halfLife   time.Duration
		obs        [][2]float64 // {value, at seconds}
		want       float64
		wantWeight float64
	}{
		{"one", h, [][2]float64{{10, 0}}, 10, 1},
		{"burst at one instant counts equally", h, [][2]float64{{1, 5}, {2, 5}, {6, 5}}, 3, 3},
		// 10 at 0 weighs 1/2 one half-life later: (5+40)/(1.5).
		{"one half-life", h, [][2]float64{{10, 0}, {40, 60}}, 30, 1.5},
		// Two half-lives: weights 1/4 and 1: (2.5+40)/1.25.
		{"two half-lives", h, [][2]float64{{10, 0}, {40, 120}}, 34, 1.25},
		{"no decay when half-life is 0", 0, [][2]float64{{10, 0}, {40, 1e6}}, 25, 2},
		{"no decay when half-life is negative", -h, [][2]float64{{10, 0}, {20, 60}, {30, 120}}, 20, 3},
		// The clock going back decays nothing; the later decay is from the
		// latest time seen (60), not from the earlier one.
		{"time going backwards", h, [][2]float64{{10, 60}, {40, 0}, {70, 120}}, (25*1.0 + 70) / 2, 2},
		{"ancient history forgotten", h, [][2]float64{{1e9, 0}, {3, 1e9}}, 3, 1},
		{"bad observations ignored", h, [][2]float64{{math.NaN(), 0}, {math.Inf(1), 0}, {-1, 0}, {7, 0}, {math.Inf(-1), 0}}, 7, 1},
		{"huge values do not overflow", 0, [][2]float64{{math.MaxFloat64, 0}, {math.MaxFloat64, 1}}, math.MaxFloat64, 2},
	} {
		var e Estimate
		for _, o := range tc.obs {
			e.Observe(o[0], at(o[1]), tc.halfLife)
		}
		v, ok := e.Value()
		if !ok || math.Abs(v-tc.want) > 1e-9*math.Max(1, math.Abs(tc.want)) {
			t.Errorf("%s: Value() = %v, %v; want %v", tc.name, v, ok, tc.want)
		}
		if w := e.Weight(); math.Abs(w-tc.wantWeight) > 1e-9 {
			t.Errorf("%s: Weight() = %v, want %v", tc.name, w, tc.wantWeight)
		}
	}
	var e Estimate
	if v, ok := e.Value(); ok || v != 0 || e.Weight() != 0 {
		t.Errorf("zero Estimate: Value() = %v, %v, Weight %v; want 0, false, 0", v, ok, e.Weight())
	}
	if e.Observe(math.NaN(), estT0, h) {
		t.Error("Observe(NaN) reported it was used")
	}
	if _, ok := e.Value(); ok {
		t.Error("an ignored observation made the estimate known")
	}
}

// TestEstimateProperties: the estimate always lies between the smallest and
// the largest observation and is finite, whatever the order of times.
func TestEstimateProperties(t *testing.T) {
	t.Parallel()
	for seed := range uint64(500) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var e Estimate
		lo, hi := math.Inf(1), math.Inf(-1)
		halfLife := time.Duration(rng.Int64N(int64(time.Hour))) - 5*time.Minute
		now := estT0
		for range 1 + rng.IntN(50) {
			now = now.Add(time.Duration(rng.Int64N(int64(2*time.Hour))) - 20*time.Minute)
			x := math.Exp(rng.Float64()*40 - 20)
			e.Observe(x, now, halfLife)
			lo, hi = min(lo, x), max(hi, x)
			v, ok := e.Value()
			if !ok || math.IsNaN(v) || math.IsInf(v, 0) || v < lo*(1-1e-12) || v > hi*(1+1e-12) {
				t.Fatalf("seed %d: Value() = %v, %v outside [%v, %v]", seed, v, ok, lo, hi)
			}
			if w := e.Weight(); !(w >= 1) || math.IsInf(w, 0) {
				t.Fatalf("seed %d: Weight() = %v, want finite and >= 1 after an observation", seed, w)
			}
		}
	}
}

func TestTargetWorkers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		in    TargetInput
		want  int
		spark int
	}{
		{"nothing to do", TargetInput{TaskSeconds: 5, StartupSeconds: 30, Max: 10}, 0, 0},
		{"running only, keep them", TargetInput{Running: 4, RunningElapsed: 8, TaskSeconds: 5, StartupSeconds: 30, Max: 10}, 4, 4},
		{"unknown task time: one worker to learn", TargetInput{Queued: 1000, StartupSeconds: 30, IdleGrace: 10, Max: 100}, 1, 100},
		{"unknown task time and startup: one worker", TargetInput{Queued: 1000, Max: 100}, 1, 100},
		// 2000 one-second tasks, cost 30+10: 2000/40 = 50 workers.
		{"short tasks", TargetInput{Queued: 2000, TaskSeconds: 1, StartupSeconds: 30, IdleGrace: 10, Max: 100}, 50, 100},
		// floor: 1999/40 = 49.975 gives 49 (the 50th would get less than its cost).
		{"floor, not ceil", TargetInput{Queued: 1999, TaskSeconds: 1, StartupSeconds: 30, IdleGrace: 10, Max: 100}, 49, 100},
		{"exactly the cost", TargetInput{Queued: 40, TaskSeconds: 1, StartupSeconds: 30, IdleGrace: 10, Max: 100}, 1, 40},
		{"tiny queue, no worker: still one", TargetInput{Queued: 3, TaskSeconds: 1, StartupSeconds: 30, IdleGrace: 10, Max: 100}, 1, 3},
		{"long tasks: one each", TargetInput{Queued: 50, TaskSeconds: 600, StartupSeconds: 30, IdleGrace: 10, Max: 100}, 50, 50},
		{"long tasks: up to Max", TargetInput{Queued: 2000, TaskSeconds: 600, StartupSeconds: 30, IdleGrace: 10, Max: 100}, 100, 100},
		// Running workers absorb short queued work: 100 running 1s tasks,
		// half done, 100 queued: work 100+50 = 150 < 40·100: keep 100.
		{"running workers absorb short work", TargetInput{Queued: 100, Running: 100, RunningElapsed: 50, TaskSeconds: 1, StartupSeconds: 30, IdleGrace: 10, Max: 200}, 100, 200},
		// One queued 600s task, 99 running attempts nearly done: work
		// 600+99 = 699 → 17 < 99; a new worker would arrive after a
		// running one is free.
		{"running nearly done", TargetInput{Queued: 1, Running: 99, RunningElapsed: 99 * 599, TaskSeconds: 600, StartupSeconds: 30, IdleGrace: 10, Max: 200}, 99, 100},
		// Same, but the running attempts just started: start one for it.
		{"running just started", TargetInput{Queued: 1, Running: 99, RunningElapsed: 99, TaskSeconds: 600, StartupSeconds: 30, IdleGrace: 10, Max: 200}, 100, 100},
		// No history, one attempt running for 20s: task >= 20s, work >=
		// 1999·20 = 39980 → 999 workers, capped at Max.
		{"elapsed time is a lower bound on task time", TargetInput{Queued: 1999, Running: 1, RunningElapsed: 20, StartupSeconds: 30, IdleGrace: 10, Max: 100}, 100, 100},
		// Running for 0.5s, less than half a start's cost (40s): too early
		// to tell a short task from a long one; the one worker stays alone.
		{"elapsed time, too early to count", TargetInput{Queued: 1999, Running: 1, RunningElapsed: 0.5, StartupSeconds: 30, IdleGrace: 10, Max: 100}, 1, 100},
		// Running for 20s, half the cost: work 199·20 + 0 = 3980 → 99.
		{"elapsed time, half a start", TargetInput{Queued: 199, Running: 1, RunningElapsed: 20, StartupSeconds: 30, IdleGrace: 10, Max: 200}, 99, 200},
		// A known short task time is not raised by a short elapsed time.
		{"short elapsed leaves the estimate", TargetInput{Queued: 300, Running: 1, RunningElapsed: 0.03, TaskSeconds: 0.012, StartupSeconds: 0.2, IdleGrace: 3, Max: 6}, 1, 6},
		{"estimate below elapsed is raised", TargetInput{Queued: 1999, Running: 1, RunningElapsed: 20, TaskSeconds: 1, StartupSeconds: 30, IdleGrace: 10, Max: 100}, 100, 100},
		{"free starts: one per task", TargetInput{Queued: 7, Running: 2, RunningElapsed: 1, TaskSeconds: 1, Max: 100}, 9, 9},
		{"Max below running", TargetInput{Queued: 5, Running: 20, RunningElapsed: 20, TaskSeconds: 5, StartupSeconds: 1, Max: 8}, 8, 8},
		{"Max 0", TargetInput{Queued: 5, Running: 2, TaskSeconds: 5, Max: 0}, 0, 0},
		{"negative Max", TargetInput{Queued: 5, TaskSeconds: 5, Max: -3}, 0, 0},
		{"negative counts", TargetInput{Queued: -5, Running: -2, TaskSeconds: 5, Max: 10}, 0, 0},
		{"infinite task time", TargetInput{Queued: 5, TaskSeconds: math.Inf(1), StartupSeconds: 30, Max: 10}, 5, 5},
		{"NaN task time is unknown", TargetInput{Queued: 5, TaskSeconds: math.NaN(), StartupSeconds: 30, Max: 10}, 1, 5},
		{"NaN startup counts as 0", TargetInput{Queued: 5, TaskSeconds: 1, StartupSeconds: math.NaN(), IdleGrace: 2, Max: 10}, 2, 5},
		{"huge counts do not overflow", TargetInput{Queued: math.MaxInt, Running: math.MaxInt, TaskSeconds: 1, StartupSeconds: 1, Max: math.MaxInt}, math.MaxInt, math.MaxInt},
	} {
		if got := TargetWorkers(tc.in); got != tc.want {
			t.Errorf("%s: TargetWorkers(%+v) = %d, want %d", tc.name, tc.in, got, tc.want)
		}
		if got := SparkTarget(tc.in); got != tc.spark {
			t.Errorf("%s: SparkTarget(%+v) = %d, want %d", tc.name, tc.in, got, tc.spark)
		}
	}
}

// randomInput draws inputs over wide ranges, including zeros, unknowns and
// the odd invalid value.
func randomInput(rng *rand.Rand) TargetInput {
	count := func() int {
		switch rng.IntN(8) {
		case 0:
			return 0
		case 1:
			return -rng.IntN(5)
		default:
			return rng.IntN(1 << rng.IntN(14))
		}
	}
	secs := func() float64 {
		switch rng.IntN(12) {
		case 0:
			return 0
		case 1:
			return math.NaN()
		case 2:
			return -rng.Float64()
		default:
			return math.Exp(rng.Float64()*16 - 6) // ~0.0025s to ~8h
		}
	}
	in := TargetInput{Queued: count(), Running: count(), Live: count(), TaskSeconds: secs(), StartupSeconds: secs(), IdleGrace: secs(), Max: count()}
	if in.Running > 0 && rng.IntN(3) > 0 {
		in.RunningElapsed = float64(in.Running) * secs()
	}
	return in
}

// TestTargetWorkersProperties checks, on random inputs, the bounds and the
// directions in which the target may move.
func TestTargetWorkersProperties(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20000) {
		rng := rand.New(rand.NewPCG(seed, 2))
		in := randomInput(rng)
		got := TargetWorkers(in)
		if err := checkTargetBounds(in, got); err != "" {
			t.Fatalf("seed %d: TargetWorkers(%+v) = %d: %s", seed, in, got, err)
		}
		if s := SparkTarget(in); got > s {
			t.Fatalf("seed %d: TargetWorkers(%+v) = %d above SparkTarget %d", seed, in, got, s)
		}
		// Monotone: more queued tasks or longer tasks never lower the
		// target; a dearer start (startup or grace) never raises it.
		more := in
		more.Queued = max(in.Queued, 0) + 1 + rng.IntN(100)
		if g := TargetWorkers(more); g < got {
			t.Fatalf("seed %d: Queued %d → %d lowered the target %d → %d (%+v)", seed, in.Queued, more.Queued, got, g, in)
		}
		longer := in
		longer.TaskSeconds = seconds(in.TaskSeconds) * (1 + rng.Float64()*3)
		if rng.IntN(4) == 0 {
			longer.TaskSeconds = seconds(in.TaskSeconds) + rng.Float64()*100
		}
		if g := TargetWorkers(longer); g < got {
			t.Fatalf("seed %d: TaskSeconds %v → %v lowered the target %d → %d (%+v)", seed, in.TaskSeconds, longer.TaskSeconds, got, g, in)
		}
		slower := in
		slower.StartupSeconds = seconds(in.StartupSeconds) + rng.Float64()*60
		if g := TargetWorkers(slower); g > got {
			t.Fatalf("seed %d: StartupSeconds %v → %v raised the target %d → %d (%+v)", seed, in.StartupSeconds, slower.StartupSeconds, got, g, in)
		}
		graceful := in
		graceful.IdleGrace = seconds(in.IdleGrace) + rng.Float64()*60
		if g := TargetWorkers(graceful); g > got {
			t.Fatalf("seed %d: IdleGrace %v → %v raised the target %d → %d (%+v)", seed, in.IdleGrace, graceful.IdleGrace, got, g, in)
		}
		other := in
		other.Live = rng.IntN(1000) - 10
		if g := TargetWorkers(other); g != got {
			t.Fatalf("seed %d: Live %d → %d changed the target %d → %d (%+v)", seed, in.Live, other.Live, got, g, in)
		}
		bigger := in
		bigger.Max = max(in.Max, 0) + rng.IntN(50)
		if g := TargetWorkers(bigger); g < got {
			t.Fatalf("seed %d: Max %d → %d lowered the target %d → %d (%+v)", seed, in.Max, bigger.Max, got, g, in)
		}
	}
}

// checkTargetBounds returns what is wrong with target for in, or "".
func checkTargetBounds(in TargetInput, target int) string {
	q, r, m := max(in.Queued, 0), max(in.Running, 0), max(in.Max, 0)
	qr := q + r
	if qr < q { // overflow
		qr = math.MaxInt
	}
	switch {
	case target < 0:
		return "negative"
	case target > m:
		return "above Max"
	case target > qr:
		return "above Queued+Running"
	case target < min(r, m):
		return "running attempts not covered"
	case q > 0 && m > 0 && target < 1:
		return "a queued task has no worker"
	}
	return ""
}

func FuzzTargetWorkers(f *testing.F) {
	f.Add(2000, 0, 0.0, 1.0, 30.0, 10.0, 100)
	f.Add(1, 9, 9*599.0, 600.0, 30.0, 10.0, 100)
	f.Add(1000, 0, 0.0, 0.0, 0.0, 0.0, 100)
	f.Add(-1, -1, math.NaN(), math.Inf(1), math.Inf(-1), -1.0, -1)
	f.Add(math.MaxInt, math.MaxInt, math.MaxFloat64, math.MaxFloat64, math.SmallestNonzeroFloat64, 0.0, math.MaxInt)
	f.Fuzz(func(t *testing.T, queued, running int, elapsed, task, startup, grace float64, maxWorkers int) {
		in := TargetInput{Queued: queued, Running: running, RunningElapsed: elapsed, TaskSeconds: task, StartupSeconds: startup, IdleGrace: grace, Max: maxWorkers}
		got := TargetWorkers(in)
		if err := checkTargetBounds(in, got); err != "" {
			t.Fatalf("TargetWorkers(%+v) = %d: %s", in, got, err)
		}
		if got != TargetWorkers(in) {
			t.Fatalf("TargetWorkers(%+v) is not deterministic", in)
		}
	})
}

func FuzzEstimate(f *testing.F) {
	f.Add(1.0, int64(0), 2.0, int64(time.Minute), int64(time.Minute))
	f.Add(math.MaxFloat64, int64(0), math.MaxFloat64, int64(-time.Hour), int64(time.Nanosecond))
	f.Add(0.0, int64(1<<62), 1e-300, int64(-1<<62), int64(0))
	f.Fuzz(func(t *testing.T, x1 float64, d1 int64, x2 float64, d2 int64, halfLife int64) {
		var e Estimate
		e.Observe(x1, estT0.Add(time.Duration(d1)), time.Duration(halfLife))
		e.Observe(x2, estT0.Add(time.Duration(d2)), time.Duration(halfLife))
		v, ok := e.Value()
		if math.IsNaN(v) || math.IsInf(v, 0) || math.IsNaN(e.Weight()) || math.IsInf(e.Weight(), 0) {
			t.Fatalf("Value() = %v, %v, Weight %v", v, ok, e.Weight())
		}
		if ok && (v < 0 || v > max(x1, x2)*(1+1e-12)) {
			t.Fatalf("Value() = %v outside the observations %v, %v", v, x1, x2)
		}
	})
}
