package history_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/history"
	"github.com/haul-dev/haul/internal/history/historytest"
	"github.com/haul-dev/haul/internal/store"
)

func newBlob(t *testing.T) (blob.Store, string) { return newBlobB(t) }

func newBlobB(t testing.TB) (blob.Store, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := blob.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b, dir
}

// readAll reads every row of a table's files under dir.
func readAll[T any](t *testing.T, dir, table string) (rows []T, files []string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, table, "date=*", "batch-*.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		rs, err := parquet.ReadFile[T](p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		rows = append(rows, rs...)
		rel, _ := filepath.Rel(dir, p)
		files = append(files, filepath.ToSlash(rel))
	}
	return rows, files
}

func TestExport(t *testing.T) {
	s := historytest.OpenStore(t)
	f := historytest.Seed(t, s)
	b, dir := newBlob(t)
	e := &history.Exporter{Store: s, Blob: b, Prefix: "history", BatchJobs: 2, PageRows: 3}
	st, err := e.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Batches != 2 || st.Jobs != 3 || len(st.Rows) != len(history.Tables) {
		t.Fatalf("stats %+v; want 2 batches of 3 jobs", st)
	}
	for table, n := range f.Rows {
		if st.Rows[table] != n {
			t.Errorf("stats: %d rows of %s; want %d", st.Rows[table], table, n)
		}
	}
	root := filepath.Join(dir, "history")

	// Batch 1 is resim (day 1) and tiles (day 2): one file per day; batch
	// 2 is resim2 (day 2).
	jobs, files := readAll[history.JobRow](t, root, history.TableJobs)
	wantFiles := []string{"jobs/date=2026-11-02/batch-000000001.parquet", "jobs/date=2026-11-03/batch-000000001.parquet", "jobs/date=2026-11-03/batch-000000002.parquet"}
	if !slices.Equal(files, wantFiles) {
		t.Fatalf("job files %v; want %v", files, wantFiles)
	}
	if st.Files != 3*4+3 { // workers, tasks, attempts, log entries and jobs: 3 files each
		t.Logf("stats: %d files", st.Files)
	}
	if len(jobs) != 3 || jobs[0].ID != f.Resim || jobs[1].ID != f.Tiles || jobs[2].ID != f.Resim2 {
		t.Fatalf("jobs %+v", jobs)
	}
	j := jobs[0]
	if j.Team != "perception" || j.Name != "resim" || j.State != "succeeded" || j.CostUSD != 12.5 || j.ExportBatch != 1 ||
		j.Labels["run"] != "nightly" || len(j.Labels) != 2 || j.Env["SCENES"] != "s3://scenes" || j.SubmittedBy != "alice@example.com" ||
		j.Counts.Succeeded != 6 || j.Usage.OOMAttempts != 2 || j.Usage.PeakRSSBytes != 2*historytest.GiB || j.TaskCount != 6 {
		t.Errorf("resim row %+v", j)
	}
	if !j.FinishedAt.Equal(historytest.Day1.Add(10*time.Hour)) || j.CreatedAt == nil || j.FinishedAt.Location() != time.UTC {
		t.Errorf("resim finished at %v, created at %v", j.FinishedAt, j.CreatedAt)
	}
	if len(j.Tiers) != 2 || j.Tiers[1].Name != "big" || j.Tiers[1].MemoryBytes != 4*historytest.GiB || j.Tiers[1].GPUType != "a100" ||
		j.Tiers[1].NodeSelector["gpu"] != "a100" || len(j.Tiers[1].Tolerations) != 1 || j.Tiers[1].Tolerations[0].Effect != "NoSchedule" {
		t.Errorf("resim tiers %+v", j.Tiers)
	}
	if jobs[1].State != "failed" || jobs[1].ExportBatch != 1 || jobs[2].ExportBatch != 2 {
		t.Errorf("tiles %+v, resim2 %+v", jobs[1], jobs[2])
	}
	// Nothing of the spec or the secret env: no column could hold them.
	for _, p := range []string{"jobs/date=2026-11-02/batch-000000001.parquet"} {
		raw, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("do-not-export")) || bytes.Contains(raw, []byte("secret-looking")) {
			t.Errorf("%s holds the secret env or the spec", p)
		}
	}

	tasks, _ := readAll[history.TaskRow](t, root, history.TableTasks)
	if int64(len(tasks)) != f.Rows[history.TableTasks] {
		t.Fatalf("%d task rows; want %d", len(tasks), f.Rows[history.TableTasks])
	}
	sim3 := tasks[4]
	if sim3.JobID != f.Resim || sim3.Key != "sim-3" || sim3.TaskIndex != 4 || sim3.Team != "perception" || sim3.JobName != "resim" ||
		sim3.RunTier != 1 || sim3.RunTierName != "big" || sim3.TierName != "small" || sim3.Attempts != 2 || sim3.State != "succeeded" ||
		!slices.Equal(sim3.Argv, []string{"run", "sim-3"}) || !slices.Equal(sim3.After, []string{"split"}) || sim3.Env["KEY"] != "sim-3" ||
		sim3.TimeoutMS != 600_000 || sim3.FinishedAt == nil {
		t.Errorf("sim-3 row %+v", sim3)
	}

	atts, _ := readAll[history.AttemptRow](t, root, history.TableAttempts)
	if int64(len(atts)) != f.Rows[history.TableAttempts] {
		t.Fatalf("%d attempt rows; want %d", len(atts), f.Rows[history.TableAttempts])
	}
	oom, gpu := atts[5], atts[6] // sim-3 #1 and #2
	if oom.TaskKey != "sim-3" || oom.Number != 1 || !oom.OOM || oom.Reason != "oom" || oom.Signal != 9 || oom.TierName != "small" ||
		oom.TierMemoryBytes != historytest.GiB || oom.Usage.PeakRSSBytes != historytest.GiB || len(oom.Usage.GPUs) != 0 ||
		oom.Usage.GPUNote == "" || oom.DurationSeconds == nil || *oom.DurationSeconds != 40 || oom.Enforcement != "cgroup-v2" {
		t.Errorf("sim-3 #1 row %+v", oom)
	}
	if gpu.TaskKey != "sim-3" || gpu.Number != 2 || gpu.OOM || gpu.TierName != "big" || len(gpu.Usage.GPUs) != 1 ||
		gpu.Usage.GPUs[0] != (history.GPURow{Index: 0, Name: "NVIDIA A100", PeakMemoryBytes: 30 * historytest.GiB, AvgUtilizationPercent: 90}) ||
		*gpu.DurationSeconds != 200 || gpu.Usage.CPUUserSeconds != 100 {
		t.Errorf("sim-3 #2 row %+v", gpu)
	}
	// Every attempt has its task's key (tasks and attempts are paged by
	// 3 here: the merge crosses page boundaries).
	for _, a := range atts {
		if a.TaskKey == "" {
			t.Errorf("attempt %s/%d#%d without a task key", a.JobID, a.TaskIndex, a.Number)
		}
	}

	workers, _ := readAll[history.WorkerRow](t, root, history.TableWorkers)
	logs, _ := readAll[history.LogEntryRow](t, root, history.TableLogEntries)
	if int64(len(workers)) != f.Rows[history.TableWorkers] || int64(len(logs)) != f.Rows[history.TableLogEntries] {
		t.Fatalf("%d worker rows, %d log entry rows", len(workers), len(logs))
	}
	if w := workers[0]; w.JobID != f.Resim || w.Team != "perception" || w.TierName != "small" || w.Attempts != 6 || w.EndReason != "exit" || w.EndedAt == nil {
		t.Errorf("worker row %+v", w)
	}
	if l := logs[0]; l.JobID != f.Resim || l.Attempt != 1 || l.Length != 900 || l.StdoutBytes != 600 || l.FirstAt == nil || !strings.HasPrefix(l.Object, "logs/") {
		t.Errorf("log entry row %+v", l)
	}

	// The store knows: every job done, with the counts.
	for _, id := range []string{f.Resim, f.Tiles, f.Resim2} {
		if _, done, err := s.JobExported(t.Context(), id); err != nil || !done {
			t.Errorf("JobExported(%s) = %v, %v", id, done, err)
		}
	}
	if b, _, _ := s.JobExported(t.Context(), f.Running); b != 0 {
		t.Errorf("running job in batch %d", b)
	}
	list, err := s.ListExportBatches(t.Context(), 10)
	if err != nil || len(list) != 2 || list[1].Rows[history.TableAttempts] != 11 || list[0].Rows[history.TableAttempts] != 2 {
		t.Errorf("batches %+v, %v", list, err)
	}
}

