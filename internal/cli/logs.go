package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/store"
)

// teamCmd groups team settings: where the team's logs go.
func (a *app) teamCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "team",
		Short: "Team settings: where a team's logs are copied",
	}
	logs := &cobra.Command{
		Use:   "logs",
		Short: "Show teams' log destinations (never their secrets)",
		Long: `A team's log destination is an S3 bucket and prefix of the team's own:
when one of its jobs ends, the job's logs are copied there (layout and
index: docs/history.md, "Logs in the team's bucket"). A job may name a
destination within it (logs: {destination: s3://bucket/prefix/sub/}).
A platform admin sets it with the credentials to write there, which are
stored and never shown again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			team, _ := cmd.Flags().GetString("team")
			resp, err := a.adminClient().GetLogDestinations(cmd.Context(), connect.NewRequest(&apiv1.GetLogDestinationsRequest{Team: team}))
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.printJSON(resp.Msg)
			}
			if len(resp.Msg.Destinations) == 0 {
				fmt.Fprintln(a.stdout, "no log destinations for the teams you may see")
				return nil
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TEAM\tDESTINATION\tACCESS KEY\tSECRET\tUPDATED")
			for _, d := range resp.Msg.Destinations {
				secret := "-"
				if d.HasSecret {
					secret = "stored"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Team, d.Url, orDash(d.AccessKeyId), secret, time.Unix(0, d.UpdatedUnixNanos).Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	logs.Flags().String("team", "", "one team (default: every team you may see)")
	var keyID, secretFile string
	set := &cobra.Command{
		Use:   "set TEAM s3://bucket/prefix/[?region=R&endpoint=URL&path_style=true]",
		Short: "Set a team's log destination (platform admins)",
		Long: `Set where the team's jobs' logs are copied when they end. Credentials: an
access key ID and a file holding the secret access key (read from a file,
never from the command line, so it stays out of shell history and process
lists); without them the servers' own AWS credentials are used.`,
		Example: "  haul team logs set ml s3://ml-logs/haul/ --access-key-id AKIA... --secret-access-key-file ./secret",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &apiv1.SetLogDestinationRequest{Team: args[0], Url: args[1], AccessKeyId: keyID}
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return fmt.Errorf("--secret-access-key-file: %w", err)
				}
				req.SecretAccessKey = strings.TrimSpace(string(b))
			}
			resp, err := a.adminClient().SetLogDestination(cmd.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			d := resp.Msg.Destination
			fmt.Fprintf(a.stdout, "team %s: logs go to %s (access key %s)\n", d.Team, d.Url, orDash(d.AccessKeyId))
			return nil
		},
	}
	set.Flags().StringVar(&keyID, "access-key-id", "", "the destination's access key ID")
	set.Flags().StringVar(&secretFile, "secret-access-key-file", "", "a file holding the destination's secret access key")
	del := &cobra.Command{
		Use:   "delete TEAM",
		Short: "Remove a team's log destination (platform admins)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := a.adminClient().DeleteLogDestination(cmd.Context(), connect.NewRequest(&apiv1.DeleteLogDestinationRequest{Team: args[0]})); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "team %s: log destination removed\n", args[0])
			return nil
		},
	}
	logs.AddCommand(set, del)
	cmd.AddCommand(logs, a.webhookKeyCmd())
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// logsCmd groups commands on whole jobs' logs.
func (a *app) logsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Jobs' logs as plain files",
	}
	var glob string
	export := &cobra.Command{
		Use:   "export JOB DIR",
		Short: "Write a job's logs as plain per-attempt files",
		Long: `Write every attempt's output of a job under DIR, one plain file per
attempt and stream:

  DIR/JOB/TASK/ATTEMPT.stdout
  DIR/JOB/TASK/ATTEMPT.stderr

TASK is the task's key (path-escaped: a '/' becomes %2F). Files of
attempts that printed nothing on a stream are not written. An attempt
whose log is incomplete is written as far as it was stored, and named
on stderr; the command then exits 3.`,
		Example: "  haul logs export 1m8wykxqykzj6 ./logs\n  haul logs export 1m8wykxqykzj6 ./logs --key 'sim-*'",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			job, dir := args[0], args[1]
			incomplete, files := 0, 0
			req := &apiv1.ListTasksRequest{JobId: job, KeyGlob: glob, PageSize: 1000}
			for {
				resp, err := a.client().ListTasks(cmd.Context(), connect.NewRequest(req))
				if err != nil {
					return err
				}
				for _, t := range resp.Msg.Tasks {
					for attempt := int32(1); attempt <= t.Attempts; attempt++ {
						n, err := a.exportAttempt(cmd, job, t.Key, attempt, filepath.Join(dir, job, url.PathEscape(t.Key)))
						files += n
						if ce := new(connect.Error); errors.As(err, &ce) && ce.Code() == connect.CodeDataLoss {
							incomplete++
							fmt.Fprintf(a.stderr, "%s attempt %d: %s\n", t.Key, attempt, ce.Message())
							continue
						}
						if err != nil {
							return fmt.Errorf("%s attempt %d: %w", t.Key, attempt, err)
						}
					}
				}
				if resp.Msg.NextPageToken == "" {
					break
				}
				req.PageToken = resp.Msg.NextPageToken
			}
			fmt.Fprintf(a.stdout, "wrote %d files under %s\n", files, filepath.Join(dir, job))
			if incomplete > 0 {
				return exitError{ExitLogIncomplete}
			}
			return nil
		},
	}
	export.Flags().StringVar(&glob, "key", "", "only tasks whose keys match this glob")
	cmd.AddCommand(export)
	return cmd
}

