package storesql

import (
	"context"
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

// AcquireFunc upserts and reads back each lease of ls, checked already,
// in one transaction, returning the leases as stored in ls's order: a
// driver's part of AcquireLease and AcquireLeases.
type AcquireFunc func(ctx context.Context, ls []store.Lease, now time.Time) ([]store.Lease, error)

// AcquireLease is a driver's AcquireLease: it checks l and runs acquire on
// it alone, so that one lease and many take the same path.
func AcquireLease(ctx context.Context, l store.Lease, now time.Time, acquire AcquireFunc) (store.Lease, bool, error) {
	if err := CheckLease(l); err != nil {
		return store.Lease{}, false, fmt.Errorf("acquire lease: %w", err)
	}
	got, err := acquire(ctx, []store.Lease{l}, now)
	if err != nil {
		return store.Lease{}, false, fmt.Errorf("acquire lease %s: %w", l.Name, err)
	}
	return got[0], got[0].Holder == l.Holder, nil
}

// AcquireLeases is a driver's AcquireLeases: nothing for no leases, the
// whole call refused if one lease is (before acquire runs), and otherwise
// the leases acquire stored and whether each one's holder holds it.
func AcquireLeases(ctx context.Context, ls []store.Lease, now time.Time, acquire AcquireFunc) ([]store.Lease, []bool, error) {
	if len(ls) == 0 {
		return nil, nil, nil
	}
	if err := CheckLeases(ls); err != nil {
		return nil, nil, fmt.Errorf("acquire leases: %w", err)
	}
	got, err := acquire(ctx, ls, now)
	if err != nil {
		return nil, nil, fmt.Errorf("acquire %d leases: %w", len(ls), err)
	}
	held := make([]bool, len(ls))
	for i := range ls {
		held[i] = got[i].Holder == ls[i].Holder
	}
	return got, held, nil
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
