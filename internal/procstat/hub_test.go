package procstat

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// fakeProc writes a /proc of n process groups 100, 200, ... each of one
// process with rss pages 10*k, and returns its root.
func fakeProc(t *testing.T, n int) string {
	t.Helper()
	root := t.TempDir()
	for k := 1; k <= n; k++ {
		pid := 100 * k
		dir := filepath.Join(root, fmt.Sprint(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(statLine(pid, "t", 'S', 1, pid, k, 0, 0, 0, 10*k)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// Trees started together are sampled with one read of /proc, and each gets
// its own tree's figures, as a sampler of its own would.
func TestHubSharesReads(t *testing.T) {
	t.Parallel()
	const n = 12
	root := fakeProc(t, n)
	hub := NewHub(root, 0)
	defer hub.Close()
	samps := make([]*Sampler, n)
	for k := range samps {
		samps[k] = hub.Start(100*(k+1), Options{FirstDelay: 50 * time.Millisecond, Interval: time.Hour})
	}
	deadline := time.Now().Add(waitLimit)
	for _, s := range samps {
		for s.PIDs() == nil {
			if time.Now().After(deadline) {
				t.Fatal("no sample within the wait limit")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// All were due within the coalescing window of the first: one read
	// (two if a round began between the Start calls).
	if r := hub.Reads(); r < 1 || r > 2 {
		t.Errorf("%d reads of /proc for %d trees started together; want 1 (or 2)", r, n)
	}
	page := int64(os.Getpagesize())
	for k, s := range samps {
		own := Start(100*(k+1), Options{ProcRoot: root, FirstDelay: time.Millisecond, Interval: time.Hour})
		for own.PIDs() == nil {
			time.Sleep(time.Millisecond)
		}
		want, got := own.Stop(), s.Stop()
		if got.Samples != 1 || got.PeakRSSBytes != int64(10*(k+1))*page || got.CPUUser != want.CPUUser ||
			got.PeakRSSBytes != want.PeakRSSBytes || got.MaxProcs != want.MaxProcs || got.Err != nil {
			t.Errorf("tree %d: hub summary %+v, own sampler's %+v", 100*(k+1), got, want)
		}
		if pids := s.PIDs(); !slices.Equal(pids, []int{100 * (k + 1)}) {
			t.Errorf("tree %d: PIDs %v", 100*(k+1), pids)
		}
	}
}

// A stopped tree takes no more samples; a tree keeps its interval; a Hub
// closed takes none and Stop still answers.
func TestHubStopAndClose(t *testing.T) {
	t.Parallel()
	root := fakeProc(t, 2)
	hub := NewHub(root, time.Millisecond)
	fast := hub.Start(100, Options{FirstDelay: time.Millisecond, Interval: 5 * time.Millisecond})
	slow := hub.Start(200, Options{FirstDelay: time.Millisecond, Interval: time.Hour})
	deadline := time.Now().Add(waitLimit)
	for {
		fast.mu.Lock()
		n := fast.sum.Samples
		fast.mu.Unlock()
		if n >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d samples of a 5ms tree within the wait limit", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	sum := fast.Stop()
	time.Sleep(30 * time.Millisecond)
	fast.mu.Lock()
	after := fast.sum.Samples
	fast.mu.Unlock()
	if after != sum.Samples {
		t.Errorf("samples after Stop: %d, then %d", sum.Samples, after)
	}
	if got := slow.Stop(); got.Samples != 1 {
		t.Errorf("the hour-interval tree took %d samples, want 1", got.Samples)
	}
	hub.Close()
	hub.Close() // idempotent
	late := hub.Start(100, Options{FirstDelay: time.Millisecond})
	time.Sleep(20 * time.Millisecond)
	if got := late.Stop(); got.Samples != 0 {
		t.Errorf("a closed hub sampled: %+v", got)
	}
}

// OnLimit fires once per tree, from the hub, and Stop waits for it.
func TestHubLimit(t *testing.T) {
	t.Parallel()
	root := fakeProc(t, 1)
	hub := NewHub(root, 0)
	defer hub.Close()
	fired := make(chan Sample, 4)
	s := hub.Start(100, Options{FirstDelay: time.Millisecond, Interval: 2 * time.Millisecond, MemoryLimit: 1,
		OnLimit: func(smp Sample) { time.Sleep(20 * time.Millisecond); fired <- smp }})
	select {
	case smp := <-fired:
		if !slices.Equal(smp.PIDs, []int{100}) {
			t.Errorf("OnLimit with %+v", smp)
		}
	case <-time.After(waitLimit):
		t.Fatal("OnLimit not called")
	}
	time.Sleep(20 * time.Millisecond)
	if sum := s.Stop(); !sum.OverLimit || sum.Samples < 2 {
		t.Errorf("summary %+v", sum)
	}
	if len(fired) != 0 {
		t.Errorf("OnLimit called %d more times", len(fired))
	}
}
