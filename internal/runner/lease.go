package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/haul-dev/haul/internal/metrics"
	"github.com/haul-dev/haul/internal/store"
)

// A runner is a member of its store's runner group: it holds the lease
// store.MemberLease(holder), whose address is where its workers reach it,
// and one lease per shard it owns (store.ShardLease). Every write of a
// shard's state is fenced by that shard's lease and epoch.
//
// Shards spread over the live members without a coordinator: every runner
// computes its quota (NumShards / members, one more for the first
// NumShards % members members in holder order), takes free or expired
// shards while below it and releases its highest-numbered shards while
// above it. The lease settles races. See docs/design/009-topology.md.

// LeaseHeldError is returned by a single-process server's Start when
// another haul server answers for the same store (see server.Start).
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

// leaseTick is how often leases are renewed and shards balanced.
func (r *Runner) leaseTick() time.Duration {
	return min(r.cfg.LeaseTTL/5, time.Second)
}

// keepLeases renews the membership and shard leases and balances shards
// until ctx ends. While the store cannot be reached a shard keeps its
// state; a shard whose lease can no longer be trusted (another runner
// holds it, a fenced write was refused, or it went unrenewed for five
// sixths of its TTL) is dropped: its state forgotten, its workers left to
// find the shard's next owner. The process never exits for this.
func (r *Runner) keepLeases(ctx context.Context) {
	t := time.NewTicker(r.leaseTick())
	defer t.Stop()
	for {
		r.leaseRound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.leaseKick:
		}
	}
}

// leaseRound is one pass of keepLeases.
func (r *Runner) leaseRound(ctx context.Context) {
	now := r.now()
	actx, cancel := context.WithTimeout(ctx, r.leaseTick()*2)
	defer cancel()
	// The membership and the owned shards' leases in one transaction:
	// one commit a second, however many shards. A shard whose committer
	// is writing now is renewed on its own, beside: its fenced write holds
	// the lease's row, and the others must not wait for it (a flooding
	// job's big batches would hold every shard's renewal back).
	ls := []store.Lease{{Name: store.MemberLease(r.cfg.Holder), Holder: r.cfg.Holder, Address: r.cfg.RunnerURL, ExpiresAt: now.Add(r.cfg.LeaseTTL)}}
	var batched []*shard
	var alone sync.WaitGroup
	for _, s := range r.shards {
		if !s.leased.Load() {
			continue
		}
		l := store.Lease{Name: s.lease, Holder: r.cfg.Holder, Address: r.cfg.RunnerURL, ExpiresAt: now.Add(r.cfg.LeaseTTL)}
		if s.writing() {
			alone.Go(func() {
				got, held, err := r.cfg.Store.AcquireLeases(actx, []store.Lease{l}, now)
				if err == nil && len(got) == 1 {
					s.applyRenewal(now, got[0], held[0], nil)
					return
				}
				s.applyRenewal(now, store.Lease{}, false, fmt.Errorf("renew: %w", cmpErr(err)))
			})
			continue
		}
		batched = append(batched, s)
		ls = append(ls, l)
	}
	got, held, err := r.cfg.Store.AcquireLeases(actx, ls, now)
	ok := err == nil && len(held) == len(ls) && held[0]
	switch {
	case err != nil:
		r.setMemberErr(fmt.Errorf("renew membership lease: %w", err))
		r.metrics.LeaseRenewal(metrics.LeaseError)
		r.log.Warn("renew leases", "err", err, "shards", len(batched))
	case !ok:
		// Holder IDs are random per process: nobody else should hold it.
		r.setMemberErr(errors.New("membership lease held by another process with this runner's holder ID"))
	default:
		r.setMemberErr(nil)
	}
	for i, s := range batched {
		if err != nil || len(got) != len(ls) {
			s.applyRenewal(now, store.Lease{}, false, fmt.Errorf("renew: %w", cmpErr(err)))
			continue
		}
		s.applyRenewal(now, got[i+1], held[i+1], nil)
	}
	alone.Wait()
	if err != nil || !ok || ctx.Err() != nil {
		return
	}
	members, err := r.liveMembers(actx, now)
	if err != nil {
		r.log.Warn("list runner members", "err", err)
		return
	}
	quota := shardQuota(members, r.cfg.Holder)
	mine := r.ownedShards()
	for i := len(mine) - 1; i >= 0 && len(mine) > quota; i-- {
		r.shards[mine[i]].release(ctx, "rebalance: "+fmt.Sprint(len(members))+" runners")
		mine = mine[:i]
	}
	if len(mine) >= quota {
		return
	}
	leases, err := r.cfg.Store.ListLeases(actx, "shard/")
	if err != nil {
		r.log.Warn("list shard leases", "err", err)
		return
	}
	taken := map[string]bool{}
	for _, l := range leases {
		if l.ExpiresAt.After(now) && l.Holder != r.cfg.Holder {
			taken[l.Name] = true
		}
	}
	// Start looking at a place of our own, so that runners joining at once
	// do not all race for shard 0.
	start := store.ShardOf(r.cfg.Holder)
	for k := 0; k < store.NumShards && len(mine) < quota; k++ {
		s := r.shards[(start+k)%store.NumShards]
		if s.leased.Load() || taken[s.lease] {
			continue
		}
		if s.take(ctx, actx, now) {
			mine = append(mine, s.n)
		}
	}
}

