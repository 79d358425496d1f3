package sched

import (
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/dag"
)

// FuzzJob builds a graph, valid or not, from the input, and then plays the
// rest of the input as events. NewJob must never panic, and a job it accepts
// must reach Done once everything is run.
func FuzzJob(f *testing.F) {
	f.Add([]byte{3, 1, 0, 1, 0, 2, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{4, 2, 0, 4, 1, 4, 4, 2, 4, 3, 9, 9, 9, 1, 1, 3, 3, 4})
	f.Add([]byte{2, 1, 0, 1, 1, 0})             // a cycle
	f.Add([]byte{2, 1, 0, 7, 0})                // a child out of range
	f.Add([]byte{0, 0})                         // no tasks
	f.Add([]byte{9, 0, 200, 201, 202, 3, 3, 3}) // no edges
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b)
		}
		n := next() % 16
		groups := next() % 3
		var names []string
		for range groups {
			names = append(names, "g*")
		}
		var edges [][2]int32
		for range next() % 24 {
			edges = append(edges, [2]int32{int32(next() % (n + groups + 1)), int32(next() % (n + groups + 1))})
		}
		var g *dag.Graph
		if n+groups > 0 {
			func() {
				defer func() {
					if recover() != nil { // csr itself indexes out of range: build it leniently
						g = &dag.Graph{N: n, Groups: names, ChildOff: make([]int32, n+groups+1), NParents: make([]int32, n+groups)}
					}
				}()
				g = csr(n, names, edges)
			}()
		} else {
			g = csr(0, nil, nil)
		}
		tasks := make([]TaskConfig, n)
		for i := range tasks {
			tasks[i] = TaskConfig{Tier: int32(next() % 3), Retries: int32(next() % 3), Timeout: time.Duration(next()%4) * time.Second}
		}
		j := NewJob(g, tasks, Config{Tiers: 2, MaxLost: 2})
		now := t0
		j.Start(now)
		for steps := 0; !j.Done(); steps++ {
			if steps > 10000 {
				t.Fatalf("not done after %d steps: %v", steps, j.Counts())
			}
			progressed := false
			for tier := range int32(2) {
				if task, a, ok := j.Next(tier, now); ok {
					j.Finished(task, a, Outcome(next()%7), now)
					progressed = true
				}
			}
			if op := next() % 8; op == 1 {
				j.CancelTask(int32(next()%(n+1)), now)
			} else if op == 2 && next()%4 == 0 {
				j.Cancel(now)
			}
			if !progressed {
				if w := j.NextWake(); !w.IsZero() {
					now = w
				}
				now = now.Add(time.Second)
				j.Tick(now)
			}
			j.Drain()
		}
	})
}
