package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/haul-dev/haul/internal/blob"
)

// ErrNoLog is returned by Read when the log has neither a final object nor
// any segment.
var ErrNoLog = errors.New("logs: no log")

// ReadOptions tune Read; zero values take the defaults.
type ReadOptions struct {
	// Follow keeps reading new segments until the final object appears (or
	// Done says the attempt ended and nothing new arrived).
	Follow bool
	// Streams selects Stdout and/or Stderr; empty means both.
	Streams []byte
	// PollInterval is the wait between looks for new segments when
	// following (default 200ms).
	PollInterval time.Duration
	// Done, when following, reports that the attempt has ended. Read then
	// stops as soon as a look finds nothing new, even without a final
	// object (the worker died before writing it). Nil means never.
	Done func() bool
	// CaughtUp, when following, is called each time Read has emitted all
	// there is and is about to wait for more: a caller that batches frames
	// sends its batch there, so a live log is not held back. An error stops
	// Read and is returned.
	CaughtUp func() error
}

// Read calls emit for every frame of the log at prefix, in order. The data
// slice is reused and valid only during the call; an error from emit stops
// Read and is returned.
//
// Read takes the final object when it exists; otherwise it reads the
// segments in order, keeping its offset in the log, and, when following,
// moves to the final object at the same offset once it appears (the final
// object is the concatenation of the segments). Memory use does not depend
// on the log's size. Without Follow, a log with neither a final object nor a
// segment is ErrNoLog; with Follow, Read waits for one.
func Read(ctx context.Context, store blob.Store, prefix string, opt ReadOptions, emit func(stream byte, unixNanos int64, data []byte) error) error {
	prefix = strings.TrimSuffix(prefix, "/")
	if err := blob.ValidateKey(FinalKey(prefix)); err != nil || prefix == "" {
		return fmt.Errorf("logs: read: bad log prefix %q: %v", prefix, err)
	}
	for _, s := range opt.Streams {
		if s != Stdout && s != Stderr {
			return fmt.Errorf("logs: read: stream %d: want 1 (stdout) or 2 (stderr)", s)
		}
	}
	if opt.PollInterval <= 0 {
		opt.PollInterval = 200 * time.Millisecond
	}
	r := &reader{
		store:  store,
		prefix: prefix,
		emit:   emit,
		want:   opt.Streams,
		dec:    newDecoder(nil),
		seq:    1,
	}
	var timer *time.Timer
	for {
		// Look at Done before looking for data: data that arrived before the
		// attempt ended is then always seen.
		done := opt.Follow && opt.Done != nil && opt.Done()
		finished, progressed, err := r.step(ctx)
		if r.emitErr != nil {
			return r.emitErr
		}
		if err != nil {
			return err
		}
		if finished {
			return nil
		}
		if !opt.Follow || (done && !progressed) {
			if !r.found {
				return fmt.Errorf("logs: read %s: %w", prefix, ErrNoLog)
			}
			return nil
		}
		if progressed {
			continue
		}
		if opt.CaughtUp != nil {
			if err := opt.CaughtUp(); err != nil {
				return err
			}
		}
		if timer == nil {
			timer = time.NewTimer(opt.PollInterval)
			defer timer.Stop()
		} else {
			timer.Reset(opt.PollInterval)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("logs: read %s: %w", prefix, ctx.Err())
		case <-timer.C:
		}
	}
}

type reader struct {
	store  blob.Store
	prefix string
	emit   func(byte, int64, []byte) error
	want   []byte
	dec    *decoder
	seq    int   // next segment to read
	off    int64 // bytes of the log consumed so far
	found  bool  // a segment or the final object was seen
	// emitErr is the error emit returned, handed back to Read's caller as is.
	emitErr error
}

