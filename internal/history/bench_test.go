package history_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/history"
	"github.com/haul-dev/haul/internal/history/historytest"
	"github.com/haul-dev/haul/internal/store"
)

// BenchmarkExport writes a job of 100,000 tasks (one attempt and one log
// entry each) from a SQLite store to the filesystem store, and reports
// rows (of all tables) per second and the heap in use after the write.
func BenchmarkExport(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	s := historytest.OpenStore(b)
	now := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	job := &store.Job{ID: store.NewJobID(now, rand.NewChaCha8([32]byte{1})), Name: "big", Namespace: "perception", CreatedAt: now,
		Tiers: []store.Tier{{Name: "small", CPU: 1, MemoryBytes: 1 << 30}}, Labels: map[string]string{"run": "bench"}}
	tasks := make([]store.Task, n)
	atts := make([]store.Attempt, n)
	logs := make([]store.LogEntry, n)
	for i := range tasks {
		k := fmt.Sprintf("sim-%d", i)
		tasks[i] = store.Task{Index: int32(i), Key: k, Argv: []string{"sim", "--scene", k}, Env: map[string]string{"SCENE": k}, Cwd: "/work"}
		atts[i] = store.Attempt{JobID: job.ID, TaskIndex: int32(i), Number: 1, WorkerID: fmt.Sprintf("w-%d", i%50), State: store.AttemptSucceeded,
			Reason: "exit", StartedAt: now, FinishedAt: now.Add(time.Duration(i%600) * time.Second), Enforcement: "cgroup-v2",
			Usage: store.Usage{CPUUserSeconds: float64(i % 97), PeakRSSBytes: int64(i%1024) << 20, AvgRSSBytes: int64(i%512) << 20, GPUNote: "no GPU"}}
		logs[i] = store.LogEntry{JobID: job.ID, TaskIndex: int32(i), Attempt: 1, Object: fmt.Sprintf("logs/%s/packs/w-%d", job.ID, i%50),
			Offset: int64(i) * 4096, Length: 4000, StdoutBytes: 3000, StderrBytes: 900, FirstAt: now, LastAt: now.Add(time.Minute)}
	}
	if err := s.CreateJob(ctx, job, tasks); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 10_000 {
		if err := s.Apply(ctx, &store.Batch{Attempts: atts[i : i+10_000]}); err != nil {
			b.Fatal(err)
		}
		if err := s.PutLogEntries(ctx, logs[i:i+10_000]); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Apply(ctx, &store.Batch{Jobs: []store.JobUpdate{{ID: job.ID, State: store.JobSucceeded, StartedAt: now, FinishedAt: now.Add(time.Hour)}}}); err != nil {
		b.Fatal(err)
	}
	tasks, atts, logs = nil, nil, nil
	blobs, _ := newBlobB(b)
	e := &history.Exporter{Store: s, Blob: blobs}
	batch := store.ExportBatch{ID: 1, Jobs: []string{job.ID}}
	var rows, bytes int64
	var peak uint64
	b.ResetTimer()
	for b.Loop() {
		rs, n, err := history.WriteBatch(ctx, e, batch)
		if err != nil {
			b.Fatal(err)
		}
		rows, bytes = 0, n
		for _, r := range rs {
			rows += r
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapInuse)
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(rows), "rows/op")
	b.ReportMetric(float64(bytes), "file-bytes/op")
	b.ReportMetric(float64(peak)/(1<<20), "heap-MiB")
}
