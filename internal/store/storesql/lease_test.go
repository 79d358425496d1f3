package storesql

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/store"
)

// TestLeaseOrder: leases by name in byte order, a name given more than
// once keeping ls's order for its copies.
func TestLeaseOrder(t *testing.T) {
	t.Parallel()
	var ls []store.Lease
	for _, n := range []string{"shard/10", "member/b", "shard/02", "member/b", "shard/01", "Member/a", "shard/02", "member/b"} {
		ls = append(ls, store.Lease{Name: n})
	}
	want := []int{5, 1, 3, 7, 4, 2, 6, 0}
	if got := LeaseOrder(ls); !slices.Equal(got, want) {
		t.Errorf("LeaseOrder = %v, want %v", got, want)
	}
	if got := LeaseOrder(nil); len(got) != 0 {
		t.Errorf("LeaseOrder(nil) = %v, want none", got)
	}
}

// TestCheckLeases: the first bad lease is named by its place and its name;
// good leases pass.
func TestCheckLeases(t *testing.T) {
	t.Parallel()
	good := store.Lease{Name: "shard/01", Holder: "a"}
	if err := CheckLeases([]store.Lease{good, good}); err != nil {
		t.Errorf("CheckLeases of good leases: %v", err)
	}
	err := CheckLeases([]store.Lease{good, {Name: "shard/02", Holder: "a", Address: "x\x00"}, {Name: "shard/03"}})
	if !errors.Is(err, store.ErrRejected) || !strings.Contains(err.Error(), "lease 1 of 3") || !strings.Contains(err.Error(), `"shard/02"`) {
		t.Errorf("CheckLeases with a NUL in lease 1's address: %v, want an error naming lease 1 (shard/02) and wrapping ErrRejected", err)
	}
}