// exportAttempt writes one attempt's streams into dir; it returns the
// files written.
func (a *app) exportAttempt(cmd *cobra.Command, job, key string, attempt int32, dir string) (int, error) {
	stream, err := a.client().GetLogs(cmd.Context(), connect.NewRequest(&apiv1.GetLogsRequest{JobId: job, Key: key, Attempt: attempt}))
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	files := map[apiv1.LogStream]*os.File{}
	bufs := map[apiv1.LogStream]*bufio.Writer{}
	closeAll := func() error {
		var errs []error
		for s, f := range files {
			errs = append(errs, bufs[s].Flush(), f.Close())
		}
		return errors.Join(errs...)
	}
	for stream.Receive() {
		for _, c := range stream.Msg().Chunks {
			w := bufs[c.Stream]
			if w == nil {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					closeAll()
					return 0, err
				}
				ext := "stdout"
				if c.Stream == apiv1.LogStream_LOG_STREAM_STDERR {
					ext = "stderr"
				}
				f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%d.%s", attempt, ext)))
				if err != nil {
					closeAll()
					return 0, err
				}
				files[c.Stream], bufs[c.Stream] = f, bufio.NewWriterSize(f, 64<<10)
				w = bufs[c.Stream]
			}
			if _, err := w.Write(c.Data); err != nil {
				closeAll()
				return 0, err
			}
		}
	}
	if err := closeAll(); err != nil {
		return len(files), err
	}
	return len(files), stream.Err()
}

// lostServerAfter is how long a follower keeps trying to reach a server
// that went away before it gives up (exit 1, "lost the server").
var lostServerAfter = 10 * time.Second

// transient reports whether a call's error may pass if tried again: the
// server is away or the stream broke, as opposed to an answer (not found,
// refused, a log stored incompletely).
func transient(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	switch connect.CodeOf(err) {
	case connect.CodeNotFound, connect.CodeInvalidArgument, connect.CodePermissionDenied, connect.CodeUnauthenticated,
		connect.CodeDataLoss, connect.CodeFailedPrecondition, connect.CodeUnimplemented, connect.CodeCanceled:
		return false
	}
	return true
}

// retrier bounds how long a follower retries a server that went away.
type retrier struct {
	since time.Time
}

