package storesql

import (
	"errors"
	"fmt"
	"testing"

	"github.com/haul-dev/haul/internal/store"
)

func TestReject(t *testing.T) {
	t.Parallel()
	if Reject(nil) != nil {
		t.Error("Reject(nil) is not nil")
	}
	base := fmt.Errorf("task 3: %w", store.ErrNotFound)
	err := Reject(base)
	if err.Error() != base.Error() {
		t.Errorf("Reject changed the message: %q, want %q", err, base)
	}
	if !errors.Is(err, store.ErrRejected) || !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Reject(%v): wraps ErrRejected %v, ErrNotFound %v; want both", base, errors.Is(err, store.ErrRejected), errors.Is(err, store.ErrNotFound))
	}
	if again := Reject(err); again != err {
		t.Errorf("Reject of a rejected error wrapped it again: %#v", again)
	}
	if wrapped := fmt.Errorf("apply batch: %w", err); !errors.Is(wrapped, store.ErrRejected) {
		t.Errorf("a wrapped rejection %v does not wrap ErrRejected", wrapped)
	}
}

func TestCheckFence(t *testing.T) {
	t.Parallel()
	f := store.Fence{Lease: "runner", Holder: "a"}
	for _, tc := range []struct {
		name   string
		f      store.Fence
		found  bool
		holder string
		want   string // "" for no error
	}{
		{"unset fence, no lease", store.Fence{}, false, "", ""},
		{"unset fence, lease of another", store.Fence{}, true, "b", ""},
		{"held", f, true, "a", ""},
		{"held by another", f, true, "b", `lease "runner" is held by b, not a: lease not held by this writer`},
		{"no lease", f, false, "", `lease "runner" is not held (a expected to hold it): lease not held by this writer`},
		{"empty holder", store.Fence{Lease: "runner"}, true, "", `lease "runner" is not held ( expected to hold it): lease not held by this writer`},
	} {
		err := CheckFence(tc.f, tc.found, tc.holder)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want || !errors.Is(err, store.ErrFenced)):
			t.Errorf("%s: %v, want %q wrapping ErrFenced", tc.name, err, tc.want)
		}
	}
}
