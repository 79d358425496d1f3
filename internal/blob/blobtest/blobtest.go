// Package blobtest is the conformance suite for blob.Store drivers: the same
// checks run against every driver, so that code above the seam can rely on
// one behaviour.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/haul-dev/haul/internal/blob"
)

// Options tunes the suite to a driver.
type Options struct {
	// ManyKeys is how many keys the listing check writes and lists back
	// (S3 drivers pass more than 1000, one page of ListObjectsV2). Zero
	// means 50.
	ManyKeys int
	// LargeSize is the length of the object that the large check streams
	// from a reader of unknown length and reads back by hash. Zero skips
	// the check.
	LargeSize int64
}

// Run runs the suite as subtests of t. open returns an empty store for one
// subtest; the subtests may run in parallel.
func Run(t *testing.T, open func(t *testing.T) blob.Store, o Options) {
	if o.ManyKeys == 0 {
		o.ManyKeys = 50
	}
	t.Run("PutGetOverwrite", func(t *testing.T) {
		t.Parallel()
		s, ctx := open(t), t.Context()
		put(t, s, "a/b/c", "one")
		wantObject(t, s, "a/b/c", "one")
		put(t, s, "a/b/c", "two, longer")
		wantObject(t, s, "a/b/c", "two, longer")
		put(t, s, "empty", "")
		wantObject(t, s, "empty", "")
		for _, bad := range []string{"", "/abs", "a//b", "a/../b", "a/", `a\b`} {
			if err := s.Put(ctx, bad, strings.NewReader("x")); err == nil {
				t.Errorf("Put(%q) succeeded; want an invalid key error", bad)
			}
		}
	})
	t.Run("Missing", func(t *testing.T) {
		t.Parallel()
		s, ctx := open(t), t.Context()
		if _, err := s.Get(ctx, "no/such"); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get of a missing key: %v; want ErrNotFound", err)
		}
		if _, err := s.GetRange(ctx, "no/such", 0, 10); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("GetRange of a missing key: %v; want ErrNotFound", err)
		}
		if _, err := s.GetRange(ctx, "no/such", 0, 0); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("GetRange(0, 0) of a missing key: %v; want ErrNotFound", err)
		}
		if _, err := s.GetRange(ctx, "no/such", 5, -1); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("GetRange(5, -1) of a missing key: %v; want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "no/such"); err != nil {
			t.Errorf("Delete of a missing key: %v", err)
		}
		if keys, err := s.List(ctx, ""); err != nil || len(keys) != 0 {
			t.Errorf("List of an empty store = %q, %v; want nothing", keys, err)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		t.Parallel()
		s, ctx := open(t), t.Context()
		put(t, s, "d/x", "1")
		put(t, s, "d/y", "2")
		if err := s.Delete(ctx, "d/x"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "d/x"); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Get after Delete: %v; want ErrNotFound", err)
		}
		wantList(t, s, "", "d/y")
		if err := s.Delete(ctx, "d/x"); err != nil {
			t.Errorf("second Delete: %v", err)
		}
	})
	t.Run("ListPrefixes", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		for _, k := range []string{"b", "a/b/d", "ab", "a/bc", "a/b/c", "a/c"} {
			put(t, s, k, k)
		}
		wantList(t, s, "", "a/b/c", "a/b/d", "a/bc", "a/c", "ab", "b")
		wantList(t, s, "a/", "a/b/c", "a/b/d", "a/bc", "a/c")
		wantList(t, s, "a/b", "a/b/c", "a/b/d", "a/bc")
		wantList(t, s, "a/b/", "a/b/c", "a/b/d")
		wantList(t, s, "a", "a/b/c", "a/b/d", "a/bc", "a/c", "ab")
		wantList(t, s, "zz")
		wantList(t, s, "a/b/c/")
		if _, err := s.List(t.Context(), "/abs"); err == nil {
			t.Error("List(\"/abs\") succeeded; want an error")
		}
	})
	t.Run("ListMany", func(t *testing.T) {
		t.Parallel()
		s, ctx := open(t), t.Context()
		want := make([]string, o.ManyKeys)
		for i := range want {
			want[i] = fmt.Sprintf("many/%05d", i)
		}
		parallel(t, 8, len(want), func(i int) error {
			return s.Put(ctx, want[i], strings.NewReader(want[i]))
		})
		put(t, s, "other", "x")
		wantList(t, s, "many/", want...)
		all, err := s.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(want)+1 {
			t.Errorf("List(\"\") returned %d keys; want %d", len(all), len(want)+1)
		}
	})
	t.Run("GetRange", func(t *testing.T) {
		t.Parallel()
		s, ctx := open(t), t.Context()
		data := make([]byte, 100)
		for i := range data {
			data[i] = byte(i)
		}
		put(t, s, "r", string(data))
		put(t, s, "r0", "")
		for _, c := range []struct {
			key            string
			offset, length int64
			want           []byte
		}{
			{"r", 0, 10, data[:10]},
			{"r", 10, -1, data[10:]},
			{"r", 0, -1, data},
			{"r", 42, 1, data[42:43]},
			{"r", 90, 20, data[90:]}, // runs past the end: short
			{"r", 99, 1000, data[99:]},
			{"r", 100, 5, nil}, // at the end: empty
			{"r", 150, -1, nil},
			{"r", 150, 10, nil},
			{"r", 5, 0, nil},
			{"r0", 0, -1, nil},
			{"r0", 0, 10, nil},
			{"r0", 3, 10, nil},
		} {
			rc, err := s.GetRange(ctx, c.key, c.offset, c.length)
			if err != nil {
				t.Errorf("GetRange(%s, %d, %d): %v", c.key, c.offset, c.length, err)
				continue
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Errorf("GetRange(%s, %d, %d): read: %v", c.key, c.offset, c.length, err)
			} else if !bytes.Equal(got, c.want) {
				t.Errorf("GetRange(%s, %d, %d) = %v; want %v", c.key, c.offset, c.length, got, c.want)
			}
		}
		if _, err := s.GetRange(ctx, "r", -1, 5); err == nil || !strings.Contains(err.Error(), "negative") {
			t.Errorf("GetRange with offset -1: %v; want an error naming the negative offset", err)
		}
		if _, err := s.GetRange(ctx, "../r", 0, 5); err == nil {
			t.Error("GetRange with an invalid key succeeded")
		}
	})
	if o.LargeSize > 0 {
		t.Run("LargeStreamed", func(t *testing.T) {
			t.Parallel()
			s, ctx := open(t), t.Context()
			h := sha256.New()
			src := io.TeeReader(io.LimitReader(NewRandomReader(1), o.LargeSize), h)
			if err := s.Put(ctx, "big/object", OnlyReader{src}); err != nil {
				t.Fatal(err)
			}
			want := h.Sum(nil)
			rc, err := s.Get(ctx, "big/object")
			if err != nil {
				t.Fatal(err)
			}
			h2 := sha256.New()
			n, err := io.Copy(h2, rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if n != o.LargeSize || !bytes.Equal(h2.Sum(nil), want) {
				t.Fatalf("read back %d bytes with sha256 %x; want %d bytes with %x", n, h2.Sum(nil), o.LargeSize, want)
			}
			// A range across the middle matches the generator's bytes.
			off := o.LargeSize/2 - 1000
			rc, err = s.GetRange(ctx, "big/object", off, 5000)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			exp := make([]byte, 5000)
			gen := NewRandomReader(1)
			if _, err := io.CopyN(io.Discard, gen, off); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(gen, exp); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("GetRange(%d, 5000) of the large object differs from what was put", off)
			}
		})
	}
}

