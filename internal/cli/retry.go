package cli

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// Parameters: `--set name=value` (repeatable) on job submit, run and job
// rerun. The values travel to submit in the command's context.

var paramNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

type paramsKey struct{}

// withParams returns ctx carrying the --set values for submit.
func withParams(ctx context.Context, params map[string]string) context.Context {
	if len(params) == 0 {
		return ctx
	}
	return context.WithValue(ctx, paramsKey{}, params)
}

// paramsFrom returns the --set values withParams put in ctx (nil: none).
func paramsFrom(ctx context.Context) map[string]string {
	p, _ := ctx.Value(paramsKey{}).(map[string]string)
	return p
}

// parseSets turns --set name=value flags into parameters; a malformed one
// is a usage error.
func parseSets(sets []string) (map[string]string, error) {
	if len(sets) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(sets))
	for _, s := range sets {
		name, value, ok := strings.Cut(s, "=")
		switch {
		case !ok:
			return nil, usageError{fmt.Errorf("--set %q: want NAME=VALUE", s)}
		case !paramNameRE.MatchString(name):
			return nil, usageError{fmt.Errorf("--set %q: bad parameter name %q: use letters, digits and '_', not starting with a digit", s, name)}
		}
		if _, dup := out[name]; dup {
			return nil, usageError{fmt.Errorf("--set %s given twice", name)}
		}
		out[name] = value
	}
	return out, nil
}

// addSetFlag registers --set on cmd.
func addSetFlag(cmd *cobra.Command, sets *[]string) {
	cmd.Flags().StringArrayVar(sets, "set", nil, "set a parameter of the spec (params:), NAME=VALUE; repeatable")
}

// retryStates are the task states `job retry --state` takes.
var retryStates = []string{"failed", "upstream_failed", "cancelled", "succeeded"}

func (a *app) jobRetryCmd() *cobra.Command {
	var glob string
	var states []string
	cmd := &cobra.Command{
		Use:   "retry JOB",
		Short: "Run an ended job's failed tasks again, in the same job",
		Long: `Run some of an ended job's tasks again inside the same job: by default its
failed, upstream_failed and cancelled tasks, narrowed by --tasks (a glob of
keys) and --state. Their dependents that did not succeed wait for them
again; succeeded tasks keep their results. Each task keeps its attempts
(new attempts number on) and gets its full retries again. The job becomes
pending and runs; it counts its retries (job get). A job still running is
refused: wait for it, or cancel it first.

Prints the tasks that will run again. With -o json, prints
{"job": ..., "retried": N, "keys": [...]}.`,
		Example: "  haul job retry 1m8x9b6209aes\n  haul job retry @last --tasks 'sim-*' --state failed",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, s := range states {
				if !slices.Contains(retryStates, s) {
					return usageError{fmt.Errorf("--state %q: use some of %s", s, strings.Join(retryStates, ", "))}
				}
			}
			ctx := cmd.Context()
			id, err := a.resolveJob(ctx, args[0])
			if err != nil {
				return err
			}
			resp, err := a.client().RetryJob(ctx, connect.NewRequest(&apiv1.RetryJobRequest{JobId: id, KeyGlob: glob, States: states}))
			if err != nil {
				return err
			}
			m := resp.Msg
			if a.output == "json" {
				return a.printJSON(map[string]any{"job": m.Job, "retried": m.Retried, "keys": m.Keys})
			}
			fmt.Fprintf(a.stdout, "job %s: %d tasks will run again (retry %d)\n", m.Job.Id, m.Retried, m.Job.Retries)
			for _, k := range m.Keys {
				fmt.Fprintf(a.stdout, "  %s\n", k)
			}
			if deps := m.Retried - int64(len(m.Keys)); deps > 0 && len(m.Keys) < 100 {
				fmt.Fprintf(a.stdout, "  and %d tasks that depend on them\n", deps)
			} else if deps > 0 {
				fmt.Fprintf(a.stdout, "  (the first %d matched tasks; %d tasks in all, with their dependents)\n", len(m.Keys), m.Retried)
			}
			fmt.Fprintf(a.stdout, "watch it: haul job watch %s\n", m.Job.Id)
			return nil
		},
	}
	cmd.Flags().StringVar(&glob, "tasks", "", "only tasks whose key matches this glob ('sim-*')")
	cmd.Flags().StringSliceVar(&states, "state", nil, "only tasks in these states: failed, upstream_failed, cancelled, succeeded (default: the first three)")
	return cmd
}

func (a *app) jobRerunCmd() *cobra.Command {
	var sets []string
	cmd := &cobra.Command{
		Use:   "rerun JOB",
		Short: "Submit a new job from a job's spec, with its parameters or new ones",
		Long: `Submit a new job from a job's stored spec, with the parameters it ran with,
each overridden by --set NAME=VALUE. Prints the new job's ID. A spec with
secret_env cannot be rerun (the server does not keep the values): submit
the file again with haul job submit. With -o json, prints
{"id": ..., "task_count": ...}.`,
		Example: "  haul job rerun 1m8x9b6209aes\n  J=$(haul job rerun @last --set n=5) && haul job watch $J",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			params, err := parseSets(sets)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			id, err := a.resolveJob(ctx, args[0])
			if err != nil {
				return err
			}
			resp, err := a.client().RerunJob(ctx, connect.NewRequest(&apiv1.RerunJobRequest{JobId: id, Params: params}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(map[string]any{"id": resp.Msg.JobId, "task_count": resp.Msg.TaskCount})
			}
			fmt.Fprintln(a.stdout, resp.Msg.JobId)
			return nil
		},
	}
	addSetFlag(cmd, &sets)
	return cmd
}

// printRetryInfo adds to `job get` the job's parameters, how many times it
// was retried, and its webhook with what became of it (tab-separated
// lines for the command's tabwriter).
func printRetryInfo(w io.Writer, j *apiv1.Job) {
	if len(j.Params) > 0 {
		names := make([]string, 0, len(j.Params))
		for k := range j.Params {
			names = append(names, k)
		}
		sort.Strings(names)
		for i, k := range names {
			names[i] = k + "=" + j.Params[k]
		}
		fmt.Fprintf(w, "params:\t%s\n", strings.Join(names, " "))
	}
	if j.Retries > 0 {
		fmt.Fprintf(w, "retries:\t%d (haul job retry)\n", j.Retries)
	}
	n := j.Notification
	if n == nil {
		return
	}
	fmt.Fprintf(w, "webhook:\t%s on %s\n", n.Webhook, strings.Join(n.On, ", "))
	if n.State == "" {
		return
	}
	line := n.State
	if n.Event != "" {
		line += " (job " + n.Event + ")"
	}
	if n.Attempts > 0 {
		line += fmt.Sprintf(", %d attempts", n.Attempts)
	}
	if n.DeliveredAt != nil {
		line += ", at " + n.DeliveredAt.AsTime().Local().Format(time.DateTime)
	}
	if n.LastError != "" {
		line += ", last error: " + n.LastError
	}
	fmt.Fprintf(w, "delivery:\t%s\n", line)
}
