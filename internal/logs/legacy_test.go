package logs

import (
	"context"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/blob"
)

// legacyWriter writes a log in the layout haul used before packs (a
// segment object per Flush while the task runs, then the final object and,
// for an incomplete log, the marker), so that Read's support of logs
// stored that way stays tested. It is built on Writer, as the old writer
// was.
type legacyWriter struct {
	*Writer
	store    blob.Store
	prefix   string
	uploaded int64
	seq      int
}

// newLegacy starts a legacy log at prefix, spooling in spoolDir.
func newLegacy(t testing.TB, store blob.Store, prefix, spoolDir string, opt WriterOptions) *legacyWriter {
	t.Helper()
	w, err := NewWriter(prefix, spoolDir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.mu.Lock()
		closed := w.closed
		w.mu.Unlock()
		if !closed {
			if s, err := w.Seal(); err == nil {
				s.Discard()
			}
		}
	})
	return &legacyWriter{Writer: w, store: store, prefix: strings.TrimSuffix(prefix, "/")}
}

// Flush uploads what arrived since the last upload as the next segment.
func (l *legacyWriter) Flush(ctx context.Context) error {
	end, _, err := l.cut()
	if err != nil || end == l.uploaded {
		return err
	}
	r, err := l.section(l.uploaded, end)
	if err != nil {
		return err
	}
	if err := l.store.Put(ctx, SegmentKey(l.prefix, l.seq+1), r); err != nil {
		return err
	}
	l.seq++
	l.uploaded = end
	return nil
}

// Close seals the log and stores it: the marker when it is incomplete, the
// final object, then the segments are deleted. A log with no output and
// no segment stores nothing.
func (l *legacyWriter) Close(ctx context.Context) (int64, error) {
	s, err := l.Seal()
	if err != nil {
		return 0, err
	}
	defer s.Discard()
	if s.Total == 0 && l.seq == 0 {
		return 0, nil
	}
	if s.Incomplete != nil {
		if err := l.store.Put(ctx, IncompleteKey(l.prefix), strings.NewReader(s.Incomplete.Error()+"\n")); err != nil {
			return 0, err
		}
	}
	r, err := s.Open()
	if err != nil {
		return 0, err
	}
	if err := l.store.Put(ctx, FinalKey(l.prefix), r); err != nil {
		return 0, err
	}
	for n := 1; n <= l.seq; n++ {
		if err := l.store.Delete(ctx, SegmentKey(l.prefix, n)); err != nil {
			return 0, err
		}
	}
	if s.Incomplete != nil {
		return s.Len, s.Incomplete
	}
	return s.Len, nil
}
