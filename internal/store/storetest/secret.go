package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/haul-dev/haul/internal/store"
)

func ensureSecret(t *testing.T, s store.Store, name string, value, want []byte) {
	t.Helper()
	got, err := s.EnsureSecret(t.Context(), name, value)
	if err != nil {
		t.Fatalf("EnsureSecret(%s): %v", name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("EnsureSecret(%s, %x) = %x, want %x", name, value, got, want)
	}
}

// testEnsureSecret: the first value stored under a name stays, byte for
// byte (any bytes, up to the limit); later calls and concurrent first
// calls all get it; bad input is refused without showing the value, and
// stores nothing.
func testEnsureSecret(t *testing.T, s store.Store) {
	ctx := t.Context()
	first := []byte{0, 1, 0xff, 0xfe, 'k', 0}
	ensureSecret(t, s, "cluster-key", first, first)
	ensureSecret(t, s, "cluster-key", []byte("second"), first)
	ensureSecret(t, s, "other", []byte("second"), []byte("second"))

	full := make([]byte, store.MaxSecretBytes)
	rand.NewChaCha8([32]byte{'k'}).Read(full)
	ensureSecret(t, s, "full", full, full)

	const shown = "do-not-show-me"
	long := append([]byte(shown), make([]byte, store.MaxSecretBytes)...)
	for _, tc := range []struct {
		what  string
		name  string
		value []byte
		want  string
	}{
		{"an empty name", "", []byte(shown), "name"},
		{"a NUL in the name", "k\x00", []byte(shown), "name"},
		{"a nil value", "empty", nil, `"empty"`},
		{"an empty value", "empty", []byte{}, `"empty"`},
		{"a value over the limit", "long", long, `"long"`},
	} {
		got, err := s.EnsureSecret(ctx, tc.name, tc.value)
		switch {
		case !errors.Is(err, store.ErrRejected):
			t.Errorf("EnsureSecret of %s = %x, %v; want an error wrapping ErrRejected", tc.what, got, err)
		case !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), shown):
			t.Errorf("EnsureSecret of %s: error %q should name %s and not show the value", tc.what, err, tc.want)
		}
	}
	// Nothing of the refused calls was stored.
	ensureSecret(t, s, "long", []byte("short"), []byte("short"))
	ensureSecret(t, s, "empty", []byte("x"), []byte("x"))

	// Processes starting together each offer their own value; all get one.
	const n = 8
	got := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := s.EnsureSecret(ctx, "race", []byte(fmt.Sprintf("value-%d", i)))
			if err != nil {
				t.Errorf("concurrent EnsureSecret %d: %v", i, err)
			}
			got[i] = v
		})
	}
	wg.Wait()
	if !strings.HasPrefix(string(got[0]), "value-") {
		t.Fatalf("concurrent EnsureSecret got %q, not one of the values offered", got[0])
	}
	for i := range n {
		if !bytes.Equal(got[i], got[0]) {
			t.Errorf("concurrent EnsureSecret: call %d got %q, call 0 got %q", i, got[i], got[0])
		}
	}
	ensureSecret(t, s, "race", []byte("late"), got[0])
}
