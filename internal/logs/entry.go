package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/haul-dev/haul/internal/blob"
)

// # Archived logs: entries
//
// An ended attempt's log is archived as an entry: a byte range of an object
// holding, in order,
//
//	stdout      the attempt's stdout bytes, as the task wrote them
//	stderr      its stderr bytes
//	timeline    one record per frame of the log, in log order:
//	              stream       1 byte: 1 stdout, 2 stderr
//	              nanos delta  varint: the frame's time minus the previous
//	                           frame's (the first: minus 0)
//	              length       uvarint: the frame's data bytes
//
// The sizes of the two stream parts are kept with the entry's range (in the
// store's log index and the team's index file), so a plain ranged read of a
// stream's part is plain text for any tool, and the log's frames (the
// interleaving of the streams, with times) are rebuilt exactly from the
// three parts: ReadEntry emits the same frames the task's Writer recorded.
//
// Small logs of one worker's attempts share objects (packs); a log too big
// for a pack has an object of its own. Either way one ranged read fetches
// one attempt.

// EntryInfo describes an entry written by WriteEntry.
type EntryInfo struct {
	// Length is the entry's size; StdoutBytes and StderrBytes its stream
	// parts (the timeline is the rest).
	Length, StdoutBytes, StderrBytes int64
	// FirstNanos and LastNanos are the times of the first and last frame
	// (0 when the log is empty).
	FirstNanos, LastNanos int64
	// Frames counts the log's frames; LogBytes is the size of the log as
	// frames (what a live reader's offsets count).
	Frames, LogBytes int64
}

