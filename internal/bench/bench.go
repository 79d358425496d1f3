// Package bench is `haul bench`: it runs haul embedded in this process (a
// server.Server with its store, gateway and runner) against a scenario (a
// job shape: wide, chain, fanout, layered, dynamic), with workers that run
// nothing (noop: in-process taskhosts, the protocol and every durable state
// change without a process), or real `haul taskhost` processes running
// /bin/true (process), or no haul at all (baseline: a bare fork/exec loop
// with the same parallelism), and measures throughput, dispatch latency
// and memory into one machine-readable line (Result.Line).
//
// It imports the server wiring, the store, the runner's backend contract,
// the taskhost, the DAG builder and pgtest (for a throwaway PostgreSQL).
package bench

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/pgtest"
	"github.com/haul-dev/haul/internal/server"
	"github.com/haul-dev/haul/internal/store"

	_ "modernc.org/sqlite" // database/sql driver "sqlite", to read the journal mode
)

// Executors.
const (
	// Noop runs every attempt in an in-process taskhost without starting a
	// process: the system's own overhead.
	Noop = "noop"
	// Process runs /bin/true through `haul taskhost` worker processes.
	Process = "process"
	// Baseline runs /bin/true in a bare fork/exec loop, without haul.
	Baseline = "baseline"
)

// Stores.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Executors lists the executors.
func Executors() []string { return []string{Noop, Process, Baseline} }

// Stores lists the stores.
func Stores() []string { return []string{SQLite, Postgres} }

// Defaults returns the default workers and capacity (attempts per worker
// at once) of an executor: the settings that gave the best throughput on
// the 2-core development machine (docs/benchmarks.md). Baseline takes the
// process executor's, so that its parallelism is the same.
func Defaults(executor string) (workers, capacity int) {
	if executor == Noop {
		return 8, 128
	}
	return 2, 16
}

// Config configures one run.
type Config struct {
	Scenario string
	Tasks    int
	// Layers, Parents and Seed shape the layered scenario (see Shape).
	Layers, Parents int
	Seed            uint64

	Executor string
	Store    string
	// DatabaseURL is a PostgreSQL server to use instead of a throwaway one
	// (Store postgres).
	DatabaseURL string
	// DataDir holds the SQLite database and worker files; default: a
	// temporary directory, removed at the end (DataDir is kept).
	DataDir string
	// Workers and Capacity: the most workers at once and the attempts each
	// runs at once (0: Defaults). Baseline runs Workers×Capacity at once.
	Workers, Capacity int
	// Haul is the haul command: workers run Haul + [taskhost ...], and the
	// dynamic scenario's adders Haul + [task add -f FILE] (process
	// executor). Default: this executable.
	Haul []string
	// Progress receives a line about the run every ProgressEvery (default
	// 1s); nil: none.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Logger receives the embedded server's log (nil: discarded).
	Logger *slog.Logger
	// CPUProfile, when set, receives a CPU profile of this process from
	// just before the submission to the job's end.
	CPUProfile io.Writer
	// Flood, when positive, first submits a wide job of this many tasks
	// that keeps running beside the measured job, on another shard: the
	// isolation measurement. Both jobs get max_workers Workers/2, so that
	// the measured job has the workers it would have alone with half the
	// workers; the flood job is cancelled when the measured one ends.
	Flood int
}

func (c *Config) setDefaults() error {
	w, k := Defaults(c.Executor)
	c.Workers = cmp.Or(c.Workers, w)
	c.Capacity = cmp.Or(c.Capacity, k)
	c.ProgressEvery = cmp.Or(c.ProgressEvery, time.Second)
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(c.Haul) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: find this executable (the haul command for workers): %w", err)
		}
		c.Haul = []string{exe}
	}
	return nil
}

func (c *Config) validate() error {
	var errs []error
	if !slices.Contains(Executors(), c.Executor) {
		errs = append(errs, fmt.Errorf("executor %q: want %s", c.Executor, strings.Join(Executors(), ", ")))
	}
	if c.Executor != Baseline && !slices.Contains(Stores(), c.Store) {
		errs = append(errs, fmt.Errorf("store %q: want %s", c.Store, strings.Join(Stores(), ", ")))
	}
	if c.DatabaseURL != "" && c.Store != Postgres {
		errs = append(errs, fmt.Errorf("a database URL needs store %s, not %q", Postgres, c.Store))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers %d: want at least 1", c.Workers))
	}
	if c.Capacity < 0 {
		errs = append(errs, fmt.Errorf("capacity %d: want at least 1", c.Capacity))
	}
	if c.Executor == Baseline && c.Scenario != Wide {
		errs = append(errs, fmt.Errorf("the baseline executor runs the %s scenario only (independent /bin/true processes), not %q", Wide, c.Scenario))
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench: %w", errors.Join(errs...))
	}
	return nil
}

