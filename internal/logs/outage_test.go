package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// outage makes every Put of the keys it matches fail with ENOSPC, as a full
// disk does, until ended; it counts the failed tries.
type outage struct {
	mu     sync.Mutex
	on     bool
	match  func(key string) bool
	failed map[string]int
	tried  chan string // each failed key, when not full
}

func newOutage(match func(string) bool) *outage {
	return &outage{on: true, match: match, failed: map[string]int{}, tried: make(chan string, 1000)}
}

func (o *outage) put(key string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.on || (o.match != nil && !o.match(key)) {
		return nil
	}
	o.failed[key]++
	select {
	case o.tried <- key:
	default:
	}
	return fmt.Errorf("blob: put %s: write: %w", key, syscall.ENOSPC)
}

func (o *outage) end() {
	o.mu.Lock()
	o.on = false
	o.mu.Unlock()
}

func (o *outage) count(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failed[key]
}

// waitTries waits until key has failed n times.
func (o *outage) waitTries(t *testing.T, key string, n int) {
	t.Helper()
	deadline := time.After(waitLimit)
	for o.count(key) < n {
		select {
		case <-o.tried:
		case <-deadline:
			t.Fatalf("%s failed %d times, waited for %d", key, o.count(key), n)
		}
	}
}

// slowPut takes 100ms per Put of a final object, as a struggling disk does, and gives up
// when its context ends, as the filesystem store does: a try cut short by
// Close's retry deadline fails with the context's error.
type slowPut struct{ *hookStore }

func (c slowPut) Put(ctx context.Context, key string, r io.Reader) error {
	if !strings.HasSuffix(key, "/"+FinalName) {
		return c.hookStore.Put(ctx, key, r)
	}
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("blob: put %s: %w", key, ctx.Err())
	case <-t.C:
	}
	return c.hookStore.Put(ctx, key, r)
}

func readText(t *testing.T, b bundle, prefix string) string {
	t.Helper()
	recs, err := readAll(t, b.store, prefix, ReadOptions{})
	if err != nil {
		t.Fatalf("read %s: %v", prefix, err)
	}
	var sb strings.Builder
	for _, r := range recs {
		sb.WriteString(r.data)
	}
	return sb.String()
}

// An object store that refuses writes (a full disk) while the attempt ends:
// Close keeps retrying the final upload, and once space returns the log is
// stored whole, with no marker and no segments left.
func TestCloseRetriesUntilStoreRecovers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := newOutage(nil)
	b.store.onPut = o.put
	w, err := NewWriter(context.Background(), b.store, "rec", b.spool, WriterOptions{FlushInterval: time.Millisecond, RetryFor: time.Hour, Clock: b.clock})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("line of output\n", 1000)
	write(t, w.Stdout(), want)
	o.waitTries(t, "rec/seg-00000001", 2) // retried while running
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := w.Close(context.Background())
		done <- result{n, err}
	}()
	o.waitTries(t, "rec/seg-00000001", 4) // and after the attempt
	select {
	case r := <-done:
		t.Fatalf("Close returned during the outage: %d, %v", r.n, r.err)
	default:
	}
	o.end()
	var r result
	select {
	case r = <-done:
	case <-time.After(waitLimit):
		t.Fatal("Close did not return after the store recovered")
	}
	if r.err != nil {
		t.Fatalf("close after recovery: %v", r.err)
	}
	if got := readText(t, b, "rec"); got != want {
		t.Fatalf("log holds %d bytes, want %d", len(got), len(want))
	}
	if got := keys(t, b.store, "rec/"); len(got) != 1 || got[0] != "rec/final" {
		t.Fatalf("objects after recovery: %q", got)
	}
	if notice, err := Incomplete(context.Background(), b.store, "rec"); err != nil || notice != "" {
		t.Fatalf("incomplete notice of a whole log: %q, %v", notice, err)
	}
}