// liveMembers returns the holders of unexpired membership leases, sorted.
func (r *Runner) liveMembers(ctx context.Context, now time.Time) ([]string, error) {
	ls, err := r.cfg.Store.ListLeases(ctx, store.MemberLeasePrefix)
	if err != nil {
		return nil, err
	}
	var hs []string
	for _, l := range ls {
		if l.ExpiresAt.After(now) {
			hs = append(hs, l.Holder)
		}
	}
	sort.Strings(hs)
	return hs, nil
}

// shardQuota is how many shards holder should own among members (sorted):
// NumShards spread evenly, the remainder to the first members. A holder
// not among the members (its lease is not visible yet) gets none.
func shardQuota(members []string, holder string) int {
	i := slices.Index(members, holder)
	if i < 0 {
		return 0
	}
	q := store.NumShards / len(members)
	if i < store.NumShards%len(members) {
		q++
	}
	return q
}

func (r *Runner) ownedShards() []int {
	var out []int
	for _, s := range r.shards {
		if s.leased.Load() {
			out = append(out, s.n)
		}
	}
	return out
}

// take acquires the shard's lease and starts its tenure: the shard's jobs
// are loaded by the next scan. It reports whether the lease was taken.
func (s *shard) take(ctx, actx context.Context, now time.Time) bool {
	l := store.Lease{Name: s.lease, Holder: s.cfg.Holder, Address: s.cfg.RunnerURL, ExpiresAt: now.Add(s.cfg.LeaseTTL)}
	got, ok, err := s.cfg.Store.AcquireLease(actx, l, now)
	if err != nil || !ok {
		if err != nil {
			s.log.Warn("take shard lease", "shard", s.n, "err", err)
		}
		return false
	}
	s.start(ctx, got.Epoch, now)
	s.log.Info("shard taken", "shard", s.n, "epoch", got.Epoch)
	s.metrics.SetShardOwned(s.n, true)
	s.Wake()
	return true
}

// writing reports whether the shard's committer is in a write that began
// less than a lease TTL ago (a longer one is not trusted to hold the
// lease's row: the store may be unreachable).
func (s *shard) writing() bool {
	s.mu.Lock()
	com := s.com
	s.mu.Unlock()
	if com == nil {
		return false
	}
	since := com.writingSince.Load()
	return since != 0 && time.Since(time.Unix(0, since)) < s.cfg.LeaseTTL
}

