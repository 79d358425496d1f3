package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

func (a *app) workerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "List and inspect workers: where a job's tasks ran, how long, at what cost",
	}
	cmd.AddCommand(a.workerListCmd(), a.workerGetCmd())
	return cmd
}

func (a *app) workerListCmd() *cobra.Command {
	var job, tier, cluster, state, namespace, selector string
	var limit int32
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List workers, newest jobs' first",
		Long: `List the workers of the jobs of the teams you may see: for one job (--job,
which takes a prefix or @last), a tier (by name or index), a cluster, a
state (running or ended), or the jobs' labels (-l k=v,k2=v2).
With -o json or yaml, prints an array of worker objects.`,
		Example: "  haul worker list --job @last\n  haul worker list --cluster gpu-east --state running -l run=nightly",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			labels, err := parseSelector(selector)
			if err != nil {
				return err
			}
			switch state {
			case "", "running", "ended":
			default:
				return usageError{fmt.Errorf("--state %q: want running or ended", state)}
			}
			if job != "" {
				if job, err = a.resolveJob(cmd.Context(), job); err != nil {
					return err
				}
			}
			resp, err := a.client().ListWorkers(cmd.Context(), connect.NewRequest(&apiv1.ListWorkersRequest{
				JobId: job, Tier: tier, Cluster: cluster, State: state, JobLabels: labels, Namespace: namespace, PageSize: limit,
			}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(protoList(resp.Msg.Workers))
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tJOB\tTIER\tCLUSTER\tSTATE\tATTEMPTS\tSTARTED\tLIFETIME\tCOST")
			for _, w := range resp.Msg.Workers {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", w.Id, w.JobId, w.Tier, orDash(w.Cluster), workerState(w), w.Attempts,
					localTime(w.StartedAt.AsTime(), w.StartedAt != nil), workerLife(w), workerCost(w))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if resp.Msg.NextPageToken != "" {
				fmt.Fprintf(a.stderr, "(stopped at --limit %d; more workers match)\n", limit)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&job, "job", "", "only the workers of this job (an ID, a unique prefix or @last)")
	cmd.Flags().StringVar(&tier, "tier", "", "only workers of this tier (its name or index)")
	cmd.Flags().StringVar(&cluster, "cluster", "", "only workers in this cluster")
	cmd.Flags().StringVar(&state, "state", "", "running or ended")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "only workers of this team's jobs")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "only workers of jobs with these labels: k=v,k2=v2")
	cmd.Flags().Int32Var(&limit, "limit", 100, "at most this many workers")
	_ = cmd.RegisterFlagCompletionFunc("job", func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return a.completeJobArgs(cmd, nil, toComplete)
	})
	return cmd
}

func (a *app) workerGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a worker: its job, tier, cluster, lifetime, cost and the attempts it ran",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.client().GetWorker(cmd.Context(), connect.NewRequest(&apiv1.GetWorkerRequest{WorkerId: args[0]}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg)
			}
			w := resp.Msg.Worker
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "id:\t%s\njob:\t%s\nnamespace:\t%s\ntier:\t%s\ncluster:\t%s\nstate:\t%s\n", w.Id, w.JobId, w.Namespace, w.Tier, orDash(w.Cluster), workerState(w))
			if w.StartedAt != nil {
				fmt.Fprintf(tw, "started:\t%s\n", localTime(w.StartedAt.AsTime(), true))
			}
			if w.EndedAt != nil {
				fmt.Fprintf(tw, "ended:\t%s\n", localTime(w.EndedAt.AsTime(), true))
			}
			fmt.Fprintf(tw, "lifetime:\t%s\nestimated cost:\t%s\nattempts:\t%d\n", workerLife(w), workerCost(w), w.Attempts)
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(resp.Msg.Attempts) == 0 {
				return nil
			}
			fmt.Fprintln(a.stdout)
			tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TASK\tATTEMPT\tSTATE\tEXIT\tREASON\tSTARTED\tDURATION")
			for _, wa := range resp.Msg.Attempts {
				at := wa.Attempt
				exit := exitText(at.ExitCode, at.Signal)
				if at.State == "running" || at.State == "lost" {
					exit = ""
				}
				dur := ""
				if at.StartedAt != nil && at.FinishedAt != nil {
					dur = fmtDuration(at.FinishedAt.AsTime().Sub(at.StartedAt.AsTime()))
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", wa.TaskKey, at.Number, at.State, exit, reasonText(at.Reason, at.Signal),
					localTime(at.StartedAt.AsTime(), at.StartedAt != nil), dur)
			}
			return tw.Flush()
		},
	}
}

func workerState(w *apiv1.Worker) string {
	if w.State == "ended" && w.EndReason != "" {
		return "ended (" + w.EndReason + ")"
	}
	return w.State
}

// workerLife is how long the worker lived (so far, while it runs).
func workerLife(w *apiv1.Worker) string {
	if w.StartedAt == nil {
		return ""
	}
	end := time.Now()
	if w.EndedAt != nil {
		end = w.EndedAt.AsTime()
	}
	return fmtDuration(end.Sub(w.StartedAt.AsTime()))
}

func workerCost(w *apiv1.Worker) string {
	if !w.CostKnown {
		return "no price configured"
	}
	return fmt.Sprintf("$%.4f", w.EstimatedCostUsd)
}

func localTime(t time.Time, ok bool) string {
	if !ok {
		return ""
	}
	return t.Local().Format(time.DateTime)
}

// parseSelector reads a label selector: k=v,k2=v2 (equality only).
func parseSelector(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || strings.ContainsAny(k, "!<>") || strings.HasPrefix(v, "=") {
			return nil, usageError{fmt.Errorf("label selector %q: want key=value[,key=value...] (equality only)", part)}
		}
		if old, dup := out[k]; dup && old != v {
			return nil, usageError{fmt.Errorf("label selector: %s is given twice", k)}
		}
		out[k] = v
	}
	return out, nil
}