// Run runs one benchmark and returns what it measured. Progress goes to
// cfg.Progress; everything it started (servers, workers, temporary
// directories) is gone when it returns.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	if err := cfg.setDefaults(); err != nil {
		return Result{}, err
	}
	if cfg.Executor == Baseline {
		return runBaseline(ctx, cfg)
	}
	res, err := runHaul(ctx, cfg)
	if err != nil || cfg.Executor != Process || cfg.Scenario != Wide {
		return res, err
	}
	// The ratio the issue asks for, measured in the same command: the bare
	// loop with the same number of tasks and parallelism, right after.
	progressf(&cfg, "baseline: %d × /bin/true, %d at once, no haul", cfg.Tasks, cfg.Workers*cfg.Capacity)
	cfg.CPUProfile = nil // the profile is haul's run alone
	base, err := runBaseline(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("bench: baseline: %w", err)
	}
	res.BaselineTasksPerS = base.TasksPerS
	if base.TasksPerS > 0 {
		res.BaselineRatio = res.TasksPerS / base.TasksPerS
	}
	return res, nil
}

func progressf(cfg *Config, format string, args ...any) {
	fmt.Fprintf(cfg.Progress, "bench: "+format+"\n", args...)
}

func runHaul(ctx context.Context, cfg Config) (res Result, err error) {
	tmp, err := os.MkdirTemp("", "haul-bench-")
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)
	dataDir := cmp.Or(cfg.DataDir, filepath.Join(tmp, "data"))

	var adder func(string) []string
	switch cfg.Executor {
	case Noop:
		adder = func(file string) []string { return []string{AdderProgram, file} }
	default:
		adder = func(file string) []string { return append(slices.Clone(cfg.Haul), "task", "add", "-f", file) }
	}
	maxWorkers := cfg.Workers
	if cfg.Flood > 0 {
		maxWorkers = max(1, cfg.Workers/2)
	}
	plan, err := Build(Shape{Scenario: cfg.Scenario, Tasks: cfg.Tasks, Layers: cfg.Layers, Parents: cfg.Parents, Seed: cfg.Seed,
		MaxWorkers: maxWorkers, Adder: adder, Dir: tmp})
	if err != nil {
		return res, err
	}
	for name, data := range plan.Fragments {
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return res, fmt.Errorf("bench: write fragment: %w", err)
		}
	}

	dbURL := cfg.DatabaseURL
	if cfg.Store == Postgres && dbURL == "" {
		pgDir, err := pgtest.MkdirTemp()
		if err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(pgDir)
		progressf(&cfg, "starting a throwaway PostgreSQL in %s", pgDir)
		pg, err := pgtest.StartServer(ctx, pgDir)
		if err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
		defer pg.Stop()
		dbURL, err = pgtest.CreateDatabase(ctx, pg.URL(), "haul_bench")
		if err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
	}

	// Workers reach the runner over loopback HTTP: enough idle
	// connections that none is closed and reopened between polls.
	tr := &http.Transport{MaxIdleConns: 4*cfg.Workers + 16, MaxIdleConnsPerHost: 4*cfg.Workers + 16, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	opts := server.Options{Listen: "127.0.0.1:0", DataDir: dataDir, DatabaseURL: dbURL, MaxWorkers: cfg.Workers, Logger: cfg.Logger}
	// serverURL is set before any worker starts: the adders' fallback
	// when a task's environment has no HAUL_SERVER.
	var serverURL string
	switch cfg.Executor {
	case Noop:
		opts.Backend = func(gone func(id, why string)) (server.WorkerBackend, error) {
			return newNoopBackend(cfg.Capacity, gone, client, noopExec(client, &serverURL), cfg.Logger), nil
		}
	case Process:
		opts.TaskhostCommand = append(slices.Clone(cfg.Haul), "taskhost", "--capacity", strconv.Itoa(cfg.Capacity))
	}
	s, err := server.Open(ctx, opts)
	if err != nil {
		return res, fmt.Errorf("bench: start haul: %w", err)
	}
	defer s.Stop()
	serverURL = s.URL()
	if err := s.Start(context.WithoutCancel(ctx)); err != nil {
		return res, fmt.Errorf("bench: start haul: %w", err)
	}
	durability, err := durabilityOf(ctx, cfg.Store, dbURL, dataDir)
	if err != nil {
		return res, err
	}
	res = Result{Scenario: cfg.Scenario, Store: cfg.Store, Executor: cfg.Executor, Tasks: int64(plan.Tasks),
		Workers: cfg.Workers, Capacity: cfg.Capacity, Durability: durability}
	progressf(&cfg, "scenario=%s tasks=%d store=%s durability=%s executor=%s workers=%d capacity=%d spec=%d bytes",
		res.Scenario, res.Tasks, res.Store, durability, res.Executor, res.Workers, res.Capacity, len(plan.Spec))

	idle := IdleHeap()
	heap := newHeapSampler(100 * time.Millisecond)
	go heap.run()
	defer heap.halt()
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return res, fmt.Errorf("bench: CPU profile: %w", err)
		}
	}
	profiling := cfg.CPUProfile != nil
	stopProfile := func() {
		if profiling {
			pprof.StopCPUProfile()
			profiling = false
		}
	}
	defer stopProfile()

	api := apiv1connect.NewJobServiceClient(server.WithBearer(client, s.AdminToken()), s.URL())
	flood, err := startFlood(ctx, &cfg, api, maxWorkers)
	if err != nil {
		return res, err
	}
	res.Flood = int64(cfg.Flood)
	t0 := time.Now()
	var sub *connect.Response[apiv1.SubmitJobResponse]
	for {
		sub, err = api.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: plan.Spec, Filename: "bench-" + cfg.Scenario + ".json"}))
		if err != nil {
			return res, fmt.Errorf("bench: submit: %w", err)
		}
		if flood == "" || store.ShardOf(sub.Msg.JobId) != store.ShardOf(flood) {
			break
		}
		// The same shard as the flood (1 in 32): not what is measured.
		if _, err := api.CancelJob(ctx, connect.NewRequest(&apiv1.CancelJobRequest{JobId: sub.Msg.JobId})); err != nil {
			return res, fmt.Errorf("bench: cancel: %w", err)
		}
		t0 = time.Now()
	}
	if flood != "" {
		defer api.CancelJob(context.WithoutCancel(ctx), connect.NewRequest(&apiv1.CancelJobRequest{JobId: flood}))
		progressf(&cfg, "flood job %s (shard %d) runs beside job %s (shard %d)", flood, store.ShardOf(flood), sub.Msg.JobId, store.ShardOf(sub.Msg.JobId))
	}
	res.SubmitS = time.Since(t0).Seconds()
	heap.begin()
	jobID := sub.Msg.JobId
	progressf(&cfg, "job %s submitted in %.3fs", jobID, res.SubmitS)
	mid, err := waitJob(ctx, &cfg, api, jobID, t0)
	if err != nil {
		return res, err
	}
	stopProfile()
	peak := heap.finish()
	rss, err := PeakRSS()
	if err != nil {
		return res, err
	}
	res.PeakRSSMB = float64(rss) / (1 << 20)
	if res.Tasks > 0 && peak > idle {
		res.HeapPerTaskB = float64(peak-idle) / float64(res.Tasks)
	}
	if res.Tasks > 0 && mid > idle {
		res.HeapMidPerTaskB = float64(mid-idle) / float64(res.Tasks)
	}
	s.Stop()

	// The figures come from the store: the job's times and every task's.
	st, err := server.OpenStore(context.WithoutCancel(ctx), dbURL, dataDir, cfg.Logger)
	if err != nil {
		return res, fmt.Errorf("bench: reopen the store: %w", err)
	}
	defer st.Close()
	job, err := st.GetJob(ctx, jobID)
	if err != nil {
		return res, fmt.Errorf("bench: job %s: %w", jobID, err)
	}
	if job.State != store.JobSucceeded {
		return res, fmt.Errorf("bench: job %s ended %s (%s): %s", jobID, job.State, counts(job.Counts), failure(ctx, st, jobID))
	}
	res.Tasks = job.TaskCount
	res.WallS = job.FinishedAt.Sub(t0).Seconds()
	if res.WallS > 0 {
		res.TasksPerS = float64(res.Tasks) / res.WallS
	}
	tasks, err := st.LoadTasks(ctx, jobID)
	if err != nil {
		return res, fmt.Errorf("bench: load tasks: %w", err)
	}
	if err := res.setDispatch(job.StartedAt, tasks, cfg.Workers*cfg.Capacity); err != nil {
		return res, err
	}
	return res, nil
}

