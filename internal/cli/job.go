package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/spec"
	"github.com/haul-dev/haul/internal/store"
)

func (a *app) jobCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "Submit, list, inspect, watch and cancel jobs",
	}
	cmd.AddCommand(a.jobSubmitCmd(), a.jobListCmd(), a.jobGetCmd(), a.jobWatchCmd(), a.jobCancelCmd(), a.jobWhyCmd(),
		a.jobRetryCmd(), a.jobRerunCmd())
	return cmd
}

// readSpec reads a spec file ("-" for stdin) and resolves `lines:` files
// relative to it, since the server cannot read the client's files.
func (a *app) readSpec(file string) ([]byte, string, error) {
	var data []byte
	var err error
	dir := filepath.Dir(file)
	if file == "-" {
		data, err = io.ReadAll(a.stdin)
		dir = "."
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, "", fmt.Errorf("read job spec: %w", err)
	}
	resolved, err := spec.ResolveFiles(data, file, dir)
	if err != nil {
		return nil, "", err
	}
	name := filepath.Base(file)
	if file == "-" {
		name = "stdin"
	}
	if !bytes.Equal(resolved, data) {
		// Line numbers in the server's errors refer to what was sent.
		name += " (as sent, with its lines: files inlined as JSON)"
	}
	return resolved, name, nil
}

func submit(ctx context.Context, c apiv1connect.JobServiceClient, data []byte, name string) (*apiv1.SubmitJobResponse, error) {
	resp, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: data, Filename: name, Params: paramsFrom(ctx)}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

func (a *app) jobSubmitCmd() *cobra.Command {
	var sets []string
	cmd := &cobra.Command{
		Use:   "submit FILE",
		Short: "Submit a job spec (YAML or JSON; - for stdin) and print its ID",
		Long: `Submit a job spec and print the new job's ID. The spec is validated by the
server; every problem is reported with the task and field it concerns.
With -o json, prints {"id": ..., "task_count": ...}.`,
		Example: "  haul job submit examples/hello-dag.yaml\n  J=$(haul job submit big.yaml) && haul job watch $J",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			params, err := parseSets(sets)
			if err != nil {
				return err
			}
			data, name, err := a.readSpec(args[0])
			if err != nil {
				return err
			}
			resp, err := submit(withParams(cmd.Context(), params), a.client(), data, name)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]any{"id": resp.JobId, "task_count": resp.TaskCount})
			}
			fmt.Fprintln(a.stdout, resp.JobId)
			return nil
		},
	}
	addSetFlag(cmd, &sets)
	return cmd
}

