package cli

import (
	"context"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// Shell completion (haul completion bash|zsh|fish|powershell) completes,
// from the server, the job argument of every command that takes one (the
// caller's recent jobs, newest first) and the task key after it (the
// job's keys starting with what was typed). With no server answering it
// completes nothing, silently.

// completeTimeout bounds a completion's calls: a shell waits for them.
const completeTimeout = 3 * time.Second

// completeJobs is how many recent jobs are offered.
const completeJobs = 50

// completeKeys is how many task keys are offered.
const completeKeys = 500

// completions makes every command under root that takes a job resolve its
// reference (jobref.go) and complete its job and key arguments.
func (a *app) completions(root *cobra.Command) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if takesJob(c) {
			a.withJobRef(c)
			if c.ValidArgsFunction == nil {
				c.ValidArgsFunction = a.completeJobArgs
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completeJobArgs completes a job (first argument) or a task key (second,
// for commands that take JOB KEY).
func (a *app) completeJobArgs(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
	defer cancel()
	switch {
	case len(args) == 0:
		return a.completeJobIDs(ctx, toComplete), cobra.ShellCompDirectiveNoFileComp
	case len(args) == 1 && takesKey(cmd):
		return a.completeTaskKeys(ctx, args[0], toComplete), cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// completeJobIDs lists the caller's recent jobs whose ID starts with
// prefix, each with its name and state as the description.
func (a *app) completeJobIDs(ctx context.Context, prefix string) []cobra.Completion {
	req := &apiv1.ListJobsRequest{Mine: true, PageSize: completeJobs}
	if p := strings.ToLower(prefix); isIDPrefix(p) {
		req.IdPrefix = p
	}
	resp, err := a.client().ListJobs(ctx, connect.NewRequest(req))
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, j := range resp.Msg.Jobs {
		if strings.HasPrefix(j.Id, strings.ToLower(prefix)) {
			out = append(out, cobra.CompletionWithDesc(j.Id, strings.TrimSpace(j.Name+" "+j.State)))
		}
	}
	return out
}

// completeTaskKeys lists the keys of job's tasks that start with prefix.
func (a *app) completeTaskKeys(ctx context.Context, job, prefix string) []cobra.Completion {
	id, err := a.resolveJob(ctx, job)
	if err != nil {
		return nil
	}
	req := &apiv1.ListTasksRequest{JobId: id, PageSize: completeKeys}
	if !strings.ContainsAny(prefix, `*?[\`) {
		req.KeyGlob = prefix + "*"
	}
	resp, err := a.client().ListTasks(ctx, connect.NewRequest(req))
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, t := range resp.Msg.Tasks {
		if strings.HasPrefix(t.Key, prefix) {
			out = append(out, cobra.CompletionWithDesc(t.Key, t.State))
		}
	}
	return out
}
