package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrClosed is returned by writes to a sealed Writer.
var ErrClosed = errors.New("logs: writer closed")

// FinalName, IncompleteName and the segment names are the object names
// under a log's prefix in the layout haul wrote before packs (see Read):
// segments uploaded while the task ran, the final object, and the marker
// of an incomplete log.
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
	DefaultMemoryBytes = 4 << 20
	spoolChunk         = 64 << 10
)

// WriterOptions tune a Writer; zero values take the defaults.
type WriterOptions struct {
	// MemoryBytes bounds the output kept in memory while the spool file
	// cannot be written (its disk is full); output beyond it is dropped,
	// counted, and the log reported incomplete (default 4 MiB).
	MemoryBytes int
	// Clock stamps frames (default time.Now).
	Clock func() time.Time
	// Logger reports failed spool writes, which are retried (default:
	// discard).
	Logger *slog.Logger
}

// IncompleteError says a log could not be stored whole. Its message, which
// starts with IncompletePrefix, goes into the attempt's message.
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
// while the task runs. Its owner (the taskhost) reads new frames with Live
// and sends them on, and at the end takes the whole log with Seal and
// archives it. A Writer makes no object-store request; memory use does not
// depend on the log's size.
//
// Nothing is lost silently. A spool write that fails (the disk is full)
// keeps the frames in memory, up to MemoryBytes, and is retried; frames
// beyond that are dropped and counted, and Seal reports the log
// incomplete, saying how much was kept and why.
type Writer struct {
	prefix   string
	spoolDir string
	opt      WriterOptions

	// mu guards the log's tail: frames are appended under it.
	mu       sync.Mutex
	spool    *os.File // nil until first needed, and after Discard
	spoolErr error    // the last spool failure, nil once a write succeeded
	spooled  int64    // bytes of the log in the spool file
	buf      []byte   // bytes of the log after spooled, not yet in the spool
	hdr      []byte
	written  int64 // bytes of the log kept: spooled + len(buf)
	data     int64 // output bytes in the kept frames
	outBytes int64 // output bytes received, kept or not
	dropped  int64 // output bytes dropped because memory was full
	dropWhy  error // the spool failure that made the first drop
	closed   bool
	gone     bool // the spool is removed: Discard has run
}

// NewWriter starts a log (prefix names it in log messages), spooling to a
// new file in spoolDir (os.TempDir() when empty). The spool file is
// created when the first output arrives; if that fails the output waits
// in memory and creation is retried.
func NewWriter(prefix, spoolDir string, opt WriterOptions) (*Writer, error) {
	if prefix == "" {
		return nil, errors.New("logs: new writer: empty log prefix")
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
	return &Writer{prefix: prefix, spoolDir: spoolDir, opt: opt, hdr: make([]byte, 0, maxHeader)}, nil
}

// Stdout returns the writer for the task's stdout; each Write becomes one
// frame (or several of at most MaxFrameData bytes). Safe for concurrent use
// with Stderr's writer. A Write fails only on a sealed Writer: output that
// cannot be kept is counted and reported by Seal, so that the task's pipes
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

// cut moves what it can to the spool and returns the log's length and
// its output bytes, the end of the next segment.
func (w *Writer) cut() (int64, int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gone {
		return 0, 0, ErrClosed
	}
	if !w.closed { // a sealed log stays where it is (see Seal)
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

// removeSpool deletes the spool file and forgets what memory holds.
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

// Seal stops accepting writes and returns the log for its owner to
// archive. What is still in memory stays there (the spool's disk may be
// the full one): Sealed.Open reads it from there.
func (w *Writer) Seal() (*Sealed, error) {
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