// again reports whether to try once more after err (sleeping a little
// first), or returns the error that ends the follower: "lost the server"
// after lostServerAfter of failures.
func (r *retrier) again(ctx context.Context, err error) error {
	if !transient(ctx, err) {
		return err
	}
	if r.since.IsZero() {
		r.since = time.Now()
	}
	if time.Since(r.since) > lostServerAfter {
		return fmt.Errorf("lost the server: %s", describe(err))
	}
	if !sleepCtx(ctx, 500*time.Millisecond) {
		return ctx.Err()
	}
	return nil
}

// ok records a call that went through.
func (r *retrier) ok() { r.since = time.Time{} }

// logWriter writes log chunks to out, each line optionally prefixed by
// its time.
type logWriter struct {
	out        *bufio.Writer
	timestamps bool
	lineStart  bool
}

func (w *logWriter) write(ch *apiv1.LogChunk) error {
	if !w.timestamps {
		_, err := w.out.Write(ch.Data)
		return err
	}
	stamp := time.Unix(0, ch.UnixNanos).UTC().Format(time.RFC3339Nano) + " "
	for data := ch.Data; len(data) > 0; {
		if w.lineStart {
			w.out.WriteString(stamp)
		}
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			w.lineStart = false
			_, err := w.out.Write(data)
			return err
		}
		if _, err := w.out.Write(data[:i+1]); err != nil {
			return err
		}
		w.lineStart = true
		data = data[i+1:]
	}
	return nil
}

// followTask is `haul task logs -f` without --attempt: it prints the
// latest attempt's output live, then each later attempt's (after a
// separator line on stderr), until the task is terminal. It says on stderr
// why it stopped; the exit status is 0 if the task succeeded, 1 if it
// ended otherwise or the server was lost for lostServerAfter, 3 if it
// succeeded but a log was stored incompletely.
func (a *app) followTask(ctx context.Context, job, key string, streams []apiv1.LogStream, timestamps bool) error {
	c := a.client()
	out := bufio.NewWriterSize(a.stdout, 64<<10)
	defer out.Flush()
	w := &logWriter{out: out, timestamps: timestamps, lineStart: true}
	var r retrier
	incomplete := false
	var attempt int32 // the attempt to print; 0: the latest
	var shown int32   // the attempt being printed
	var printed int64 // bytes of it printed: skipped when it is asked again
	for {
		skip := int64(0)
		if attempt != 0 && attempt == shown {
			skip = printed
		}
		stream, err := c.GetLogs(ctx, connect.NewRequest(&apiv1.GetLogsRequest{JobId: job, Key: key, Attempt: attempt, Follow: true, Streams: streams}))
		if err == nil {
			for stream.Receive() {
				m := stream.Msg()
				r.ok()
				if m.Attempt != 0 && m.Attempt != shown {
					if shown != 0 || m.Attempt > 1 {
						out.Flush()
						fmt.Fprintf(a.stderr, "--- attempt %d%s ---\n", m.Attempt, attemptTier(ctx, c, job, key, m.Attempt))
					}
					attempt, shown, printed, skip = m.Attempt, m.Attempt, 0, 0
					w.lineStart = true
				}
				for _, ch := range m.Chunks {
					if skip >= int64(len(ch.Data)) {
						skip -= int64(len(ch.Data))
						continue
					}
					ch.Data = ch.Data[skip:]
					skip = 0
					printed += int64(len(ch.Data))
					if err := w.write(ch); err != nil {
						stream.Close()
						return err
					}
				}
				if err := out.Flush(); err != nil {
					stream.Close()
					return err
				}
			}
			err = stream.Err()
			stream.Close()
		}
		if ctx.Err() != nil {
			return nil
		}
		if ce := new(connect.Error); errors.As(err, &ce) && ce.Code() == connect.CodeDataLoss {
			out.Flush()
			fmt.Fprintf(a.stderr, "haul: %s\n", ce.Message())
			incomplete = true
		} else if err != nil {
			if connect.CodeOf(err) == connect.CodeNotFound && shown == 0 {
				// It ended without running, or does not exist.
				return err
			}
			if err := r.again(ctx, err); err != nil {
				return err
			}
			continue
		}
		// The attempt ended: is there another one?
		out.Flush()
		t, err := a.nextAttempt(ctx, c, &r, job, key, shown)
		if err != nil {
			return err
		}
		if t.Attempts > shown {
			attempt = shown + 1
			continue
		}
		return a.followEnded(t, incomplete)
	}
}

