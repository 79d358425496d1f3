package logs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/haul-dev/haul/internal/blob"
)

// ErrClosed is returned by writes to, and flushes of, a closed Writer.
var ErrClosed = errors.New("logs: writer closed")

// FinalName and the segment names are the object names under a log's prefix.
const (
	FinalName     = "final"
	segmentPrefix = "seg-"
)

// SegmentKey returns the key of the n-th segment (n from 1) under prefix.
func SegmentKey(prefix string, n int) string {
	return fmt.Sprintf("%s/%s%08d", prefix, segmentPrefix, n)
}

// FinalKey returns the key of the final object under prefix.
func FinalKey(prefix string) string { return prefix + "/" + FinalName }

// WriterOptions tune a Writer; zero values take the defaults.
type WriterOptions struct {
	// FlushInterval is how often what arrived is uploaded as a segment
	// (default 1s).
	FlushInterval time.Duration
	// SegmentBytes uploads a segment early once this much arrived since the
	// last upload (default 1 MiB).
	SegmentBytes int64
	// Clock stamps frames (default time.Now).
	Clock func() time.Time
	// Logger reports failed segment uploads, which are retried (default:
	// discard).
	Logger *slog.Logger
}

// Writer records a task's stdout and stderr as frames in a local spool file
// and uploads them to the object store as segments while the task runs, then
// as the final object on Close. Memory use does not depend on the log's size.
type Writer struct {
	store  blob.Store
	prefix string
	opt    WriterOptions

	// mu guards the spool's tail: frames are appended under it.
	mu       sync.Mutex
	spool    *os.File
	bw       *bufio.Writer
	hdr      []byte
	written  int64 // bytes of frames handed to bw
	kickedAt int64 // written when the last early upload was requested
	werr     error // sticky spool write error
	closed   bool

	// upMu serializes uploads (the flusher, Flush and Close).
	upMu     sync.Mutex
	uploaded int64    // bytes of the log in uploaded segments
	nextSeq  int      // number of the next segment
	pending  *segment // a segment whose upload failed, retried as is

	kick     chan struct{}
	stop     chan struct{}
	loopDone chan struct{}
	stopOnce sync.Once
}

// segment is a byte range of the spool bound to a segment number; once
// numbered it is always uploaded with exactly these bytes, so a reader that
// saw a segment never sees it change.
type segment struct {
	seq        int
	start, end int64
}

