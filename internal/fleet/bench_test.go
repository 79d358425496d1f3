package fleet

import (
	"fmt"
	"testing"
	"time"
)

var bt0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// benchFleet returns a Fleet of n jobs of 2 tiers, each tier with one
// task ready and one running and the two workers its target asks for (one
// busy, one idle inside its grace), as a loaded shard has them between two
// Steps.
func benchFleet(b *testing.B, n int) *Fleet {
	b.Helper()
	f := New(Config{})
	for i := range n {
		id := fmt.Sprintf("job%05d", i)
		if err := f.AddJob(Job{ID: id, Namespace: fmt.Sprintf("ns%d", i%10), Tiers: 2, Created: bt0.Add(time.Duration(i) * time.Millisecond)}); err != nil {
			b.Fatal(err)
		}
		for t := range int32(2) {
			if err := f.ObserveTask(id, t, 10*time.Second, bt0); err != nil {
				b.Fatal(err)
			}
			if err := f.SetDemand(id, t, Demand{Waiting: 1, Ready: 1, Running: 1, Elapsed: time.Second}, bt0); err != nil {
				b.Fatal(err)
			}
		}
	}
	ds := f.Step(bt0, 4*n)
	if len(ds) != 4*n { // a target of 2 per tier
		b.Fatalf("%d decisions, want %d", len(ds), 4*n)
	}
	for i, d := range ds {
		if err := f.Polled(d.ID, bt0.Add(time.Second)); err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			if err := f.SetRunning(d.ID, 1, bt0.Add(time.Second)); err != nil {
				b.Fatal(err)
			}
		}
	}
	return f
}

// BenchmarkStep: one Step of a shard of 10k jobs × 2 tiers, 40k workers:
// every rule is looked at for every job, tier and worker (each tier's
// target computed), and nothing is decided.
func BenchmarkStep(b *testing.B) {
	f := benchFleet(b, 10_000)
	now := bt0.Add(2 * time.Second)
	b.ReportAllocs()
	for b.Loop() {
		if ds := f.Step(now, 100); len(ds) != 0 {
			b.Fatalf("decisions: %v", ds[:1])
		}
	}
}

// BenchmarkStepNextWake: a Step and the NextWake after it, which looks at
// every worker's deadlines and every tier's drifting target.
func BenchmarkStepNextWake(b *testing.B) {
	f := benchFleet(b, 10_000)
	now := bt0.Add(2 * time.Second)
	b.ReportAllocs()
	for b.Loop() {
		f.Step(now, 100)
		if f.NextWake().IsZero() {
			b.Fatal("no wake")
		}
	}
}

// BenchmarkStepStarts: the first Step of 10k new jobs × 2 tiers, starting
// a worker for each tier (setup not timed).
func BenchmarkStepStarts(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		f := New(Config{})
		for i := range 10_000 {
			id := fmt.Sprintf("job%05d", i)
			if err := f.AddJob(Job{ID: id, Tiers: 2, Created: bt0}); err != nil {
				b.Fatal(err)
			}
			for t := range int32(2) {
				if err := f.SetDemand(id, t, Demand{Waiting: 1, Ready: 1}, bt0); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StartTimer()
		if ds := f.Step(bt0, 1<<20); len(ds) != 20_000 {
			b.Fatalf("%d starts", len(ds))
		}
	}
}
