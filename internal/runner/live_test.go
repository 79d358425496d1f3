package runner

import (
	"bytes"
	"fmt"
	"log/slog"
	"testing"
	"time"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/logs"
)

// TestLiveCopies: chunks append in order (a chunk sent again adds only
// what is new), the copy keeps the last frames within its share, reads
// return whole frames from any offset held, and an ended attempt's copy
// says whether it is the whole log.
func TestLiveCopies(t *testing.T) {
	t.Parallel()
	ll := newLiveLogs(&Runner{cfg: Config{LiveAttemptBytes: 4096, LiveMemoryBytes: 1 << 20, LivePackGrace: time.Minute}})
	var log []byte
	var chunks []*taskhostv1.LiveOutput
	for i := range 200 {
		start := len(log)
		log, _ = logs.AppendFrame(log, logs.Stdout, int64(i), fmt.Appendf(nil, "line %d of the task\n", i))
		chunks = append(chunks, &taskhostv1.LiveOutput{TaskIndex: 3, Attempt: 1, Offset: int64(start), Frames: log[start:]})
	}
	for i, c := range chunks {
		ll.add("j", []*taskhostv1.LiveOutput{c})
		if i%10 == 0 {
			ll.add("j", chunks[max(0, i-3):i+1]) // sent again after a lost reply
		}
	}
	k := liveKey{"j", 3, 1}
	l := ll.logs[k]
	if l.end() != int64(len(log)) || len(l.buf) > 4096 || !bytes.Equal(l.buf, log[l.base:]) {
		t.Fatalf("copy [%d, %d) of %d bytes held; want the tail of the %d-byte log within 4096", l.base, l.end(), len(l.buf), len(log))
	}
	if _, err := logs.FrameSize(l.buf); err != nil {
		t.Fatalf("the copy does not start at a frame: %v", err)
	}
	// Read from the start: the copy's first frame on, in whole frames.
	var got []byte
	for off := int64(0); ; {
		r := ll.read(k, off, 1000)
		if !r.Held || r.Ended || r.Complete {
			t.Fatalf("read %+v", r)
		}
		got = append(got, r.Frames...)
		if _, err := logs.DecodeFrames(bytes.NewReader(r.Frames), func(byte, int64, []byte) error { return nil }); err != nil {
			t.Fatalf("read at %d: not whole frames: %v", off, err)
		}
		if r.Next == r.End {
			break
		}
		off = r.Next
	}
	if !bytes.Equal(got, log[l.base:]) {
		t.Fatalf("reads returned %d bytes, want the %d held", len(got), len(log)-int(l.base))
	}
	ll.ended("j", 3, 1, false, int64(len(log)), 0, time.Now())
	if r := ll.read(k, 0, 1<<20); !r.Ended || r.Complete {
		t.Fatalf("ended with the front trimmed: %+v, want ended and not complete", r)
	}
	// A short log, whole: complete once ended with its size.
	ll.add("j", []*taskhostv1.LiveOutput{{TaskIndex: 4, Attempt: 1, Offset: 0, Frames: chunks[0].Frames}})
	ll.ended("j", 4, 1, false, int64(len(chunks[0].Frames)), 0, time.Now())
	if r := ll.read(liveKey{"j", 4, 1}, 0, 1<<20); !r.Complete || !bytes.Equal(r.Frames, chunks[0].Frames) {
		t.Fatalf("short log: %+v", r)
	}
	// Indexed: the copy is gone, and late chunks do not bring it back.
	ll.indexedNow("j", []*taskhostv1.LogEntry{{TaskIndex: 4, Attempt: 1}})
	ll.add("j", []*taskhostv1.LiveOutput{{TaskIndex: 4, Attempt: 1, Offset: 0, Frames: chunks[0].Frames}})
	if r := ll.read(liveKey{"j", 4, 1}, 0, 1<<20); r.Held {
		t.Fatalf("indexed attempt still held: %+v", r)
	}
	// A gap (this runner missed output): the copy restarts there.
	ll.add("j", []*taskhostv1.LiveOutput{{TaskIndex: 5, Attempt: 1, Offset: 0, Frames: chunks[0].Frames}})
	ll.add("j", []*taskhostv1.LiveOutput{{TaskIndex: 5, Attempt: 1, Offset: chunks[50].Offset, Frames: chunks[50].Frames}})
	if l := ll.logs[liveKey{"j", 5, 1}]; l.base != chunks[50].Offset || !bytes.Equal(l.buf, chunks[50].Frames) {
		t.Fatalf("after a gap: base %d, %d bytes", l.base, len(l.buf))
	}
}

// TestLiveMemoryBound: however many attempts send output, the copies
// together hold at most LiveMemoryBytes once trimmed, each keeping its
// most recent whole frames.
func TestLiveMemoryBound(t *testing.T) {
	t.Parallel()
	const total = 256 << 10
	ll := newLiveLogs(&Runner{cfg: Config{LiveAttemptBytes: 64 << 10, LiveMemoryBytes: total, LivePackGrace: time.Minute}})
	line := bytes.Repeat([]byte("x"), 200)
	for task := range int32(1000) {
		var frames []byte
		for i := range 100 {
			frames, _ = logs.AppendFrame(frames, logs.Stdout, int64(i), line)
		}
		ll.add("j", []*taskhostv1.LiveOutput{{TaskIndex: task, Attempt: 1, Frames: frames}})
	}
	ll.trimAll()
	if ll.held > total {
		t.Fatalf("copies hold %d bytes, more than the %d allowed", ll.held, total)
	}
	sum := 0
	for k, l := range ll.logs {
		sum += len(l.buf)
		if len(l.buf) > 0 {
			if _, err := logs.FrameSize(l.buf); err != nil {
				t.Fatalf("%v: copy does not start at a frame: %v", k, err)
			}
		}
	}
	if sum != ll.held {
		t.Fatalf("held counts %d, the copies hold %d", ll.held, sum)
	}
}

// TestLiveRefusesTorn: a chunk that is not whole frames is dropped, so a
// worker's bad output cannot make the copy unreadable.
func TestLiveRefusesTorn(t *testing.T) {
	t.Parallel()
	ll := newLiveLogs(&Runner{cfg: Config{LiveAttemptBytes: 4096, LiveMemoryBytes: 1 << 20}, log: slog.New(slog.DiscardHandler)})
	f, _ := logs.AppendFrame(nil, logs.Stdout, 1, []byte("hello\n"))
	ll.add("j", []*taskhostv1.LiveOutput{{TaskIndex: 1, Attempt: 1, Frames: f[:len(f)-1]}, {TaskIndex: 2, Attempt: 1, Frames: f}})
	if r := ll.read(liveKey{"j", 1, 1}, 0, 1<<20); r.Held {
		t.Fatalf("a torn chunk was kept: %+v", r)
	}
	if r := ll.read(liveKey{"j", 2, 1}, 0, 1<<20); !bytes.Equal(r.Frames, f) {
		t.Fatalf("a whole chunk: %+v", r)
	}
}
