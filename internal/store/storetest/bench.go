package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// Benchmark measures a driver: CreateJob of 100,000 tasks, LoadTasks of
// them, and Apply of a group commit of 1,000 task updates and attempts.
// open returns a fresh, empty store and arranges for it to be closed.
func Benchmark(b *testing.B, open func(b *testing.B) store.Store) {
	const n = 100_000
	tasks := newTasks(n)
	b.Run("CreateJob100k", func(b *testing.B) {
		s := open(b)
		i := 0
		for b.Loop() {
			i++
			if err := s.CreateJob(b.Context(), newJob(fmt.Sprintf("bench-%d", i)), tasks); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/task")
	})
	b.Run("LoadTasks100k", func(b *testing.B) {
		s := open(b)
		if err := s.CreateJob(b.Context(), newJob("bench"), tasks); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.LoadTasks(b.Context(), "bench"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/task")
	})
	// A group commit of per task updates and attempts, unfenced and fenced
	// (the fence adds a read of the lease row to the transaction).
	for _, per := range []int{1, 1000} {
		for _, fenced := range []bool{false, true} {
			name := fmt.Sprintf("Apply%d", per)
			if fenced {
				name += "Fenced"
			}
			b.Run(name, func(b *testing.B) { benchApply(b, open(b), tasks, per, fenced) })
		}
	}
	// A runner's renewal each second: its membership lease and 32 shard
	// leases, lease by lease and in one AcquireLeases call.
	for _, batch := range []bool{false, true} {
		name := "Renew33Separate"
		if batch {
			name = "Renew33Batch"
		}
		b.Run(name, func(b *testing.B) { benchRenew(b, open(b), batch) })
	}
}

func benchRenew(b *testing.B, s store.Store, batch bool) {
	ls := []store.Lease{{Name: store.MemberLease("bench"), Holder: "bench", Address: "http://bench"}}
	for i := range 32 {
		ls = append(ls, store.Lease{Name: store.ShardLease(i), Holder: "bench", Address: "http://bench"})
	}
	now := base
	for b.Loop() {
		now = now.Add(time.Second)
		for i := range ls {
			ls[i].ExpiresAt = now.Add(8 * time.Second)
		}
		if batch {
			if _, _, err := s.AcquireLeases(b.Context(), ls, now); err != nil {
				b.Fatal(err)
			}
			continue
		}
		for _, l := range ls {
			if _, _, err := s.AcquireLease(b.Context(), l, now); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func benchApply(b *testing.B, s store.Store, tasks []store.Task, per int, fenced bool) {
	n := len(tasks)
	if err := s.CreateJob(b.Context(), newJob("bench"), tasks); err != nil {
		b.Fatal(err)
	}
	var fence store.Fence
	if fenced {
		fence = store.Fence{Lease: "runner", Holder: "bench"}
		l := store.Lease{Name: fence.Lease, Holder: fence.Holder, ExpiresAt: base.Add(time.Hour)}
		if _, ok, err := s.AcquireLease(b.Context(), l, base); err != nil || !ok {
			b.Fatalf("acquire lease: %v %v", ok, err)
		}
	}
	i := 0
	for b.Loop() {
		batch := store.Batch{Fence: fence}
		for range per {
			idx := int32(i % n)
			i++
			batch.Tasks = append(batch.Tasks, store.TaskUpdate{JobID: "bench", Index: idx, State: store.TaskSucceeded, Attempts: 1, StartedAt: base, FinishedAt: base})
			batch.Attempts = append(batch.Attempts, store.Attempt{JobID: "bench", TaskIndex: idx, Number: 1, State: store.AttemptSucceeded, WorkerID: "w", StartedAt: base, FinishedAt: base})
		}
		batch.Jobs = []store.JobUpdate{{ID: "bench", State: store.JobRunning, Counts: store.TaskCounts{Succeeded: int64(i)}}}
		if err := s.Apply(b.Context(), &batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*per), "ns/update")
}
