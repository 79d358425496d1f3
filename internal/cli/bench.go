package cli

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/haul-dev/haul/internal/bench"
	"github.com/haul-dev/haul/internal/taskhost"
)

func (a *app) benchCmd() *cobra.Command {
	var cfg bench.Config
	var cpuProfile, workerProfiles string
	nw, nc := bench.Defaults(bench.Noop)
	pw, pc := bench.Defaults(bench.Process)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure haul: run a scenario on an embedded haul and print one machine-readable line",
		Long: fmt.Sprintf(`Run haul embedded in this process (store, gateway, runner and workers)
against one job of a scenario, and print one line of key=value fields last
on stdout (-o json: the same fields as one JSON object); progress and the
settings go to stderr.

Scenarios (--scenario):
  wide      N independent tasks
  chain     N tasks in sequence
  fanout    1 -> N-2 -> 1 (the last waits for the middle through one glob)
  layered   a random DAG of --layers layers, each task after --parents
            random tasks of the layer before (seeded; an explicit spec of
            about 70 bytes a task, so at most about 900,000 tasks)
  dynamic   tasks adding tasks: a root adds up to %d adders through
            JobService.AddTasks, each adder adds its share of the leaves

Executors (--executor):
  noop      workers are taskhosts inside this process, talking the real
            protocol over loopback HTTP to the runner; each attempt runs
            nothing, but every state change is durable in the store: the
            system's own overhead (default %d workers x %d attempts each)
  process   workers are 'haul taskhost' processes (the local backend),
            each task runs /bin/true (default %d workers x %d each)
  baseline  no haul: a bare loop fork/exec'ing /bin/true with
            workers x capacity at once (wide only; store=none), for the
            ratio with process

Stores (--store): sqlite in a temporary directory (or --data), WAL with
synchronous=FULL; postgres: a throwaway server in a temporary directory
with fsync and synchronous_commit on, or --database-url. The line says
which settings were used (durability=).

The fields:
  wall_s           from just before submitting to the job's end (its
                   finished_at), tasks_per_s = tasks / wall_s
  submit_s         the SubmitJob call alone
  dispatch_p50_ms, dispatch_p99_ms
                   from the store after the run: for each task, the time
                   from its last parent's finished_at (a glob counts its
                   members) to its started_at (when the runner handed it
                   to a worker); root tasks count from the job's
                   started_at (when the runner loaded it). This counts the
                   wait in the queue: 1,000,000 tasks ready at once on
                   1,024 slots wait for each other
  peak_rss_mb      this process's VmHWM in MiB: with --executor process the
                   workers are other processes and not counted; with a
                   throwaway PostgreSQL neither is the database
  dispatch_slot_p50_ms, dispatch_slot_p99_ms
                   the same, from the later of the last parent finishing
                   and a slot being free: of workers x capacity slots, the
                   k-th start needs k-slots+1 tasks finished (which
                   worker's slot is not known; workers still starting
                   count as there, so it errs long)
  heap_per_task_b  (peak live heap while the job ran - live heap at idle)
                   / tasks: the live heap is what the GC found reachable at
                   the end of a cycle, read every 100 ms; only cycles that
                   began after the submission returned count (one forced
                   at the end if none did); idle is after a forced GC
                   before submitting. It includes what loading the job
                   holds for a while
  heap_mid_per_task_b
                   the same with the live heap when half of the tasks were
                   done: the job's steady state
  workers, capacity, durability: the settings used

--cpuprofile writes a CPU profile of this process from the submission to
the job's end (go tool pprof -top haul FILE).`, bench.MaxAdders, nw, nc, pw, pc),
		Example: `  haul bench --scenario wide --tasks 100000
  haul bench --scenario wide --tasks 1000000 --store postgres
  haul bench --executor process --tasks 20000 && haul bench --executor baseline --tasks 20000
  haul bench --scenario fanout --tasks 1000000 --cpuprofile /tmp/fanout.prof -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := benchFlagErrors(&cfg); err != nil {
				return usageError{err}
			}
			cfg.Progress = a.stderr
			lvl := slog.LevelWarn
			if cmd.Flags().Changed("log-level") {
				if err := lvl.UnmarshalText([]byte(a.logLevel)); err != nil {
					return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", a.logLevel)}
				}
			}
			cfg.Logger = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: lvl}))
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer f.Close()
				cfg.CPUProfile = f
			}
			if workerProfiles != "" {
				// The process workers inherit this process's environment.
				if err := os.MkdirAll(workerProfiles, 0o755); err != nil {
					return fmt.Errorf("--worker-cpuprofiles: %w", err)
				}
				os.Setenv(taskhost.CPUProfileEnv, workerProfiles)
			}
			res, err := bench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(res)
			}
			_, err = fmt.Fprintln(a.stdout, res.Line())
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Scenario, "scenario", bench.Wide, "job shape: "+strings.Join(bench.Scenarios(), ", "))
	f.IntVar(&cfg.Tasks, "tasks", 10000, "tasks in the job (N)")
	f.IntVar(&cfg.Layers, "layers", 10, "layered: how many layers")
	f.IntVar(&cfg.Parents, "parents", 3, "layered: parents of each task in the layer before")
	f.Uint64Var(&cfg.Seed, "seed", 1, "layered: random seed (same seed, same DAG)")
	f.StringVar(&cfg.Executor, "executor", bench.Noop, "what runs the tasks: "+strings.Join(bench.Executors(), ", "))
	f.StringVar(&cfg.Store, "store", bench.SQLite, "store: "+strings.Join(bench.Stores(), ", "))
	f.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL to use with --store postgres instead of a throwaway server")
	f.StringVar(&cfg.DataDir, "data", "", "directory for the SQLite database and worker files (default: a temporary directory, removed at the end)")
	f.IntVar(&cfg.Workers, "workers", 0, fmt.Sprintf("most workers at once (default: %d with noop, %d otherwise)", nw, pw))
	f.IntVar(&cfg.Capacity, "capacity", 0, fmt.Sprintf("attempts each worker runs at once (default: %d with noop, %d otherwise)", nc, pc))
	f.IntVar(&cfg.Flood, "flood", 0, "isolation: first submit a wide job of this many tasks that runs beside the measured job, on another shard (each job gets half the workers)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run (submission to the job's end) to this file")
	f.StringVar(&workerProfiles, "worker-cpuprofiles", "", "with --executor process: each worker writes a CPU profile of its whole run into this folder (taskhost-PID.prof)")
	return cmd
}

// benchFlagErrors checks the flags that need no run to be judged wrong.
func benchFlagErrors(cfg *bench.Config) error {
	switch {
	case !slices.Contains(bench.Scenarios(), cfg.Scenario):
		return fmt.Errorf("--scenario %q: want %s", cfg.Scenario, strings.Join(bench.Scenarios(), ", "))
	case !slices.Contains(bench.Executors(), cfg.Executor):
		return fmt.Errorf("--executor %q: want %s", cfg.Executor, strings.Join(bench.Executors(), ", "))
	case !slices.Contains(bench.Stores(), cfg.Store):
		return fmt.Errorf("--store %q: want %s", cfg.Store, strings.Join(bench.Stores(), ", "))
	case cfg.DatabaseURL != "" && cfg.Store != bench.Postgres:
		return fmt.Errorf("--database-url needs --store %s", bench.Postgres)
	case cfg.Tasks < 1:
		return fmt.Errorf("--tasks %d: want at least 1", cfg.Tasks)
	case cfg.Workers < 0:
		return fmt.Errorf("--workers %d: want at least 1", cfg.Workers)
	case cfg.Capacity < 0:
		return fmt.Errorf("--capacity %d: want at least 1", cfg.Capacity)
	case cfg.Layers < 1:
		return fmt.Errorf("--layers %d: want at least 1", cfg.Layers)
	case cfg.Parents < 1:
		return fmt.Errorf("--parents %d: want at least 1", cfg.Parents)
	case cfg.Executor == bench.Baseline && cfg.Scenario != bench.Wide:
		return fmt.Errorf("--executor baseline runs --scenario %s only (independent /bin/true processes)", bench.Wide)
	}
	return nil
}
