package cli

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/spec"
	"github.com/haul-dev/haul/internal/store"
)

func (a *app) taskCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Find, inspect, read the logs of and reproduce tasks",
	}
	cmd.AddCommand(a.taskListCmd(), a.taskGetCmd(), a.taskLogsCmd(), a.taskReproCmd(), a.taskCancelCmd(), a.taskAddCmd(), a.taskWhyCmd())
	return cmd
}

func (a *app) taskListCmd() *cobra.Command {
	var states []string
	var glob string
	var limit int
	cmd := &cobra.Command{
		Use:   "list JOB",
		Short: "List a job's tasks, filtered by state and key",
		Long: `List a job's tasks in spec order. A job may have a million tasks: filter with
--state and --key (a shell glob such as 'sim-4*'), and bound with --limit.
Task states: blocked, queued, running, succeeded, failed, upstream_failed, cancelled.
With -o json, prints an array of task objects (key, state, attempts, ...).`,
		Example: "  haul task list J --state failed\n  haul task list J --key 'sim-1??' -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, st := range states {
				if !slices.Contains(store.TaskStates, store.TaskState(st)) {
					names := make([]string, len(store.TaskStates))
					for i, s := range store.TaskStates {
						names[i] = string(s)
					}
					return usageError{fmt.Errorf("--state %q: want some of %s", st, strings.Join(names, ", "))}
				}
			}
			c := a.client()
			var tasks []*apiv1.Task
			token := ""
			for {
				page := int32(min(limit-len(tasks), 5000))
				if limit <= 0 {
					page = 5000
				}
				resp, err := c.ListTasks(cmd.Context(), connect.NewRequest(&apiv1.ListTasksRequest{
					JobId: args[0], States: states, KeyGlob: glob, PageSize: page, PageToken: token,
				}))
				if err != nil {
					return err
				}
				tasks = append(tasks, resp.Msg.Tasks...)
				token = resp.Msg.NextPageToken
				if token == "" || (limit > 0 && len(tasks) >= limit) {
					break
				}
			}
			if a.output == "json" {
				return a.printJSON(protoList(tasks))
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tSTATE\tATTEMPTS\tTIER\tEXIT\tREASON\tDURATION")
			for _, t := range tasks {
				exit, sig := "", taskSignal(t.Reason, t.ExitCode)
				if t.Attempts > 0 && t.State != "running" && t.State != "queued" {
					exit = exitText(t.ExitCode, sig)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", t.Key, t.State, t.Attempts, t.Tier, exit, reasonText(t.Reason, sig), taskDuration(t))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if token != "" {
				fmt.Fprintf(a.stderr, "(stopped at --limit %d; more tasks match)\n", limit)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&states, "state", nil, "only tasks in these states (repeat or comma-separate)")
	cmd.Flags().StringVar(&glob, "key", "", "only tasks whose key matches this shell glob")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many tasks (0: all)")
	return cmd
}

func taskDuration(t *apiv1.Task) string {
	if t.StartedAt == nil {
		return ""
	}
	end := time.Now()
	if t.FinishedAt != nil && t.FinishedAt.AsTime().After(t.StartedAt.AsTime()) {
		end = t.FinishedAt.AsTime()
	}
	return fmtDuration(end.Sub(t.StartedAt.AsTime()))
}

func (a *app) getTask(cmd *cobra.Command, job, key string) (*apiv1.GetTaskResponse, error) {
	resp, err := a.client().GetTask(cmd.Context(), connect.NewRequest(&apiv1.GetTaskRequest{JobId: job, Key: key}))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

func (a *app) taskGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get JOB KEY",
		Short: "Show a task: command, environment, dependencies and every attempt",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.getTask(cmd, args[0], args[1])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(proto.Message(r))
			}
			t := r.Task
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "job:\t%s\nkey:\t%s\nindex:\t%d\nstate:\t%s\n", t.JobId, t.Key, t.Index, t.State)
			if t.Reason != "" {
				fmt.Fprintf(tw, "reason:\t%s\n", reasonText(t.Reason, taskSignal(t.Reason, t.ExitCode)))
			}
			fmt.Fprintf(tw, "command:\t%s\n", shellJoin(t.Command))
			if t.Cwd != "" {
				fmt.Fprintf(tw, "cwd:\t%s\n", t.Cwd)
			}
			for _, k := range slices.Sorted(maps.Keys(t.Env)) {
				fmt.Fprintf(tw, "env:\t%s=%s\n", k, t.Env[k])
			}
			for _, k := range t.SecretEnvNames {
				fmt.Fprintf(tw, "env:\t%s=%s\n", k, spec.SecretPlaceholder)
			}
			if len(t.After) > 0 {
				fmt.Fprintf(tw, "after:\t%s\n", strings.Join(t.After, ", "))
			}
			fmt.Fprintf(tw, "tier:\t%s\nretries:\t%d\n", t.Tier, t.Retries)
			if t.TimeoutMs > 0 {
				fmt.Fprintf(tw, "timeout:\t%s\n", time.Duration(t.TimeoutMs)*time.Millisecond)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(r.Attempts) == 0 {
				fmt.Fprintln(a.stdout, "no attempts yet")
				return nil
			}
			fmt.Fprintln(a.stdout)
			tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ATTEMPT\tSTATE\tTIER\tWORKER\tEXIT\tREASON\tSTARTED\tDURATION\tCPU\tPEAK RSS\tLIMIT\tMESSAGE")
			for _, at := range r.Attempts {
				exit := exitText(at.ExitCode, at.Signal)
				if at.State == "running" || at.State == "lost" {
					exit = ""
				}
				dur := ""
				if at.StartedAt != nil && at.FinishedAt != nil {
					dur = fmtDuration(at.FinishedAt.AsTime().Sub(at.StartedAt.AsTime()))
				}
				started := ""
				if at.StartedAt != nil {
					started = at.StartedAt.AsTime().Local().Format(time.TimeOnly)
				}
				cpu, peak, limit := "", "", ""
				if at.FinishedAt != nil && at.State != "lost" {
					cpu = fmt.Sprintf("%.2fs", at.CpuUserSeconds+at.CpuSystemSeconds)
					peak = bytesIEC(at.PeakRssBytes)
				}
				if at.MemoryRequestBytes > 0 && at.Enforcement != "" {
					limit = bytesIEC(at.MemoryRequestBytes) + " " + at.Enforcement
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", at.Number, at.State, at.Tier, at.WorkerId, exit, reasonText(at.Reason, at.Signal), started, dur, cpu, peak, limit, at.Message)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, at := range r.Attempts {
				if at.LogArchive != "" {
					fmt.Fprintf(a.stdout, "attempt %d: log archive: %s\n", at.Number, at.LogArchive)
				}
				for _, g := range at.Gpus {
					fmt.Fprintf(a.stdout, "attempt %d: gpu %d (%s): peak memory %s, mean utilization %.0f%%\n", at.Number, g.Index, g.Name, bytesIEC(g.PeakMemoryBytes), g.AvgUtilizationPercent)
				}
			}
			return nil
		},
	}
}

