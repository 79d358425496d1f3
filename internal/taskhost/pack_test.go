package taskhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/logs"
)

// TestPacksAndLive: the logs of many short attempts share a few pack
// objects (one upload per PackEntries logs, and one for the rest when the
// worker exits), each readable alone from its entry; a running attempt's
// output reaches the runner live, before it ends, without any object.
func TestPacksAndLive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Capacity = 8
	b.cfg.PackAge = time.Hour
	b.cfg.PackEntries = 100
	b.cfg.LiveInterval = 20 * time.Millisecond
	const n = 250
	path, f := fifo(t)
	live := assignment(n, "sh", "-c", `echo first; echo second >&2; read x < "$F"; echo third`)
	live.Env = map[string]string{"F": path}
	b.fake.assign(live)
	for i := range int32(n) {
		b.fake.assign(assignment(i, "sh", "-c", fmt.Sprintf("echo out %d; echo err %d >&2", i, i)))
	}
	done := b.run(t)
	for range n {
		b.fake.result(t)
	}
	// The live attempt's output is at the runner while it runs (the two
	// pipes are read concurrently: each stream's order is fixed, not the
	// order between them).
	deadline := time.Now().Add(waitLimit)
	for {
		b.fake.mu.Lock()
		got := bytes.Clone(b.fake.live[n])
		b.fake.mu.Unlock()
		var out, errOut strings.Builder
		if _, err := logs.DecodeFrames(bytes.NewReader(got), func(s byte, _ int64, d []byte) error {
			if s == logs.Stdout {
				out.Write(d)
			} else {
				errOut.Write(d)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if out.String() == "first\n" && errOut.String() == "second\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live output %q and %q, want first and second", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	objects, err := b.store.List(context.Background(), "logs/")
	if err != nil {
		t.Fatal(err)
	}
	if len(objects) != 2 {
		t.Fatalf("objects after %d logs with packs of 100: %v, want 2 packs", n, objects)
	}
	if _, err := f.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	b.fake.result(t)
	b.fake.update(func(f *fakeRunner) { f.exit = true })
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("worker did not exit")
	}
	// Exiting uploaded the last pack and delivered its entries.
	objects, err = b.store.List(context.Background(), "logs/")
	if err != nil || len(objects) != 3 {
		t.Fatalf("objects after exit: %v, %v; want 3 packs", objects, err)
	}
	for i := range int32(n) {
		if out, errOut := b.output(t, i); out != fmt.Sprintf("out %d\n", i) || errOut != fmt.Sprintf("err %d\n", i) {
			t.Fatalf("task %d: stdout %q stderr %q", i, out, errOut)
		}
	}
	if out, errOut := b.output(t, n); out != "first\nthird\n" || errOut != "second\n" {
		t.Fatalf("live task: stdout %q stderr %q", out, errOut)
	}
}

// flakyStore fails every Put until healed, counting the tries.
type flakyStore struct {
	blob.Store
	mu     sync.Mutex
	broken bool
	tries  int
}

func (f *flakyStore) Put(ctx context.Context, key string, r io.Reader) error {
	f.mu.Lock()
	f.tries++
	broken := f.broken
	f.mu.Unlock()
	if broken {
		return errors.New("store away")
	}
	return f.Store.Put(ctx, key, r)
}

func (f *flakyStore) heal() {
	f.mu.Lock()
	f.broken = false
	f.mu.Unlock()
}

// TestArchiveRetriedWithoutHoldingResults: while the object store fails,
// results still arrive at once and the worker keeps running tasks; the
// packs (and a log too big for one) are retried in the background, and
// once the store is back every log is archived whole, each exactly once.
func TestArchiveRetriedWithoutHoldingResults(t *testing.T) {
	t.Parallel()
	b := setup(t)
	fs := &flakyStore{Store: b.store, broken: true}
	b.cfg.Store = fs
	b.cfg.Capacity = 4
	b.cfg.PackAge = 20 * time.Millisecond
	b.cfg.OwnObjectBytes = 4096
	const n = 20
	for i := range int32(n) {
		b.fake.assign(assignment(i, "sh", "-c", fmt.Sprintf("echo out %d", i)))
	}
	b.fake.assign(assignment(n, "sh", "-c", "i=0; while [ $i -lt 1000 ]; do echo big line $i; i=$((i+1)); done"))
	b.run(t)
	for range n + 1 {
		b.fake.result(t) // results do not wait for the store
	}
	deadline := time.Now().Add(waitLimit)
	for {
		fs.mu.Lock()
		tries := fs.tries
		fs.mu.Unlock()
		if tries >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tries while the store was away, want retries", tries)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range int32(n + 1) {
		if b.fake.entry(i) != nil {
			t.Fatalf("task %d has an entry while the store is away", i)
		}
	}
	fs.heal()
	for i := range int32(n) {
		if out, _ := b.output(t, i); out != fmt.Sprintf("out %d\n", i) {
			t.Fatalf("task %d: %q", i, out)
		}
	}
	var want strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&want, "big line %d\n", i)
	}
	if out, _ := b.output(t, n); out != want.String() {
		t.Fatalf("big log: %d bytes, want %d", len(out), want.Len())
	}
	if e := b.fake.entry(n); e.Object != "logs/j1/t20/1/log" {
		t.Fatalf("big log in %s, want an object of its own", e.Object)
	}
}
