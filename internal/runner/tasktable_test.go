package runner

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/dag"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
)

func TestTaskTableRoundTrip(t *testing.T) {
	t.Parallel()
	start := time.Unix(1700000000, 42)
	tasks := []store.Task{
		{Key: "split", Argv: []string{"sh", "-c", "echo a | b"}, Cwd: "/data"},
		{Key: "sim-0", Argv: []string{"sim", "--scene", "0"}, Env: map[string]string{"SCENE": "0", "EMPTY": ""}, After: []string{"split"}, State: store.TaskRunning, StartedAt: start, ExitCode: 3},
		{Key: "sim-1", Argv: []string{"sim", "--scene", "1"}, Env: map[string]string{"SCENE": "1"}, After: []string{"split"}},
		{Key: "ünïcode key", Argv: []string{""}, After: []string{"sim-*", "split"}},
	}
	tt := newTaskTable(0)
	for i := range tasks {
		tt.add(&tasks[i])
	}
	if tt.len() != len(tasks) {
		t.Fatalf("len %d", tt.len())
	}
	for i, want := range tasks {
		key, cwd, argv, env := tt.spec(int32(i))
		if key != want.Key || cwd != want.Cwd || !slices.Equal(argv, want.Argv) || !maps.Equal(env, want.Env) || len(env) != len(want.Env) {
			t.Errorf("task %d: got %q %q %q %v, want %+v", i, key, cwd, argv, env, want)
		}
		if k := tt.key(int32(i)); k != want.Key {
			t.Errorf("key(%d) = %q", i, k)
		}
		if a := tt.afterOf(int32(i)); !slices.Equal(a, want.After) {
			t.Errorf("after(%d) = %q, want %q", i, a, want.After)
		}
	}
	if len(tt.afters) != 3 {
		t.Errorf("%d distinct after lists, want 3 (sim-0 and sim-1 share theirs)", len(tt.afters))
	}
	if !tt.startedAt(1).Equal(start) || !tt.startedAt(0).IsZero() || tt.exit[1] != 3 {
		t.Errorf("started %v / %v, exit %d", tt.startedAt(1), tt.startedAt(0), tt.exit[1])
	}
}

// BenchmarkJobMemory measures what the runner holds for a fan-out job of a
// million tasks and two million edges (split → sim-i → report, the report
// after a glob): the scheduling core, the graph and the task table, in
// bytes per task above the heap before loading (B/task). The store rows
// loaded to build them are dropped before measuring, as in Runner.load.
func BenchmarkJobMemory(b *testing.B) {
	const n = 1_000_000
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		tt, core, g := loadFanout(n)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		perTask := float64(after.HeapAlloc-before.HeapAlloc) / n
		b.ReportMetric(perTask, "B/task")
		b.ReportMetric(float64(tt.bytes())/n, "table-B/task")
		b.ReportMetric(float64(len(g.Child))/n, "edges/task")
		runtime.KeepAlive(core)
	}
}

func loadFanout(n int) (*taskTable, *sched.Job, *dag.Graph) {
	keys := make([]string, n)
	after := make([][]string, n)
	cfgs := make([]sched.TaskConfig, n)
	tt := newTaskTable(n)
	split := []string{"split"}
	for i := range n {
		t := store.Task{Index: int32(i), Argv: []string{"run-sim", "--scene", strconv.Itoa(i)}, Env: map[string]string{"SCENE_ID": strconv.Itoa(i)}, After: split}
		switch i {
		case 0:
			t.Key, t.After, t.Argv, t.Env = "split", nil, []string{"split"}, nil
		case n - 1:
			t.Key, t.After, t.Argv, t.Env = "report", []string{"sim-*"}, []string{"report"}, nil
		default:
			t.Key = fmt.Sprintf("sim-%d", i)
		}
		keys[i], after[i] = t.Key, t.After
		tt.add(&t)
	}
	g, err := dag.Build(keys, after)
	if err != nil {
		panic(err)
	}
	core := sched.NewJob(g, cfgs, sched.Config{Tiers: 1})
	core.Start(time.Unix(0, 0))
	core.Drain()
	return tt, core, g
}
