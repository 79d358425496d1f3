package cli

import (
	"fmt"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

func (a *app) jobWhyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "why JOB",
		Short: "Say what keeps a job's tasks from running",
		Long: `Print each blocker of a job's waiting tasks: parents not done yet, retry
backoffs, the job's max_workers, the team's quota (which resource, used and
limit), no enabled cluster with the tier's GPU type, cluster capacity,
disabled or draining clusters, borrowed capacity being given back, workers
starting. Nothing is printed for work that runs or has ended.`,
		Example: "  haul job why 1m8vy2gayhktj\n  haul job why 1m8vy2gayhktj -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.why(cmd, args[0], "")
		},
	}
}

func (a *app) taskWhyCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "why JOB KEY",
		Short:   "Say what keeps a task from running",
		Long:    `Print what keeps one task from running now: the parents it waits for (by key), the end of its retry backoff, or what keeps a worker of its tier from starting (see haul job why).`,
		Example: "  haul task why 1m8vy2gayhktj render-0042",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.why(cmd, args[0], args[1])
		},
	}
}

func (a *app) why(cmd *cobra.Command, job, key string) error {
	resp, err := a.client().Why(cmd.Context(), connect.NewRequest(&apiv1.WhyRequest{JobId: job, TaskKey: key}))
	if err != nil {
		return err
	}
	m := resp.Msg
	if a.output == "json" {
		return a.printJSON(m)
	}
	what := "job " + m.JobId
	if m.TaskKey != "" {
		what = "task " + m.TaskKey + " of job " + m.JobId
	}
	if len(m.Blockers) == 0 {
		fmt.Fprintf(a.stdout, "%s is %s: nothing holds it back\n", what, m.State)
		return nil
	}
	fmt.Fprintf(a.stdout, "%s is %s:\n", what, m.State)
	for _, b := range m.Blockers {
		fmt.Fprintf(a.stdout, "  %s\n", whyLine(b))
	}
	return nil
}

// whyLine prints one blocker: "[kind] (tier N, K tasks) detail".
func whyLine(b *apiv1.Blocker) string {
	var where []string
	if b.Tier >= 0 {
		where = append(where, fmt.Sprintf("tier %d", b.Tier))
	}
	if b.Tasks > 0 {
		where = append(where, fmt.Sprintf("%d task(s)", b.Tasks))
	}
	line := "[" + b.Kind + "]"
	if len(where) > 0 {
		line += " (" + strings.Join(where, ", ") + ")"
	}
	line += " " + b.Detail
	if b.Until != nil && !strings.Contains(b.Detail, b.Until.AsTime().Format(time.RFC3339)) {
		line += " (until " + b.Until.AsTime().Local().Format(time.DateTime) + ")"
	}
	return line
}
