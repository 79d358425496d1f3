package bench_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/bench"
	"github.com/haul-dev/haul/internal/cli"
	"github.com/haul-dev/haul/internal/syncbuf"
)

// asHaul, set in the environment, makes this test binary the haul command
// (cli.Main): the process executor's workers run it as `haul taskhost`,
// the dynamic scenario's adders as `haul task add`. It is set by env(1)
// in the command itself (haulCommand), since a task's environment is
// only what its job gives it.
const asHaul = "HAUL_BENCH_TEST_AS_HAUL"

func TestMain(m *testing.M) {
	if os.Getenv(asHaul) == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// haulCommand is this test binary as the haul command.
func haulCommand(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env, err := exec.LookPath("env")
	if err != nil {
		t.Fatal(err)
	}
	return []string{env, asHaul + "=1", exe}
}

// syncBuffer collects output written while the test reads it.
type syncBuffer = syncbuf.Buffer

// run runs a small benchmark and checks that its line is well formed and
// says what was asked.
func run(t *testing.T, cfg bench.Config) bench.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg.Haul = haulCommand(t)
	var progress syncBuffer
	cfg.Progress = &progress
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("%s/%s/%s: %v\nprogress:\n%s", cfg.Scenario, cfg.Executor, cfg.Store, err, progress.String())
	}
	line := res.Line()
	back, err := bench.ParseLine(line)
	if err != nil || back.Line() != line {
		t.Fatalf("line %q does not parse back (%v): %+v", line, err, back)
	}
	if res.Scenario != cfg.Scenario || res.Executor != cfg.Executor || res.Tasks != int64(cfg.Tasks) {
		t.Errorf("line %q: want scenario %s, executor %s, %d tasks", line, cfg.Scenario, cfg.Executor, cfg.Tasks)
	}
	if res.WallS <= 0 || res.TasksPerS <= 0 || res.PeakRSSMB <= 0 || res.DispatchP99Ms < res.DispatchP50Ms ||
		res.DispatchSlotP99Ms < res.DispatchSlotP50Ms || res.DispatchSlotP99Ms > res.DispatchP99Ms {
		t.Errorf("line %q: figures out of range", line)
	}
	if res.Workers < 1 || res.Capacity < 1 {
		t.Errorf("line %q: no worker settings", line)
	}
	if !strings.Contains(progress.String(), "bench: ") {
		t.Errorf("no progress written: %q", progress.String())
	}
	t.Log(line)
	return res
}

func TestNoopScenariosOnSQLite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		scenario string
		tasks    int
	}{
		{bench.Wide, 300},
		{bench.Chain, 15},
		{bench.Fanout, 60},
		{bench.Layered, 40},
		{bench.Dynamic, 45},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			t.Parallel()
			res := run(t, bench.Config{Scenario: tc.scenario, Tasks: tc.tasks, Layers: 4, Parents: 2,
				Executor: bench.Noop, Store: bench.SQLite, Workers: 2, Capacity: 8})
			if res.Store != bench.SQLite || res.Durability != "sqlite:wal,synchronous=full" {
				t.Errorf("store %s, durability %s", res.Store, res.Durability)
			}
			if res.SubmitS <= 0 || res.SubmitS > res.WallS {
				t.Errorf("submit_s %v, wall_s %v", res.SubmitS, res.WallS)
			}
		})
	}
}

func TestNoopOnPostgres(t *testing.T) {
	t.Parallel()
	res := run(t, bench.Config{Scenario: bench.Fanout, Tasks: 50, Executor: bench.Noop, Store: bench.Postgres, Workers: 2, Capacity: 4})
	if res.Store != bench.Postgres || res.Durability != "postgres:fsync=on,synchronous_commit=on" {
		t.Errorf("store %s, durability %s", res.Store, res.Durability)
	}
}

func TestProcessExecutor(t *testing.T) {
	t.Parallel()
	res := run(t, bench.Config{Scenario: bench.Wide, Tasks: 20, Executor: bench.Process, Store: bench.SQLite, Workers: 2, Capacity: 2})
	if res.Workers != 2 || res.Capacity != 2 {
		t.Errorf("workers %d capacity %d, want 2 and 2", res.Workers, res.Capacity)
	}
}

func TestProcessAddsTasksWithHaulTaskAdd(t *testing.T) {
	t.Parallel()
	run(t, bench.Config{Scenario: bench.Dynamic, Tasks: 12, Executor: bench.Process, Store: bench.SQLite, Workers: 2, Capacity: 2})
}

func TestBaseline(t *testing.T) {
	t.Parallel()
	res := run(t, bench.Config{Scenario: bench.Wide, Tasks: 20, Executor: bench.Baseline, Workers: 2, Capacity: 2})
	if res.Store != "none" || res.Durability != "none" {
		t.Errorf("baseline: store %s, durability %s", res.Store, res.Durability)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  bench.Config
		want string
	}{
		{bench.Config{Scenario: bench.Wide, Tasks: 5, Executor: "magic", Store: bench.SQLite}, `executor "magic"`},
		{bench.Config{Scenario: bench.Wide, Tasks: 5, Executor: bench.Noop, Store: "csv"}, `store "csv"`},
		{bench.Config{Scenario: bench.Wide, Tasks: 5, Executor: bench.Noop, Store: bench.SQLite, DatabaseURL: "postgres://x"}, "needs store postgres"},
		{bench.Config{Scenario: bench.Chain, Tasks: 5, Executor: bench.Baseline}, "baseline executor runs the wide scenario only"},
		{bench.Config{Scenario: bench.Wide, Tasks: 5, Executor: bench.Noop, Store: bench.SQLite, Workers: -1}, "workers -1"},
		{bench.Config{Scenario: bench.Fanout, Tasks: 2, Executor: bench.Noop, Store: bench.SQLite}, "at least 3"},
	} {
		_, err := bench.Run(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v): error %v, want one mentioning %q", tc.cfg, err, tc.want)
		}
	}
}

func ExampleResult_Line() {
	r := bench.Result{Scenario: bench.Wide, Store: bench.SQLite, Executor: bench.Noop, Tasks: 1000, WallS: 0.5, TasksPerS: 2000,
		DispatchP50Ms: 1.25, DispatchP99Ms: 9.5, PeakRSSMB: 61.2, DispatchSlotP50Ms: 0.75, DispatchSlotP99Ms: 4, SubmitS: 0.031, HeapPerTaskB: 412, HeapMidPerTaskB: 96, Workers: 8, Capacity: 128,
		Durability: "sqlite:wal,synchronous=full"}
	fmt.Println(r.Line())
	// Output: scenario=wide store=sqlite executor=noop tasks=1000 wall_s=0.500 tasks_per_s=2000.0 dispatch_p50_ms=1.250 dispatch_p99_ms=9.500 peak_rss_mb=61.2 dispatch_slot_p50_ms=0.750 dispatch_slot_p99_ms=4.000 submit_s=0.031 heap_per_task_b=412 heap_mid_per_task_b=96 workers=8 capacity=128 durability=sqlite:wal,synchronous=full baseline_tasks_per_s=0.0 baseline_ratio=0.000 flood=0
}
