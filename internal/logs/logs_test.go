package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob"
)

const waitLimit = 10 * time.Second

// hookStore wraps a real filesystem store and lets a test see or fail calls.
type hookStore struct {
	blob.Store
	mu    sync.Mutex
	onPut func(key string) error
	onGet func(key string)
}

func (h *hookStore) Put(ctx context.Context, key string, r io.Reader) error {
	h.mu.Lock()
	f := h.onPut
	h.mu.Unlock()
	if f != nil {
		if err := f(key); err != nil {
			return err
		}
	}
	return h.Store.Put(ctx, key, r)
}

func (h *hookStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	h.mu.Lock()
	f := h.onGet
	h.mu.Unlock()
	if f != nil {
		f(key)
	}
	return h.Store.Get(ctx, key)
}

type bundle struct {
	store *hookStore
	spool string
	clock func() time.Time
}

func setup(t *testing.T) bundle {
	t.Helper()
	fs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var tick atomic.Int64
	return bundle{
		store: &hookStore{Store: fs},
		spool: t.TempDir(),
		clock: func() time.Time { return time.Unix(1700000000, tick.Add(1)) },
	}
}

// newWriter makes a writer of the layout before packs that uploads only
// when told to (Flush, Close), so tests decide when segments appear.
func (b bundle) newWriter(t *testing.T, prefix string) *legacyWriter {
	t.Helper()
	return newLegacy(t, b.store, prefix, b.spool, WriterOptions{Clock: b.clock})
}

type rec struct {
	stream byte
	nanos  int64
	data   string
}

func readAll(t *testing.T, s blob.Store, prefix string, opt ReadOptions) ([]rec, error) {
	t.Helper()
	var out []rec
	err := Read(context.Background(), s, prefix, opt, func(stream byte, n int64, data []byte) error {
		out = append(out, rec{stream, n, string(data)})
		return nil
	})
	return out, err
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if n, err := w.Write([]byte(s)); err != nil || n != len(s) {
		t.Fatalf("write %q: %d, %v", s, n, err)
	}
}

func keys(t *testing.T, s blob.Store, prefix string) []string {
	t.Helper()
	k, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestInterleavingPreserved(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.newWriter(t, "j/t/1")
	var want []rec
	for i := range 20 {
		s, sw := Stdout, w.Stdout()
		if i%3 == 1 {
			s, sw = Stderr, w.Stderr()
		}
		d := fmt.Sprintf("line %d\n", i)
		write(t, sw, d)
		want = append(want, rec{s, time.Unix(1700000000, int64(i+1)).UnixNano(), d})
		if i == 7 || i == 15 {
			if err := w.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	total, err := w.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(t, b.store, "j/t/1/"); !slices.Equal(got, []string{"j/t/1/final"}) {
		t.Fatalf("objects after close: %q", got)
	}
	got, err := readAll(t, b.store, "j/t/1", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	rc, err := b.store.Get(context.Background(), "j/t/1/final")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(rc)
	rc.Close()
	if int64(len(raw)) != total {
		t.Fatalf("Close said %d bytes, final has %d", total, len(raw))
	}

	// One stream only.
	got, err = readAll(t, b.store, "j/t/1", ReadOptions{Streams: []byte{Stderr}})
	if err != nil {
		t.Fatal(err)
	}
	var wantErr []rec
	for _, r := range want {
		if r.stream == Stderr {
			wantErr = append(wantErr, r)
		}
	}
	if !slices.Equal(got, wantErr) {
		t.Fatalf("stderr only: got %v want %v", got, wantErr)
	}
}

func TestBinaryRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.newWriter(t, "bin")
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := bytes.Repeat(all, 1000) // 256000 bytes: split into frames
	write(t, w.Stdout(), string(all))
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	write(t, w.Stderr(), string(big))
	write(t, w.Stdout(), string(all[:255])) // no newline at the end
	if _, err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, b.store, "bin", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	for _, r := range got {
		if len(r.data) > MaxFrameData {
			t.Fatalf("frame of %d bytes", len(r.data))
		}
		if r.stream == Stdout {
			out.WriteString(r.data)
		} else {
			errb.WriteString(r.data)
		}
	}
	if want := append(slices.Clone(all), all[:255]...); !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("stdout differs: %d bytes, want %d", out.Len(), len(want))
	}
	if !bytes.Equal(errb.Bytes(), big) {
		t.Fatalf("stderr differs: %d bytes, want %d", errb.Len(), len(big))
	}
	if len(got) != 1+4+1 { // 256000 = 3*65536 + 59392
		t.Fatalf("%d frames, want 6", len(got))
	}
}

func TestFollowSeesLiveData(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.newWriter(t, "live")
	got := make(chan string, 16)
	res := make(chan error, 1)
	go func() {
		res <- Read(context.Background(), b.store, "live", ReadOptions{Follow: true, PollInterval: time.Millisecond},
			func(_ byte, _ int64, d []byte) error { got <- string(d); return nil })
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case s := <-got:
			if s != want {
				t.Fatalf("got %q, want %q", s, want)
			}
		case err := <-res:
			t.Fatalf("reader ended early: %v", err)
		case <-time.After(waitLimit):
			t.Fatalf("no %q within %v", want, waitLimit)
		}
	}
	for _, s := range []string{"one\n", "two\n", "three"} {
		write(t, w.Stdout(), s)
		if err := w.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		expect(s)
	}
	write(t, w.Stderr(), "last")
	if _, err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("reader did not stop after the final object appeared")
	}
	close(got)
	var rest []string
	for s := range got {
		rest = append(rest, s)
	}
	if !slices.Equal(rest, []string{"last"}) {
		t.Fatalf("after close: got %q, want just \"last\"", rest)
	}
}