// startFlood submits the flood job (Config.Flood) and waits until its
// tasks run; it returns its ID ("" without a flood).
func startFlood(ctx context.Context, cfg *Config, api apiv1connect.JobServiceClient, maxWorkers int) (string, error) {
	if cfg.Flood <= 0 {
		return "", nil
	}
	plan, err := Build(Shape{Scenario: Wide, Tasks: cfg.Flood, MaxWorkers: maxWorkers})
	if err != nil {
		return "", err
	}
	sub, err := api.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: plan.Spec, Filename: "bench-flood.json"}))
	if err != nil {
		return "", fmt.Errorf("bench: submit the flood job: %w", err)
	}
	id := sub.Msg.JobId
	for {
		j, err := api.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
		if err != nil {
			return "", fmt.Errorf("bench: flood job: %w", err)
		}
		if c := j.Msg.Job.GetCounts(); c.GetSucceeded() > 0 {
			return id, nil
		}
		if s := j.Msg.Job.GetState(); s != string(store.JobPending) && s != string(store.JobRunning) {
			return "", fmt.Errorf("bench: the flood job ended %s before the measured job began", s)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// setDispatch fills in the dispatch percentiles.
func (r *Result) setDispatch(jobStarted time.Time, tasks []store.Task, slots int) error {
	ds, slotted, err := Dispatch(jobStarted, tasks, slots)
	if err != nil {
		return err
	}
	r.DispatchP50Ms, r.DispatchP99Ms = ms(Percentile(ds, 50)), ms(Percentile(ds, 99))
	r.DispatchSlotP50Ms, r.DispatchSlotP99Ms = ms(Percentile(slotted, 50)), ms(Percentile(slotted, 99))
	return nil
}

// waitJob polls the job until it ends, writing progress. It returns the
// live heap (as of the last GC cycle) when it first saw half of the tasks
// done.
func waitJob(ctx context.Context, cfg *Config, api apiv1connect.JobServiceClient, id string, t0 time.Time) (mid uint64, err error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	lastShown := time.Now()
	var lastDone int64
	for {
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("bench: %w", ctx.Err())
		case <-tick.C:
		}
		resp, err := api.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
		if err != nil {
			return 0, fmt.Errorf("bench: job %s: %w", id, err)
		}
		j := resp.Msg.GetJob()
		c := j.GetCounts()
		done := c.GetSucceeded() + c.GetFailed() + c.GetUpstreamFailed() + c.GetCancelled()
		live, _ := readHeap()
		if mid == 0 && 2*done >= j.GetTaskCount() {
			mid = live
		}
		switch j.GetState() {
		case string(store.JobSucceeded), string(store.JobFailed), string(store.JobCancelled):
			progressf(cfg, "%6.1fs job %s: %d/%d done", time.Since(t0).Seconds(), j.GetState(), done, j.GetTaskCount())
			return mid, nil
		}
		if now := time.Now(); now.Sub(lastShown) >= cfg.ProgressEvery {
			rate := float64(done-lastDone) / now.Sub(lastShown).Seconds()
			progressf(cfg, "%6.1fs %d/%d done, %d running, %.0f tasks/s, live heap %.0f MiB",
				now.Sub(t0).Seconds(), done, j.GetTaskCount(), c.GetRunning(), rate, float64(live)/(1<<20))
			lastShown, lastDone = now, done
		}
	}
}

func counts(c store.TaskCounts) string {
	var parts []string
	for _, s := range store.TaskStates {
		if n := c.Get(s); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	return strings.Join(parts, ", ")
}

// failure describes the first failed task of a job and its last attempt.
func failure(ctx context.Context, st store.Store, jobID string) string {
	ts, err := st.ListTasks(ctx, store.TaskFilter{JobID: jobID, States: []store.TaskState{store.TaskFailed}, After: -1, Limit: 1})
	if err != nil || len(ts) == 0 {
		return "no failed task found"
	}
	t := ts[0]
	msg := fmt.Sprintf("task %s failed: %s, exit code %d", t.Key, t.Reason, t.ExitCode)
	if atts, err := st.ListAttempts(ctx, jobID, t.Index); err == nil && len(atts) > 0 {
		if m := atts[len(atts)-1].Message; m != "" {
			msg += ": " + m
		}
	}
	return msg
}

// durabilityOf says how the store keeps commits: for SQLite the journal
// mode read from the database file, and the synchronous level its driver
// sets on the connection that writes (FULL: internal/store/sqlite); for
// PostgreSQL fsync and synchronous_commit as the server reports them.
func durabilityOf(ctx context.Context, kind, dbURL, dataDir string) (string, error) {
	switch kind {
	case SQLite:
		db, err := sql.Open("sqlite", filepath.Join(dataDir, "haul.db")+"?_pragma=query_only(1)")
		if err != nil {
			return "", fmt.Errorf("bench: read SQLite settings: %w", err)
		}
		defer db.Close()
		var mode string
		if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			return "", fmt.Errorf("bench: read SQLite journal mode: %w", err)
		}
		return "sqlite:" + strings.ToLower(mode) + ",synchronous=full", nil
	case Postgres:
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			return "", fmt.Errorf("bench: read PostgreSQL settings: %w", err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		var fsync, syncCommit string
		if err := conn.QueryRow(ctx, "SELECT current_setting('fsync'), current_setting('synchronous_commit')").Scan(&fsync, &syncCommit); err != nil {
			return "", fmt.Errorf("bench: read PostgreSQL settings: %w", err)
		}
		return "postgres:fsync=" + fsync + ",synchronous_commit=" + syncCommit, nil
	}
	return "none", nil
}

// runBaseline runs the wide scenario's tasks (/bin/true) without haul:
// Workers×Capacity goroutines, each fork/exec'ing one process after
// another. A task starts when its process is about to be started and
// finishes when it has been reaped; dispatch counts from the start of the
// run, as a root task's does from its job's start.
func runBaseline(ctx context.Context, cfg Config) (Result, error) {
	par := cfg.Workers * cfg.Capacity
	res := Result{Scenario: cfg.Scenario, Store: "none", Executor: Baseline, Tasks: int64(cfg.Tasks),
		Workers: cfg.Workers, Capacity: cfg.Capacity, Durability: "none"}
	if cfg.Tasks < 1 {
		return res, fmt.Errorf("bench: tasks %d: want at least 1", cfg.Tasks)
	}
	progressf(&cfg, "scenario=%s tasks=%d executor=baseline parallelism=%d (workers %d x capacity %d): fork/exec /bin/true without haul",
		cfg.Scenario, cfg.Tasks, par, cfg.Workers, cfg.Capacity)
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return res, fmt.Errorf("bench: CPU profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var next, done atomic.Int64
	tasks := make([]store.Task, cfg.Tasks)
	var (
		errMu    sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t0 := time.Now()
	for range par {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(cfg.Tasks) {
					return
				}
				t := &tasks[i]
				t.Key = "w-" + strconv.FormatInt(i, 10)
				t.StartedAt = time.Now()
				if err := exec.Command("/bin/true").Run(); err != nil {
					errMu.Lock()
					firstErr = cmp.Or(firstErr, fmt.Errorf("bench: baseline task %d: /bin/true: %w", i, err))
					errMu.Unlock()
					cancel()
					return
				}
				t.FinishedAt = time.Now()
				done.Add(1)
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(cfg.ProgressEvery)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case <-finished:
			waiting = false
		case <-tick.C:
			progressf(&cfg, "%6.1fs %d/%d done", time.Since(t0).Seconds(), done.Load(), cfg.Tasks)
		}
	}
	wall := time.Since(t0)
	if firstErr != nil {
		return res, firstErr
	}
	if err := ctx.Err(); err != nil && done.Load() < int64(cfg.Tasks) {
		return res, fmt.Errorf("bench: %w", err)
	}
	progressf(&cfg, "%6.1fs %d/%d done", wall.Seconds(), done.Load(), cfg.Tasks)
	res.WallS = wall.Seconds()
	res.TasksPerS = float64(cfg.Tasks) / res.WallS
	if err := res.setDispatch(t0, tasks, par); err != nil {
		return res, err
	}
	rss, err := PeakRSS()
	if err != nil {
		return res, err
	}
	res.PeakRSSMB = float64(rss) / (1 << 20)
	return res, nil
}