// snapshot returns every object of a blob folder: key to content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	return out
}

func TestRunAgainWritesNothing(t *testing.T) {
	s := historytest.OpenStore(t)
	historytest.Seed(t, s)
	b, dir := newBlob(t)
	e := &history.Exporter{Store: s, Blob: b}
	if _, err := e.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	st, err := e.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Batches != 0 || st.Files != 0 || st.Bytes != 0 {
		t.Errorf("second run: %+v; want nothing", st)
	}
	after := snapshot(t, dir)
	if len(after) != len(before) || len(before) != 5*2 { // one batch over two days
		t.Fatalf("%d objects, then %d; want 10", len(before), len(after))
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed", k)
		}
	}
	// A job that finishes later goes into a batch of its own, new files.
	late := lateJob(t, s)
	st, err = e.Run(t.Context())
	if err != nil || st.Batches != 1 || st.Jobs != 1 {
		t.Fatalf("run after a late job: %+v, %v", st, err)
	}
	if b, done, _ := s.JobExported(t.Context(), late); b != 2 || !done {
		t.Errorf("late job in batch %d (done %v); want 2", b, done)
	}
	final := snapshot(t, dir)
	// Its jobs and tasks files: it has no attempts, workers or log entries.
	if len(final) != len(before)+2 || final["jobs/date="+time.Now().UTC().Format(time.DateOnly)+"/batch-000000002.parquet"] == "" {
		t.Errorf("%d objects after the late job; want %d", len(final), len(before)+2)
	}
	for k, v := range before {
		if final[k] != v {
			t.Errorf("%s changed", k)
		}
	}
}

