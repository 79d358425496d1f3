package taskhost

import (
	"context"

	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/haul-dev/haul/internal/blob"
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/logs"
)

// Packing defaults (Config.PackBytes and the rest).
const (
	DefaultPackBytes      = 8 << 20
	DefaultPackEntries    = 256
	DefaultPackAge        = 10 * time.Second
	DefaultOwnObjectBytes = 1 << 20
	DefaultLiveInterval   = 500 * time.Millisecond
	// liveAttemptBytes and livePollBytes bound the output one live call
	// carries: per attempt and in all.
	liveAttemptBytes = 64 << 10
	livePollBytes    = 1 << 20
	// tailBytes bounds the output an ended attempt's result carries.
	tailBytes = 256 << 10
)

// packer archives the logs of the worker's ended attempts. A small log is
// appended, as an entry (package logs), to the worker's current pack, a
// local file uploaded as one object when it holds PackBytes or PackEntries
// or PackAge after its first entry, and when the worker stops; a log over
// OwnObjectBytes is uploaded as an object of its own at once. The index of
// an uploaded object's entries waits in ready until a poll delivers it to
// the runner, which stores it: the worker makes one object-store request
// per pack, not one per attempt.
//
// Nothing here holds an attempt's result: archiving happens in the
// background, and an append or upload that fails (a full disk, an object
// store that is away) is retried with backoff for as long as the worker
// runs, and for LogRetry when it stops; meanwhile the runner holds what
// the worker sent of those logs live.
type packer struct {
	store  blob.Store
	log    *slog.Logger
	dir    string
	prefix string // of the pack keys: logs/JOB/packs/WORKER
	cfg    *Config
	wake   func() // entries are ready to send

	mu      sync.Mutex
	cur     *os.File
	curLen  int64
	curIdx  []*taskhostv1.LogEntry
	curAt   time.Time // first entry's time
	seq     int
	sealed  []*sealedPack
	queue   []*pendingLog // ended attempts' logs not yet archived
	ready   []*taskhostv1.LogEntry
	puts    int64 // objects uploaded
	kick    chan struct{}
	stopped chan struct{}
	done    chan struct{}
}

type sealedPack struct {
	key     string
	file    *os.File
	entries []*taskhostv1.LogEntry
}

func newPacker(store blob.Store, log *slog.Logger, cfg *Config, wake func()) *packer {
	return &packer{
		store: store, log: log, dir: cfg.SpoolDir, cfg: cfg, wake: wake,
		prefix:  fmt.Sprintf("logs/%s/packs/%s", cfg.JobID, cfg.WorkerID),
		kick:    make(chan struct{}, 1),
		stopped: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// pendingLog is an ended attempt's log waiting to be archived.
type pendingLog struct {
	ref    ref
	sealed *logs.Sealed
	ownKey string
	entry  *taskhostv1.LogEntry
}

// maxPendingLogs bounds the logs waiting to be archived (a full disk, an
// object store that is away); past it the oldest is given up, its log
// left to the runner's live copy.
const maxPendingLogs = 4096

// add hands one ended attempt's log to the packer, which owns it from now
// on (it discards the spool once the log is archived). It never waits: the
// attempt's result goes out at once, whatever the disk or the object
// store is doing; a log that cannot be archived yet is tried again with
// backoff (meanwhile the runner holds what it was sent live).
func (p *packer) add(r ref, s *logs.Sealed, ownKey string) {
	if s.Len == 0 {
		s.Discard()
		return // no output: no entry, no request
	}
	e := &taskhostv1.LogEntry{TaskIndex: r.index, Attempt: r.attempt}
	if s.Incomplete != nil {
		e.Truncated, e.Note = true, s.Incomplete.Error()
	}
	p.mu.Lock()
	p.queue = append(p.queue, &pendingLog{ref: r, sealed: s, ownKey: ownKey, entry: e})
	if len(p.queue) > maxPendingLogs {
		old := p.queue[0]
		p.queue = p.queue[1:]
		old.sealed.Discard()
		p.log.Error("too many logs waiting to be archived; giving one up (the runner keeps what it was sent live)", "task_index", old.ref.index, "attempt", old.ref.attempt)
	}
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// archiveQueued archives the waiting logs, in order, until one fails.
func (p *packer) archiveQueued(ctx context.Context) error {
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.mu.Unlock()
			return nil
		}
		pl := p.queue[0]
		p.mu.Unlock()
		var err error
		if pl.sealed.Len > int64(p.cfg.OwnObjectBytes) {
			err = p.archiveOwn(ctx, pl)
		} else {
			err = p.appendToPack(pl)
		}
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.queue = p.queue[1:]
		p.mu.Unlock()
		pl.sealed.Discard()
	}
}

// appendToPack appends a small log to the current pack.
func (p *packer) appendToPack(pl *pendingLog) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur == nil {
		f, err := os.CreateTemp(p.dir, "haul-pack-*")
		if err != nil {
			return fmt.Errorf("create log pack in %s: %w", p.dir, err)
		}
		p.cur, p.curLen, p.curAt = f, 0, p.cfg.Clock()
		p.seq++
	}
	w := &offsetWriter{f: p.cur, off: p.curLen}
	info, err := logs.WriteEntry(w, pl.sealed.Open)
	if err != nil {
		// The pack's end may hold part of this entry: the next try
		// starts where this one began, overwriting it.
		return fmt.Errorf("append log to pack: %w", err)
	}
	fill(pl.entry, info, p.key(p.seq), p.curLen)
	p.curLen += info.Length
	p.curIdx = append(p.curIdx, pl.entry)
	if p.curLen >= int64(p.cfg.PackBytes) || len(p.curIdx) >= p.cfg.PackEntries {
		p.sealLocked()
	}
	return nil
}