func (a *app) jobListCmd() *cobra.Command {
	var namespace, selector, name, user, since, until string
	var states []string
	var limit int32
	var mine, showLabels bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first, filtered by labels, name, submitter, state and time",
		Long: `List the jobs of the teams you may see, newest first. Filters combine:
  -l/--selector k=v,k2=v2   jobs with every one of these labels (equality only)
  --name GLOB               jobs whose name matches a shell glob ('nightly-*')
  --user SUBJECT / --mine   jobs submitted by someone / by you
  --state S[,S2]            pending, running, succeeded, failed, cancelled
  --since T / --until T     created at or after / before T: a duration ago
                            (24h, 90m, 7d), an RFC 3339 time or a date
                            (2026-12-01, local time)
--show-labels adds a LABELS column. With -o json or yaml, prints an array
of job objects.`,
		Example: "  haul job list --state running\n  haul job list -l run=nightly --since 24h --show-labels\n  haul job list --mine --name 'resim-*' -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := &apiv1.ListJobsRequest{Namespace: namespace, States: states, PageSize: limit, NameGlob: name, SubmittedBy: user, Mine: mine}
			for _, st := range states {
				switch store.JobState(st) {
				case store.JobPending, store.JobRunning, store.JobSucceeded, store.JobFailed, store.JobCancelled:
				default:
					return usageError{fmt.Errorf("--state %q: want pending, running, succeeded, failed or cancelled", st)}
				}
			}
			var err error
			if req.Labels, err = parseSelector(selector); err != nil {
				return err
			}
			now := time.Now()
			if since != "" {
				t, err := parseWhen(since, now)
				if err != nil {
					return usageError{fmt.Errorf("--since: %w", err)}
				}
				req.CreatedAfter = timestamppb.New(t)
			}
			if until != "" {
				t, err := parseWhen(until, now)
				if err != nil {
					return usageError{fmt.Errorf("--until: %w", err)}
				}
				req.CreatedBefore = timestamppb.New(t)
			}
			resp, err := a.client().ListJobs(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(protoList(resp.Msg.Jobs))
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			head := "ID\tNAME\tNAMESPACE\tSTATE\tTASKS\tSUCCEEDED\tFAILED\tCREATED"
			if showLabels {
				head += "\tLABELS"
			}
			fmt.Fprintln(tw, head)
			for _, j := range resp.Msg.Jobs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s", j.Id, j.Name, j.Namespace, j.State, j.TaskCount,
					j.Counts.GetSucceeded(), j.Counts.GetFailed(), j.CreatedAt.AsTime().Local().Format(time.DateTime))
				if showLabels {
					fmt.Fprintf(tw, "\t%s", labelsText(j.Labels))
				}
				fmt.Fprintln(tw)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if resp.Msg.NextPageToken != "" {
				fmt.Fprintf(a.stderr, "(stopped at --limit %d; more jobs match)\n", limit)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "only jobs of this namespace")
	cmd.Flags().StringSliceVar(&states, "state", nil, "only jobs in these states (pending, running, succeeded, failed, cancelled)")
	cmd.Flags().Int32Var(&limit, "limit", 100, "at most this many jobs")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "only jobs with these labels: k=v,k2=v2 (equality only)")
	cmd.Flags().StringVar(&name, "name", "", "only jobs whose name matches this shell glob")
	cmd.Flags().StringVar(&user, "user", "", "only jobs submitted by this subject")
	cmd.Flags().BoolVar(&mine, "mine", false, "only jobs you submitted")
	cmd.Flags().StringVar(&since, "since", "", "only jobs created at or after this: a duration ago (24h, 7d), an RFC 3339 time or a date")
	cmd.Flags().StringVar(&until, "until", "", "only jobs created before this: a duration ago, an RFC 3339 time or a date")
	cmd.Flags().BoolVar(&showLabels, "show-labels", false, "add a LABELS column")
	cmd.MarkFlagsMutuallyExclusive("user", "mine")
	return cmd
}

func protoList[T proto.Message](xs []T) []proto.Message {
	out := make([]proto.Message, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

func (a *app) jobGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a job: state, tiers and task counts",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.client().GetJob(cmd.Context(), connect.NewRequest(&apiv1.GetJobRequest{JobId: args[0]}))
			if err != nil {
				return err
			}
			j := resp.Msg.Job
			if a.output == "json" {
				return a.printJSON(j)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "id:\t%s\nname:\t%s\nnamespace:\t%s\nstate:\t%s\n", j.Id, j.Name, j.Namespace, j.State)
			if j.CancelRequested && j.State == "running" {
				fmt.Fprintf(tw, "cancel:\trequested\n")
			}
			fmt.Fprintf(tw, "created:\t%s\n", j.CreatedAt.AsTime().Local().Format(time.DateTime))
			printRetryInfo(tw, j)
			if j.StartedAt != nil {
				end := time.Now()
				if j.FinishedAt != nil {
					end = j.FinishedAt.AsTime()
				}
				fmt.Fprintf(tw, "wall time:\t%s\n", fmtDuration(end.Sub(j.StartedAt.AsTime())))
			}
			if j.WorkerSeconds > 0 {
				fmt.Fprintf(tw, "worker time:\t%s\n", fmtDuration(time.Duration(j.WorkerSeconds*float64(time.Second))))
				fmt.Fprintf(tw, "estimated cost:\t%s\n", costText(j.EstimatedCostUsd))
			}
			for i, t := range j.Workers {
				fmt.Fprintf(tw, "tier %d:\t%s (cpu %g, memory %s, gpu %d)\n", i, t.Name, t.Cpu, bytesIEC(t.MemoryBytes), t.Gpu)
			}
			fmt.Fprintf(tw, "tasks:\t%d\n", j.TaskCount)
			c := j.Counts
			fmt.Fprintf(tw, "  blocked\t%d\n  queued\t%d\n  running\t%d\n  succeeded\t%d\n  failed\t%d\n  upstream_failed\t%d\n  cancelled\t%d\n",
				c.GetBlocked(), c.GetQueued(), c.GetRunning(), c.GetSucceeded(), c.GetFailed(), c.GetUpstreamFailed(), c.GetCancelled())
			if err := tw.Flush(); err != nil {
				return err
			}
			return printUsage(a.stdout, j.Usage)
		},
	}
}

