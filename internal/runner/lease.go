package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// LeaseName is the lease a runner holds in its store. One runner per store
// dispatches jobs (shards come later); a second one waits or goes elsewhere.
const LeaseName = "runner"

// LeaseHeldError is returned by Start when another runner holds the lease.
type LeaseHeldError struct {
	Lease store.Lease
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("another haul runner (%s, at %s) runs the jobs of this store; its lease expires at %s",
		e.Lease.Holder, e.Lease.Address, e.Lease.ExpiresAt.Format(time.TimeOnly))
}

func newHolderID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// acquireLease takes or renews the runner lease.
func (r *Runner) acquireLease(ctx context.Context) error {
	now := r.now()
	l := store.Lease{Name: LeaseName, Holder: r.cfg.Holder, Address: r.cfg.RunnerURL, ExpiresAt: now.Add(r.cfg.LeaseTTL)}
	got, ok, err := r.cfg.Store.AcquireLease(ctx, l, now)
	if err != nil {
		return err
	}
	if !ok {
		return &LeaseHeldError{Lease: got}
	}
	return nil
}

// keepLease renews the lease every third of its TTL. If it cannot be renewed
// before it expires, another runner may take over: this one stops at once.
func (r *Runner) keepLease(ctx context.Context, stop context.CancelFunc) {
	t := time.NewTicker(r.cfg.LeaseTTL / 3)
	defer t.Stop()
	renewed := r.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := r.acquireLease(ctx)
		if err == nil {
			renewed = r.now()
			continue
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Error("renew runner lease", "err", err)
		if _, held := err.(*LeaseHeldError); held || r.now().Sub(renewed) >= r.cfg.LeaseTTL*2/3 {
			r.log.Error("runner lease lost: stopping this runner so that two never dispatch the same jobs")
			r.lostLease.Store(true)
			stop()
			return
		}
	}
}

// LostLease reports whether the runner stopped because it lost its lease.
func (r *Runner) LostLease() bool { return r.lostLease.Load() }