func fill(e *taskhostv1.LogEntry, info logs.EntryInfo, key string, off int64) {
	e.Object, e.Offset, e.Length = key, off, info.Length
	e.StdoutBytes, e.StderrBytes = info.StdoutBytes, info.StderrBytes
	e.FirstUnixNanos, e.LastUnixNanos = info.FirstNanos, info.LastNanos
}

func (p *packer) key(seq int) string { return fmt.Sprintf("%s-%06d", p.prefix, seq) }

// archiveOwn uploads a big log as an object of its own.
func (p *packer) archiveOwn(ctx context.Context, pl *pendingLog) error {
	f, err := os.CreateTemp(p.dir, "haul-log-entry-*")
	if err != nil {
		return fmt.Errorf("create log entry file in %s: %w", p.dir, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	info, err := logs.WriteEntry(f, pl.sealed.Open)
	if err != nil {
		return fmt.Errorf("write log entry: %w", err)
	}
	if err := p.store.Put(ctx, pl.ownKey, io.NewSectionReader(f, 0, info.Length)); err != nil {
		return fmt.Errorf("upload log %s: %w", pl.ownKey, err)
	}
	fill(pl.entry, info, pl.ownKey, 0)
	p.mu.Lock()
	p.puts++
	p.ready = append(p.ready, pl.entry)
	p.mu.Unlock()
	p.wake()
	return nil
}

// sealLocked closes the current pack for upload.
func (p *packer) sealLocked() {
	if p.cur == nil {
		return
	}
	p.sealed = append(p.sealed, &sealedPack{key: p.key(p.seq), file: p.cur, entries: p.curIdx})
	p.cur, p.curLen, p.curIdx = nil, 0, nil
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run uploads sealed packs, and seals the current one when it is
// PackAge old, until stop; then it seals and uploads what is left,
// retrying until ctx ends.
func (p *packer) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(min(p.cfg.PackAge/4+time.Millisecond, time.Second))
	defer tick.Stop()
	backoff := time.Duration(0)
	stopping := false
	for {
		if err := p.archiveQueued(ctx); err != nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			p.log.Warn("archiving a log failed; will retry", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		p.mu.Lock()
		if p.cur != nil && (stopping || p.cfg.Clock().Sub(p.curAt) >= p.cfg.PackAge) {
			p.sealLocked()
		}
		next := (*sealedPack)(nil)
		if len(p.sealed) > 0 {
			next = p.sealed[0]
		}
		p.mu.Unlock()
		if next != nil {
			if err := p.upload(ctx, next); err != nil {
				backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
				p.log.Warn("log pack upload failed; will retry", "key", next.key, "err", err, "retry_in", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				continue
			}
			backoff = 0
			continue
		}
		if stopping {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-p.stopped:
			stopping = true
		case <-p.kick:
		case <-tick.C:
		}
	}
}

func (p *packer) upload(ctx context.Context, s *sealedPack) error {
	st, err := s.file.Stat()
	if err != nil {
		return err
	}
	if err := p.store.Put(ctx, s.key, io.NewSectionReader(s.file, 0, st.Size())); err != nil {
		return err
	}
	p.mu.Lock()
	p.puts++
	p.sealed = slices.DeleteFunc(p.sealed, func(x *sealedPack) bool { return x == s })
	p.ready = append(p.ready, s.entries...)
	p.mu.Unlock()
	name := s.file.Name()
	s.file.Close()
	os.Remove(name)
	p.wake()
	return nil
}

// stop seals the current pack and waits, until ctx ends, for every pack
// to be uploaded. It reports the packs it could not upload.
func (p *packer) stop(ctx context.Context) error {
	select {
	case <-p.stopped:
	default:
		close(p.stopped)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.sealed); n > 0 || p.cur != nil || len(p.queue) > 0 {
		return fmt.Errorf("%d log packs not uploaded, %d logs not archived", n+btoi(p.cur != nil), len(p.queue))
	}
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// discard removes what is left when the worker stops: logs not archived,
// the current pack and packs not uploaded (their spool files). Call after
// run returned.
func (p *packer) discard() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.queue) + len(p.sealed) + btoi(p.cur != nil); n > 0 {
		p.log.Warn("worker stopping with logs not archived; the runner keeps what it was sent live", "logs", len(p.queue), "packs", len(p.sealed)+btoi(p.cur != nil))
	}
	for _, pl := range p.queue {
		pl.sealed.Discard()
	}
	p.queue = nil
	for _, sp := range p.sealed {
		sp.file.Close()
		os.Remove(sp.file.Name())
	}
	p.sealed = nil
	if p.cur != nil {
		p.cur.Close()
		os.Remove(p.cur.Name())
		p.cur = nil
	}
}

// takeReady returns the entries ready to send.
func (p *packer) takeReady() []*taskhostv1.LogEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ready)
}

// delivered forgets entries that a successful poll carried.
func (p *packer) delivered(sent []*taskhostv1.LogEntry) {
	if len(sent) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ready = slices.DeleteFunc(p.ready, func(e *taskhostv1.LogEntry) bool { return slices.Contains(sent, e) })
}

// offsetWriter writes to a file from an offset on.
type offsetWriter struct {
	f   *os.File
	off int64
}

func (w *offsetWriter) Write(b []byte) (int, error) {
	n, err := w.f.WriteAt(b, w.off)
	w.off += int64(n)
	return n, err
}