// OnlyReader hides every method of a reader but Read, so that a driver
// cannot learn its length or seek in it.
type OnlyReader struct{ R io.Reader }

func (o OnlyReader) Read(p []byte) (int, error) { return o.R.Read(p) }

// NewRandomReader returns an endless reader of pseudo-random bytes, the same
// for the same seed.
func NewRandomReader(seed uint64) io.Reader {
	return &randReader{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

type randReader struct{ r *rand.Rand }

func (g *randReader) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		v := g.r.Uint64()
		for j := 0; j < 8 && i+j < len(p); j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return len(p), nil
}

func put(t *testing.T, s blob.Store, key, data string) {
	t.Helper()
	if err := s.Put(t.Context(), key, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

func wantObject(t *testing.T, s blob.Store, key, want string) {
	t.Helper()
	rc, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("Get(%s) = %q; want %q", key, got, want)
	}
}

func wantList(t *testing.T, s blob.Store, prefix string, want ...string) {
	t.Helper()
	got, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		if len(got) > 20 || len(want) > 20 {
			t.Errorf("List(%q) returned %d keys; want %d (first %q, %q)", prefix, len(got), len(want), first(got), first(want))
		} else {
			t.Errorf("List(%q) = %q; want %q", prefix, got, want)
		}
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// parallel runs f(0..n-1) on workers goroutines and fails t on the first
// error.
func parallel(t *testing.T, workers, n int, f func(i int) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next = make(chan int)
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					cancel()
				}
			}
		})
	}
loop:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break loop
		}
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
}