// step reads the final object if it exists (finished), else every segment
// that has appeared since the last step (progressed when there was one).
func (r *reader) step(ctx context.Context) (finished, progressed bool, err error) {
	rc, err := r.store.Get(ctx, FinalKey(r.prefix))
	switch {
	case err == nil:
		r.found = true
		defer rc.Close()
		return true, true, r.readFinal(rc)
	case !errors.Is(err, blob.ErrNotFound):
		return false, false, fmt.Errorf("logs: read %s: %w", r.prefix, err)
	}
	for {
		rc, err := r.store.Get(ctx, SegmentKey(r.prefix, r.seq))
		if errors.Is(err, blob.ErrNotFound) {
			// Not written yet, or the final object was written and the
			// segments deleted since we looked: the next step tells.
			return false, progressed, nil
		}
		if err != nil {
			return false, progressed, fmt.Errorf("logs: read %s: %w", r.prefix, err)
		}
		r.found = true
		n, err := r.frames(rc)
		rc.Close()
		if err != nil {
			return false, progressed, fmt.Errorf("logs: read %s segment %d: %w", r.prefix, r.seq, err)
		}
		r.off += n
		r.seq++
		progressed = true
	}
}

// readFinal reads the final object from the offset already consumed.
func (r *reader) readFinal(rc io.Reader) error {
	if r.off > 0 {
		if err := r.skip(rc); err != nil {
			return err
		}
	}
	n, err := r.frames(rc)
	r.off += n
	if err != nil {
		return fmt.Errorf("logs: read %s final: %w", r.prefix, err)
	}
	return nil
}

// skip moves past the r.off bytes already read from the segments.
func (r *reader) skip(rc io.Reader) error {
	short := func(n int64) error {
		return fmt.Errorf("logs: read %s: %w: final object (%d bytes) is shorter than its segments (%d bytes)", r.prefix, ErrCorrupt, n, r.off)
	}
	if s, ok := rc.(io.Seeker); ok {
		size, err := s.Seek(0, io.SeekEnd)
		if err == nil {
			if size < r.off {
				return short(size)
			}
			if _, err := s.Seek(r.off, io.SeekStart); err != nil {
				return fmt.Errorf("logs: read %s final: %w", r.prefix, err)
			}
			return nil
		}
		if _, err := s.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("logs: read %s final: %w", r.prefix, err)
		}
	}
	n, err := io.CopyN(io.Discard, rc, r.off)
	if err == io.EOF {
		return short(n)
	}
	if err != nil {
		return fmt.Errorf("logs: read %s final: %w", r.prefix, err)
	}
	return nil
}

// frames decodes one object's frames and emits the wanted ones.
func (r *reader) frames(rc io.Reader) (int64, error) {
	r.dec.reset(rc)
	var n int64
	for {
		f, err := r.dec.next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n += int64(f.size)
		if len(r.want) == 0 || slices.Contains(r.want, f.stream) {
			if err := r.emit(f.stream, f.nanos, f.data); err != nil {
				r.emitErr = err
				return n, err
			}
		}
	}
}

// maxMarker bounds what Incomplete reads of a marker object.
const maxMarker = 4 << 10

// Incomplete returns the notice of the marker object at prefix (see
// IncompleteKey), or "" when there is none: the log, once its attempt has
// ended, is whole. The Writer writes the marker before the final object, so
// a reader that read the final object and then finds no marker had it all.
func Incomplete(ctx context.Context, store blob.Store, prefix string) (string, error) {
	prefix = strings.TrimSuffix(prefix, "/")
	rc, err := store.Get(ctx, IncompleteKey(prefix))
	if errors.Is(err, blob.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("logs: read incomplete-log marker of %s: %w", prefix, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxMarker))
	if err != nil {
		return "", fmt.Errorf("logs: read incomplete-log marker of %s: %w", prefix, err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		s = IncompletePrefix + "the log was not stored whole (the marker gives no reason)"
	}
	return s, nil
}

// HasFinal reports whether the log at prefix has its final object: the
// writer finished it (possibly with a marker saying it is incomplete).
func HasFinal(ctx context.Context, store blob.Store, prefix string) (bool, error) {
	rc, err := store.Get(ctx, FinalKey(strings.TrimSuffix(prefix, "/")))
	if errors.Is(err, blob.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("logs: look for the final object of %s: %w", prefix, err)
	}
	rc.Close()
	return true, nil
}
