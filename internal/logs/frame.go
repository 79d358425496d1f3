// Package logs is the format of task logs and its writer and reader.
//
// A log is a sequence of frames, in arrival order, interleaving a task's
// stdout and stderr. A frame is
//
//	stream      1 byte: 1 stdout, 2 stderr
//	unix nanos  varint (signed)
//	length      uvarint, at most MaxFrameData
//	data        length bytes, any values
//
// While a task runs, its Writer spools the frames on the worker's disk; the
// taskhost sends new frames to the runner (Live), which holds recent output
// for live readers, and at the end archives the log as an entry (entry.go:
// stdout, stderr, timeline) in a pack or an object of its own.
//
// Logs written before packs are read too (Read): numbered segment objects
// {prefix}/seg-00000001, seg-00000002, ... uploaded while the task ran,
// then {prefix}/final, exactly the concatenation of the segments, and
// {prefix}/incomplete, a marker of a log not stored whole. Segment
// boundaries fall between frames.
//
// This package may import the standard library and internal/blob only.
package logs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Stream numbers, as stored in frames and as in haul.api.v1.LogStream.
const (
	Stdout byte = 1
	Stderr byte = 2
)

// MaxFrameData is the most data one frame holds; larger writes are split.
const MaxFrameData = 64 << 10

// maxHeader is the largest frame header: stream byte, varint, uvarint.
const maxHeader = 1 + binary.MaxVarintLen64 + binary.MaxVarintLen64

// ErrCorrupt is wrapped by the errors that report a malformed log.
var ErrCorrupt = errors.New("logs: corrupt log")

// AppendFrame appends one frame to dst. data must be at most MaxFrameData
// bytes and stream Stdout or Stderr.
func AppendFrame(dst []byte, stream byte, unixNanos int64, data []byte) ([]byte, error) {
	if stream != Stdout && stream != Stderr {
		return dst, fmt.Errorf("logs: stream %d: want 1 (stdout) or 2 (stderr)", stream)
	}
	if len(data) > MaxFrameData {
		return dst, fmt.Errorf("logs: frame of %d bytes exceeds %d", len(data), MaxFrameData)
	}
	dst = appendHeader(dst, stream, unixNanos, len(data))
	return append(dst, data...), nil
}

func appendHeader(dst []byte, stream byte, unixNanos int64, n int) []byte {
	dst = append(dst, stream)
	dst = binary.AppendVarint(dst, unixNanos)
	return binary.AppendUvarint(dst, uint64(n))
}

// DecodeFrames reads frames from r until EOF and calls emit for each; the
// data slice is reused and valid only during the call. It returns the number
// of bytes of whole frames consumed. A log that ends inside a frame is an
// error wrapping ErrCorrupt (and io.ErrUnexpectedEOF); an error from emit is
// returned as is.
func DecodeFrames(r io.Reader, emit func(stream byte, unixNanos int64, data []byte) error) (int64, error) {
	d := newDecoder(r)
	var n int64
	for {
		f, err := d.next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if err := emit(f.stream, f.nanos, f.data); err != nil {
			return n, err
		}
		n += int64(f.size)
	}
}

type frame struct {
	stream byte
	nanos  int64
	data   []byte
	size   int // header and data: bytes of the log this frame occupies
}

// decoder reads frames with a fixed amount of memory.
type decoder struct {
	br  *bufio.Reader
	buf []byte
}

func newDecoder(r io.Reader) *decoder {
	return &decoder{br: bufio.NewReaderSize(r, 64<<10), buf: make([]byte, MaxFrameData)}
}

func (d *decoder) reset(r io.Reader) { d.br.Reset(r) }

// next returns the next frame, io.EOF at a clean end, or an error.
func (d *decoder) next() (frame, error) {
	s, err := d.br.ReadByte()
	if err == io.EOF {
		return frame{}, io.EOF
	}
	if err != nil {
		return frame{}, err
	}
	if s != Stdout && s != Stderr {
		return frame{}, fmt.Errorf("%w: stream byte %d", ErrCorrupt, s)
	}
	nanos, err := binary.ReadVarint(d.br)
	if err != nil {
		return frame{}, truncated(err, "timestamp")
	}
	length, err := binary.ReadUvarint(d.br)
	if err != nil {
		return frame{}, truncated(err, "length")
	}
	if length > MaxFrameData {
		return frame{}, fmt.Errorf("%w: frame length %d exceeds %d", ErrCorrupt, length, MaxFrameData)
	}
	data := d.buf[:length]
	if _, err := io.ReadFull(d.br, data); err != nil {
		return frame{}, truncated(err, "data")
	}
	size := 1 + varintLen(nanos) + uvarintLen(length) + int(length)
	return frame{stream: s, nanos: nanos, data: data, size: size}, nil
}

func truncated(err error, what string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: log ends inside a frame's %s: %w", ErrCorrupt, what, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("logs: read frame %s: %w", what, err)
}

func varintLen(v int64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], v)
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// FrameSize returns the size (header and data) of the frame at the start
// of b, or an error wrapping ErrCorrupt when b does not start with a whole
// frame.
func FrameSize(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: no frame", ErrCorrupt)
	}
	if b[0] != Stdout && b[0] != Stderr {
		return 0, fmt.Errorf("%w: stream byte %d", ErrCorrupt, b[0])
	}
	_, n := binary.Varint(b[1:])
	if n <= 0 {
		return 0, fmt.Errorf("%w: frame timestamp", ErrCorrupt)
	}
	length, m := binary.Uvarint(b[1+n:])
	if m <= 0 || length > MaxFrameData {
		return 0, fmt.Errorf("%w: frame length", ErrCorrupt)
	}
	size := 1 + n + m + int(length)
	if size > len(b) {
		return 0, fmt.Errorf("%w: frame of %d bytes cut at %d", ErrCorrupt, size, len(b))
	}
	return size, nil
}
