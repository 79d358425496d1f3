package storesql

import (
	"errors"
	"fmt"
	"strings"
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
	f3 := store.Fence{Lease: "shard/03", Holder: "a", Epoch: 3}
	for _, tc := range []struct {
		name   string
		f      store.Fence
		found  bool
		holder string
		epoch  int64
		want   string // "" for no error
	}{
		{"unset fence, no lease", store.Fence{}, false, "", 0, ""},
		{"unset fence, lease of another", store.Fence{}, true, "b", 1, ""},
		{"held", f, true, "a", 1, ""},
		{"held, any epoch", f, true, "a", 7, ""},
		{"held by another", f, true, "b", 2, `lease "runner" is held by b, not a: lease not held by this writer`},
		{"no lease", f, false, "", 0, `lease "runner" is not held (a expected to hold it): lease not held by this writer`},
		{"released", f, true, "", 4, `lease "runner" is not held (a expected to hold it): lease not held by this writer`},
		{"empty holder", store.Fence{Lease: "runner"}, true, "", 1, `lease "runner" is not held ( expected to hold it): lease not held by this writer`},
		{"held at the epoch", f3, true, "a", 3, ""},
		{"held at a later epoch", f3, true, "a", 4, `lease "shard/03" is held by a at epoch 4, not at epoch 3: lease not held by this writer`},
		{"held at an earlier epoch", f3, true, "a", 2, `lease "shard/03" is held by a at epoch 2, not at epoch 3: lease not held by this writer`},
		{"held by another at the epoch", f3, true, "b", 3, `lease "shard/03" is held by b, not a: lease not held by this writer`},
		{"epoch of a released lease", f3, true, "", 3, `lease "shard/03" is not held (a expected to hold it): lease not held by this writer`},
	} {
		err := CheckFence(tc.f, tc.found, tc.holder, tc.epoch)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want nil", tc.name, err)
		case tc.want != "" && (err == nil || err.Error() != tc.want || !errors.Is(err, store.ErrFenced)):
			t.Errorf("%s: %v, want %q wrapping ErrFenced", tc.name, err, tc.want)
		}
	}
}

func TestCheckLease(t *testing.T) {
	t.Parallel()
	good := store.Lease{Name: "shard/01", Holder: "runner-a", Address: "http://a:8080"}
	if err := CheckLease(good); err != nil {
		t.Errorf("CheckLease(%+v): %v", good, err)
	}
	for _, tc := range []struct {
		name string
		edit func(l *store.Lease)
		want string
	}{
		{"no name", func(l *store.Lease) { l.Name = "" }, "lease name is empty"},
		{"no holder", func(l *store.Lease) { l.Holder = "" }, `lease "shard/01": holder is empty`},
		{"NUL in the name", func(l *store.Lease) { l.Name = "a\x00" }, "lease name"},
		{"bad UTF-8 holder", func(l *store.Lease) { l.Holder = "\xff" }, "holder"},
		{"NUL in the address", func(l *store.Lease) { l.Address = "x\x00" }, "address"},
	} {
		l := good
		tc.edit(&l)
		err := CheckLease(l)
		if !errors.Is(err, store.ErrRejected) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CheckLease = %v, want an error wrapping ErrRejected naming %q", tc.name, err, tc.want)
		}
	}
	if err := CheckLeasePrefix("member/"); err != nil {
		t.Errorf("CheckLeasePrefix(member/): %v", err)
	}
	if err := CheckLeasePrefix("m\xff"); !errors.Is(err, store.ErrRejected) {
		t.Errorf("CheckLeasePrefix(invalid UTF-8) = %v, want ErrRejected", err)
	}
}

func TestCheckSecret(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-value"
	for _, tc := range []struct {
		name  string
		sname string
		value []byte
		want  string // "" for no error
	}{
		{"ok", "cluster-key", []byte(secret), ""},
		{"binary at the limit", "k", make([]byte, store.MaxSecretBytes), ""},
		{"no name", "", []byte(secret), "secret name is empty"},
		{"NUL in the name", "k\x00", []byte(secret), "secret name"},
		{"nil value", "k", nil, `secret "k": value is empty`},
		{"empty value", "k", []byte{}, `secret "k": value is empty`},
		{"too long", "k", append([]byte(secret), make([]byte, store.MaxSecretBytes)...), `secret "k": value is 1036 bytes, more than the 1024 allowed`},
	} {
		err := CheckSecret(tc.sname, tc.value)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v, want nil", tc.name, err)
		case tc.want != "" && (!errors.Is(err, store.ErrRejected) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error wrapping ErrRejected saying %q", tc.name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), secret):
			t.Errorf("%s: error %q shows the value", tc.name, err)
		}
	}
}