// failingBlob fails every Put after the first ok ones.
type failingBlob struct {
	blob.Store
	ok   int64
	puts atomic.Int64
}

func (f *failingBlob) Put(ctx context.Context, key string, r io.Reader) error {
	if f.puts.Add(1) > f.ok {
		return errors.New("injected: object store unreachable")
	}
	return f.Store.Put(ctx, key, r)
}

func TestCrashMidExport(t *testing.T) {
	s := historytest.OpenStore(t)
	f := historytest.Seed(t, s)
	b, dir := newBlob(t)
	crash := &history.Exporter{Store: s, Blob: &failingBlob{Store: b, ok: 1}, BatchJobs: 2}
	if _, err := crash.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("run with a failing store: %v; want the injected error", err)
	}
	if n := len(snapshot(t, dir)); n != 1 {
		t.Fatalf("%d objects after the crash; want 1", n)
	}
	list, _ := s.ListExportBatches(t.Context(), 10)
	if len(list) != 1 || list[0].State != store.ExportWriting {
		t.Fatalf("batches after the crash: %+v; want one writing", list)
	}
	// A job finishing meanwhile waits for a batch of its own.
	late := lateJob(t, s)

	st, err := (&history.Exporter{Store: s, Blob: b, BatchJobs: 2}).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Batches != 2 || st.Jobs != 4 {
		t.Errorf("rerun: %+v; want batch 1 redone, then batch 2", st)
	}
	list, _ = s.ListExportBatches(t.Context(), 10)
	if len(list) != 2 || list[1].ID != 1 || list[1].JobCount != 2 || list[1].State != store.ExportDone {
		t.Errorf("batches %+v", list)
	}
	if id, _ := s.JobsOfBatch(t.Context(), 2); !slices.Equal(id, []string{f.Resim2, late}) {
		t.Errorf("batch 2 holds %v; want resim2 and the late job %s", id, late)
	}
	// Exactly the store's rows: nothing lost, nothing twice.
	want := f.Rows
	want[history.TableJobs]++
	want[history.TableTasks]++
	counts := map[string]int{
		history.TableJobs:     count[history.JobRow](t, dir, history.TableJobs, func(r history.JobRow) string { return r.ID }),
		history.TableTasks:    count[history.TaskRow](t, dir, history.TableTasks, func(r history.TaskRow) string { return r.JobID + "/" + r.Key }),
		history.TableAttempts: count[history.AttemptRow](t, dir, history.TableAttempts, func(r history.AttemptRow) string { return r.JobID + "/" + r.TaskKey + "#" + string(rune('0'+r.Number)) }),
		history.TableWorkers:  count[history.WorkerRow](t, dir, history.TableWorkers, func(r history.WorkerRow) string { return r.ID }),
		history.TableLogEntries: count[history.LogEntryRow](t, dir, history.TableLogEntries, func(r history.LogEntryRow) string {
			return r.JobID + "/" + string(rune('0'+r.TaskIndex)) + "#" + string(rune('0'+r.Attempt))
		}),
	}
	for table, n := range want {
		if int64(counts[table]) != n {
			t.Errorf("%s: %d distinct rows; want %d", table, counts[table], n)
		}
	}
}

// count reads a table and fails on a duplicate row (by key); it returns
// the number of rows.
func count[T any](t *testing.T, dir, table string, key func(T) string) int {
	t.Helper()
	rows, _ := readAll[T](t, dir, table)
	seen := map[string]bool{}
	for _, r := range rows {
		k := key(r)
		if seen[k] {
			t.Errorf("%s: row %s twice", table, k)
		}
		seen[k] = true
	}
	return len(rows)
}

// lateJob stores a job of one task, finished now.
func lateJob(t *testing.T, s store.Store) string {
	t.Helper()
	now := time.Now()
	j := &store.Job{ID: store.NewJobID(now, rand.NewChaCha8([32]byte{42})), Name: "late", Namespace: "mapping", CreatedAt: now,
		Tiers: []store.Tier{{Name: "small", MemoryBytes: 1 << 30}}}
	if err := s.CreateJob(t.Context(), j, []store.Task{{Index: 0, Key: "only", Argv: []string{"true"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(t.Context(), &store.Batch{Jobs: []store.JobUpdate{{ID: j.ID, State: store.JobSucceeded, StartedAt: now, FinishedAt: now}}}); err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func TestMinAge(t *testing.T) {
	s := historytest.OpenStore(t)
	historytest.Seed(t, s)
	b, _ := newBlob(t)
	// At 2026-11-03 06:00 with an hour's settling time: resim and tiles,
	// not resim2 (finished at 05:00 plus an hour is not before 06:00).
	clock := func() time.Time { return historytest.Day2.Add(6 * time.Hour) }
	st, err := (&history.Exporter{Store: s, Blob: b, MinAge: time.Hour, Clock: clock}).Run(t.Context())
	if err != nil || st.Jobs != 2 {
		t.Fatalf("run: %+v, %v; want 2 jobs", st, err)
	}
}
