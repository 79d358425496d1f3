package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/term"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/store"
)

// errInterrupted is returned by watch when its context ends first.
var errInterrupted = errors.New("interrupted")

func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// watch shows a job's progress on stderr until it ends, then prints a
// summary. It returns nil if the job succeeded and exitError{1} otherwise.
func (a *app) watch(ctx context.Context, c apiv1connect.JobServiceClient, id string, start time.Time) error {
	tty := isTTY(a.stderr)
	every := time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	var last string
	lastPrint := time.Time{}
	failures := 0
	for {
		resp, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
		if err != nil {
			if ctx.Err() != nil {
				return errInterrupted
			}
			var ce *connect.Error
			// The server may be restarting: keep trying for a while.
			if errors.As(err, &ce) && ce.Code() == connect.CodeUnavailable && failures < 60 {
				failures++
				if !sleepCtx(ctx, time.Second) {
					return errInterrupted
				}
				continue
			}
			return err
		}
		failures = 0
		j := resp.Msg.Job
		line := progressLine(j, jobElapsed(j, start), tty)
		switch {
		case tty:
			fmt.Fprintf(a.stderr, "\r\033[K%s", line)
		case line != last && time.Since(lastPrint) >= 5*time.Second, store.JobState(j.State).Terminal() && line != last:
			fmt.Fprintln(a.stderr, line)
			lastPrint = time.Now()
			last = line
		}
		if store.JobState(j.State).Terminal() {
			if tty {
				fmt.Fprintln(a.stderr)
			}
			return a.summary(ctx, c, j)
		}
		if !sleepCtx(ctx, every) {
			if tty {
				fmt.Fprintln(a.stderr)
			}
			return errInterrupted
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// progressLine renders e.g. "[#######-------] 57/102 done · 2 running · 1 failed · 12.3s".
func progressLine(j *apiv1.Job, elapsed time.Duration, bar bool) string {
	c := j.Counts
	done := c.GetSucceeded() + c.GetFailed() + c.GetUpstreamFailed() + c.GetCancelled()
	var b strings.Builder
	if bar && j.TaskCount > 0 {
		const width = 24
		filled := int(done * width / j.TaskCount)
		b.WriteString("[" + strings.Repeat("#", filled) + strings.Repeat("-", width-filled) + "] ")
	}
	fmt.Fprintf(&b, "%s %s: %d/%d done", j.Id, j.State, done, j.TaskCount)
	fmt.Fprintf(&b, " · %d running · %d queued · %d succeeded", c.GetRunning(), c.GetQueued(), c.GetSucceeded())
	if c.GetFailed() > 0 {
		fmt.Fprintf(&b, " · %d failed", c.GetFailed())
	}
	if c.GetUpstreamFailed() > 0 {
		fmt.Fprintf(&b, " · %d upstream_failed", c.GetUpstreamFailed())
	}
	if c.GetCancelled() > 0 {
		fmt.Fprintf(&b, " · %d cancelled", c.GetCancelled())
	}
	fmt.Fprintf(&b, " · %s", fmtDuration(elapsed))
	return b.String()
}

// summary prints the final state of a job and returns its exit status.
func (a *app) summary(ctx context.Context, c apiv1connect.JobServiceClient, j *apiv1.Job) error {
	if a.output == "json" {
		if err := a.printJSON(j); err != nil {
			return err
		}
	} else {
		cn := j.Counts
		wall := time.Duration(0)
		if j.StartedAt != nil && j.FinishedAt != nil {
			wall = j.FinishedAt.AsTime().Sub(j.StartedAt.AsTime())
		}
		rate := ""
		if wall > 0 {
			rate = fmt.Sprintf(" (%.0f tasks/s)", float64(cn.GetSucceeded()+cn.GetFailed())/wall.Seconds())
		}
		fmt.Fprintf(a.stdout, "job %s %s in %s%s: %d succeeded, %d failed, %d upstream_failed, %d cancelled of %d tasks\n",
			j.Id, j.State, fmtDuration(wall), rate, cn.GetSucceeded(), cn.GetFailed(), cn.GetUpstreamFailed(), cn.GetCancelled(), j.TaskCount)
	}
	if j.State == "succeeded" {
		return nil
	}
	a.failedSummary(ctx, c, j)
	return exitError{1}
}
