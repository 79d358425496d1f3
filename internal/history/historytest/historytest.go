// Package historytest builds a small, known history for the tests of the
// export and of the tools that query it: three finished jobs of two teams
// over two days (one running job besides), with attempts that ran out of
// memory, GPU figures, workers and log entries.
package historytest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/history"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// MiB and GiB are byte counts.
const (
	MiB = int64(1) << 20
	GiB = int64(1) << 30
)

// Fixture is what Seed stored.
type Fixture struct {
	// Resim is perception's job "resim", finished 2026-11-02 10:00 UTC:
	// tasks split, sim-0..sim-3, report; sim-0 and sim-3 ran out of
	// memory on tier small and succeeded on tier big. Tiles is mapping's
	// job "tiles", failed 2026-11-03 01:00 UTC (tile-2 exited 1); Resim2
	// is perception's second "resim", finished 2026-11-03 05:00 UTC.
	// Running is a job still running (never exported).
	Resim, Tiles, Resim2, Running string
	// Rows is the number of rows of each table of the three finished jobs.
	Rows map[string]int64
}

// Day1 and Day2 are the days the jobs finished.
var (
	Day1 = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	Day2 = time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
)

// att is an attempt of the fixture: task index, number, tier, seconds run,
// peak RSS, OOM or the exit code.
type att struct {
	task, number, tier int32
	secs               int
	peak               int64
	oom                bool
	exit               int32
	gpus               []store.GPUUsage
}

