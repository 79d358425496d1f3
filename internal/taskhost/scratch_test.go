package taskhost

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
)

// An attempt without a cwd gets its own empty folder, mode 0700; an empty
// one it leaves is kept (renamed) for a later attempt, at most capacity of
// them, and one it changed (a file in it, another mode) is removed; a
// folder left by an earlier worker under the attempt's name is replaced
// by an empty one.
func TestScratchDirs(t *testing.T) {
	t.Parallel()
	spool := t.TempDir()
	h := &host{cfg: Config{SpoolDir: spool, Capacity: 2}}
	attempts := filepath.Join(spool, "attempts")
	mk := func(index, attempt int32) string {
		t.Helper()
		d, err := h.scratchDir(&taskhostv1.Assignment{TaskIndex: index, Attempt: attempt})
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(attempts, filepath.Base(d)); d != want || filepath.Base(d) != itoa(index)+"."+itoa(attempt) {
			t.Fatalf("scratch folder %s, want %s/%d.%d", d, attempts, index, attempt)
		}
		st, err := os.Lstat(d)
		if err != nil || st.Mode() != os.ModeDir|0o700 {
			t.Fatalf("scratch folder %s: %v, %v; want an empty folder of mode 0700", d, st, err)
		}
		if names := list(t, d); len(names) != 0 {
			t.Fatalf("scratch folder %s holds %v", d, names)
		}
		return d
	}
	pooled := func() int { h.scratch.mu.Lock(); defer h.scratch.mu.Unlock(); return len(h.scratch.free) }

	d1 := mk(1, 1)
	h.dropScratch(d1)
	if _, err := os.Lstat(d1); !os.IsNotExist(err) || pooled() != 1 {
		t.Fatalf("after the first attempt: %s (%v), %d kept; want it gone and kept", d1, err, pooled())
	}
	d2 := mk(2, 1)
	if pooled() != 0 {
		t.Fatalf("the kept folder was not reused")
	}
	if err := os.WriteFile(filepath.Join(d2, "out"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.dropScratch(d2)
	d3 := mk(3, 1)
	if err := os.Chmod(d3, 0o755); err != nil {
		t.Fatal(err)
	}
	h.dropScratch(d3)
	if got := list(t, attempts); len(got) != 0 || pooled() != 0 {
		t.Fatalf("folders a task changed were kept: %v, %d kept", got, pooled())
	}

	// An earlier worker's folder of the same attempt, not empty.
	old := filepath.Join(attempts, "4.1")
	if err := os.MkdirAll(old, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "stale"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.dropScratch(mk(5, 1)) // one kept
	mk(4, 1)                // the kept one cannot replace the stale folder: made anew

	a, b, c := mk(6, 1), mk(7, 1), mk(8, 1)
	for _, d := range []string{a, b, c} {
		h.dropScratch(d)
	}
	if pooled() != 2 {
		t.Fatalf("%d folders kept, want at most the capacity (2)", pooled())
	}
	h.dropAllScratch()
	if got := list(t, attempts); !slices.Equal(got, []string{"4.1"}) {
		t.Fatalf("after the worker stopped: %v, want only 4.1", got)
	}
}

func itoa(n int32) string { return fmt.Sprint(n) }

func list(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