// ExitLogIncomplete is the exit status of `haul task logs` when the log was
// not stored whole.
const ExitLogIncomplete = 3

func (a *app) taskLogsCmd() *cobra.Command {
	var follow, stdout, stderr, timestamps bool
	var attempt int32
	cmd := &cobra.Command{
		Use:   "logs JOB KEY",
		Short: "Print a task's output exactly as it wrote it (stdout and stderr interleaved)",
		Long: `Print one attempt's output (the latest unless --attempt): stdout and stderr
interleaved in the order they were written, byte for byte. Logs are shipped
while the task runs, so -f follows a running task live, and they outlive the
worker.

A log that could not be stored whole (its disk filled up, the object store
was away for longer than the worker retries, its worker died) prints what
was stored, then a
notice on stderr that starts with "log incomplete:" and says how many bytes
of output were stored and why; the exit status is then 3.

With -f (and no --attempt) it follows the task attempt after attempt: a
retried task's next attempt is announced on stderr ("--- attempt 2 (tier
big) ---") and printed as it runs, until the task ends; then stderr says
how ("task sim-7 failed after 3 attempts (exit code 1)"). The exit status
is 0 if the task succeeded, 1 if it ended otherwise; if the server goes
away, -f tries again for 10 seconds, then exits 1 ("lost the server").`,
		Example: "  haul task logs J sim-417\n  haul task logs J sim-417 -f --stderr\n  haul task logs J sim-417 --attempt 1 --timestamps",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &apiv1.GetLogsRequest{JobId: args[0], Key: args[1], Attempt: attempt, Follow: follow}
			if stdout {
				req.Streams = append(req.Streams, apiv1.LogStream_LOG_STREAM_STDOUT)
			}
			if stderr {
				req.Streams = append(req.Streams, apiv1.LogStream_LOG_STREAM_STDERR)
			}
			if follow && attempt == 0 {
				// Attempt after attempt until the task ends (logs.go).
				return a.followTask(cmd.Context(), req.JobId, req.Key, req.Streams, timestamps)
			}
			stream, err := a.client().GetLogs(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			defer stream.Close()
			out := bufio.NewWriterSize(a.stdout, 64<<10)
			defer out.Flush()
			lineStart := true
			for stream.Receive() {
				for _, ch := range stream.Msg().Chunks {
					if !timestamps {
						if _, err := out.Write(ch.Data); err != nil {
							return err
						}
						continue
					}
					stamp := time.Unix(0, ch.UnixNanos).UTC().Format(time.RFC3339Nano) + " "
					for data := ch.Data; len(data) > 0; {
						if lineStart {
							out.WriteString(stamp)
						}
						i := strings.IndexByte(string(data), '\n')
						if i < 0 {
							out.Write(data)
							lineStart = false
							break
						}
						out.Write(data[:i+1])
						lineStart = true
						data = data[i+1:]
					}
				}
				if follow {
					if err := out.Flush(); err != nil {
						return err
					}
				}
			}
			err = stream.Err()
			if ce := (*connect.Error)(nil); errors.As(err, &ce) && ce.Code() == connect.CodeDataLoss {
				// The log was not stored whole: what was stored is
				// printed above; the notice says what is missing and why.
				if err := out.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "haul: %s\n", ce.Message())
				return exitError{ExitLogIncomplete}
			}
			if err != nil && !errors.Is(err, cmd.Context().Err()) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output, attempt after attempt, until the task ends (with --attempt: until that attempt ends)")
	cmd.Flags().BoolVar(&stdout, "stdout", false, "only standard output")
	cmd.Flags().BoolVar(&stderr, "stderr", false, "only standard error")
	cmd.Flags().BoolVar(&timestamps, "timestamps", false, "prefix each line with the time it was written (UTC, RFC 3339)")
	cmd.Flags().Int32Var(&attempt, "attempt", 0, "which attempt (1 is the first; default the latest)")
	return cmd
}

func (a *app) taskReproCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "repro JOB KEY",
		Short: "Print a shell command that reruns this exact task locally",
		Long: `Print a copy-pasteable shell command that reruns the task on this machine with
the exact argv, environment and working directory it ran with (the
environment is replaced, as on a worker, except PATH). Paste it into a shell,
or change the program to run it under a debugger.

The job's secret variables (secret_env) are never shown: the command reads
each from your own shell as NAME="${NAME}", so export them before you run it.`,
		Example: "  haul task repro J sim-417\n  sh -c \"$(haul task repro J sim-417)\"",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := a.getTask(cmd, args[0], args[1])
			if err != nil {
				return err
			}
			env := map[string]string{}
			maps.Copy(env, r.JobEnv)
			maps.Copy(env, r.Task.Env)
			env["HAUL_JOB"] = r.Task.JobId
			env["HAUL_TASK"] = r.Task.Key
			if n := len(r.Attempts); n > 0 {
				env["HAUL_ATTEMPT"] = strconv.Itoa(int(r.Attempts[n-1].Number))
			}
			secrets := r.Task.SecretEnvNames
			for _, k := range secrets {
				delete(env, k)
			}
			if len(secrets) > 0 {
				fmt.Fprintf(a.stderr, "haul: the task's secret variables are not shown; the command reads them from your shell: export %s first\n", strings.Join(secrets, ", "))
			}
			shell := reproCommand(r.Task.Command, env, r.Task.Cwd, secrets...)
			if a.output == "json" {
				return a.printJSON(map[string]any{"argv": r.Task.Command, "env": env, "secret_env_names": secrets, "cwd": r.Task.Cwd, "shell": shell})
			}
			fmt.Fprintf(a.stdout, "# task %s of job %s (%s, %d attempt(s))\n", r.Task.Key, r.Task.JobId, r.Task.State, r.Task.Attempts)
			fmt.Fprintln(a.stdout, shell)
			return nil
		},
	}
}

