package cli

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/haul-dev/haul/internal/reusesim"
)

func (a *app) simReuseCmd() *cobra.Command {
	var workload string
	var seed int64
	cmd := &cobra.Command{
		Use:   "reuse",
		Short: "Simulate worker reuse targeting against a worker per task and Spark-style allocation",
		Long: `Run one job of 2,000 tasks on at most 100 workers (30 s startups, ±10%
jitter, 10 s idle grace) under four ways of choosing the number of workers:
a fresh worker per task; Spark-style dynamic allocation (a worker per queued
task); worker reuse targeting (the scheduling core's TargetWorkers, learning
task run time and startup latency as the job runs); and reuse targeting with
estimates already learned from an earlier job of the namespace. Prints the
makespan, worker-seconds (every worker's lifetime: startup, tasks, idle),
workers started and tasks per worker for each, compared with a worker per
task. Workloads: short (1 s tasks), long (10 min tasks), mix (90% 1 s and
10% 10 min, shuffled). Simulated time: deterministic for a seed.`,
		Example: "  haul sim reuse\n  haul sim reuse --workload short --seed 7 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			names := reusesim.Workloads()
			if workload != "all" {
				if !slices.Contains(names, workload) {
					return usageError{fmt.Errorf("--workload %q: want %s or all", workload, strings.Join(names, ", "))}
				}
				names = []string{workload}
			}
			var all []reusesim.Result
			for _, name := range names {
				rs, err := reusesim.Compare(name, seed)
				if err != nil {
					return err
				}
				all = append(all, rs...)
			}
			if a.output == "json" {
				return a.printJSON(all)
			}
			_, err := fmt.Fprint(a.stdout, reusesim.Table(all))
			return err
		},
	}
	cmd.Flags().StringVar(&workload, "workload", "all", "workload: short, long, mix or all")
	cmd.Flags().Int64Var(&seed, "seed", 1, "random seed (same seed, same result)")
	return cmd
}

func (a *app) simTiersCmd() *cobra.Command {
	var seed int64
	cmd := &cobra.Command{
		Use:   "tiers",
		Short: "Simulate automated resource tiers against sizing every task for the largest",
		Long: `Run 10,000 tasks whose memory grows while they run (95% peak under 1 GiB,
5% between 1 and 30 GiB; 1 to 30 minutes each) under max-sizing (every task
requests 32 GiB) and under tiers [1 GiB, 32 GiB] (a task that crosses 1 GiB
is killed for OOM at that moment and reruns from scratch on 32 GiB). Prints
the memory requested (request × attempt time, OOM attempts included) and
used, in GiB·hours, and by how much tiers cut the request. Deterministic for
a seed.`,
		Example: "  haul sim tiers\n  haul sim tiers --seed 7 -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := reusesim.RunTiers(seed)
			if a.output == "json" {
				return a.printJSON(r)
			}
			_, err := fmt.Fprint(a.stdout, r.Table())
			return err
		},
	}
	cmd.Flags().Int64Var(&seed, "seed", 1, "random seed (same seed, same result)")
	return cmd
}
