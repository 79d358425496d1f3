package gateway

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	runnerv1 "github.com/haul-dev/haul/internal/gen/haul/runner/v1"
	"github.com/haul-dev/haul/internal/logs"
	"github.com/haul-dev/haul/internal/store"
)

// maxChunkBytes bounds one GetLogs message; a big log is many messages, so
// neither side holds it whole.
const maxChunkBytes = 256 << 10

// GetLogs streams one attempt's output in arrival order, from the segments
// the taskhost flushed while the task runs, then from the final object.
func (g *Gateway) GetLogs(ctx context.Context, req *connect.Request[apiv1.GetLogsRequest], stream *connect.ServerStream[apiv1.GetLogsResponse]) error {
	j, t, err := g.task(ctx, req.Msg.JobId, req.Msg.Key, auth.ReadJob, nil)
	if err != nil {
		return err
	}
	attempt := req.Msg.Attempt
	if attempt < 0 || attempt > t.Attempts {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("task %s has %d attempts; attempt %d does not exist", t.Key, t.Attempts, attempt))
	}
	if attempt == 0 {
		attempt = t.Attempts
	}
	if attempt == 0 {
		if !req.Msg.Follow || t.State.Terminal() {
			return connect.NewError(connect.CodeNotFound, fmt.Errorf("task %s has not started (state %s): no logs yet", t.Key, t.State))
		}
		// Wait for the first attempt to start.
		for attempt == 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
			if t, err = g.cfg.Store.GetTask(ctx, j.ID, t.Key); err != nil {
				return storeError(err, "task", t.Key)
			}
			if t.Attempts > 0 {
				attempt = t.Attempts
			} else if t.State.Terminal() {
				return connect.NewError(connect.CodeNotFound, fmt.Errorf("task %s ended %s without running: no logs", t.Key, t.State))
			}
		}
	}
	want := map[byte]bool{logs.Stdout: true, logs.Stderr: true}
	if len(req.Msg.Streams) > 0 {
		want = map[byte]bool{}
		for _, s := range req.Msg.Streams {
			want[byte(s)] = true
		}
	}
	msg := &apiv1.GetLogsResponse{Attempt: attempt}
	size := 0
	flush := func() error {
		if len(msg.Chunks) == 0 && msg.Attempt == 0 {
			return nil
		}
		err := stream.Send(msg)
		msg = &apiv1.GetLogsResponse{}
		size = 0
		return err
	}
	done := func() bool {
		a, err := g.attemptState(ctx, j.ID, t.Index, attempt)
		return err != nil || a != store.AttemptRunning
	}
	// Frames are batched into messages of up to maxChunkBytes; when
	// following, whatever is batched goes out as soon as the reader has
	// caught up with the task.
	caughtUp := func() error {
		if len(msg.Chunks) == 0 {
			return nil
		}
		return flush()
	}
	emit := func(s byte, nanos int64, data []byte) error {
		if !want[s] {
			return nil
		}
		msg.Chunks = append(msg.Chunks, &apiv1.LogChunk{Stream: apiv1.LogStream(s), UnixNanos: nanos, Data: append([]byte(nil), data...)})
		size += len(data)
		if size >= maxChunkBytes {
			return flush()
		}
		return nil
	}
	readNotice, err := g.readLog(ctx, j.ID, t.Index, attempt, req.Msg.Follow, done, caughtUp, emit)
	if err != nil {
		if ce := new(connect.Error); errors.As(err, &ce) {
			return err
		}
		return connect.NewError(connect.CodeInternal, fmt.Errorf("read log of %s attempt %d: %w", t.Key, attempt, err))
	}
	if err := flush(); err != nil {
		return err
	}
	// A log that could not be stored whole says so: the stream ends with
	// DataLoss and the notice, after everything that was stored.
	notice, err := g.logNotice(ctx, j.ID, t.Index, attempt)
	if err != nil {
		return connect.NewError(connect.CodeInternal, fmt.Errorf("log of %s attempt %d: %w", t.Key, attempt, err))
	}
	if readNotice != "" && notice != "" && notice != readNotice {
		// What was printed came from the runner's copy: say how much of
		// the output that is, then what the worker said.
		notice = readNotice + " (the worker said: " + strings.TrimPrefix(notice, logs.IncompletePrefix) + ")"
	}
	notice = cmp.Or(notice, readNotice)
	if notice != "" {
		return connect.NewError(connect.CodeDataLoss, fmt.Errorf("task %s attempt %d: %s", t.Key, attempt, notice))
	}
	return nil
}

