package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/placement"
)

func (a *app) quotaCmd() *cobra.Command {
	var team string
	cmd := &cobra.Command{
		Use:   "quota [--team T]",
		Short: "Show teams' quotas and what their workers hold against them",
		Long: `A team's quota is what its own workers may hold across all clusters (CPU,
memory, GPUs by type), optionally split by cluster, and whether others may
borrow what it does not use. For each resource: the limit, what the team's
own workers hold (reserved, charged to the quota), what its workers hold on
capacity lent by others (borrowed), and the two together (used).

A platform admin sees every team; anyone else the teams they have a role
in. Setting and deleting quotas is for platform admins.`,
		Example: "  haul quota\n  haul quota --team perception -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			resp, err := a.adminClient().GetQuotas(cmd.Context(), connect.NewRequest(&apiv1.GetQuotasRequest{Team: team}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg)
			}
			return a.printQuotas(resp.Msg.Teams)
		},
	}
	cmd.Flags().StringVar(&team, "team", "", "one team (default: every team you may see with a quota or a worker)")
	cmd.AddCommand(a.quotaSetCmd(), a.quotaDeleteCmd())
	return cmd
}

func (a *app) printQuotas(teams []*apiv1.TeamQuota) error {
	if len(teams) == 0 {
		fmt.Fprintln(a.stdout, "no quotas, and no workers of the teams you may see")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TEAM\tRESOURCE\tLIMIT\tRESERVED\tBORROWED\tUSED\tLEND")
	for _, tq := range teams {
		lend := "-"
		if tq.Quota != nil {
			lend = "no"
			if tq.Quota.Lend {
				lend = "yes"
			}
		}
		if len(tq.Resources) == 0 {
			fmt.Fprintf(tw, "%s\t-\tnone\t0\t0\t0\t%s\n", tq.Team, lend)
		}
		for _, r := range tq.Resources {
			limit := "none"
			if tq.Quota != nil {
				limit = amount(r.Resource, r.Limit)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", tq.Team, r.Resource, limit,
				amount(r.Resource, r.Reserved), amount(r.Resource, r.Borrowed), amount(r.Resource, r.Used), lend)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Then where the workers are, and the per-cluster splits.
	busy := false
	for _, tq := range teams {
		busy = busy || len(tq.Clusters) > 0 || tq.Workers > 0 || tq.BorrowedWorkers > 0
	}
	if !busy {
		return nil
	}
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TEAM\tCLUSTER\tSPLIT\tRESERVED\tBORROWED\tWORKERS")
	for _, tq := range teams {
		for _, c := range tq.Clusters {
			split := "-"
			if c.Split != nil {
				split = resString(resourcesFromAPI(c.Split))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", tq.Team, c.Cluster, split, resString(resourcesFromAPI(c.Reserved)), resString(resourcesFromAPI(c.Borrowed)),
				workerCount(c.Workers, c.BorrowedWorkers))
		}
		fmt.Fprintf(tw, "%s\t(all)\t\t\t\t%s\n", tq.Team, workerCount(tq.Workers, tq.BorrowedWorkers))
	}
	return tw.Flush()
}

func workerCount(own, borrowed int64) string {
	if borrowed == 0 {
		return fmt.Sprint(own)
	}
	return fmt.Sprintf("%d (+%d borrowing)", own, borrowed)
}

func (a *app) quotaSetCmd() *cobra.Command {
	var splits []string
	var lend bool
	cmd := &cobra.Command{
		Use:   "set TEAM LIMIT [--cluster NAME=LIMIT ...] [--lend=true|false]",
		Short: "Set a team's quota (platform admins)",
		Long: `Sets a team's quota, replacing the one it had. LIMIT is what the team's own
workers may hold across all clusters: cpu in cores (or thousandths: 500m),
memory in bytes or with a suffix (Ki, Mi, Gi, Ti, K, M, G, T), GPUs per type
as gpu/TYPE. --cluster bounds the team's own workers in one cluster (each
split within LIMIT). --lend lets other teams borrow what the team does not
use; without it, a team that had a quota keeps its choice and a new one
does not lend.`,
		Example: "  haul quota set perception cpu=64,memory=256Gi,gpu/a100=8\n" +
			"  haul quota set perception cpu=64,memory=256Gi --cluster east=cpu=32,memory=128Gi --lend=true",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			team := args[0]
			limit, err := placement.ParseResources(args[1])
			if err != nil {
				return usageError{fmt.Errorf("LIMIT %q: %w", args[1], err)}
			}
			q := &apiv1.Quota{Team: team, Limit: resourcesToAPI(limit), Lend: lend}
			for _, s := range splits {
				name, res, ok := strings.Cut(s, "=")
				if !ok || name == "" {
					return usageError{fmt.Errorf("--cluster %q: want NAME=LIMIT (east=cpu=32,memory=128Gi)", s)}
				}
				if _, dup := q.Clusters[name]; dup {
					return usageError{fmt.Errorf("--cluster %q: cluster %s is given twice", s, name)}
				}
				r, err := placement.ParseResources(res)
				if err != nil {
					return usageError{fmt.Errorf("--cluster %q: %w", s, err)}
				}
				if q.Clusters == nil {
					q.Clusters = map[string]*apiv1.Resources{}
				}
				q.Clusters[name] = resourcesToAPI(r)
			}
			client := a.adminClient()
			kept := ""
			if !cmd.Flags().Changed("lend") {
				// Replacing a quota keeps whether it lends.
				resp, err := client.GetQuotas(cmd.Context(), connect.NewRequest(&apiv1.GetQuotasRequest{Team: team}))
				if err != nil {
					return err
				}
				for _, tq := range resp.Msg.Teams {
					if tq.Team == team && tq.Quota != nil {
						q.Lend, kept = tq.Quota.Lend, " (kept)"
					}
				}
			}
			resp, err := client.SetQuota(cmd.Context(), connect.NewRequest(&apiv1.SetQuotaRequest{Quota: q}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg.Quota)
			}
			r := resp.Msg.Quota
			fmt.Fprintf(a.stdout, "quota of team %s: %s", r.Team, resString(resourcesFromAPI(r.Limit)))
			for _, c := range slices.Sorted(maps.Keys(r.Clusters)) {
				fmt.Fprintf(a.stdout, "; in %s at most %s", c, resString(resourcesFromAPI(r.Clusters[c])))
			}
			if r.Lend {
				fmt.Fprintf(a.stdout, "; lends what it does not use%s\n", kept)
			} else {
				fmt.Fprintf(a.stdout, "; does not lend%s\n", kept)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&splits, "cluster", nil, "NAME=LIMIT: at most LIMIT of the team's own workers in cluster NAME (east=cpu=32,memory=128Gi); repeat per cluster")
	cmd.Flags().BoolVar(&lend, "lend", false, "let other teams borrow what the team does not use (default: kept when the team had a quota, else false)")
	return cmd
}

func (a *app) quotaDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete TEAM",
		Short:   "Delete a team's quota (platform admins): it then owns nothing and may only borrow",
		Example: "  haul quota delete perception",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.adminClient().DeleteQuota(cmd.Context(), connect.NewRequest(&apiv1.DeleteQuotaRequest{Team: args[0]}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg)
			}
			fmt.Fprintf(a.stdout, "quota of team %s deleted\n", args[0])
			return nil
		},
	}
}
