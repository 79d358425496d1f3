package sched

import (
	"testing"
	"time"
)

func TestWhyQueries(t *testing.T) {
	t.Parallel()
	// 0 → 1; 1 and 2 are gathered by group 4 (x-*), which 3 waits for.
	g := csr(4, []string{"x-*"}, [][2]int32{{0, 1}, {1, 4}, {2, 4}, {4, 3}})
	tasks := []TaskConfig{{Retries: 1}, {}, {}, {}}
	j, err := New(g, tasks, Config{Tiers: 1})
	if err != nil {
		t.Fatal(err)
	}
	j.Start(t0)
	if _, ok := j.BackoffUntil(0); ok {
		t.Error("task 0 in backoff before it ran")
	}
	// Run 0 and 2; 0 fails once (a retry after the 1s backoff), 2 succeeds.
	started := map[int32]int32{}
	for {
		task, attempt, ok := j.Next(0, t0)
		if !ok {
			break
		}
		started[task] = attempt
	}
	j.Finished(0, started[0], Failure, t0)
	j.Finished(2, started[2], Success, t0)
	until, ok := j.BackoffUntil(0)
	if !ok || !until.Equal(t0.Add(time.Second)) {
		t.Errorf("backoff of 0 = %v %v, want until %v", until, ok, t0.Add(time.Second))
	}
	if n, first := j.InBackoff(0); n != 1 || !first.Equal(t0.Add(time.Second)) {
		t.Errorf("InBackoff = %d %v", n, first)
	}
}
