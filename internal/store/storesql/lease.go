package storesql

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// CheckLease refuses a lease that AcquireLease cannot take: an empty name
// or holder (a released lease is stored with an empty holder, so no one
// may hold a lease as ""), or text neither driver stores alike. The error
// names the lease and wraps store.ErrRejected.
func CheckLease(l store.Lease) error {
	if l.Name == "" {
		return Reject(errors.New("lease name is empty"))
	}
	if err := checkText("lease name", l.Name); err != nil {
		return Reject(err)
	}
	if l.Holder == "" {
		return Reject(fmt.Errorf("lease %q: holder is empty", l.Name))
	}
	for _, c := range []struct{ field, s string }{{"holder", l.Holder}, {"address", l.Address}} {
		if err := checkText(c.field, c.s); err != nil {
			return Reject(fmt.Errorf("lease %q: %w", l.Name, err))
		}
	}
	return nil
}

// CheckLeases runs CheckLease on each lease of ls, for AcquireLeases; the
// error of the first one refused also gives its place in ls (from 0),
// since a lease with an empty name has nothing else to name it by.
func CheckLeases(ls []store.Lease) error {
	for i, l := range ls {
		if err := CheckLease(l); err != nil {
			return fmt.Errorf("lease %d of %d: %w", i, len(ls), err)
		}
	}
	return nil
}

// LeasesHeld reports, for AcquireLeases, whether ls[i].Holder holds
// got[i], the lease as stored after acquiring ls[i].
func LeasesHeld(ls, got []store.Lease) []bool {
	held := make([]bool, len(ls))
	for i := range ls {
		held[i] = got[i].Holder == ls[i].Holder
	}
	return held
}

// LeaseOrder returns the indexes of ls sorted by lease name, those of a
// name given twice in ls's order. A driver whose row locks are held until
// commit (PostgreSQL) acquires a batch's leases in this order, so that two
// batches sharing leases lock them in the same order and never deadlock;
// the outcome is that of ls's order, since each lease touches only its own
// row.
func LeaseOrder(ls []store.Lease) []int {
	order := make([]int, len(ls))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(ls[a].Name, ls[b].Name) })
	return order
}

// CheckSecret refuses what EnsureSecret must not store: an empty name or a
// name neither driver stores alike, an empty value, or one longer than
// store.MaxSecretBytes. The error names the secret and never shows its
// value; it wraps store.ErrRejected.
func CheckSecret(name string, value []byte) error {
	if name == "" {
		return Reject(errors.New("secret name is empty"))
	}
	if err := checkText("secret name", name); err != nil {
		return Reject(err)
	}
	if len(value) == 0 {
		return Reject(fmt.Errorf("secret %q: value is empty", name))
	}
	if len(value) > store.MaxSecretBytes {
		return Reject(fmt.Errorf("secret %q: value is %d bytes, more than the %d allowed", name, len(value), store.MaxSecretBytes))
	}
	return nil
}

// CheckLeasePrefix refuses a ListLeases prefix that neither driver compares
// alike (invalid UTF-8, a NUL byte); the error wraps store.ErrRejected.
func CheckLeasePrefix(prefix string) error {
	return Reject(checkText("lease prefix", prefix))
}

// ScanLease reads a lease row in the column order of both drivers' lease
// queries: name, holder, address, expires_at, epoch.
func ScanLease(r Row) (store.Lease, error) {
	var l store.Lease
	var exp int64
	if err := r.Scan(&l.Name, &l.Holder, &l.Address, &exp, &l.Epoch); err != nil {
		return store.Lease{}, err
	}
	l.ExpiresAt = time.Unix(0, exp)
	return l, nil
}