// NewWriter starts a log at prefix (keys {prefix}/seg-NNNNNNNN and
// {prefix}/final), spooling to a new file in spoolDir (os.TempDir() when
// empty). Background uploads use ctx; when it ends they stop, and Close
// still writes the final object with its own context.
func NewWriter(ctx context.Context, store blob.Store, prefix, spoolDir string, opt WriterOptions) (*Writer, error) {
	prefix = strings.TrimSuffix(prefix, "/")
	if store == nil {
		return nil, errors.New("logs: new writer: nil store")
	}
	if err := blob.ValidateKey(FinalKey(prefix)); err != nil || prefix == "" {
		return nil, fmt.Errorf("logs: new writer: bad log prefix %q: %v", prefix, err)
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = time.Second
	}
	if opt.SegmentBytes <= 0 {
		opt.SegmentBytes = 1 << 20
	}
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if spoolDir == "" {
		spoolDir = os.TempDir()
	}
	f, err := os.CreateTemp(spoolDir, "haul-log-*.spool")
	if err != nil {
		return nil, fmt.Errorf("logs: new writer: create spool file: %w", err)
	}
	w := &Writer{
		store:    store,
		prefix:   prefix,
		opt:      opt,
		spool:    f,
		bw:       bufio.NewWriterSize(f, 64<<10),
		hdr:      make([]byte, 0, maxHeader),
		nextSeq:  1,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	go w.loop(ctx)
	return w, nil
}

// Stdout returns the writer for the task's stdout; each Write becomes one
// frame (or several of at most MaxFrameData bytes). Safe for concurrent use
// with Stderr's writer.
func (w *Writer) Stdout() io.Writer { return streamWriter{w: w, stream: Stdout} }

// Stderr returns the writer for the task's stderr.
func (w *Writer) Stderr() io.Writer { return streamWriter{w: w, stream: Stderr} }

type streamWriter struct {
	w      *Writer
	stream byte
}

func (s streamWriter) Write(p []byte) (int, error) { return s.w.write(s.stream, p) }

func (w *Writer) write(stream byte, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, ErrClosed
	}
	if w.werr != nil {
		return 0, w.werr
	}
	nanos := w.opt.Clock().UnixNano()
	done := 0
	for done < len(p) {
		chunk := p[done:min(len(p), done+MaxFrameData)]
		w.hdr = appendHeader(w.hdr[:0], stream, nanos, len(chunk))
		if _, err := w.bw.Write(w.hdr); err != nil {
			w.werr = fmt.Errorf("logs: write spool: %w", err)
			return done, w.werr
		}
		if _, err := w.bw.Write(chunk); err != nil {
			// The spool now ends inside a frame; nothing more can be added.
			w.werr = fmt.Errorf("logs: write spool: %w", err)
			return done, w.werr
		}
		w.written += int64(len(w.hdr) + len(chunk))
		done += len(chunk)
	}
	if w.written-w.kickedAt >= w.opt.SegmentBytes {
		w.kickedAt = w.written
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

// loop uploads a segment every FlushInterval and whenever SegmentBytes
// arrived, until stop is closed or ctx ends.
func (w *Writer) loop(ctx context.Context) {
	defer close(w.loopDone)
	t := time.NewTicker(w.opt.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.stop:
			return
		case <-t.C:
		case <-w.kick:
		}
		if err := w.Flush(ctx); err != nil && !errors.Is(err, ErrClosed) && ctx.Err() == nil {
			w.opt.Logger.Warn("log segment upload failed; will retry", "prefix", w.prefix, "err", err)
		}
	}
}

// Flush uploads what arrived since the last upload as the next segment. It
// does nothing when nothing arrived.
func (w *Writer) Flush(ctx context.Context) error {
	w.upMu.Lock()
	defer w.upMu.Unlock()
	return w.flushLocked(ctx)
}

func (w *Writer) flushLocked(ctx context.Context) error {
	if w.pending == nil {
		end, err := w.syncSpool()
		if err != nil {
			return err
		}
		if end == w.uploaded {
			return nil
		}
		w.pending = &segment{seq: w.nextSeq, start: w.uploaded, end: end}
	}
	seg := w.pending
	r := io.NewSectionReader(w.spool, seg.start, seg.end-seg.start)
	if err := w.store.Put(ctx, SegmentKey(w.prefix, seg.seq), r); err != nil {
		return fmt.Errorf("logs: upload segment %d of %s: %w", seg.seq, w.prefix, err)
	}
	w.uploaded = seg.end
	w.nextSeq++
	w.pending = nil
	return nil
}

// syncSpool moves buffered frames to the spool file and returns its length.
func (w *Writer) syncSpool() (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.spool == nil {
		return 0, ErrClosed
	}
	if w.werr == nil {
		if err := w.bw.Flush(); err != nil {
			w.werr = fmt.Errorf("logs: write spool: %w", err)
		}
	}
	if w.werr != nil {
		return 0, w.werr
	}
	return w.written, nil
}

// Close stops accepting writes, uploads the last segment, writes the final
// object (the whole log, streamed from the spool file), deletes the segments
// and removes the spool file. It returns the size of the final object in
// bytes. When the final object cannot be written the segments are left in
// place, so the log stays readable.
func (w *Writer) Close(ctx context.Context) (int64, error) {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.loopDone

	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return 0, ErrClosed
	}
	w.closed = true
	w.mu.Unlock()

	w.upMu.Lock()
	defer w.upMu.Unlock()
	defer w.removeSpool()

	total, err := w.syncSpool()
	if err != nil {
		return 0, err
	}
	// An attempt that printed nothing leaves no object at all: at a billion
	// tasks a day, most of which are quiet, that is most PUTs saved. Readers
	// treat a missing log of an ended attempt as empty.
	uploadedAny := w.nextSeq > 1 || w.pending != nil
	if total == 0 && !uploadedAny {
		return 0, nil
	}
	// Once segments exist, the last one goes up first: if the final upload
	// fails, the segments hold the whole log. A short task that never
	// flushed a segment goes straight to the final object.
	var segErr error
	if uploadedAny {
		segErr = w.flushLocked(ctx)
	}
	r := io.NewSectionReader(w.spool, 0, total)
	if err := w.store.Put(ctx, FinalKey(w.prefix), r); err != nil {
		return total, errors.Join(fmt.Errorf("logs: upload final log %s: %w", w.prefix, err), segErr)
	}
	for seq := 1; seq < w.nextSeq || (w.pending != nil && seq <= w.pending.seq); seq++ {
		if err := w.store.Delete(ctx, SegmentKey(w.prefix, seq)); err != nil {
			w.opt.Logger.Warn("delete log segment", "prefix", w.prefix, "segment", seq, "err", err)
		}
	}
	return total, nil
}

func (w *Writer) removeSpool() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.spool == nil {
		return
	}
	name := w.spool.Name()
	_ = w.spool.Close()
	_ = os.Remove(name)
	w.spool = nil
}
