package logs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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

// A spool folder that cannot be written (here: missing) keeps the output in
// memory; once it can be written again the output moves there, and the log
// is whole.
func TestSpoolOutageKeepsOutputInMemory(t *testing.T) {
	t.Parallel()
	b := setup(t)
	spool := filepath.Join(t.TempDir(), "later")
	w := newLegacy(t, b.store, "mem", spool, WriterOptions{Clock: b.clock})
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
	w := newLegacy(t, b.store, "drop", spool, WriterOptions{MemoryBytes: 1000, Clock: b.clock})
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
	_, err := w.Close(context.Background())
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