// printUsage prints the job's requested-versus-used table: memory and CPU
// requested by its attempts' tiers for as long as they ran, against what
// they used.
func printUsage(w io.Writer, u *apiv1.Usage) error {
	if u == nil || u.MemoryRequestedByteSeconds == 0 && u.CpuRequestedSeconds == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nRESOURCE\tREQUESTED\tUSED\tUSED/REQUESTED")
	fmt.Fprintf(tw, "memory\t%s\t%s\t%s\n", byteSeconds(u.MemoryRequestedByteSeconds), byteSeconds(u.MemoryUsedByteSeconds), percent(u.MemoryUsedByteSeconds, u.MemoryRequestedByteSeconds))
	fmt.Fprintf(tw, "cpu\t%s\t%s\t%s\n", coreSeconds(u.CpuRequestedSeconds), coreSeconds(u.CpuUsedSeconds), percent(u.CpuUsedSeconds, u.CpuRequestedSeconds))
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "largest peak RSS: %s; attempts killed for running out of memory: %d\n", bytesIEC(u.PeakRssBytes), u.OomAttempts)
	return err
}

// byteSeconds prints memory·time in GiB·h, or MiB·s when that is small.
func byteSeconds(bs float64) string {
	if h := bs / 3600 / (1 << 30); h >= 0.1 {
		return fmt.Sprintf("%.1f GiB·h", h)
	}
	return fmt.Sprintf("%.1f MiB·s", bs/(1<<20))
}

// coreSeconds prints CPU time in core·h, or core·s when that is small.
func coreSeconds(s float64) string {
	if h := s / 3600; h >= 0.1 {
		return fmt.Sprintf("%.1f core·h", h)
	}
	return fmt.Sprintf("%.2f core·s", s)
}

func percent(used, requested float64) string {
	if requested <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*used/requested)
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d%ci", int64(v), "KMGTP"[exp])
	}
	return fmt.Sprintf("%.1f%ci", v, "KMGTP"[exp])
}

func (a *app) jobWatchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Show a job's progress until it ends; exit 0 if and only if it succeeded",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.watch(cmd.Context(), a.client(), args[0], time.Now())
		},
	}
}

func (a *app) jobCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a job: running tasks are killed, the rest never start",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.client().CancelJob(cmd.Context(), connect.NewRequest(&apiv1.CancelJobRequest{JobId: args[0]}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg.Job)
			}
			j := resp.Msg.Job
			if store.JobState(j.State).Terminal() {
				fmt.Fprintf(a.stdout, "job %s already %s\n", j.Id, j.State)
			} else {
				fmt.Fprintf(a.stdout, "job %s: cancel requested\n", j.Id)
			}
			return nil
		},
	}
}

// failedSummary lists a few failed tasks with the commands to dig in.
func (a *app) failedSummary(ctx context.Context, c apiv1connect.JobServiceClient, j *apiv1.Job) {
	resp, err := c.ListTasks(ctx, connect.NewRequest(&apiv1.ListTasksRequest{JobId: j.Id, States: []string{"failed"}, PageSize: 10}))
	if err != nil || len(resp.Msg.Tasks) == 0 {
		return
	}
	fmt.Fprintf(a.stderr, "failed tasks:\n")
	for _, t := range resp.Msg.Tasks {
		fmt.Fprintf(a.stderr, "  %s: %s after %d attempt(s)\n", t.Key, failureText(t), t.Attempts)
	}
	if j.Counts.GetFailed() > int64(len(resp.Msg.Tasks)) {
		fmt.Fprintf(a.stderr, "  ... and %d more: haul task list %s --state failed\n", j.Counts.GetFailed()-int64(len(resp.Msg.Tasks)), j.Id)
	}
	t := resp.Msg.Tasks[0]
	fmt.Fprintf(a.stderr, "inspect: haul task logs %s %s   rerun locally: haul task repro %s %s\n", j.Id, t.Key, j.Id, t.Key)
}

func failureText(t *apiv1.Task) string {
	switch t.Reason {
	case "exit", "":
		return fmt.Sprintf("exit code %d", t.ExitCode)
	case "signal":
		return "killed by a signal"
	case "timeout":
		return fmt.Sprintf("timed out after %s", time.Duration(t.TimeoutMs)*time.Millisecond)
	case "start_error":
		return "could not start"
	}
	return strings.ReplaceAll(t.Reason, "_", " ")
}