// The final object is written and the segments deleted between the reader's
// look for the final object and its look for the next segment.
func TestSwitchFromSegmentsToFinal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.newWriter(t, "sw")
	ctx := context.Background()
	write(t, w.Stdout(), "a")
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	write(t, w.Stderr(), "b")
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	write(t, w.Stdout(), "c")
	var once sync.Once
	b.store.mu.Lock()
	b.store.onGet = func(key string) {
		if key == "sw/seg-00000002" {
			once.Do(func() {
				if _, err := w.Close(ctx); err != nil {
					t.Error(err)
				}
			})
		}
	}
	b.store.mu.Unlock()
	got, err := readAll(t, b.store, "sw", ReadOptions{Follow: true, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, r := range got {
		s = append(s, r.data)
	}
	if !slices.Equal(s, []string{"a", "b", "c"}) {
		t.Fatalf("got %q, want a b c once each", s)
	}
}

func TestKilledWriterLeavesSegments(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.newWriter(t, "dead")
	write(t, w.Stdout(), "before death\n")
	write(t, w.Stderr(), "oops")
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	write(t, w.Stdout(), "never uploaded")
	// No Close: the worker died. Readers still get what was uploaded.
	want := []string{"before death\n", "oops"}
	for _, opt := range []ReadOptions{{}, {Follow: true, PollInterval: time.Millisecond, Done: func() bool { return true }}} {
		got, err := readAll(t, b.store, "dead", opt)
		if err != nil {
			t.Fatalf("follow=%v: %v", opt.Follow, err)
		}
		var s []string
		for _, r := range got {
			s = append(s, r.data)
		}
		if !slices.Equal(s, want) {
			t.Fatalf("follow=%v: got %q want %q", opt.Follow, s, want)
		}
	}
}

// Done flips while the reader follows: data uploaded before it flipped is
// still read.
func TestFollowStopsWhenDone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.newWriter(t, "done")
	var done atomic.Bool
	looked := make(chan struct{}, 1)
	b.store.mu.Lock()
	b.store.onGet = func(key string) {
		if key == "done/final" {
			select {
			case looked <- struct{}{}:
			default:
			}
		}
	}
	b.store.mu.Unlock()
	res := make(chan []string, 1)
	go func() {
		var s []string
		err := Read(context.Background(), b.store, "done", ReadOptions{Follow: true, PollInterval: time.Millisecond, Done: done.Load},
			func(_ byte, _ int64, d []byte) error { s = append(s, string(d)); return nil })
		if err != nil {
			t.Error(err)
		}
		res <- s
	}()
	select {
	case <-looked: // the reader is polling
	case <-time.After(waitLimit):
		t.Fatal("reader never looked")
	}
	write(t, w.Stdout(), "x")
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	done.Store(true)
	select {
	case s := <-res:
		if !slices.Equal(s, []string{"x"}) {
			t.Fatalf("got %q", s)
		}
	case <-time.After(waitLimit):
		t.Fatal("reader did not stop once done")
	}
}