// attemptTier is " (tier NAME)" for a task's attempt, or "" when it
// cannot tell.
func attemptTier(ctx context.Context, c apiv1connect.JobServiceClient, job, key string, attempt int32) string {
	resp, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: job, Key: key}))
	if err != nil {
		return ""
	}
	for _, at := range resp.Msg.Attempts {
		if at.Number == attempt && at.Tier != "" {
			return " (tier " + at.Tier + ")"
		}
	}
	return ""
}

// nextAttempt waits, after attempt ended, until the task has a later
// attempt or is terminal, and returns it.
func (a *app) nextAttempt(ctx context.Context, c apiv1connect.JobServiceClient, r *retrier, job, key string, attempt int32) (*apiv1.Task, error) {
	for {
		resp, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: job, Key: key}))
		if err != nil {
			if err := r.again(ctx, err); err != nil {
				return nil, err
			}
			continue
		}
		r.ok()
		t := resp.Msg.Task
		if t.Attempts > attempt || store.TaskState(t.State).Terminal() {
			return t, nil
		}
		// Between attempts (a retry waits to be placed).
		if !sleepCtx(ctx, 500*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
}

// followEnded says why following stopped and returns the exit status.
func (a *app) followEnded(t *apiv1.Task, incomplete bool) error {
	n := "attempt"
	if t.Attempts != 1 {
		n = "attempts"
	}
	if t.State == string(store.TaskSucceeded) {
		fmt.Fprintf(a.stderr, "task %s succeeded after %d %s\n", t.Key, t.Attempts, n)
		if incomplete {
			return exitError{ExitLogIncomplete}
		}
		return nil
	}
	why := ""
	if t.State == string(store.TaskFailed) {
		why = " (" + failureText(t) + ")"
	}
	fmt.Fprintf(a.stderr, "task %s %s after %d %s%s\n", t.Key, t.State, t.Attempts, n, why)
	return exitError{1}
}

// withJobLogs adds `haul job logs` to the job command.
func (a *app) withJobLogs(job *cobra.Command) *cobra.Command {
	job.AddCommand(a.jobLogsCmd())
	return job
}

func (a *app) jobLogsCmd() *cobra.Command {
	var states []string
	var tail, most int
	cmd := &cobra.Command{
		Use:   "logs JOB",
		Short: "Follow a job's running and failing tasks' output, each line prefixed by its task's key",
		Long: `Print the output of a job's tasks as they run, each line prefixed by the
task's key ("sim-7 | line"), until the job ends:

  running   the attempts that run (and each new attempt of a retried task),
            followed live;
  failed    the last --tail lines of the tasks that ended failed (those that
            already had when the command started included).

--state chooses (default running,failed). At most --max tasks are followed
at once (their connections and buffers are what it holds); when more run,
it says how many are not followed. The command says on stderr how the job
ended; its exit status is 0 if the job succeeded, 1 if it ended otherwise
or the server was lost for 10 seconds.`,
		Example: "  haul job logs J\n  haul job logs J --state failed --tail 50",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			want := map[string]bool{}
			for _, s := range states {
				if s != "running" && s != "failed" {
					return usageError{fmt.Errorf("--state %q: want running, failed or both", s)}
				}
				want[s] = true
			}
			if most < 1 {
				return usageError{fmt.Errorf("--max %d: want at least 1", most)}
			}
			return a.jobLogs(cmd.Context(), args[0], want, tail, most)
		},
	}
	cmd.Flags().StringSliceVar(&states, "state", []string{"running", "failed"}, "which tasks: running, failed")
	cmd.Flags().IntVar(&tail, "tail", 20, "for failed tasks, this many last lines of the last attempt (0: all)")
	cmd.Flags().IntVar(&most, "max", 16, "follow at most this many tasks at once")
	return cmd
}