// Seed stores the fixture's jobs in s.
func Seed(t testing.TB, s store.Store) Fixture {
	t.Helper()
	ctx := context.Background()
	small := store.Tier{Name: "small", CPU: 1, MemoryBytes: 1 * GiB}
	big := store.Tier{Name: "big", CPU: 2, MemoryBytes: 4 * GiB, GPU: 1, GPUType: "a100",
		NodeSelector: map[string]string{"gpu": "a100"},
		Tolerations:  []store.Toleration{{Key: "spot", Operator: "Exists", Effect: "NoSchedule"}}}
	f := Fixture{}
	f.Resim = seedJob(t, s, 1, "perception", "resim", []store.Tier{small, big}, Day1.Add(10*time.Hour), store.JobSucceeded, 12.5,
		[]string{"split", "sim-0", "sim-1", "sim-2", "sim-3", "report"},
		[]att{
			{task: 0, number: 1, secs: 10, peak: 100 * MiB},
			{task: 1, number: 1, secs: 30, peak: 1 * GiB, oom: true},
			{task: 1, number: 2, tier: 1, secs: 120, peak: 1536 * MiB, gpus: []store.GPUUsage{{Index: 0, Name: "NVIDIA A100", PeakMemoryBytes: 20 * GiB, AvgUtilizationPercent: 75.5}}},
			{task: 2, number: 1, secs: 60, peak: 600 * MiB},
			{task: 3, number: 1, secs: 90, peak: 700 * MiB},
			{task: 4, number: 1, secs: 40, peak: 1 * GiB, oom: true},
			{task: 4, number: 2, tier: 1, secs: 200, peak: 2 * GiB, gpus: []store.GPUUsage{{Index: 0, Name: "NVIDIA A100", PeakMemoryBytes: 30 * GiB, AvgUtilizationPercent: 90}}},
			{task: 5, number: 1, secs: 5, peak: 50 * MiB},
		})
	f.Tiles = seedJob(t, s, 2, "mapping", "tiles", []store.Tier{{Name: "small", CPU: 1, MemoryBytes: 2 * GiB}}, Day2.Add(1*time.Hour), store.JobFailed, 3.25,
		[]string{"tile-0", "tile-1", "tile-2"},
		[]att{
			{task: 0, number: 1, secs: 20, peak: 200 * MiB},
			{task: 1, number: 1, secs: 25, peak: 300 * MiB},
			{task: 2, number: 1, secs: 15, peak: 250 * MiB, exit: 1},
		})
	f.Resim2 = seedJob(t, s, 3, "perception", "resim", []store.Tier{small}, Day2.Add(5*time.Hour), store.JobSucceeded, 1.75,
		[]string{"sim-0", "sim-1"},
		[]att{
			{task: 0, number: 1, secs: 50, peak: 300 * MiB},
			{task: 1, number: 1, secs: 70, peak: 400 * MiB},
		})
	running := &store.Job{ID: store.NewJobID(Day2, rand.NewChaCha8([32]byte{9})), Name: "live", Namespace: "mapping",
		Tiers: []store.Tier{small}, CreatedAt: Day2}
	if err := s.CreateJob(ctx, running, []store.Task{{Index: 0, Key: "a", Argv: []string{"true"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, &store.Batch{Jobs: []store.JobUpdate{{ID: running.ID, State: store.JobRunning, StartedAt: Day2}}}); err != nil {
		t.Fatal(err)
	}
	f.Running = running.ID
	f.Rows = map[string]int64{
		history.TableJobs: 3, history.TableTasks: 11, history.TableAttempts: 13,
		history.TableWorkers: 4, history.TableLogEntries: 13,
	}
	return f
}

// seedJob stores one finished job: its tasks, their attempts (one worker
// per tier used, one log entry per attempt) and its end.
func seedJob(t testing.TB, s store.Store, seed byte, team, name string, tiers []store.Tier, finished time.Time,
	state store.JobState, cost float64, keys []string, atts []att) string {
	t.Helper()
	ctx := context.Background()
	created := finished.Add(-time.Hour)
	job := &store.Job{
		ID: store.NewJobID(created, rand.NewChaCha8([32]byte{seed})), Name: name, Namespace: team,
		Labels: map[string]string{"team": team, "run": "nightly"}, Env: map[string]string{"SCENES": "s3://scenes"},
		Tiers: tiers, MaxWorkers: 4, CreatedAt: created, SubmittedBy: "alice@example.com",
		Spec:      []byte("secret-looking spec"),
		SecretEnv: map[string]string{"TOKEN": "do-not-export"},
	}
	tasks := make([]store.Task, len(keys))
	for i, k := range keys {
		tasks[i] = store.Task{Index: int32(i), Key: k, Argv: []string{"run", k}, Env: map[string]string{"KEY": k}, Cwd: "/work", Retries: 2, TimeoutMS: 600_000}
		if i > 0 {
			tasks[i].After = []string{keys[0]}
		}
	}
	if err := s.CreateJob(ctx, job, tasks); err != nil {
		t.Fatal(err)
	}
	b := store.Batch{}
	workerAttempts := map[int32]int64{}
	var entries []store.LogEntry
	start := created.Add(time.Minute)
	last := map[int32]store.TaskUpdate{}
	counts := store.TaskCounts{}
	for _, a := range atts {
		worker := fmt.Sprintf("%s-w%d", job.ID, a.tier)
		workerAttempts[a.tier]++
		at := store.Attempt{JobID: job.ID, TaskIndex: a.task, Number: a.number, Tier: a.tier, WorkerID: worker,
			State: store.AttemptSucceeded, Reason: "exit", ExitCode: a.exit,
			StartedAt: start, FinishedAt: start.Add(time.Duration(a.secs) * time.Second), Enforcement: "cgroup-v2",
			Usage: store.Usage{CPUUserSeconds: float64(a.secs) / 2, CPUSystemSeconds: 1, PeakRSSBytes: a.peak, AvgRSSBytes: a.peak / 2, GPUs: a.gpus}}
		if a.gpus == nil {
			at.Usage.GPUNote = "no GPU: the tier requests none"
		}
		if a.exit != 0 {
			at.State = store.AttemptFailed
		}
		if a.oom {
			at.State, at.Reason, at.ExitCode, at.Signal, at.Message = store.AttemptFailed, store.ReasonOOM, 137, 9, "killed: out of memory"
		}
		b.Attempts = append(b.Attempts, at)
		ts := store.TaskState(at.State)
		last[a.task] = store.TaskUpdate{JobID: job.ID, Index: a.task, RunTier: a.tier, State: ts, Attempts: a.number,
			ExitCode: at.ExitCode, Reason: at.Reason, StartedAt: at.StartedAt, FinishedAt: at.FinishedAt}
		entries = append(entries, store.LogEntry{JobID: job.ID, TaskIndex: a.task, Attempt: a.number,
			Object: fmt.Sprintf("logs/%s/packs/%s", job.ID, worker), Offset: int64(len(entries)) * 1000, Length: 900,
			StdoutBytes: 600, StderrBytes: 200, FirstAt: at.StartedAt.Add(time.Second), LastAt: at.FinishedAt})
		start = start.Add(time.Duration(a.secs) * time.Second)
	}
	for i := range int32(len(keys)) {
		u := last[i]
		counts.Add(u.State, 1)
		b.Tasks = append(b.Tasks, u)
	}
	b.Jobs = []store.JobUpdate{{ID: job.ID, State: state, Counts: counts, WorkerSeconds: float64(start.Sub(created)/time.Second) + 60,
		CostUSD: cost, StartedAt: created.Add(time.Minute), FinishedAt: finished,
		Usage: store.JobUsage{PeakRSSBytes: 2 * GiB, OOMAttempts: 2}}}
	if err := s.Apply(ctx, &b); err != nil {
		t.Fatal(err)
	}
	var ws []store.WorkerRecord
	for tier, n := range workerAttempts {
		ws = append(ws, store.WorkerRecord{ID: fmt.Sprintf("%s-w%d", job.ID, tier), JobID: job.ID, Tier: tier, Cluster: "local",
			Team: team, StartedAt: created, EndedAt: finished, EndReason: "exit", Attempts: n})
	}
	if err := s.PutWorkers(ctx, ws); err != nil {
		t.Fatal(err)
	}
	if err := s.PutLogEntries(ctx, entries); err != nil {
		t.Fatal(err)
	}
	return job.ID
}

// OpenStore opens a SQLite store in a new temporary folder of t.
func OpenStore(t testing.TB) store.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "haul.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Export seeds a new SQLite store and exports it to the folder dir (tables
// at its root), in batches of two jobs; it returns the fixture.
func Export(t testing.TB, dir string) Fixture {
	t.Helper()
	s := OpenStore(t)
	f := Seed(t, s)
	b, err := blob.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := &history.Exporter{Store: s, Blob: b, BatchJobs: 2}
	if _, err := e.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}