// reproCommand renders argv, env and cwd as one shell command line that runs
// in a subshell, so pasting it does not change the user's own directory.
// Each of secrets, whose values haul never shows, is passed on from the
// user's shell as NAME="${NAME}".
func reproCommand(argv []string, env map[string]string, cwd string, secrets ...string) string {
	var b strings.Builder
	b.WriteString("(")
	if cwd != "" {
		b.WriteString("cd " + shellQuote(cwd) + " && ")
	}
	b.WriteString("env -i")
	if _, ok := env["PATH"]; !ok {
		b.WriteString(` PATH="$PATH"`)
	}
	vars := make(map[string]string, len(env)+len(secrets))
	for k, v := range env {
		vars[k] = shellQuote(k + "=" + v)
	}
	for _, k := range secrets {
		if envNameRE.MatchString(k) {
			vars[k] = k + `="${` + k + `}"`
		}
	}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		b.WriteString(" " + vars[k])
	}
	b.WriteString(" " + shellJoin(argv) + ")")
	return b.String()
}

// envNameRE is a variable name the shell can expand: a secret's name is
// written unquoted into the repro command only when it is one.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, s := range argv {
		q[i] = shellQuote(s)
	}
	return strings.Join(q, " ")
}

// shellQuote quotes s for a POSIX shell, leaving plain words bare.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	plain := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (a *app) taskCancelCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel JOB KEY",
		Short: "Cancel one task: killed if running, never started otherwise; its dependents are cancelled too",
		Long: `Cancel one task of a running job. A running attempt is killed (SIGTERM to its
process group, then SIGKILL); a task that has not started never will. Tasks
that depend on it, directly or not, are cancelled too; independent branches
keep running, and the job ends failed unless every task succeeded.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			resp, err := a.client().CancelTask(cmd.Context(), connect.NewRequest(&apiv1.CancelTaskRequest{JobId: args[0], Key: args[1]}))
			if err != nil {
				return err
			}
			t := resp.Msg.Task
			if a.output == "json" {
				return a.printJSON(proto.Message(t))
			}
			if store.TaskState(t.State).Terminal() {
				fmt.Fprintf(a.stdout, "task %s already %s\n", t.Key, t.State)
			} else {
				fmt.Fprintf(a.stdout, "task %s: cancel requested\n", t.Key)
			}
			return nil
		},
	}
}

func (a *app) taskAddCmd() *cobra.Command {
	var file, job, task, tok string
	cmd := &cobra.Command{
		Use:   "add -f FILE",
		Short: "Add tasks to the running job from inside one of its tasks (a dynamic DAG)",
		Long: `Add tasks to a running job, from one of its running tasks: a task that
