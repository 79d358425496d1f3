package store

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
)

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestNewJobIDShape(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	for _, r := range []struct {
		name string
		id   string
	}{
		{"random", NewJobID(now, bytes.NewReader([]byte{1, 2, 3}))},
		{"nil rand", NewJobID(now, nil)},
		{"failing rand", NewJobID(now, failingReader{})},
		{"before 1970", NewJobID(time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), nil)},
		{"zero time", NewJobID(time.Time{}, nil)},
	} {
		if len(r.id) != JobIDLen {
			t.Errorf("%s: %q has length %d, want %d", r.name, r.id, len(r.id), JobIDLen)
		}
		for _, c := range r.id {
			if !strings.ContainsRune(idAlphabet, c) {
				t.Errorf("%s: %q holds %q, outside the URL-safe lower-case alphabet", r.name, r.id, c)
			}
		}
	}
	if got := NewJobID(time.Unix(0, 0), bytes.NewReader([]byte{0, 0, 0})); got != "0000000000000" {
		t.Errorf("epoch ID = %q", got)
	}
	if a, b := NewJobID(now, bytes.NewReader([]byte{0, 0, 1})), NewJobID(now, bytes.NewReader([]byte{0, 0, 2})); a == b || a[:9] != b[:9] {
		t.Errorf("same millisecond, different random bits: %q and %q", a, b)
	}
}

func TestNewJobIDSortsByTime(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	src := rand.NewChaCha8([32]byte{7})
	lo := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	hi := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	type pair struct {
		ms int64
		id string
	}
	var ps []pair
	for range 5000 {
		ms := lo + rng.Int64N(hi-lo)
		if len(ps) > 0 && rng.IntN(4) == 0 { // neighbours: one millisecond apart
			ms = ps[len(ps)-1].ms + 1
		}
		ps = append(ps, pair{ms, NewJobID(time.UnixMilli(ms), src)})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].id < ps[j].id })
	for i := 1; i < len(ps); i++ {
		if ps[i-1].ms > ps[i].ms {
			t.Fatalf("IDs out of time order: %q (%d ms) sorts before %q (%d ms)", ps[i-1].id, ps[i-1].ms, ps[i].id, ps[i].ms)
		}
	}
}