// prefixWriter writes whole lines of many tasks to one output, each line
// prefixed by its task's key; a task's unfinished line waits (up to
// maxPartialLine bytes) for its end.
type prefixWriter struct {
	mu  sync.Mutex
	out io.Writer
}

const maxPartialLine = 64 << 10

// lines returns a function that takes key's output in pieces and writes
// its lines, and one that writes what is left (a last line with no
// newline).
func (p *prefixWriter) lines(key string) (write func([]byte) error, flush func() error) {
	var partial []byte
	emit := func(line []byte) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		_, err := fmt.Fprintf(p.out, "%s | %s", key, line)
		return err
	}
	write = func(data []byte) error {
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				partial = append(partial, data...)
				if len(partial) >= maxPartialLine {
					err := emit(append(partial, '\n'))
					partial = partial[:0]
					return err
				}
				return nil
			}
			line := data[:i+1]
			if len(partial) > 0 {
				line = append(partial, line...)
				partial = partial[:0]
			}
			if err := emit(line); err != nil {
				return err
			}
			data = data[i+1:]
		}
		return nil
	}
	flush = func() error {
		if len(partial) == 0 {
			return nil
		}
		err := emit(append(partial, '\n'))
		partial = partial[:0]
		return err
	}
	return write, flush
}

// jobLogsPoll is how often job logs looks for tasks that started or
// failed.
const jobLogsPoll = 500 * time.Millisecond

// jobLogs follows job's tasks (see jobLogsCmd) until it ends.
func (a *app) jobLogs(ctx context.Context, job string, want map[string]bool, tail, most int) error {
	c := a.client()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pw := &prefixWriter{out: a.stdout}
	var mu sync.Mutex
	seen := map[string]int32{} // key: the last attempt printed or being followed
	active := 0
	var wg sync.WaitGroup
	var r retrier
	var fatal error
	lastUnfollowed := -1
	start := func(key string, attempt int32, follow bool) {
		seen[key] = attempt
		active++
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := a.taskLines(ctx, c, pw, job, key, attempt, follow, tail)
			mu.Lock()
			defer mu.Unlock()
			active--
			if err != nil && ctx.Err() == nil && fatal == nil && connect.CodeOf(err) != connect.CodeNotFound {
				fatal = fmt.Errorf("%s: %w", key, err)
				cancel()
			}
		}()
	}
	// list returns the job's tasks in state (every page).
	list := func(state string) ([]*apiv1.Task, error) {
		var out []*apiv1.Task
		req := &apiv1.ListTasksRequest{JobId: job, States: []string{state}, PageSize: 1000}
		for {
			resp, err := c.ListTasks(ctx, connect.NewRequest(req))
			if err != nil {
				return nil, err
			}
			out = append(out, resp.Msg.Tasks...)
			if resp.Msg.NextPageToken == "" {
				return out, nil
			}
			req.PageToken = resp.Msg.NextPageToken
		}
	}
	// The failed tasks are listed again only when the job's count of them
	// changed (or some were left unfollowed); the running ones at every
	// poll.
	lastFailed := int64(-1)
	for {
		jr, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: job}))
		var tasks []*apiv1.Task
		if err == nil {
			for _, s := range []string{"running", "failed"} {
				if !want[s] || s == "failed" && jr.Msg.Job.Counts.GetFailed() == lastFailed {
					continue
				}
				if s == "failed" {
					lastFailed = jr.Msg.Job.Counts.GetFailed()
				}
				var ts []*apiv1.Task
				if ts, err = list(s); err != nil {
					break
				}
				tasks = append(tasks, ts...)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if err := r.again(ctx, err); err != nil {
				cancel()
				wg.Wait()
				return err
			}
			continue
		}
		r.ok()
		ended := store.JobState(jr.Msg.Job.State).Terminal()
		mu.Lock()
		if fatal != nil {
			mu.Unlock()
			break
		}
		unfollowed := 0
		for _, t := range tasks {
			if t.Attempts == 0 || seen[t.Key] >= t.Attempts {
				continue
			}
			if active >= most {
				unfollowed++
				continue
			}
			start(t.Key, t.Attempts, t.State == string(store.TaskRunning))
		}
		if unfollowed > 0 {
			lastFailed = -1
		}
		if unfollowed != lastUnfollowed && unfollowed > 0 {
			fmt.Fprintf(a.stderr, "(%d more tasks not followed: at most %d at once; --max to change)\n", unfollowed, most)
		}
		lastUnfollowed = unfollowed
		mu.Unlock()
		if ended && unfollowed == 0 {
			wg.Wait()
			mu.Lock()
			err := fatal
			mu.Unlock()
			if err != nil {
				return err
			}
			// Tasks that failed while the last followers ended.
			if want["failed"] {
				again := false
				ts, err := list("failed")
				if err == nil {
					for _, t := range ts {
						if t.Attempts > 0 && seen[t.Key] < t.Attempts {
							again = true
						}
					}
				}
				if again {
					continue
				}
			}
			j := jr.Msg.Job
			fmt.Fprintf(a.stderr, "job %s %s\n", j.Id, j.State)
			if j.State == "succeeded" {
				return nil
			}
			return exitError{1}
		}
		if !sleepCtx(ctx, jobLogsPoll) {
			break
		}
	}
	cancel()
	wg.Wait()
	if fatal != nil {
		return fatal
	}
	return nil
}

