package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/blob"
	runnerv1 "github.com/haul-dev/haul/internal/gen/haul/runner/v1"
	"github.com/haul-dev/haul/internal/gen/haul/runner/v1/runnerv1connect"
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/logs"
	"github.com/haul-dev/haul/internal/store"
)

// Live logs.
//
// Workers upload nothing while their tasks run: each worker sends its
// running attempts' new output to the runner every half second or so, on
// a report-only poll (at most 64 KiB per attempt and 1 MiB per call). The
// runner keeps the most recent part of each attempt's log in memory
// (LiveAttemptBytes, less when LiveMemoryBytes is shared by many: the
// copies together stay within it, give or take a second's arrivals), which
// readers get through RunnerService.Live within a poll of the output
// being written. Object-store requests: none per running task.
//
// At the attempt's end the worker archives the whole log in a pack and,
// once the pack is uploaded, sends the log's entry; the runner stores it
// and forgets the live copy. When the worker's node goes away first (the
// attempt is lost, or no entry comes within LivePackGrace of the attempt's
// end) the runner stores what it holds as the attempt's log, an entry of
// an object of its own, marked truncated when it is not the whole output.
// A runner that stops loses its live copies; the workers' archives are
// unaffected.

// Live defaults.
const (
	DefaultLiveAttemptBytes = 1 << 20
	DefaultLiveMemoryBytes  = 256 << 20
	DefaultLivePackGrace    = 2 * time.Minute
)

type liveKey struct {
	job           string
	task, attempt int32
}

// liveLog is what the runner holds of one attempt's log: its frames from
// byte offset base to end.
type liveLog struct {
	base    int64
	buf     []byte
	ended   time.Time // zero while it runs
	lost    bool      // its worker went away
	total   int64     // the log's size its worker reported at the end (-1: unknown)
	output  int64     // the output bytes it reported (0: unknown)
	spilled bool      // being written to the object store
}

func (l *liveLog) end() int64 { return l.base + int64(len(l.buf)) }

// liveLogs is the runner's live copies, shared by its shards.
type liveLogs struct {
	r         *Runner
	perTask   int
	total     int
	grace     time.Duration
	mu        sync.Mutex
	logs      map[liveKey]*liveLog
	held      int // bytes in all buffers
	indexed   map[liveKey]bool
	spillKick chan struct{}
}

func newLiveLogs(r *Runner) *liveLogs {
	return &liveLogs{
		r:         r,
		perTask:   r.cfg.LiveAttemptBytes,
		total:     r.cfg.LiveMemoryBytes,
		grace:     r.cfg.LivePackGrace,
		logs:      make(map[liveKey]*liveLog),
		indexed:   make(map[liveKey]bool),
		spillKick: make(chan struct{}, 1),
	}
}

// add takes a worker's live output. A chunk that starts before what is
// held ends (sent again after a lost reply) adds only what is new; one
// that starts after it (this runner missed some: it took the job over)
// restarts the copy there.
func (ll *liveLogs) add(job string, chunks []*taskhostv1.LiveOutput) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	for _, c := range chunks {
		k := liveKey{job, c.TaskIndex, c.Attempt}
		if ll.indexed[k] || c.Offset < 0 {
			continue
		}
		if !wholeFrames(c.Frames) {
			// Only whole frames keep the copy readable and trimmable.
			ll.r.log.Warn("live output of a worker is not whole log frames; dropped", "job", job, "task_index", c.TaskIndex, "attempt", c.Attempt, "bytes", len(c.Frames))
			continue
		}
		l := ll.logs[k]
		if l == nil {
			l = &liveLog{base: c.Offset}
			ll.logs[k] = l
		}
		if l.spilled {
			continue
		}
		data := c.Frames
		switch end := l.end(); {
		case c.Offset+int64(len(data)) <= end:
			continue
		case c.Offset > end:
			ll.held -= len(l.buf)
			l.base, l.buf = c.Offset, nil
		case c.Offset < end:
			data = data[end-c.Offset:]
		}
		l.buf = append(l.buf, data...)
		ll.held += len(data)
		ll.trim(l)
	}
}

// wholeFrames reports whether b is a run of whole log frames.
func wholeFrames(b []byte) bool {
	for len(b) > 0 {
		n, err := logs.FrameSize(b)
		if err != nil {
			return false
		}
		b = b[n:]
	}
	return true
}

// share is what each copy may hold now: LiveAttemptBytes, less when
// LiveMemoryBytes is shared by more copies.
func (ll *liveLogs) share() int {
	limit := ll.perTask
	if n := len(ll.logs); n > 0 && ll.total/n < limit {
		limit = ll.total / n // the bound on the whole wins
	}
	return limit
}

// trimAll trims every copy to its share, when the copies together hold
// more than LiveMemoryBytes (more attempts came since they were trimmed).
func (ll *liveLogs) trimAll() {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	if ll.held <= ll.total {
		return
	}
	for _, l := range ll.logs {
		if !l.spilled {
			ll.trim(l)
		}
	}
}

