package blob

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func setup(t *testing.T) *FS {
	t.Helper()
	s, err := NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, s Store, key string) string {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPutGetListDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := setup(t)
	for _, k := range []string{"logs/j1/seg-00000002", "logs/j1/seg-00000001", "logs/j10/final", "logs/j2/final", "other"} {
		if err := s.Put(ctx, k, strings.NewReader("v:"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if got := get(t, s, "logs/j1/seg-00000001"); got != "v:logs/j1/seg-00000001" {
		t.Fatalf("got %q", got)
	}
	// Overwrite.
	if err := s.Put(ctx, "other", strings.NewReader("new")); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "other"); got != "new" {
		t.Fatalf("overwrite: got %q", got)
	}

	cases := map[string][]string{
		"":             {"logs/j1/seg-00000001", "logs/j1/seg-00000002", "logs/j10/final", "logs/j2/final", "other"},
		"logs/j1/":     {"logs/j1/seg-00000001", "logs/j1/seg-00000002"},
		"logs/j1":      {"logs/j1/seg-00000001", "logs/j1/seg-00000002", "logs/j10/final"},
		"logs/j1/seg-": {"logs/j1/seg-00000001", "logs/j1/seg-00000002"},
		"logs/j3/":     nil,
		"nope/deeper/": nil,
		"oth":          {"other"},
	}
	for prefix, want := range cases {
		got, err := s.List(ctx, prefix)
		if err != nil {
			t.Fatalf("list %q: %v", prefix, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("list %q = %q, want %q", prefix, got, want)
		}
	}

	if err := s.Delete(ctx, "logs/j1/seg-00000001"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "logs/j1/seg-00000001"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.Get(ctx, "logs/j1/seg-00000001"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v, want ErrNotFound", err)
	}
	// A folder is not an object.
	if _, err := s.Get(ctx, "logs/j1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get folder: %v, want ErrNotFound", err)
	}
	// Below an object is nothing.
	if _, err := s.Get(ctx, "other/x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get below object: %v, want ErrNotFound", err)
	}
}

func TestBadKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := setup(t)
	for _, k := range []string{"", "/abs", "a/../b", "..", "a/./b", "a//b", "a/", "a\\b", "x/.tmp-1"} {
		err := s.Put(ctx, k, strings.NewReader("x"))
		if err == nil {
			t.Errorf("put %q: no error", k)
			continue
		}
		if _, gerr := s.Get(ctx, k); gerr == nil || errors.Is(gerr, ErrNotFound) {
			t.Errorf("get %q: %v, want a key error", k, gerr)
		}
		if derr := s.Delete(ctx, k); derr == nil {
			t.Errorf("delete %q: no error", k)
		}
	}
	for _, p := range []string{"/", "/abs", "../x", "a/../"} {
		if _, err := s.List(ctx, p); err == nil {
			t.Errorf("list %q: no error", p)
		}
	}
	// Nothing was written outside the root.
	entries, err := os.ReadDir(filepath.Dir(s.Root()))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("entries next to the root: %v", entries)
	}
}

// failingReader returns some bytes and then an error, as a broken upload would.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n > 0 {
		n := copy(p, bytes.Repeat([]byte("x"), min(len(p), f.n)))
		f.n -= n
		return n, nil
	}
	return 0, errors.New("boom")
}

func TestPutIsAtomic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := setup(t)
	if err := s.Put(ctx, "k", strings.NewReader("old")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "k", &failingReader{n: 100}); err == nil {
		t.Fatal("put from a failing reader: no error")
	}
	if got := get(t, s, "k"); got != "old" {
		t.Fatalf("after failed put: %q, want old", got)
	}
	if err := s.Put(ctx, "fresh", &failingReader{n: 10}); err == nil {
		t.Fatal("no error")
	}
	if _, err := s.Get(ctx, "fresh"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("partial object visible: %v", err)
	}
	keys, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"k"}) {
		t.Fatalf("keys %q: temp files left or listed", keys)
	}
	entries, _ := os.ReadDir(s.Root())
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, u := range []string{"file://" + dir + "/a", dir + "/b", "file://localhost" + dir + "/c"} {
		s, err := Open(u)
		if err != nil {
			t.Fatalf("open %q: %v", u, err)
		}
		if err := s.Put(context.Background(), "x", strings.NewReader("1")); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"", "relative/path", "file://host/x", "file:relative", "s3x://bucket/p", "::"} {
		if _, err := Open(u); err == nil {
			t.Errorf("open %q: no error", u)
		}
	}
}
