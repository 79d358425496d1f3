package logs

import (
	"bytes"
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

// FinalName, IncompleteName and the segment names are the object names under
// a log's prefix.
const (
	FinalName      = "final"
	IncompleteName = "incomplete"
	segmentPrefix  = "seg-"
)

// SegmentKey returns the key of the n-th segment (n from 1) under prefix.
func SegmentKey(prefix string, n int) string {
	return fmt.Sprintf("%s/%s%08d", prefix, segmentPrefix, n)
}

// FinalKey returns the key of the final object under prefix.
func FinalKey(prefix string) string { return prefix + "/" + FinalName }

// IncompleteKey returns the key of the marker that says a log is not whole:
// a short text, the same as IncompleteError's message.
func IncompleteKey(prefix string) string { return prefix + "/" + IncompleteName }

// Defaults of WriterOptions.
const (
	DefaultRetryFor    = time.Minute
	DefaultMemoryBytes = 4 << 20
	maxBackoff         = 5 * time.Second
	spoolChunk         = 64 << 10
)

// WriterOptions tune a Writer; zero values take the defaults.
type WriterOptions struct {
	// FlushInterval is how often what arrived is uploaded as a segment
	// (default 1s).
	FlushInterval time.Duration
	// SegmentBytes uploads a segment early once this much arrived since the
	// last upload (default 1 MiB).
	SegmentBytes int64
	// RetryFor is how long Close keeps retrying uploads that fail (a full
	// disk, an object store that is away) before it gives up and reports
	// the log incomplete (default 1m). Close holds the attempt's result
	// that long at most.
	RetryFor time.Duration
	// MemoryBytes bounds the output kept in memory while the spool file
	// cannot be written (its disk is full); output beyond it is dropped,
	// counted, and the log reported incomplete (default 4 MiB).
	MemoryBytes int
	// Clock stamps frames (default time.Now).
	Clock func() time.Time
	// Logger reports failed uploads and spool writes, which are retried
	// (default: discard).
	Logger *slog.Logger
	// Local makes a Writer that uploads nothing: while the task runs its
	// owner reads new output with Live (and sends it on), and at the end
	// takes the whole log with Seal and archives it itself. Store may be
	// nil; Close is not used.
	Local bool
}

// IncompleteError is what Close returns when the log could not be stored
// whole. Its message, which starts with IncompletePrefix, goes into the
// attempt's message and into the marker object.
type IncompleteError struct {
	// Stored and Total count the task's output bytes (frame data, both
	// streams): what a reader gets back, and what the task wrote.
	Stored, Total int64
	// Reason says what went wrong, in plain words.
	Reason string
}

// IncompletePrefix starts every notice of an incomplete log.
const IncompletePrefix = "log incomplete: "

func (e *IncompleteError) Error() string {
	return fmt.Sprintf("%s%d of %d bytes of output stored: %s", IncompletePrefix, e.Stored, e.Total, e.Reason)
}

// IncompleteNotice finds the notice of an incomplete log in an attempt's
// message (the taskhost appends IncompleteError's text to it) and returns it.
func IncompleteNotice(message string) (string, bool) {
	i := strings.Index(message, IncompletePrefix)
	if i < 0 {
		return "", false
	}
	return message[i:], true
}

// Writer records a task's stdout and stderr as frames in a local spool file
// and uploads them to the object store as segments while the task runs, then
// as the final object on Close. Memory use does not depend on the log's size.
//
// Nothing is lost silently. A spool write that fails (the disk is full)
// keeps the frames in memory, up to MemoryBytes, and is retried; frames
// beyond that are dropped and counted. An upload that fails is retried with
// backoff while the task runs and, in Close, for RetryFor. If the log could
// not be stored whole, Close writes the marker object (when it can) and
// returns an *IncompleteError saying how much was stored and why.
type Writer struct {
	store    blob.Store
	prefix   string
	spoolDir string
	opt      WriterOptions

	// mu guards the log's tail: frames are appended under it.
	mu       sync.Mutex
	spool    *os.File // nil until first needed, and after Close
	spoolErr error    // the last spool failure, nil once a write succeeded
	spooled  int64    // bytes of the log in the spool file
	buf      []byte   // bytes of the log after spooled, not yet in the spool
	hdr      []byte
	written  int64 // bytes of the log kept: spooled + len(buf)
	data     int64 // output bytes in the kept frames
	kickedAt int64 // written when the last early upload was requested
	outBytes int64 // output bytes received, kept or not
	dropped  int64 // output bytes dropped because memory was full
	dropWhy  error // the spool failure that made the first drop
	closed   bool
	gone     bool // the spool is removed: Close has finished

	// upMu serializes uploads (the flusher, Flush and Close).
	upMu         sync.Mutex
	uploaded     int64    // bytes of the log in uploaded segments
	uploadedData int64    // output bytes in uploaded segments
	nextSeq      int      // number of the next segment
	pending      *segment // a segment whose upload failed, retried as is

	kick     chan struct{}
	stop     chan struct{}
	loopDone chan struct{}
	stopOnce sync.Once
}

// segment is a byte range of the log bound to a segment number; once
// numbered it is always uploaded with exactly these bytes, so a reader that
// saw a segment never sees it change.
type segment struct {
	seq        int
	start, end int64
	dataEnd    int64 // output bytes in the log up to end
}

// NewWriter starts a log at prefix (keys {prefix}/seg-NNNNNNNN,
// {prefix}/final and, when the log is incomplete, {prefix}/incomplete),
// spooling to a new file in spoolDir (os.TempDir() when empty). The spool
// file is created when the first output arrives; if that fails the output
// waits in memory and creation is retried. Background uploads use ctx; when
// it ends they stop, and Close still writes the final object with its own
// context.
func NewWriter(ctx context.Context, store blob.Store, prefix, spoolDir string, opt WriterOptions) (*Writer, error) {
	prefix = strings.TrimSuffix(prefix, "/")
	if store == nil && !opt.Local {
		return nil, errors.New("logs: new writer: nil store")
	}
	if err := blob.ValidateKey(IncompleteKey(prefix)); err != nil || prefix == "" {
		return nil, fmt.Errorf("logs: new writer: bad log prefix %q: %v", prefix, err)
	}
	if opt.FlushInterval <= 0 {
		opt.FlushInterval = time.Second
	}
	if opt.SegmentBytes <= 0 {
		opt.SegmentBytes = 1 << 20
	}
	if opt.RetryFor <= 0 {
		opt.RetryFor = DefaultRetryFor
	}
	if opt.MemoryBytes <= 0 {
		opt.MemoryBytes = DefaultMemoryBytes
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
	w := &Writer{
		store:    store,
		prefix:   prefix,
		spoolDir: spoolDir,
		opt:      opt,
		hdr:      make([]byte, 0, maxHeader),
		nextSeq:  1,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	if opt.Local {
		close(w.loopDone)
	} else {
		go w.loop(ctx)
	}
	return w, nil
}

// Stdout returns the writer for the task's stdout; each Write becomes one
// frame (or several of at most MaxFrameData bytes). Safe for concurrent use
// with Stderr's writer. A Write fails only on a closed Writer: output that
// cannot be kept is counted and reported by Close, so that the task's pipes
// keep draining.
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
	nanos := w.opt.Clock().UnixNano()
	for done := 0; done < len(p); {
		chunk := p[done:min(len(p), done+MaxFrameData)]
		done += len(chunk)
		w.outBytes += int64(len(chunk))
		w.hdr = appendHeader(w.hdr[:0], stream, nanos, len(chunk))
		size := len(w.hdr) + len(chunk)
		if len(w.buf)+size > spoolChunk && w.spoolErr == nil {
			w.spoolLocked()
		}
		if w.spoolErr != nil && len(w.buf)+size > w.opt.MemoryBytes {
			// The spool cannot take more and memory is full: the frame
			// is dropped whole, so the log stays decodable, and counted.
			if w.dropped == 0 {
				w.dropWhy = w.spoolErr
				w.opt.Logger.Error("log spool is failing and its memory buffer is full; dropping output", "prefix", w.prefix, "err", w.spoolErr)
			}
			w.dropped += int64(len(chunk))
			continue
		}
		w.buf = append(w.buf, w.hdr...)
		w.buf = append(w.buf, chunk...)
		w.written += int64(size)
		w.data += int64(len(chunk))
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

// spoolLocked moves buf to the spool file, creating it if need be. A
// failure is kept in spoolErr (the bytes stay in buf) and logged once.
func (w *Writer) spoolLocked() {
	if len(w.buf) == 0 || w.gone {
		return
	}
	if w.spool == nil {
		f, err := os.CreateTemp(w.spoolDir, "haul-log-*.spool")
		if err != nil {
			w.spoolFailed(fmt.Errorf("create spool file in %s: %w", w.spoolDir, err))
			return
		}
		w.spool = f
	}
	n, err := w.spool.WriteAt(w.buf, w.spooled)
	w.spooled += int64(n)
	w.buf = w.buf[:copy(w.buf, w.buf[n:])]
	if err != nil {
		w.spoolFailed(fmt.Errorf("write spool file %s: %w", w.spool.Name(), err))
		return
	}
	if w.spoolErr != nil {
		w.opt.Logger.Info("log spool writable again", "prefix", w.prefix)
	}
	w.spoolErr = nil
	if cap(w.buf) > 4*spoolChunk {
		w.buf = nil // give back what an outage grew
	}
}

func (w *Writer) spoolFailed(err error) {
	if w.spoolErr == nil {
		w.opt.Logger.Warn("log spool write failed; keeping output in memory and retrying", "prefix", w.prefix, "err", err, "memory_bytes", w.opt.MemoryBytes)
	}
	w.spoolErr = err
}

// loop uploads a segment every FlushInterval and whenever SegmentBytes
// arrived, until stop is closed or ctx ends. After a failed upload it
// waits longer each time, up to maxBackoff, before the next try.
func (w *Writer) loop(ctx context.Context) {
	defer close(w.loopDone)
	t := time.NewTimer(w.opt.FlushInterval)
	defer t.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.stop:
			return
		case <-t.C:
		case <-w.kick:
			if backoff > 0 {
				continue // the timer says when to try again
			}
		}
		err := w.Flush(ctx)
		wait := w.opt.FlushInterval
		switch {
		case err == nil, errors.Is(err, ErrClosed), ctx.Err() != nil:
			backoff = 0
		default:
			backoff = min(max(2*backoff, 100*time.Millisecond), maxBackoff)
			wait = backoff
			w.opt.Logger.Warn("log segment upload failed; will retry", "prefix", w.prefix, "err", err, "retry_in", backoff)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
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
		end, dataEnd, err := w.cut()
		if err != nil {
			return err
		}
		if end == w.uploaded {
			return nil
		}
		w.pending = &segment{seq: w.nextSeq, start: w.uploaded, end: end, dataEnd: dataEnd}
	}
	seg := w.pending
	r, err := w.section(seg.start, seg.end)
	if err != nil {
		return err
	}
	if err := w.store.Put(ctx, SegmentKey(w.prefix, seg.seq), r); err != nil {
		return fmt.Errorf("logs: upload segment %d of %s: %w", seg.seq, w.prefix, err)
	}
	w.uploaded = seg.end
	w.uploadedData = seg.dataEnd
	w.nextSeq++
	w.pending = nil
	return nil
}

// cut moves what it can to the spool and returns the log's length and
// its output bytes, the end of the next segment.
func (w *Writer) cut() (int64, int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gone {
		return 0, 0, ErrClosed
	}
	if !w.closed { // see Close
		w.spoolLocked()
	}
	return w.written, w.data, nil
}

// section returns a reader of the log's bytes [start, end): the part in the
// spool file is read from it, the part still in memory is copied.
func (w *Writer) section(start, end int64) (io.Reader, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gone {
		return nil, ErrClosed
	}
	var rs []io.Reader
	if start < w.spooled {
		rs = append(rs, io.NewSectionReader(w.spool, start, min(end, w.spooled)-start))
	}
	if end > w.spooled {
		from := max(start, w.spooled) - w.spooled
		rs = append(rs, bytes.NewReader(bytes.Clone(w.buf[from:end-w.spooled])))
	}
	return io.MultiReader(rs...), nil
}

// Close stops accepting writes and stores the log: it uploads the last
// segment, writes the final object (the whole log, from the spool file and
// memory), deletes the segments and removes the spool file. Failed uploads
// are retried with backoff for RetryFor (or until ctx ends).
//
// It returns the bytes of the log stored (the final object's size, or the
// segments' when the final object could not be written), and an
// *IncompleteError when the log is not whole: output was dropped, or neither
// the final object nor the segments hold all of it. When the log is
// incomplete the marker object {prefix}/incomplete is written first (its
// text is the error's), so a reader that finds a final object without a
// marker has the whole log.
func (w *Writer) Close(ctx context.Context) (int64, error) {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.loopDone

	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return 0, ErrClosed
	}
	w.closed = true
	// What is still in memory stays there: the final object reads it from
	// there, and copying it to the spool first would take more of a disk
	// that may be the log store's too, and nearly full.
	total, data, outBytes, dropped, dropWhy := w.written, w.data, w.outBytes, w.dropped, w.dropWhy
	w.mu.Unlock()

	w.upMu.Lock()
	defer w.upMu.Unlock()
	defer w.removeSpool()

	// An attempt that printed nothing leaves no object at all: at a billion
	// tasks a day, most of which are quiet, that is most PUTs saved. Readers
	// treat a missing log of an ended attempt as empty.
	uploadedAny := w.nextSeq > 1 || w.pending != nil
	if outBytes == 0 && !uploadedAny {
		return 0, nil
	}
	var incomplete *IncompleteError
	if dropped > 0 {
		incomplete = &IncompleteError{Stored: data, Total: outBytes, Reason: fmt.Sprintf(
			"%d bytes of output dropped: the spool could not be written (%v) and its %d-byte memory buffer was full", dropped, dropWhy, w.opt.MemoryBytes)}
	}

	deadline := time.Now().Add(w.opt.RetryFor)
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	markerDone := incomplete == nil
	var lastErr error
	for backoff, try := 100*time.Millisecond, 1; ; try++ {
		err := w.storeFinal(rctx, uploadedAny, total, incomplete, &markerDone)
		if err == nil {
			if try > 1 {
				w.opt.Logger.Info("log stored after retrying", "prefix", w.prefix, "tries", try)
			}
			w.deleteSegments(ctx)
			if incomplete != nil {
				return total, incomplete
			}
			return total, nil
		}
		// A try cut short by the deadline says less than the one before
		// it ("no space left on device"): keep that one as the reason.
		if lastErr == nil || rctx.Err() == nil {
			lastErr = err
		}
		if rctx.Err() != nil || time.Until(deadline) <= 0 {
			break
		}
		w.opt.Logger.Warn("log upload failed; will retry", "prefix", w.prefix, "err", lastErr, "retry_in", backoff, "gives_up_in", time.Until(deadline).Round(time.Millisecond))
		t := time.NewTimer(backoff)
		select {
		case <-rctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, maxBackoff)
	}

	// The final object could not be written: the segments hold what there is.
	stored, storedData := w.uploaded, w.uploadedData
	if stored == total && incomplete == nil {
		// The segments hold the whole log: it is complete, only in
		// segments rather than one object.
		w.opt.Logger.Warn("final log object not written; its segments hold the whole log", "prefix", w.prefix, "err", lastErr)
		return stored, nil
	}
	reason := fmt.Sprintf("upload failed for %v (%s)", w.opt.RetryFor, strings.ReplaceAll(lastErr.Error(), "\n", "; "))
	if incomplete != nil {
		reason = incomplete.Reason + "; " + reason
	}
	incomplete = &IncompleteError{Stored: storedData, Total: outBytes, Reason: reason}
	// One more try at the marker, with a short bound of its own: the store
	// may be back, and the attempt's message says it anyway.
	mctx, mcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer mcancel()
	if err := w.store.Put(mctx, IncompleteKey(w.prefix), strings.NewReader(incomplete.Error()+"\n")); err != nil {
		w.opt.Logger.Error("log incomplete, and its marker could not be written; the attempt's message says so", "prefix", w.prefix, "err", err)
	}
	w.opt.Logger.Error("log incomplete", "prefix", w.prefix, "stored", storedData, "total", outBytes, "err", lastErr)
	return stored, incomplete
}

// storeFinal makes one try at storing the log: the last segment (so the
// segments hold the whole log if the final object fails), the marker when
// the log is incomplete, then the final object.
func (w *Writer) storeFinal(ctx context.Context, uploadedAny bool, total int64, incomplete *IncompleteError, markerDone *bool) error {
	var segErr error
	if uploadedAny {
		segErr = w.flushLocked(ctx)
	}
	if !*markerDone {
		if err := w.store.Put(ctx, IncompleteKey(w.prefix), strings.NewReader(incomplete.Error()+"\n")); err != nil {
			return errors.Join(fmt.Errorf("logs: write incomplete-log marker %s: %w", w.prefix, err), segErr)
		}
		*markerDone = true
	}
	r, err := w.section(0, total)
	if err != nil {
		return err
	}
	if err := w.store.Put(ctx, FinalKey(w.prefix), r); err != nil {
		return errors.Join(fmt.Errorf("logs: upload final log %s: %w", w.prefix, err), segErr)
	}
	return nil
}

func (w *Writer) deleteSegments(ctx context.Context) {
	for seq := 1; seq < w.nextSeq || (w.pending != nil && seq <= w.pending.seq); seq++ {
		if err := w.store.Delete(ctx, SegmentKey(w.prefix, seq)); err != nil {
			w.opt.Logger.Warn("delete log segment", "prefix", w.prefix, "segment", seq, "err", err)
		}
	}
}

func (w *Writer) removeSpool() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gone = true
	w.buf = nil
	if w.spool == nil {
		return
	}
	name := w.spool.Name()
	_ = w.spool.Close()
	_ = os.Remove(name)
	w.spool = nil
}

// Live returns whole frames of the log from byte offset from, about max
// bytes of them (at least one frame when one is there, so a full-size
// frame is never stuck), and the offset after them. from must be an offset
// Live returned before (or 0): frame boundaries. It returns nil and from
// when nothing new arrived.
func (w *Writer) Live(from int64, max int) ([]byte, int64, error) {
	end, _, err := w.cut()
	if err != nil {
		return nil, from, err
	}
	if from >= end {
		return nil, from, nil
	}
	upto := min(end, from+int64(max)+maxHeader+MaxFrameData)
	r, err := w.section(from, upto)
	if err != nil {
		return nil, from, err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, from, fmt.Errorf("logs: read spool of %s: %w", w.prefix, err)
	}
	// Keep whole frames, up to max bytes (or the first frame).
	n := int64(0)
	for n < int64(len(b)) {
		size, err := FrameSize(b[n:])
		if err != nil || (n > 0 && n+int64(size) > int64(max)) {
			break // a frame cut by upto, or past max
		}
		n += int64(size)
	}
	return b[:n], from + n, nil
}

// Sealed is a log that Seal closed: its bytes stay readable until Discard.
type Sealed struct {
	w *Writer
	// Len is the log's size in bytes (frames); Output the output bytes in
	// it, Total the output bytes the task wrote (more when some were
	// dropped).
	Len, Output, Total int64
	// Incomplete says why the log is not the task's whole output (nil: it
	// is).
	Incomplete *IncompleteError
}

// Open returns a reader of the whole log.
func (s *Sealed) Open() (io.Reader, error) { return s.w.section(0, s.Len) }

// Discard removes the log's spool.
func (s *Sealed) Discard() { s.w.removeSpool() }

// Seal stops accepting writes and returns the log for its owner to archive
// (Local writers).
func (w *Writer) Seal() (*Sealed, error) {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.loopDone
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	w.closed = true
	s := &Sealed{w: w, Len: w.written, Output: w.data, Total: w.outBytes}
	if w.dropped > 0 {
		s.Incomplete = &IncompleteError{Stored: w.data, Total: w.outBytes, Reason: fmt.Sprintf(
			"%d bytes of output dropped: the spool could not be written (%v) and its %d-byte memory buffer was full", w.dropped, w.dropWhy, w.opt.MemoryBytes)}
	}
	return s, nil
}
