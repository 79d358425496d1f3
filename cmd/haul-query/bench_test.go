//go:build cgo

package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/history"
	"github.com/haul-dev/haul/internal/history/historytest"
	"github.com/haul-dev/haul/internal/store"
)

// BenchmarkDocQueries exports 20 jobs of 10,000 tasks each (200,000 tasks,
// attempts and log entries, two tiers, some OOM retries) and times every
// example query of docs/history.md over it: what `haul query` costs on a
// local export once the files are fetched.
func BenchmarkDocQueries(b *testing.B) {
	const jobs, per = 20, 10_000
	ctx := context.Background()
	s := historytest.OpenStore(b)
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	for j := range jobs {
		now := base.Add(time.Duration(j) * time.Hour)
		job := &store.Job{ID: store.NewJobID(now, rand.NewChaCha8([32]byte{byte(j)})), Name: fmt.Sprintf("resim-%d", j), Namespace: []string{"perception", "planning", "ml"}[j%3],
			CreatedAt: now, Tiers: []store.Tier{{Name: "small", CPU: 1, MemoryBytes: 1 << 30}, {Name: "big", CPU: 4, MemoryBytes: 8 << 30}}}
		tasks := make([]store.Task, per)
		var atts []store.Attempt
		for i := range tasks {
			k := fmt.Sprintf("%s-%d", []string{"sim", "prep", "report"}[i%3], i)
			tasks[i] = store.Task{Index: int32(i), Key: k, Argv: []string{"sim", k}, Cwd: "/work"}
			took := time.Duration(1+rng.IntN(600)) * time.Second
			a := store.Attempt{JobID: job.ID, TaskIndex: int32(i), Number: 1, WorkerID: fmt.Sprintf("w-%d", i%64), State: store.AttemptSucceeded,
				Reason: "exit", StartedAt: now, FinishedAt: now.Add(took),
				Usage: store.Usage{CPUUserSeconds: took.Seconds() / 2, PeakRSSBytes: int64(rng.IntN(1024)) << 20}}
			if i%50 == 0 {
				oom := a
				oom.State, oom.Reason, oom.ExitCode, oom.Usage.PeakRSSBytes = store.AttemptFailed, "oom", 137, 1<<30
				atts = append(atts, oom)
				a.Number, a.Tier = 2, 1
			}
			atts = append(atts, a)
		}
		if err := s.CreateJob(ctx, job, tasks); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < len(atts); i += 10_000 {
			if err := s.Apply(ctx, &store.Batch{Attempts: atts[i:min(len(atts), i+10_000)]}); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Apply(ctx, &store.Batch{Jobs: []store.JobUpdate{{ID: job.ID, State: store.JobSucceeded, StartedAt: now, FinishedAt: now.Add(time.Hour), CostUSD: float64(j)}}}); err != nil {
			b.Fatal(err)
		}
	}
	dir := b.TempDir()
	bs, err := blob.NewFS(dir)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	st, err := (&history.Exporter{Store: s, Blob: bs}).Run(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("exported %d jobs, %v rows, %d bytes in %v", st.Jobs, st.Rows, st.Bytes, time.Since(start).Round(time.Millisecond))
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "history.md"))
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, block := range strings.Split(string(doc), "```sql\n")[1:] {
		sql, _, _ := strings.Cut(block, "```")
		n++
		title := strings.Fields(strings.SplitN(sql, "\n", 2)[0])
		b.Run(fmt.Sprintf("example-%d", n), func(b *testing.B) {
			for b.Loop() {
				if code := run(ctx, []string{"--dir", dir, "--format", "csv", sql}, io.Discard, io.Discard); code != 0 {
					b.Fatalf("exit %d: %v", code, title)
				}
			}
		})
	}
	b.Run("count-attempts", func(b *testing.B) {
		for b.Loop() {
			if code := run(ctx, []string{"--dir", dir, "SELECT count(*) FROM attempts"}, io.Discard, io.Discard); code != 0 {
				b.Fatal(code)
			}
		}
	})
}