// applyRenewal applies the outcome of renewing the shard's lease (got, held,
// or err when the renewal failed) and drops the shard when it cannot be
// trusted any more.
func (s *shard) applyRenewal(now time.Time, got store.Lease, held bool, err error) {
	switch {
	case err == nil && held && got.Epoch == s.epoch.Load():
		s.renewed = now
		s.metrics.LeaseRenewal(metrics.LeaseOK)
		return
	case err == nil:
		// Held by another runner, or taken again under a new epoch (it
		// was someone else's in between): what this shard holds is stale.
		s.metrics.LeaseRenewal(metrics.LeaseLost)
		s.drop(fmt.Sprintf("lease taken by %s (epoch %d)", got.Holder, got.Epoch))
		return
	}
	s.metrics.LeaseRenewal(metrics.LeaseError)
	// A renewal that failed while the shard's committer writes is, as
	// often as not, waiting behind that write: a fenced transaction that
	// holds the lease's row, so that nobody can take the lease before it
	// ends (and if somebody did, the write is refused and the shard
	// dropped then). Only an idle shard is dropped for an unrenewed lease.
	if now.Sub(s.renewed) >= s.cfg.LeaseTTL*5/6 && !localStore(s.cfg.Store) && !s.writing() {
		s.drop(fmt.Sprintf("lease unrenewed for %v: %v", now.Sub(s.renewed).Round(time.Millisecond), err))
		return
	}
}

// cmpErr names a renewal that returned the wrong number of leases.
func cmpErr(err error) error {
	if err == nil {
		return errors.New("the store returned the wrong number of leases")
	}
	return err
}

// release gives the shard up on purpose (rebalancing, shutdown): no new
// dispatch, what is pending is written, then the lease is released so
// that the next owner need not wait for it to expire. Workers are left
// running: they find the next owner and are adopted.
func (s *shard) release(ctx context.Context, why string) {
	s.leased.Store(false)
	s.mu.Lock()
	stop, done := s.comStop, s.comDone
	s.mu.Unlock()
	if stop != nil {
		stop() // the committer writes what is pending, then returns
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if err := s.cfg.Store.ReleaseLease(rctx, s.lease, s.cfg.Holder); err != nil {
		s.log.Warn("release shard lease", "shard", s.n, "err", err)
	}
	cancel()
	s.drop("released: " + why)
}

// lostLease is called when the store refused a fenced write: another
// runner owns the shard now. The tenure ends at once (no more dispatch,
// and the write's waiters see it end and report nothing of it); the state
// is cleared right after, outside the caller's lock (addTasks holds it).
func (s *shard) lostLease() {
	s.metrics.LeaseRenewal(metrics.LeaseLost)
	was := s.leased.Swap(false)
	gen := s.gen.Add(1)
	go s.clear(gen, was, "a fenced write was refused: another runner owns the shard")
}

func (r *Runner) setMemberErr(err error) {
	r.healthMu.Lock()
	r.memberErr = err
	r.healthMu.Unlock()
}

// Health reports why the runner cannot make progress now, or nil: it does
// not hold its membership lease, or one of its shards' writes to the store
// have been failing.
func (r *Runner) Health() error {
	r.healthMu.Lock()
	err := r.memberErr
	r.healthMu.Unlock()
	if err != nil {
		return err
	}
	if !r.started.Load() {
		return errors.New("runner not started")
	}
	for _, s := range r.shards {
		if !s.leased.Load() {
			continue
		}
		s.mu.Lock()
		com := s.com
		s.mu.Unlock()
		if com != nil {
			if err := com.health(r.now()); err != nil {
				return fmt.Errorf("shard %d: %w", s.n, err)
			}
		}
	}
	return nil
}

// fence is the condition every write of the shard's state carries: this
// runner still holds the shard's lease, in the same tenure.
func (s *shard) fence() store.Fence {
	return store.Fence{Lease: s.lease, Holder: s.cfg.Holder, Epoch: s.epoch.Load()}
}

// localStore reports whether the store is a file on this machine that one
// process writes at a time (SQLite: it says so with LocalFile). There a
// renewal that times out is this process's own long write (a
// million-task submit holds the file's lock for seconds), not a
// partition: shards are kept through it and dropped only when the store
// shows another holder. Every write stays fenced either way.
func localStore(st store.Store) bool {
	l, ok := st.(interface{ LocalFile() bool })
	return ok && l.LocalFile()
}
