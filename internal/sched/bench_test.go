package sched

import (
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/dag"
)

const benchTasks = 1 << 20

func benchJob(b *testing.B, g *dag.Graph) *Job {
	b.Helper()
	j, err := New(g, make([]TaskConfig, g.N), Config{Tiers: 1})
	if err != nil {
		b.Fatal(err)
	}
	j.Start(t0)
	j.Drain()
	return j
}

// runTasks runs b.N jobs built from g to their end, one Next, Finished and
// Drain per task, and reports ns/task. Building and starting a job is not
// timed (BenchmarkStart times it).
func runTasks(b *testing.B, g *dag.Graph) {
	b.ReportAllocs()
	b.StopTimer()
	for range b.N {
		j := benchJob(b, g)
		b.StartTimer()
		for {
			task, a, ok := j.Next(0, t0)
			if !ok {
				break
			}
			j.Finished(task, a, Success, t0)
			j.Drain()
		}
		b.StopTimer()
		if !j.Done() {
			b.Fatal("nothing ready, job not done")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(g.N), "ns/task")
}

// BenchmarkWide: a million independent tasks (ns/op is per job).
func BenchmarkWide(b *testing.B) {
	runTasks(b, csr(benchTasks, nil, nil))
}

// BenchmarkChain: a million tasks, each after the previous one; every
// Finished queues the next task.
func BenchmarkChain(b *testing.B) {
	edges := make([][2]int32, benchTasks-1)
	for i := range edges {
		edges[i] = [2]int32{int32(i), int32(i + 1)}
	}
	runTasks(b, csr(benchTasks, nil, edges))
}

// BenchmarkGroup: split, a million sim-* tasks after it, and a report
// after the group sim-*: one graph node instead of a million edges.
func BenchmarkGroup(b *testing.B) {
	n := benchTasks + 2
	edges := make([][2]int32, 0, 2*benchTasks+1)
	group := int32(n)
	for i := 1; i <= benchTasks; i++ {
		edges = append(edges, [2]int32{0, int32(i)}, [2]int32{int32(i), group})
	}
	edges = append(edges, [2]int32{group, int32(n - 1)})
	runTasks(b, csr(n, []string{"sim-*"}, edges))
}

// randomDAG has n tasks and about n edges: each task after 0 to 2 tasks
// among the thousand before it.
func randomDAG(n int) *dag.Graph {
	r := rand.New(rand.NewPCG(1, 2))
	edges := make([][2]int32, 0, n)
	for c := 1; c < n; c++ {
		for range r.IntN(3) {
			edges = append(edges, [2]int32{int32(max(0, c-1-r.IntN(1000))), int32(c)})
		}
	}
	return csr(n, nil, edges)
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemory reports the heap a started 1M-task job with about 1M
// edges holds: sched-B/task for this package's state, graph-B/task for the
// dag.Graph it shares with its caller.
func BenchmarkMemory(b *testing.B) {
	var graphBytes, schedBytes uint64
	for range b.N {
		before := heapInUse()
		g := randomDAG(benchTasks)
		mid := heapInUse()
		j, err := New(g, make([]TaskConfig, g.N), Config{Tiers: 1})
		if err != nil {
			b.Fatal(err)
		}
		j.Start(t0)
		j.Drain()
		j.Drain() // recycle the large Start buffer the way a caller would
		after := heapInUse()
		graphBytes, schedBytes = mid-before, after-mid
		runtime.KeepAlive(j)
		runtime.KeepAlive(g)
	}
	b.ReportMetric(float64(graphBytes)/benchTasks, "graph-B/task")
	b.ReportMetric(float64(schedBytes)/benchTasks, "sched-B/task")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkStart: New and Start of a 1M-task job with about 1M edges
// (Validate's cycle check included); ns/task is per task.
func BenchmarkStart(b *testing.B) {
	g := randomDAG(benchTasks)
	tasks := make([]TaskConfig, g.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		j, err := New(g, tasks, Config{Tiers: 1})
		if err != nil {
			b.Fatal(err)
		}
		j.Start(t0)
		j.Drain()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchTasks, "ns/task")
}

// BenchmarkTimeouts: a million independent tasks with a timeout and a tick
// per task, so the deadline heap works on every op.
func BenchmarkTimeouts(b *testing.B) {
	g := csr(benchTasks, nil, nil)
	tasks := make([]TaskConfig, g.N)
	for i := range tasks {
		tasks[i].Timeout = time.Minute
	}
	b.ReportAllocs()
	b.StopTimer()
	for range b.N {
		j, err := New(g, tasks, Config{Tiers: 1})
		if err != nil {
			b.Fatal(err)
		}
		j.Start(t0)
		j.Drain()
		now := t0
		b.StartTimer()
		for {
			now = now.Add(time.Millisecond)
			task, a, ok := j.Next(0, now)
			if !ok {
				break
			}
			j.Finished(task, a, Success, now)
			j.Tick(now)
			j.Drain()
		}
		b.StopTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchTasks, "ns/task")
}
