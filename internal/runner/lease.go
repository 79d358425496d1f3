package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// LeaseName is the lease a runner holds in its store. One runner per store
// dispatches jobs (shards come later); a second one waits or goes elsewhere.
// Every write of the runner's state is fenced by it (store.Fence).
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

// keepLease renews the lease every fifth of its TTL. While the store cannot
// be reached the runner keeps its state and goes on once a renewal succeeds;
// when the lease can no longer be trusted (another runner holds it, a
// fenced write was refused, or it went unrenewed for five sixths of its TTL:
// a successor may take it at the TTL, and by then this runner's workers
// are being stopped)
// the runner drops its in-memory state and stops its workers, so that two
// runners never dispatch the same jobs, then takes the lease again as soon
// as it can and reloads the jobs from the store. The process never exits
// for this.
func (r *Runner) keepLease(ctx context.Context) {
	t := time.NewTicker(r.cfg.LeaseTTL / 5)
	defer t.Stop()
	renewed := r.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.fenced:
		}
		actx, cancel := context.WithTimeout(ctx, r.cfg.LeaseTTL/5)
		err := r.acquireLease(actx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			renewed = r.now()
			if !r.leased.Load() {
				r.log.Warn("runner lease taken again: reloading the active jobs from the store")
				r.leased.Store(true)
				r.setLeaseErr(nil)
				r.Wake()
			}
			continue
		}
		if !r.leased.Load() {
			r.setLeaseErr(fmt.Errorf("runner lease not held: %w", err))
			continue
		}
		_, held := err.(*LeaseHeldError)
		if held || r.now().Sub(renewed) >= r.cfg.LeaseTTL*5/6 {
			r.log.Error("runner lease lost: dropping in-memory state and stopping workers until it is taken again", "err", err)
			r.setLeaseErr(fmt.Errorf("runner lease lost: %w", err))
			r.dropState(ctx)
			continue
		}
		r.log.Warn("renew runner lease", "err", err, "unrenewed_for", r.now().Sub(renewed).Round(time.Millisecond))
	}
}

// lostLease is called by the committer when the store refused a fenced
// write: another runner holds the lease. The lease keeper checks at once.
func (r *Runner) lostLease() {
	select {
	case r.fenced <- struct{}{}:
	default:
	}
}

// dropState forgets every job and worker and stops the workers: the lease
// is lost and another runner may own these jobs now. Attempts that ran are
// found running in the store by whoever loads the jobs next, and retried.
func (r *Runner) dropState(ctx context.Context) {
	r.leased.Store(false)
	r.epoch.Add(1)
	r.mu.Lock()
	ids := slices.Collect(maps.Keys(r.workers))
	for _, jr := range r.jobs {
		close(jr.ready)
		jr.ready = make(chan struct{})
	}
	for _, w := range r.workers {
		w.notify()
	}
	r.jobs = map[string]*jobRun{}
	r.workers = map[string]*worker{}
	r.mu.Unlock()
	r.com.abandon()
	for _, id := range ids {
		if err := r.cfg.Backend.StopWorker(ctx, id); err != nil {
			r.log.Warn("stop worker after losing the lease", "worker", id, "err", err)
		}
	}
}

func (r *Runner) setLeaseErr(err error) {
	r.healthMu.Lock()
	r.leaseErr = err
	r.healthMu.Unlock()
}

// Health reports why the runner cannot make progress now, or nil: it does
// not hold its lease, or its writes to the store have been failing.
func (r *Runner) Health() error {
	r.healthMu.Lock()
	err := r.leaseErr
	r.healthMu.Unlock()
	if err != nil {
		return err
	}
	return r.com.health(r.now())
}

// fence is the condition every runner write carries: this runner still
// holds the runner lease.
func (r *Runner) fence() store.Fence {
	return store.Fence{Lease: LeaseName, Holder: r.cfg.Holder}
}