func TestNoLogAndEmptyLog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := readAll(t, b.store, "none", ReadOptions{}); !errors.Is(err, ErrNoLog) {
		t.Fatalf("missing log: %v, want ErrNoLog", err)
	}
	if _, err := readAll(t, b.store, "none", ReadOptions{Follow: true, Done: func() bool { return true }}); !errors.Is(err, ErrNoLog) {
		t.Fatalf("missing log, follow, done: %v, want ErrNoLog", err)
	}
	w := b.newWriter(t, "empty")
	n, err := w.Close(context.Background())
	if err != nil || n != 0 {
		t.Fatalf("close empty: %d, %v", n, err)
	}
	// A log with no output stores no object: reading it is ErrNoLog, which
	// the gateway shows as empty output.
	if keys, err := b.store.List(context.Background(), "empty/"); err != nil || len(keys) != 0 {
		t.Fatalf("empty log left objects %v (%v), want none", keys, err)
	}
	if got, err := readAll(t, b.store, "empty", ReadOptions{}); !errors.Is(err, ErrNoLog) || len(got) != 0 {
		t.Fatalf("empty log: %v, %v, want ErrNoLog", got, err)
	}
	if _, err := w.Stdout().Write([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if _, err := w.Close(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
}

func TestFollowCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	b.store.mu.Lock()
	b.store.onGet = func(string) { cancel() }
	b.store.mu.Unlock()
	err := Read(ctx, b.store, "x", ReadOptions{Follow: true}, func(byte, int64, []byte) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, p := range []string{"", "/abs", "a/../b"} {
		if p == "" {
			if _, err := NewWriter(p, b.spool, WriterOptions{}); err == nil {
				t.Errorf("NewWriter(%q): no error", p)
			}
		}
		if _, err := readAll(t, b.store, p, ReadOptions{}); err == nil || errors.Is(err, ErrNoLog) {
			t.Errorf("Read(%q): %v, want a prefix error", p, err)
		}
	}
	if _, err := readAll(t, b.store, "p", ReadOptions{Streams: []byte{3}}); err == nil {
		t.Error("stream 3 accepted")
	}
	if _, err := AppendFrame(nil, 0, 0, nil); err == nil {
		t.Error("stream 0 accepted")
	}

	// A truncated final object is reported as corrupt.
	frame, _ := AppendFrame(nil, Stdout, 5, []byte("hello"))
	if err := b.store.Put(context.Background(), "trunc/final", bytes.NewReader(frame[:len(frame)-1])); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, b.store, "trunc", ReadOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated: %v, want ErrCorrupt", err)
	}
	if err := b.store.Put(context.Background(), "junk/final", strings.NewReader("\x07abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, b.store, "junk", ReadOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("junk: %v, want ErrCorrupt", err)
	}

	// An emit error comes back as is.
	if err := b.store.Put(context.Background(), "good/final", bytes.NewReader(frame)); err != nil {
		t.Fatal(err)
	}
	sentinel := errors.New("stop here")
	err := Read(context.Background(), b.store, "good", ReadOptions{}, func(byte, int64, []byte) error { return sentinel })
	if err != sentinel {
		t.Fatalf("emit error: %v", err)
	}
}

// A 100 MB log goes through the writer and the reader with the heap staying
// small. Not parallel: it measures the process's heap.
func TestLargeLogBoundedMemory(t *testing.T) {
	b := setup(t)
	const total = 100 << 20
	const slack = 8 << 20

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak uint64
	sample := func() {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}

	w := newLegacy(t, b.store, "big", b.spool, WriterOptions{Clock: b.clock})
	chunk := make([]byte, 100<<10)
	wantSum := crc32.NewIEEE()
	for i := 0; i < total/len(chunk); i++ {
		for j := range chunk {
			chunk[j] = byte(i + j*7)
		}
		wantSum.Write(chunk)
		out := w.Stdout()
		if i%5 == 0 {
			out = w.Stderr()
		}
		if _, err := out.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if i%80 == 0 {
			sample()
		}
	}
	if _, err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	sample()

	gotSum := crc32.NewIEEE()
	var n, frames int
	err := Read(context.Background(), b.store, "big", ReadOptions{}, func(_ byte, _ int64, d []byte) error {
		gotSum.Write(d)
		n += len(d)
		frames++
		if frames%100 == 0 {
			sample()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != total || gotSum.Sum32() != wantSum.Sum32() {
		t.Fatalf("read %d bytes (crc %x), want %d (crc %x)", n, gotSum.Sum32(), total, wantSum.Sum32())
	}
	t.Logf("heap in use: base %d KiB, peak %d KiB", base>>10, peak>>10)
	if peak > base+slack {
		t.Fatalf("heap in use reached %d KiB, more than %d KiB above the %d KiB baseline", peak>>10, slack>>10, base>>10)
	}
}

// TestCaughtUpBeforeWaiting checks that a follower is told it has caught up
// (so a batching caller can send) before Read waits for more.
func TestCaughtUpBeforeWaiting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w := b.newWriter(t, "live")
	if _, err := w.Stdout().Write([]byte("early\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []string
	caught := make(chan []string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- Read(ctx, b.store, "live", ReadOptions{Follow: true, PollInterval: time.Millisecond,
			CaughtUp: func() error {
				select {
				case caught <- append([]string(nil), got...):
				default:
				}
				return nil
			}},
			func(_ byte, _ int64, data []byte) error { got = append(got, string(data)); return nil })
	}()
	select {
	case seen := <-caught:
		if len(seen) != 1 || seen[0] != "early\n" {
			t.Fatalf("caught up having emitted %q, want the early line", seen)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("CaughtUp never called while the writer was still open")
	}
	cancel()
	<-errc
	w.Close(context.Background())
}
