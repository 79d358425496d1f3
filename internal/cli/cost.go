package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

func (a *app) costCmd() *cobra.Command {
	var team, since, until, by string
	var limit int
	cmd := &cobra.Command{
		Use:   "cost [--team T] [--since 24h|RFC3339] [--until RFC3339] [--by team|job]",
		Short: "What teams' jobs cost over a period: USD and worker time, per team or per job",
		Long: `Sums the estimated cost (USD) and worker time of the jobs created in a period:
from --since (a time, or a duration back from --until: 24h, 7d; default 24h)
to --until (default now). --by job lists the most costly jobs (at most
--limit) after the totals. A job's cost is what its workers cost while they
lived, by their clusters' prices; a job still running counts what it cost so
far.

A platform admin sees every team; anyone else the teams they have a role
in. A period of more than 100,000 jobs is summed over the most recent
100,000, and the command says from when.`,
		Example: "  haul cost\n  haul cost --team perception --since 7d --by job\n  haul cost --since 2026-11-01T00:00:00Z --until 2026-12-01T00:00:00Z -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if by != "team" && by != "job" {
				return usageError{fmt.Errorf("--by %q: want team or job", by)}
			}
			if limit <= 0 {
				return usageError{fmt.Errorf("--limit %d: want a positive number", limit)}
			}
			end := time.Now()
			req := &apiv1.GetCostRequest{Team: team, Jobs: by == "job", JobLimit: int32(min(limit, 10_000))}
			if until != "" {
				t, err := time.Parse(time.RFC3339, until)
				if err != nil {
					return usageError{fmt.Errorf("--until %q: want a time such as 2026-12-01T00:00:00Z", until)}
				}
				end = t
				req.Until = timestamppb.New(t)
			}
			if since != "" {
				if t, err := time.Parse(time.RFC3339, since); err == nil {
					req.Since = timestamppb.New(t)
				} else if d, err := parseTTL(since); err == nil {
					req.Since = timestamppb.New(end.Add(-d))
					// Both ends from one clock reading.
					req.Until = timestamppb.New(end)
				} else {
					return usageError{fmt.Errorf("--since %q: want a duration back from --until (24h, 7d) or a time such as 2026-11-01T00:00:00Z", since)}
				}
			}
			resp, err := a.adminClient().GetCost(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			m := resp.Msg
			if !m.Complete {
				fmt.Fprintf(a.stderr, "haul: the period holds more jobs than one report reads (%d read): the totals cover the jobs created from %s on\n",
					m.JobsScanned, m.CoveredSince.AsTime().Local().Format(time.DateTime))
			}
			if a.output == "json" {
				return a.printJSON(m)
			}
			return a.printCost(m, by == "job")
		},
	}
	cmd.Flags().StringVar(&team, "team", "", "one team (default: every team you may see)")
	cmd.Flags().StringVar(&since, "since", "", "start of the period: a duration back from --until (24h, 7d) or an RFC 3339 time (default 24h)")
	cmd.Flags().StringVar(&until, "until", "", "end of the period, an RFC 3339 time (default now)")
	cmd.Flags().StringVar(&by, "by", "team", "team: one line per team; job: also the most costly jobs")
	cmd.Flags().IntVar(&limit, "limit", 100, "with --by job: at most this many jobs listed (at most 10000; the totals count all)")
	return cmd
}

func (a *app) printCost(m *apiv1.GetCostResponse, byJob bool) error {
	fmt.Fprintf(a.stdout, "jobs created %s to %s\n\n", m.Since.AsTime().Local().Format(time.DateTime), m.Until.AsTime().Local().Format(time.DateTime))
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TEAM\tJOBS\tWORKER-HOURS\tCOST")
	for _, t := range m.Teams {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", t.Team, t.Jobs, workerHours(t.WorkerSeconds), cost(t.CostUsd, t.WorkerSeconds))
	}
	fmt.Fprintf(tw, "total\t%d\t%s\t%s\n", m.TotalJobs, workerHours(m.TotalWorkerSeconds), cost(m.TotalCostUsd, m.TotalWorkerSeconds))
	if err := tw.Flush(); err != nil {
		return err
	}
	if !byJob || len(m.Jobs) == 0 {
		return nil
	}
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTEAM\tNAME\tSTATE\tCREATED\tWORKER-HOURS\tCOST")
	for _, j := range m.Jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.JobId, j.Team, j.Name, j.State, j.CreatedAt.AsTime().Local().Format(time.DateTime),
			workerHours(j.WorkerSeconds), cost(j.CostUsd, j.WorkerSeconds))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if m.JobsOmitted > 0 {
		fmt.Fprintf(a.stdout, "(%d more jobs counted in the totals, not listed: raise --limit)\n", m.JobsOmitted)
	}
	return nil
}

func workerHours(seconds float64) string {
	return strconv.FormatFloat(seconds/3600, 'f', 2, 64)
}

// cost is usd, except that workers that ran and cost nothing ran where no
// price is configured: it says so instead of showing $0.
func cost(usdValue, workerSeconds float64) string {
	if usdValue == 0 && workerSeconds > 0 {
		return "no price"
	}
	return usd(usdValue)
}

// usd formats dollars: cents, or four decimals under a dollar so that
// small jobs do not read as free.
func usd(v float64) string {
	if v != 0 && v < 1 && v > -1 {
		return "$" + strconv.FormatFloat(v, 'f', 4, 64)
	}
	return "$" + strconv.FormatFloat(v, 'f', 2, 64)
}