// taskLines prints one attempt's output through pw: live when follow,
// else its last tail lines (0: all).
func (a *app) taskLines(ctx context.Context, c apiv1connect.JobServiceClient, pw *prefixWriter, job, key string, attempt int32, follow bool, tail int) error {
	write, flush := pw.lines(key)
	defer flush()
	var r retrier
	var printed int64
	var ring [][]byte // the last tail lines, when not following
	var partial []byte
	for {
		skip := printed
		stream, err := c.GetLogs(ctx, connect.NewRequest(&apiv1.GetLogsRequest{JobId: job, Key: key, Attempt: attempt, Follow: follow}))
		if err == nil {
			for stream.Receive() {
				r.ok()
				for _, ch := range stream.Msg().Chunks {
					data := ch.Data
					if skip >= int64(len(data)) {
						skip -= int64(len(data))
						continue
					}
					data, skip = data[skip:], 0
					printed += int64(len(data))
					if follow || tail <= 0 {
						if err := write(data); err != nil {
							stream.Close()
							return err
						}
						continue
					}
					for len(data) > 0 {
						i := bytes.IndexByte(data, '\n')
						if i < 0 {
							partial = append(partial, data...)
							if len(partial) > maxPartialLine {
								partial = partial[len(partial)-maxPartialLine:]
							}
							break
						}
						ring = append(ring, append(partial, data[:i+1]...))
						partial = nil
						if len(ring) > tail {
							ring = ring[1:]
						}
						data = data[i+1:]
					}
				}
			}
			err = stream.Err()
			stream.Close()
		}
		if err != nil && connect.CodeOf(err) != connect.CodeDataLoss {
			if err := r.again(ctx, err); err != nil {
				return err
			}
			continue
		}
		break
	}
	if !follow && tail > 0 {
		if len(partial) > 0 {
			ring = append(ring, partial)
			if len(ring) > tail {
				ring = ring[1:]
			}
		}
		for _, l := range ring {
			if err := write(l); err != nil {
				return err
			}
		}
	}
	return nil
}
