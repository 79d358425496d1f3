package storesql

import (
	"errors"
	"fmt"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// CheckLease refuses a lease that AcquireLease cannot take: an empty name
// or holder (a released lease is stored with an empty holder, so no one
// may hold a lease as ""), or text neither driver stores alike. The error
// wraps store.ErrRejected.
func CheckLease(l store.Lease) error {
	if l.Name == "" {
		return Reject(errors.New("lease name is empty"))
	}
	if l.Holder == "" {
		return Reject(fmt.Errorf("lease %q: holder is empty", l.Name))
	}
	for _, c := range []struct{ field, s string }{{"lease name", l.Name}, {"holder", l.Holder}, {"address", l.Address}} {
		if err := checkText(c.field, c.s); err != nil {
			return Reject(err)
		}
	}
	return nil
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
