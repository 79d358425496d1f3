package taskhost

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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
	// The live attempt's output is at the runner while it runs.
	deadline := time.Now().Add(waitLimit)
	for {
		b.fake.mu.Lock()
		got := bytes.Clone(b.fake.live[n])
		b.fake.mu.Unlock()
		var text strings.Builder
		if _, err := logs.DecodeFrames(bytes.NewReader(got), func(_ byte, _ int64, d []byte) error { text.Write(d); return nil }); err != nil {
			t.Fatal(err)
		}
		if text.String() == "first\nsecond\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live output %q, want first and second", text.String())
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
