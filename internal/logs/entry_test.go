package logs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob"
)

type erec struct {
	s     byte
	nanos int64
	data  string
}

// TestEntryRoundTrip writes a log through a Local writer, reads it live in
// small steps, seals it into an entry, and reads the entry back: the same
// frames every way, also from an offset, also as one stream, for a small
// entry (one ranged read) and a large one (three streams).
func TestEntryRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 300, 20000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			ctx := context.Background()
			clock := time.Unix(1_800_000_000, 0)
			w, err := NewWriter("logs/j/1/1", t.TempDir(), WriterOptions{Clock: func() time.Time {
				clock = clock.Add(time.Duration(rand.IntN(1000)) * time.Millisecond)
				return clock
			}})
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(size), 1))
			var live []byte
			var off int64
			for i := range size {
				p := bytes.Repeat([]byte{byte('a' + i%26)}, 1+rng.IntN(700))
				if i%97 == 0 {
					p = bytes.Repeat([]byte("x"), MaxFrameData+5) // split into two frames
				}
				out := w.Stdout()
				if rng.IntN(3) == 0 {
					out = w.Stderr()
				}
				if _, err := out.Write(p); err != nil {
					t.Fatal(err)
				}
				if i%50 == 0 {
					b, next, err := w.Live(off, 4096)
					if err != nil {
						t.Fatal(err)
					}
					live, off = append(live, b...), next
				}
			}
			for {
				b, next, err := w.Live(off, 4096)
				if err != nil {
					t.Fatal(err)
				}
				if next == off {
					break
				}
				live, off = append(live, b...), next
			}
			sealed, err := w.Seal()
			if err != nil {
				t.Fatal(err)
			}
			defer sealed.Discard()
			if sealed.Len != off {
				t.Fatalf("live read %d bytes, the log has %d", off, sealed.Len)
			}
			want := frames(t, bytes.NewReader(live))
			whole, _ := sealed.Open()
			if got := frames(t, whole); !reflect.DeepEqual(got, want) {
				t.Fatalf("sealed log differs from the live one")
			}
			var entry bytes.Buffer
			entry.WriteString("other attempt's bytes")
			info, err := WriteEntry(&entry, sealed.Open)
			if err != nil {
				t.Fatal(err)
			}
			if info.LogBytes != sealed.Len || info.Frames != int64(len(want)) {
				t.Fatalf("info %+v for a log of %d bytes, %d frames", info, sealed.Len, len(want))
			}
			store, err := blob.NewFS(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := store.Put(ctx, "pack", bytes.NewReader(entry.Bytes())); err != nil {
				t.Fatal(err)
			}
			e := Entry{Object: "pack", Offset: 21, Length: info.Length, StdoutBytes: info.StdoutBytes, StderrBytes: info.StderrBytes}
			var got []erec
			err = ReadEntry(ctx, store, e, 0, nil, func(s byte, n int64, d []byte) error {
				got = append(got, erec{s, n, string(d)})
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("entry frames differ: got %d, want %d", len(got), len(want))
			}
			// The stdout part is plain text.
			rc, err := store.GetRange(ctx, "pack", 21, info.StdoutBytes)
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := io.ReadAll(rc)
			rc.Close()
			var wantOut []byte
			for _, r := range want {
				if r.s == Stdout {
					wantOut = append(wantOut, r.data...)
				}
			}
			if !bytes.Equal(plain, wantOut) {
				t.Fatalf("stdout part is not the stdout bytes")
			}
			// From an offset: the frames after it.
			if len(want) > 2 {
				skip := int64(0)
				d := newDecoder(bytes.NewReader(live))
				for range len(want) / 2 {
					f, _ := d.next()
					skip += int64(f.size)
				}
				got = got[:0]
				err = ReadEntry(ctx, store, e, skip, []byte{Stderr}, func(s byte, n int64, d []byte) error {
					got = append(got, erec{s, n, string(d)})
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				var wantErr []erec
				for _, r := range want[len(want)/2:] {
					if r.s == Stderr {
						wantErr = append(wantErr, r)
					}
				}
				if len(got) != len(wantErr) || (len(got) > 0 && !reflect.DeepEqual(got, wantErr)) {
					t.Fatalf("from offset %d, stderr only: got %d frames, want %d", skip, len(got), len(wantErr))
				}
			}
			// A wrong part size is an error, not a wrong log.
			bad := e
			bad.StdoutBytes--
			bad.StderrBytes++
			if err := ReadEntry(ctx, store, bad, 0, nil, func(byte, int64, []byte) error { return nil }); err == nil && len(want) > 0 && info.StdoutBytes > 0 {
				t.Fatalf("entry with wrong part sizes read without error")
			}
		})
	}
}

func frames(t *testing.T, r io.Reader) []erec {
	t.Helper()
	var out []erec
	if _, err := DecodeFrames(r, func(s byte, n int64, d []byte) error {
		out = append(out, erec{s, n, string(d)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