// trim drops whole frames from the front of l beyond its share.
func (ll *liveLogs) trim(l *liveLog) {
	limit := ll.share()
	if len(l.buf) <= limit {
		return
	}
	cut := 0
	for len(l.buf)-cut > limit {
		n, err := logs.FrameSize(l.buf[cut:])
		if err != nil {
			break // never cut inside a frame
		}
		cut += n
	}
	if cut == 0 {
		return
	}
	ll.held -= cut
	l.base += int64(cut)
	l.buf = append([]byte(nil), l.buf[cut:]...)
}

// ended records that an attempt ended, and the size of its log when its
// worker said (total >= 0); lost ones are stored at once.
func (ll *liveLogs) ended(job string, task, attempt int32, lost bool, total, output int64, now time.Time) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	l := ll.logs[liveKey{job, task, attempt}]
	if l == nil || !l.ended.IsZero() {
		return
	}
	l.ended, l.lost, l.total, l.output = now, lost, total, output
	if lost {
		select {
		case ll.spillKick <- struct{}{}:
		default:
		}
	}
}

// indexedNow forgets the live copies of attempts whose archived logs are
// indexed.
func (ll *liveLogs) indexedNow(job string, entries []*taskhostv1.LogEntry) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	for _, e := range entries {
		k := liveKey{job, e.TaskIndex, e.Attempt}
		if l := ll.logs[k]; l != nil {
			ll.held -= len(l.buf)
			delete(ll.logs, k)
		}
		ll.indexed[k] = true
	}
	if len(ll.indexed) > 1<<20 {
		clear(ll.indexed) // bounded: a late duplicate chunk only re-creates a copy that is spilled later
	}
}

// read returns frames of the attempt's live copy from offset from.
func (ll *liveLogs) read(k liveKey, from int64, limit int) *runnerv1.LiveResponse {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	l := ll.logs[k]
	if l == nil {
		return &runnerv1.LiveResponse{}
	}
	resp := &runnerv1.LiveResponse{Held: true, End: l.end(), Ended: !l.ended.IsZero()}
	resp.Complete = resp.Ended && !l.lost && l.base == 0 && l.total == l.end()
	resp.OutputTotal = l.output
	start := max(from, l.base)
	if start >= l.end() {
		resp.Offset, resp.Next = start, start
		return resp
	}
	b := l.buf[start-l.base:]
	// Whole frames only, up to limit bytes (at least one).
	n := 0
	for n < len(b) {
		size, err := logs.FrameSize(b[n:])
		if err != nil || (n > 0 && n+size > limit) {
			break
		}
		n += size
	}
	resp.Offset, resp.Frames, resp.Next = start, append([]byte(nil), b[:n]...), start+int64(n)
	return resp
}

// spillLoop stores the live copies of attempts that ended without an
// entry: lost ones at once, others after LivePackGrace.
func (ll *liveLogs) spillLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-ll.spillKick:
		}
		ll.spillDue(ctx, ll.r.now())
		ll.trimAll()
	}
}

func (ll *liveLogs) spillDue(ctx context.Context, now time.Time) {
	type due struct {
		k liveKey
		l *liveLog
	}
	var todo []due
	ll.mu.Lock()
	for k, l := range ll.logs {
		if !l.spilled && !l.ended.IsZero() && (l.lost || now.Sub(l.ended) >= ll.grace) {
			l.spilled = true
			todo = append(todo, due{k, l})
		}
	}
	ll.mu.Unlock()
	for _, d := range todo {
		err := ll.spill(ctx, d.k, d.l)
		ll.mu.Lock()
		if err != nil {
			d.l.spilled = false // tried again next time
			ll.mu.Unlock()
			ll.r.log.Warn("storing a live log failed; will retry", "job", d.k.job, "task_index", d.k.task, "attempt", d.k.attempt, "err", err)
			continue
		}
		if ll.logs[d.k] == d.l {
			ll.held -= len(d.l.buf)
			delete(ll.logs, d.k)
		}
		ll.indexed[d.k] = true
		ll.mu.Unlock()
	}
}

// spill writes one live copy as an object of its own and indexes it.
func (ll *liveLogs) spill(ctx context.Context, k liveKey, l *liveLog) error {
	bs := ll.r.blob()
	if bs == nil {
		return errors.New("the runner has no object store")
	}
	// The buffer is not changed while spilled is set (add skips it).
	frames := l.buf
	var entry bytes.Buffer
	info, err := logs.WriteEntry(&entry, func() (io.Reader, error) { return bytes.NewReader(frames), nil })
	if err != nil {
		return err
	}
	key := logs.Prefix(k.job, k.task, k.attempt) + "/live"
	if err := bs.Put(ctx, key, bytes.NewReader(entry.Bytes())); err != nil {
		return err
	}
	e := store.LogEntry{
		JobID: k.job, TaskIndex: k.task, Attempt: k.attempt, Object: key, Length: info.Length,
		StdoutBytes: info.StdoutBytes, StderrBytes: info.StderrBytes,
		FirstAt: nanosTime(info.FirstNanos), LastAt: nanosTime(info.LastNanos),
	}
	held := info.StdoutBytes + info.StderrBytes
	total := "?"
	if l.output > 0 {
		total = fmt.Sprint(l.output)
	}
	switch {
	case l.lost:
		e.Truncated, e.Note = true, fmt.Sprintf("%s%d of %s bytes of output stored: the attempt's worker was lost; this is the output the runner received before that", logs.IncompletePrefix, held, total)
	case l.base > 0 || l.total != l.end():
		e.Truncated, e.Note = true, fmt.Sprintf("%s%d of %s bytes of output stored: the worker's archive never arrived; this is what the runner held", logs.IncompletePrefix, held, total)
	default:
		e.Note = "the worker's archive never arrived; this is the output the runner held (all of it sent live)"
	}
	if l.base > 0 {
		e.Note += fmt.Sprintf(" (its first %d bytes of log were no longer held)", l.base)
	}
	return ll.r.cfg.Store.PutLogEntries(ctx, []store.LogEntry{e})
}

func nanosTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// takeLogs handles the live output and log entries a poll carries:
// entries are stored before the reply (a failure fails the poll, so the
// worker sends them again).
func (r *Runner) takeLogs(ctx context.Context, m *taskhostv1.PollRequest) error {
	if len(m.Live) > 0 {
		r.live.add(m.JobId, m.Live)
	}
	if len(m.LogEntries) == 0 {
		return nil
	}
	es := make([]store.LogEntry, 0, len(m.LogEntries))
	own := "logs/" + m.JobId + "/"
	for _, e := range m.LogEntries {
		if !strings.HasPrefix(e.Object, own) || blob.ValidateKey(e.Object) != nil {
			// A worker may name only its own job's objects: a reader of
			// this job must never be sent into another job's logs.
			return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("log entry of task %d attempt %d names object %q, outside its job's prefix %s", e.TaskIndex, e.Attempt, e.Object, own))
		}
		es = append(es, store.LogEntry{
			JobID: m.JobId, TaskIndex: e.TaskIndex, Attempt: e.Attempt, Object: e.Object, Offset: e.Offset, Length: e.Length,
			StdoutBytes: e.StdoutBytes, StderrBytes: e.StderrBytes,
			FirstAt: nanosTime(e.FirstUnixNanos), LastAt: nanosTime(e.LastUnixNanos),
			Truncated: e.Truncated, Note: cut(clean(e.Note), 4096),
		})
	}
	if err := r.cfg.Store.PutLogEntries(ctx, es); err != nil {
		if errors.Is(err, store.ErrRejected) {
			return connect.NewError(connect.CodeInvalidArgument, err)
		}
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("store log entries: %w", err))
	}
	r.live.indexedNow(m.JobId, m.LogEntries)
	return nil
}

// LiveLog returns what the runner holds of an attempt's log from offset
// on, at most limit bytes of whole frames (0: 1 MiB). ErrNotOwner: this
// runner does not own the job's shard now.
func (r *Runner) LiveLog(ctx context.Context, jobID string, task, attempt int32, offset int64, limit int) (*runnerv1.LiveResponse, error) {
	if !r.shards[store.ShardOf(jobID)].leased.Load() {
		return nil, fmt.Errorf("job %s: %w", jobID, ErrNotOwner)
	}
	if limit <= 0 || limit > 1<<20 {
		limit = 1 << 20
	}
	return r.live.read(liveKey{jobID, task, attempt}, offset, limit), nil
}

// Live implements RunnerService.Live with Runner.LiveLog.
func (s Service) Live(ctx context.Context, req *connect.Request[runnerv1.LiveRequest]) (*connect.Response[runnerv1.LiveResponse], error) {
	if err := s.checkGateway(req.Header()); err != nil {
		return nil, err
	}
	m := req.Msg
	resp, err := s.Runner.LiveLog(ctx, m.JobId, m.TaskIndex, m.Attempt, m.Offset, int(m.MaxBytes))
	if err != nil {
		return nil, connect.NewError(connect.CodeUnavailable, err)
	}
	return connect.NewResponse(resp), nil
}

// LiveLog implements gateway.LiveReader: it asks the runner that owns the
// job's shard.
func (a *RemoteAppender) LiveLog(ctx context.Context, jobID string, task, attempt int32, offset int64, limit int) (*runnerv1.LiveResponse, error) {
	var out *runnerv1.LiveResponse
	err := a.call(ctx, jobID, "read the live log", func(c runnerv1connect.RunnerServiceClient) error {
		r := connect.NewRequest(&runnerv1.LiveRequest{JobId: jobID, TaskIndex: task, Attempt: attempt, Offset: offset, MaxBytes: int32(limit)})
		r.Header().Set("Authorization", "Bearer "+GatewayCredential(a.Key))
		resp, err := c.Live(ctx, r)
		if err != nil {
			return err
		}
		out = resp.Msg
		return nil
	})
	return out, err
}

// blob returns the runner's object store (nil: none configured).
func (r *Runner) blob() blob.Store { return r.cfg.Blob }