// WriteEntry reads a log's frames three times through open (each call
// returns a new reader of the whole log) and writes its entry to dst: the
// stdout data, the stderr data, then the timeline. Memory use does not
// depend on the log's size.
func WriteEntry(dst io.Writer, open func() (io.Reader, error)) (EntryInfo, error) {
	var info EntryInfo
	bw := bufio.NewWriterSize(dst, 64<<10)
	for _, want := range []byte{Stdout, Stderr} {
		r, err := open()
		if err != nil {
			return info, err
		}
		var n int64
		_, err = DecodeFrames(r, func(s byte, _ int64, data []byte) error {
			if s != want {
				return nil
			}
			n += int64(len(data))
			_, err := bw.Write(data)
			return err
		})
		if err != nil {
			return info, fmt.Errorf("logs: write entry: %w", err)
		}
		if want == Stdout {
			info.StdoutBytes = n
		} else {
			info.StderrBytes = n
		}
	}
	r, err := open()
	if err != nil {
		return info, err
	}
	var rec []byte
	var prev int64
	timeline := int64(0)
	logBytes, err := DecodeFrames(r, func(s byte, nanos int64, data []byte) error {
		rec = append(rec[:0], s)
		rec = binary.AppendVarint(rec, nanos-prev)
		rec = binary.AppendUvarint(rec, uint64(len(data)))
		prev = nanos
		if info.Frames == 0 {
			info.FirstNanos = nanos
		}
		info.LastNanos = nanos
		info.Frames++
		timeline += int64(len(rec))
		_, err := bw.Write(rec)
		return err
	})
	if err != nil {
		return info, fmt.Errorf("logs: write entry: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return info, fmt.Errorf("logs: write entry: %w", err)
	}
	info.LogBytes = logBytes
	info.Length = info.StdoutBytes + info.StderrBytes + timeline
	return info, nil
}

// Entry is where an entry is: a range of an object, and its stream parts.
type Entry struct {
	Object                   string
	Offset, Length           int64
	StdoutBytes, StderrBytes int64
}

// ErrEntry is wrapped by the errors that report an entry whose parts do
// not agree with its timeline.
var ErrEntry = errors.New("logs: malformed log entry")

// entryInMemory is the largest entry ReadEntry reads with one request;
// larger ones are read as three streams.
const entryInMemory = 4 << 20

// ReadEntry emits the frames of an entry, in log order, skipping the
// first skip bytes of the log (as frames: a live reader that already
// emitted them goes on from there). Only the streams in want are emitted
// (empty: both). Small entries are fetched with one ranged read; large ones
// as three ranged streams, so memory use does not depend on the size.
func ReadEntry(ctx context.Context, store blob.Store, e Entry, skip int64, want []byte, emit func(stream byte, unixNanos int64, data []byte) error) error {
	if e.Offset < 0 || e.Length < 0 || e.StdoutBytes < 0 || e.StderrBytes < 0 || e.StdoutBytes+e.StderrBytes > e.Length {
		return fmt.Errorf("%w: object %s range %d+%d with parts %d and %d", ErrEntry, e.Object, e.Offset, e.Length, e.StdoutBytes, e.StderrBytes)
	}
	var out, errs, tl io.Reader
	if e.Length <= entryInMemory {
		rc, err := store.GetRange(ctx, e.Object, e.Offset, e.Length)
		if err != nil {
			return fmt.Errorf("logs: read entry in %s: %w", e.Object, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("logs: read entry in %s: %w", e.Object, err)
		}
		if int64(len(b)) != e.Length {
			return fmt.Errorf("%w: object %s holds %d of the entry's %d bytes at %d", ErrEntry, e.Object, len(b), e.Length, e.Offset)
		}
		out = bytes.NewReader(b[:e.StdoutBytes])
		errs = bytes.NewReader(b[e.StdoutBytes : e.StdoutBytes+e.StderrBytes])
		tl = bytes.NewReader(b[e.StdoutBytes+e.StderrBytes:])
	} else {
		parts := []struct {
			off, n int64
			dst    *io.Reader
		}{
			{e.Offset, e.StdoutBytes, &out},
			{e.Offset + e.StdoutBytes, e.StderrBytes, &errs},
			{e.Offset + e.StdoutBytes + e.StderrBytes, e.Length - e.StdoutBytes - e.StderrBytes, &tl},
		}
		for _, p := range parts {
			rc, err := store.GetRange(ctx, e.Object, p.off, p.n)
			if err != nil {
				return fmt.Errorf("logs: read entry in %s: %w", e.Object, err)
			}
			defer rc.Close()
			*p.dst = bufio.NewReaderSize(rc, 64<<10)
		}
	}
	return decodeEntry(out, errs, tl, skip, want, emit)
}

// decodeEntry rebuilds the frames from the three parts.
func decodeEntry(out, errs, timeline io.Reader, skip int64, want []byte, emit func(stream byte, unixNanos int64, data []byte) error) error {
	tl := bufio.NewReader(timeline)
	buf := make([]byte, MaxFrameData)
	var nanos, at int64
	for n := 0; ; n++ {
		s, err := tl.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		delta, err := binary.ReadVarint(tl)
		if err != nil {
			return fmt.Errorf("%w: timeline record %d: %v", ErrEntry, n, err)
		}
		length, err := binary.ReadUvarint(tl)
		if err != nil {
			return fmt.Errorf("%w: timeline record %d: %v", ErrEntry, n, err)
		}
		if length > MaxFrameData || (s != Stdout && s != Stderr) {
			return fmt.Errorf("%w: timeline record %d: stream %d, length %d", ErrEntry, n, s, length)
		}
		nanos += delta
		src := out
		if s == Stderr {
			src = errs
		}
		data := buf[:length]
		if _, err := io.ReadFull(src, data); err != nil {
			return fmt.Errorf("%w: stream %d part ends before its timeline (record %d): %v", ErrEntry, s, n, err)
		}
		size := int64(1 + varintLen(nanos) + uvarintLen(length) + int(length))
		at += size
		if at <= skip || (len(want) > 0 && bytes.IndexByte(want, s) < 0) {
			continue
		}
		if err := emit(s, nanos, data); err != nil {
			return err
		}
	}
	return nil
}
