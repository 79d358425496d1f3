package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestOpenReadOnly: an existing store opens read-only (reads work, every
// write fails); a missing file is an error and is not created.
func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "haul.db")
	if _, err := OpenReadOnly(ctx, path, nil); err == nil {
		t.Fatal("OpenReadOnly of a missing file succeeded")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("OpenReadOnly created %s: %v", path, err)
	}
	rw, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	ro, err := OpenReadOnly(ctx, path, nil)
	if err != nil {
		t.Fatalf("OpenReadOnly: %v", err)
	}
	defer ro.Close()
	if _, err := ro.ListLeases(ctx, ""); err != nil {
		t.Fatalf("a read: %v", err)
	}
	for _, db := range []string{"write", "read"} {
		conn := ro.write
		if db == "read" {
			conn = ro.read
		}
		if _, err := conn.ExecContext(ctx, `CREATE TABLE scratch (a INTEGER)`); err == nil {
			t.Fatalf("a write through the %s pool succeeded", db)
		}
	}
}
