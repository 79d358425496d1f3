package storesql

import (
	"errors"
	"fmt"

	"github.com/haul-dev/haul/internal/store"
)

// rejectedError marks err as the data's fault: it reads as err and wraps
// both err and store.ErrRejected, so that errors.Is finds either.
type rejectedError struct{ err error }

func (e *rejectedError) Error() string   { return e.err.Error() }
func (e *rejectedError) Unwrap() []error { return []error{e.err, store.ErrRejected} }

// Reject returns err marked as refused for what the write holds (wrapping
// store.ErrRejected), with its message unchanged; nil stays nil, and an
// error already marked is returned as is.
func Reject(err error) error {
	if err == nil || errors.Is(err, store.ErrRejected) {
		return err
	}
	return &rejectedError{err: err}
}

// Fenced is the error of a fenced write whose lease is held by holder (""
// when nobody holds it) at epoch instead of by f.Holder (at f.Epoch, when
// set); it wraps store.ErrFenced.
func Fenced(f store.Fence, holder string, epoch int64) error {
	switch {
	case holder == "":
		return fmt.Errorf("lease %q is not held (%s expected to hold it): %w", f.Lease, f.Holder, store.ErrFenced)
	case holder != f.Holder:
		return fmt.Errorf("lease %q is held by %s, not %s: %w", f.Lease, holder, f.Holder, store.ErrFenced)
	}
	return fmt.Errorf("lease %q is held by %s at epoch %d, not at epoch %d: %w", f.Lease, holder, epoch, f.Epoch, store.ErrFenced)
}

// CheckFence returns nil if the lease row read in the write's transaction
// (found: whether the lease has a row; holder and epoch: its holder, ""
// when released, and its epoch) shows f.Holder holding f.Lease, at
// f.Epoch when that is set, and the error of Fenced otherwise. An unset
// fence passes.
func CheckFence(f store.Fence, found bool, holder string, epoch int64) error {
	if !f.Set() {
		return nil
	}
	if !found {
		holder = ""
	}
	if holder != f.Holder || holder == "" || (f.Epoch != 0 && epoch != f.Epoch) {
		return Fenced(f, holder, epoch)
	}
	return nil
}