// LiveReader reads what a runner holds of a running attempt's log
// (runner.Runner, or runner.RemoteAppender for a runner elsewhere).
type LiveReader interface {
	LiveLog(ctx context.Context, jobID string, task, attempt int32, offset int64, limit int) (*runnerv1.LiveResponse, error)
}

// livePoll is how often a follower looks for new output; archiveWait how
// long a reader of an ended attempt waits for its archive when the
// runner's copy is not the whole log.
const (
	livePoll    = 200 * time.Millisecond
	archiveWait = 20 * time.Second
)

// readLog emits an attempt's frames in log order: from its archived entry
// when the store indexes one; else from the live copy its runner holds
// (following it while the attempt runs, and moving to the entry, at the
// same offset, once it is indexed); else from the objects of a log written
// before packs (segments, final object). emit gets the frames; caughtUp is
// called before each wait for more.
//
// An ended attempt whose copy is not the whole log (its worker's archive
// is on its way) is waited for, for archiveWait at most; after that what
// the runner holds is emitted and the returned notice says so.
func (g *Gateway) readLog(ctx context.Context, job string, task, attempt int32, follow bool, done func() bool, caughtUp func() error, emit func(byte, int64, []byte) error) (string, error) {
	var off int64   // log bytes read so far, as frames
	var shown int64 // output bytes emitted from the runner's copy
	var endedAt time.Time
	sawHeld := false
	// While the runner holds the copy of a running attempt, the store has
	// nothing new to say: a follower asks it again only when the copy
	// ends or goes away (no store query per follower per poll).
	lookStore, ended := true, false
	for {
		if lookStore {
			es, err := g.cfg.Store.ListLogEntries(ctx, store.LogEntryFilter{JobID: job, TaskIndex: task, Attempt: attempt, AfterTask: -1, Limit: 1})
			if err != nil {
				return "", fmt.Errorf("look up the log's entry: %w", err)
			}
			if len(es) == 1 {
				e := es[0]
				return "", logs.ReadEntry(ctx, g.cfg.Blob, logs.Entry{Object: e.Object, Offset: e.Offset, Length: e.Length, StdoutBytes: e.StdoutBytes, StderrBytes: e.StderrBytes}, off, nil, emit)
			}
			ended = done()
			if ended && endedAt.IsZero() {
				endedAt = time.Now()
			}
		}
		var resp *runnerv1.LiveResponse
		var liveErr error
		if g.cfg.Live != nil {
			resp, liveErr = g.cfg.Live.LiveLog(ctx, job, task, attempt, off, 1<<20)
		}
		held := liveErr == nil && resp != nil && resp.Held
		if held {
			sawHeld = true
		}
		lookStore = !held || resp.Ended
		switch {
		case held && (follow || resp.Complete || !resp.Ended || time.Since(endedAt) >= archiveWait):
			if _, err := logs.DecodeFrames(bytes.NewReader(resp.Frames), func(s byte, n int64, d []byte) error {
				shown += int64(len(d))
				return emit(s, n, d)
			}); err != nil {
				return "", err
			}
			if resp.Next < resp.End {
				if resp.Next <= off {
					return "", fmt.Errorf("the runner's copy of the log does not advance at offset %d of %d", off, resp.End)
				}
				off = resp.Next
				continue // more is there now
			}
			off = resp.Next
			if resp.Complete {
				return "", nil // the whole log, read before its archive was indexed
			}
			if resp.Ended && !follow {
				total := "?"
				if resp.OutputTotal > 0 {
					total = fmt.Sprint(resp.OutputTotal)
				}
				return fmt.Sprintf("%s%d of %s bytes of output stored: its archive has not arrived after %v; this is what the runner holds", logs.IncompletePrefix, shown, total, archiveWait), nil
			}
			if !follow {
				return "", nil // running: what there is so far
			}
		case held:
			// Ended, the copy is not all of it: wait for the archive.
		case sawHeld && time.Since(endedAt) < archiveWait:
			// The copy went away: its archive was indexed meanwhile (or
			// the runner moved); look for the entry again.
		case ended && (liveErr == nil || time.Since(endedAt) >= archiveWait):
			// Nothing live and no entry: a log from before packs, or none
			// (an attempt that printed nothing stores nothing).
			err := logs.Read(ctx, g.cfg.Blob, logs.Prefix(job, task, attempt), logs.ReadOptions{}, emit)
			if errors.Is(err, logs.ErrNoLog) {
				return "", nil
			}
			return "", err
		case !follow && !ended:
			if liveErr != nil {
				return "", connect.NewError(connect.CodeUnavailable, fmt.Errorf("the attempt runs and its runner cannot be asked for its output now: %w", liveErr))
			}
			return "", nil
		}
		if err := caughtUp(); err != nil {
			return "", err
		}
		t := time.NewTimer(livePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

// logNotice says whether an attempt's log is incomplete, and why: from its
// archived entry, from the marker object an older taskhost wrote, or, when the store was too broken for
// that, from the attempt's message; a lost attempt without a final object
// is incomplete too. A running attempt's log is not judged.
func (g *Gateway) logNotice(ctx context.Context, job string, task, number int32) (string, error) {
	es, err := g.cfg.Store.ListLogEntries(ctx, store.LogEntryFilter{JobID: job, TaskIndex: task, Attempt: number, AfterTask: -1, Limit: 1})
	if err != nil {
		return "", fmt.Errorf("look up the log's entry: %w", err)
	}
	if len(es) == 1 && es[0].Truncated {
		n := es[0].Note
		if _, ok := logs.IncompleteNotice(n); !ok {
			n = logs.IncompletePrefix + n
		}
		return n, nil
	}
	notice, err := logs.Incomplete(ctx, g.cfg.Blob, logs.Prefix(job, task, number))
	if err != nil || notice != "" {
		return notice, err
	}
	atts, err := g.cfg.Store.ListAttempts(ctx, job, task)
	if err != nil {
		return "", fmt.Errorf("list attempts: %w", err)
	}
	for _, a := range atts {
		if a.Number != number || a.State == store.AttemptRunning {
			continue
		}
		if notice, ok := logs.IncompleteNotice(a.Message); ok {
			return notice, nil
		}
		if a.State == store.AttemptLost {
			// Its worker never finished the log: what it uploaded
			// before it went away is all there is.
			final, err := logs.HasFinal(ctx, g.cfg.Blob, logs.Prefix(job, task, number))
			if err != nil {
				return "", err
			}
			if !final {
				return logs.IncompletePrefix + "the attempt was lost (its worker or the runner went away) before its log was finished; this is what was uploaded until then", nil
			}
		}
		return "", nil
	}
	return "", nil
}

func (g *Gateway) attemptState(ctx context.Context, job string, task, number int32) (store.AttemptState, error) {
	atts, err := g.cfg.Store.ListAttempts(ctx, job, task)
	if err != nil {
		return "", err
	}
	for _, a := range atts {
		if a.Number == number {
			return a.State, nil
		}
	}
	return store.AttemptRunning, nil
}

// SignalName names a signal number ("SIGKILL"), or returns "" for 0.
func SignalName(n int32) string {
	if n == 0 {
		return ""
	}
	name := syscall.Signal(n).String()
	if s, ok := signalNames[syscall.Signal(n)]; ok {
		return s
	}
	return name
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGHUP: "SIGHUP", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT", syscall.SIGILL: "SIGILL",
	syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS", syscall.SIGFPE: "SIGFPE", syscall.SIGKILL: "SIGKILL",
	syscall.SIGSEGV: "SIGSEGV", syscall.SIGPIPE: "SIGPIPE", syscall.SIGALRM: "SIGALRM", syscall.SIGTERM: "SIGTERM",
	syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2", syscall.SIGXCPU: "SIGXCPU",
}
