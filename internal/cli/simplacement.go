package cli

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/spf13/cobra"

	"github.com/haul-dev/haul/internal/placementsim"
)

// defaultPlacementScale is the default --scale of haul sim placement: the
// largest share of the billion-task day that simulates a whole day within
// a few minutes on a 2-core machine (about 3.5 minutes; scale 1 takes
// about 4 minutes per simulated hour, nearly all of it in the placement
// core: docs/benchmarks.md).
const defaultPlacementScale = 0.3

func (a *app) simPlacementCmd() *cobra.Command {
	var seed int64
	var scale float64
	var duration time.Duration
	var ownersFirst, progress bool
	cmd := &cobra.Command{
		Use:   "placement",
		Short: "Simulate a day of 4 clusters and 20 teams through the real placement and worker targeting",
		Long: `Run a simulated day of 4 clusters (two CPU-only, one with A100s, one with
T4s; 48,192 cores at scale 1, each with a pod-creation budget and a start
delay) and 20 teams with quotas (some lend, some do not, some with GPU
quotas, one with a per-cluster split, two with none), each submitting jobs
of a few to a million tasks on its own daily curve: about a billion tasks a
day at scale 1. Every second of simulated time, each job's worker target
comes from the scheduling core's TargetWorkers, the starts go through the
placement core's Place in one batch, pod creations are paced by each
cluster's budget, and Rebalance marks the borrowed workers to give back.
Quota and capacity are checked every second from the simulation's own
worker records. Prints utilisation per cluster, pod creations per second
against each budget, queue wait p50/p99 per team and the violations.
--scale shrinks the workload and the fleet together; the default, 0.3, is
the largest that simulates a day in a few minutes on 2 cores (scale 1
takes about two hours).
Deterministic for a seed.`,
		Example: "  haul sim placement\n  haul sim placement --scale 0.001 --seed 7 -o json\n  haul sim placement --scale 0.01 --duration 6h --owners-first",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if math.IsNaN(scale) || scale < placementsim.MinScale || scale > placementsim.MaxScale {
				return usageError{fmt.Errorf("--scale %v: want a fraction of the billion-task day from %g to %g", scale, placementsim.MinScale, placementsim.MaxScale)}
			}
			if duration < time.Second || duration > placementsim.MaxDuration {
				return usageError{fmt.Errorf("--duration %s: want from 1s to %s", duration, placementsim.MaxDuration)}
			}
			if duration%time.Second != 0 {
				return usageError{errors.New("--duration must be whole seconds (the simulation ticks every second)")}
			}
			start := time.Now()
			cfg := placementsim.Config{Seed: seed, Scale: scale, Duration: duration, OwnersFirst: ownersFirst}
			if progress {
				cfg.Progress = func(done time.Duration) {
					fmt.Fprintf(a.stderr, "simulated %s of %s in %s\n", done, duration, fmtDuration(time.Since(start)))
				}
			}
			r, err := placementsim.Run(cfg)
			if err != nil {
				return err
			}
			r.WallSeconds = time.Since(start).Seconds()
			if a.output == "json" {
				return a.printJSON(r)
			}
			_, err = fmt.Fprint(a.stdout, r.Table())
			return err
		},
	}
	cmd.Flags().Int64Var(&seed, "seed", 1, "random seed (same seed, same result)")
	cmd.Flags().Float64Var(&scale, "scale", defaultPlacementScale, "fraction of the billion-task day (and of the fleet) to simulate, up to 1")
	cmd.Flags().DurationVar(&duration, "duration", 24*time.Hour, "simulated time (the daily workload repeats)")
	cmd.Flags().BoolVar(&progress, "progress", false, "print the simulated time reached every simulated hour on stderr")
	cmd.Flags().BoolVar(&ownersFirst, "owners-first", false, "order each placement batch with the jobs of teams within their quota first, instead of the runner's order (priority, then oldest job)")
	return cmd
}