discovers its inputs at run time fans out over them. FILE (- for stdin) holds
the tasks to add, exactly as in a job spec:

  tasks:
    - key: "part-{item}"
      foreach: {lines: inputs.txt}
      command: [process, "{item}"]
    - key: merge
      command: [merge]
      after: ["part-*"]

'after' may name the job's existing tasks and the added ones. A task added
after one that already succeeded is ready at once; one after the adding task
starts when it succeeds. The job's tiers, default retries and timeout apply.

A task's environment has everything this needs: HAUL_SERVER, HAUL_JOB,
HAUL_TASK and HAUL_TOKEN, a token valid only for its own attempt. The job
does not end while the adding task runs, so add before exiting. A member of
the job's team may add tasks to a running job from outside it with --job and
their own credential.`,
		Example: "  haul task add -f more-tasks.yaml\n  generate-tasks | haul task add -f -",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{errors.New("-f FILE is required (- for stdin)")}
			}
			job, task, tok = cmp.Or(job, os.Getenv("HAUL_JOB")), cmp.Or(task, os.Getenv("HAUL_TASK")), cmp.Or(tok, os.Getenv("HAUL_TOKEN"))
			if job == "" {
				return usageError{errors.New("HAUL_JOB is empty: run this from a haul task (which has HAUL_JOB), or pass --job")}
			}
			data, name, err := a.readSpec(file)
			if err != nil {
				return err
			}
			resp, err := a.client().AddTasks(cmd.Context(), connect.NewRequest(&apiv1.AddTasksRequest{
				JobId: job, Spec: data, Filename: name, Token: tok, Task: task,
			}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg)
			}
			fmt.Fprintf(a.stdout, "added %d tasks to job %s (%d tasks now)\n", len(resp.Msg.Keys), job, resp.Msg.TaskCount)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the tasks to add: a spec with a tasks: list (- for stdin)")
	cmd.Flags().StringVar(&job, "job", "", "the job (default: env HAUL_JOB)")
	cmd.Flags().StringVar(&task, "task", "", "the running task that adds them (default: env HAUL_TASK)")
	cmd.Flags().StringVar(&tok, "token", "", "the job's token (default: env HAUL_TOKEN)")
	return cmd
}