// When the store stays broken past RetryFor, Close gives up and says how
// much was stored and why: the segments uploaded before the outage are the
// log, and the marker (here writable) says it is incomplete.
func TestCloseGivesUpAndSaysSo(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Tries of the final object take 100ms: [0,100ms], [200,300],
	// [500,600]; RetryFor ends in the middle of the third. The reason is
	// still the store's error, not the deadline.
	w, err := NewWriter(context.Background(), slowPut{b.store}, "gone", b.spool, WriterOptions{FlushInterval: time.Hour, SegmentBytes: 1 << 40, RetryFor: 550 * time.Millisecond, Clock: b.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := "stored before the disk filled\n"
	write(t, w.Stdout(), first)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	o := newOutage(func(key string) bool { return !strings.HasSuffix(key, "/"+IncompleteName) })
	b.store.onPut = o.put
	write(t, w.Stderr(), "written while the disk was full\n")
	n, err := w.Close(ctx)
	var ie *IncompleteError
	if !errors.As(err, &ie) {
		t.Fatalf("close during a lasting outage: %d, %v; want an *IncompleteError", n, err)
	}
	total := int64(len(first) + len("written while the disk was full\n"))
	if ie.Stored != int64(len(first)) || ie.Total != total {
		t.Fatalf("stored %d of %d, want %d of %d", ie.Stored, ie.Total, len(first), total)
	}
	msg := err.Error()
	if strings.Contains(msg, "deadline") {
		t.Errorf("message %q gives the retry deadline as the reason", msg)
	}
	for _, s := range []string{"log incomplete: ", fmt.Sprintf("%d of %d bytes", len(first), total), "no space left on device"} {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
	if o.count("gone/final") < 2 {
		t.Errorf("final upload tried %d times, want retries", o.count("gone/final"))
	}
	if got := readText(t, b, "gone"); got != first {
		t.Fatalf("log reads %q, want what was stored: %q", got, first)
	}
	notice, err := Incomplete(ctx, b.store, "gone")
	if err != nil || notice != msg {
		t.Fatalf("marker %q, %v; want %q", notice, err, msg)
	}
	if got, ok := IncompleteNotice("exit 0; " + msg); !ok || got != msg {
		t.Fatalf("notice in an attempt message: %q, %v", got, ok)
	}
	if entries, err := os.ReadDir(b.spool); err != nil || len(entries) != 0 {
		t.Fatalf("spool files left: %v, %v", entries, err)
	}
}

// A store that never takes anything, not even the marker: Close still
// reports what is missing, so the attempt's message carries it.
func TestNothingStoredIsReported(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := newOutage(nil)
	b.store.onPut = o.put
	w, err := NewWriter(context.Background(), b.store, "none", b.spool, WriterOptions{FlushInterval: time.Hour, SegmentBytes: 1 << 40, RetryFor: 200 * time.Millisecond, Clock: b.clock})
	if err != nil {
		t.Fatal(err)
	}
	write(t, w.Stdout(), "12345")
	_, err = w.Close(context.Background())
	var ie *IncompleteError
	if !errors.As(err, &ie) || ie.Stored != 0 || ie.Total != 5 {
		t.Fatalf("close: %v; want 0 of 5 bytes stored", err)
	}
	if got := keys(t, b.store, "none/"); len(got) != 0 {
		t.Fatalf("objects: %q", got)
	}
	if o.count("none/"+IncompleteName) == 0 {
		t.Fatal("the marker was not even tried")
	}
}

// A spool folder that cannot be written (here: missing) keeps the output in
// memory; once it can be written again the output moves there, and the log
// is whole.
func TestSpoolOutageKeepsOutputInMemory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	spool := filepath.Join(t.TempDir(), "later")
	w, err := NewWriter(context.Background(), b.store, "mem", spool, WriterOptions{FlushInterval: time.Hour, SegmentBytes: 1 << 40, Clock: b.clock})
	if err != nil {
		t.Fatalf("a writer whose spool folder is missing: %v", err)
	}
	ctx := context.Background()
	want := strings.Repeat("x", 100<<10) + "\n"
	write(t, w.Stdout(), want)
	if err := w.Flush(ctx); err != nil { // the segment comes from memory
		t.Fatal(err)
	}
	if err := os.Mkdir(spool, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, w.Stdout(), "after\n")
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if entries, err := os.ReadDir(spool); err != nil || len(entries) != 1 {
		t.Fatalf("spool folder once writable holds %v, %v; want the spool file", entries, err)
	}
	if _, err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, b, "mem"); got != want+"after\n" {
		t.Fatalf("log holds %d bytes, want %d", len(got), len(want)+6)
	}
}

// Output beyond the memory bound while the spool cannot be written is
// dropped whole frames at a time and counted: the log stays readable, the
// marker and Close's error say how much is missing.
func TestSpoolOutageBeyondMemoryIsCounted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	spool := filepath.Join(t.TempDir(), "missing")
	w, err := NewWriter(context.Background(), b.store, "drop", spool, WriterOptions{FlushInterval: time.Hour, SegmentBytes: 1 << 40, MemoryBytes: 1000, Clock: b.clock})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		write(t, w.Stdout(), fmt.Sprintf("line %03d %s\n", i, strings.Repeat("-", 40)))
	}
	// the first Write only tries the spool once more than 64 KiB waits
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 100; i < 200; i++ {
		write(t, w.Stdout(), fmt.Sprintf("line %03d %s\n", i, strings.Repeat("-", 40)))
	}
	_, err = w.Close(context.Background())
	var ie *IncompleteError
	if !errors.As(err, &ie) {
		t.Fatalf("close: %v; want an *IncompleteError", err)
	}
	got := readText(t, b, "drop")
	if !strings.HasPrefix(got, "line 000 ") || int64(len(got)) != ie.Stored || ie.Total != 200*50 || ie.Stored >= ie.Total || ie.Stored == 0 {
		t.Fatalf("read %d bytes; error says %d of %d", len(got), ie.Stored, ie.Total)
	}
	if !strings.Contains(ie.Reason, "dropped") || !strings.Contains(ie.Reason, "spool") {
		t.Fatalf("reason %q does not say output was dropped for the spool", ie.Reason)
	}
	notice, err := Incomplete(context.Background(), b.store, "drop")
	if err != nil || notice != ie.Error() {
		t.Fatalf("marker %q, %v; want %q", notice, err, ie.Error())
	}
}
