package blob

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A Put on a real full filesystem (a 1 MiB tmpfs, so the test runs as root)
// fails with ENOSPC, leaves the object it would have replaced as it was and
// no temporary file; once space returns the same Put succeeds.
func TestPutOnFullDisk(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatalf("TestPutOnFullDisk mounts a 1 MiB tmpfs to fill a real filesystem, which needs root (uid 0); uid is %d", os.Geteuid())
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs at %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	s, err := NewFS(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "logs/a", strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{'f'}, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	for _, size := range []int{512, 1} {
		for {
			if _, err := f.Write(chunk[:size]); err != nil {
				break
			}
		}
	}
	f.Close()

	big := bytes.Repeat([]byte("new "), 64<<10)
	err = s.Put(ctx, "logs/a", bytes.NewReader(big))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("put on a full disk: %v; want ENOSPC", err)
	}
	if !strings.Contains(err.Error(), "logs/a") || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("error %q does not name the key and the cause", err)
	}
	if got := get(t, s, "logs/a"); got != "old" {
		t.Fatalf("object after a failed put: %q, want the old one", got)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "store", "logs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "a" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("files after a failed put: %q, want only a", names)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "logs/a", bytes.NewReader(big)); err != nil {
		t.Fatalf("put once space returned: %v", err)
	}
	if got := get(t, s, "logs/a"); got != string(big) {
		t.Fatalf("object after space returned: %d bytes, want %d", len(got), len(big))
	}
}
