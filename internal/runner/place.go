package runner

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/haul-dev/haul/internal/fleet"
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/store"
)

// Clusters is implemented by backends that start workers in named
// clusters: every worker start then asks placement, which reserves room in
// the team's quota and a cluster's capacity (internal/placement) and names
// the cluster (WorkerSpec.Cluster). Backends without it start workers
// unplaced, bounded only by the runner's worker cap.
type Clusters interface {
	// PlacementClusters describes the clusters the backend reaches.
	PlacementClusters() []BackendCluster
}

// BackendCluster is a cluster as its backend sees it.
type BackendCluster struct {
	placement.Cluster
	// Owned: the backend's description is the truth (the local backend's
	// machine): it replaces the stored capacity, labels and prices at each
	// start, keeping the state an operator set. Otherwise the record is
	// created only when the store has none (an operator keeps it since,
	// with haul cluster register).
	Owned bool
}

// Placement timings.
const (
	// ReservationTTL is how long a worker's reservation lasts unless its
	// runner renews it: longer than a failover and its adoption grace, so
	// that adopted workers keep theirs; a dead runner's are reclaimed
	// after it.
	ReservationTTL = 60 * time.Second
	// placeHold is how long a tier whose start placement refused waits
	// before asking again.
	placeHold = time.Second
	// renewEvery is how often the runner renews its workers'
	// reservations, learns which are to be reclaimed and rebalances.
	renewEvery = 2 * time.Second
)

// placer is the runner's side of placement: it places the starts of each
// Step in one store transaction, releases the reservations of workers that
// ended, renews the live ones and retires the workers whose reservation is
// reclaimed (borrowed capacity wanted back, a cluster draining).
type placer struct {
	r     *Runner
	names []string // the clusters the backend reaches
	own   []BackendCluster

	mu       sync.Mutex
	releases []string
	clusters map[string]placement.Cluster // as last read, for prices
}

func newPlacer(r *Runner, cs []BackendCluster) *placer {
	p := &placer{r: r, own: cs, clusters: map[string]placement.Cluster{}}
	for _, c := range cs {
		p.names = append(p.names, c.Name)
	}
	return p
}

// bootstrap registers the backend's clusters in the store: created when
// absent; an owned one's capacity, labels and prices refreshed.
func (p *placer) bootstrap(ctx context.Context) error {
	st := p.r.cfg.Store
	for _, c := range p.own {
		if c.State == "" {
			c.State = placement.Enabled
		}
		got, err := st.EnsureCluster(ctx, c.Cluster)
		if err != nil {
			return fmt.Errorf("register cluster %s: %w", c.Name, err)
		}
		if c.Owned {
			c.State = got.State
			if err := st.PutCluster(ctx, c.Cluster); err != nil {
				return fmt.Errorf("refresh cluster %s: %w", c.Name, err)
			}
			got = c.Cluster
		}
		p.mu.Lock()
		p.clusters[got.Name] = got
		p.mu.Unlock()
	}
	return nil
}

// place asks placement for the workers of specs, in their order (the
// Fleet's: priority, then age), in one transaction. It returns one result
// per spec; if the store fails, every spec is refused with the error as
// the blocker.
func (p *placer) place(ctx context.Context, specs []WorkerSpec, prio []int32, created []time.Time) []placement.Result {
	reqs := make([]placement.Request, len(specs))
	for i, s := range specs {
		reqs[i] = placement.Request{ID: s.ID, Team: s.Namespace, Job: s.JobID, Priority: prio[i], Created: created[i],
			Resources: s.Tier.Resources(), NodeSelector: s.Tier.NodeSelector, Clusters: p.names}
	}
	return p.decide(ctx, reqs)
}

// decide runs placement over reqs in one transaction (with a rebalance)
// and writes what it decided: reservations (held by this runner until
// ReservationTTL unless renewed), reclaim marks and claims.
func (p *placer) decide(ctx context.Context, reqs []placement.Request) []placement.Result {
	now := p.r.now()
	var results []placement.Result
	reclaimed := 0
	err := p.r.cfg.Store.Place(ctx, now, func(snap *placement.Snapshot) (store.PlaceWrite, error) {
		p.noteClusters(snap.Clusters)
		res, reclaim := placement.Place(snap, reqs, now)
		reclaim = append(reclaim, placement.Rebalance(snap)...)
		reclaimed = len(reclaim)
		w := store.PlaceWrite{Reclaim: reclaim, Claims: snap.ClaimsMade, DropClaims: snap.ClaimsDropped}
		for _, x := range res {
			if x.Placed {
				rv := x.Reservation
				rv.Holder, rv.ExpiresAt = p.r.cfg.Holder, now.Add(ReservationTTL)
				w.Insert = append(w.Insert, rv)
			}
		}
		results = res
		return w, nil
	})
	if err != nil {
		reclaimed = 0
		p.r.log.Error("placement", "requests", len(reqs), "err", err)
		results = make([]placement.Result, len(reqs))
		for i, r := range reqs {
			results[i] = placement.Result{ID: r.ID, Blocker: placement.Blocker{Kind: "placement",
				Detail: "placement is unavailable (the store failed: " + err.Error() + "); it is asked again in a second"}}
		}
	}
	p.r.metrics.ObservePlacement(p.r.now().Sub(now), reclaimed)
	for i, res := range results {
		switch {
		case reqs[i].ClaimOnly:
		case res.Placed && res.Reservation.Borrowed:
			p.r.metrics.Placed("borrowed")
		case res.Placed:
			p.r.metrics.Placed("owned")
		default:
			p.r.metrics.Placed(string(res.Blocker.Kind))
		}
	}
	return results
}

func (p *placer) noteClusters(cs []placement.Cluster) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.clusters[c.Name] = c
	}
}

// hourlyPrice is what a worker holding r in cluster costs per hour, by the
// cluster's prices (0 when it has none or is unknown).
func (p *placer) hourlyPrice(cluster string, r placement.Resources) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.clusters[cluster]
	if !ok {
		return 0
	}
	return c.HourlyPrice(r)
}

// release queues the reservation of a worker that ended; the loop deletes
// the queued ones every second.
func (p *placer) release(id string) {
	p.mu.Lock()
	p.releases = append(p.releases, id)
	p.mu.Unlock()
}

// flush deletes the queued reservations.
func (p *placer) flush(ctx context.Context) {
	p.mu.Lock()
	ids := p.releases
	p.releases = nil
	p.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	if err := p.r.cfg.Store.ReleaseReservations(ctx, ids); err != nil {
		p.r.log.Warn("release reservations (tried again in a second)", "n", len(ids), "err", err)
		p.mu.Lock()
		p.releases = append(p.releases, ids...)
		p.mu.Unlock()
	}
}

// loop releases, renews and rebalances until ctx ends; then it releases
// what is queued one last time.
func (p *placer) loop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			p.flush(cctx)
			cancel()
			return
		case <-tick.C:
		}
		p.flush(ctx)
		if now := p.r.now(); now.Sub(last) >= renewEvery {
			last = now
			p.renew(ctx, now)
		}
	}
}

// renew extends the reservations of this runner's workers (taking over
// those of adopted ones) and retires the workers whose reservation is to
// be reclaimed or is gone.
func (p *placer) renew(ctx context.Context, now time.Time) {
	var ids []string
	for _, s := range p.r.shards {
		if !s.leased.Load() {
			continue
		}
		s.mu.Lock()
		for id, w := range s.workers {
			if !w.lost && (w.cluster != "" || w.adopted) {
				ids = append(ids, id)
			}
		}
		s.mu.Unlock()
	}
	if len(ids) > 0 {
		reclaim, missing, err := p.r.cfg.Store.RenewReservations(ctx, p.r.cfg.Holder, ids, now.Add(ReservationTTL))
		if err != nil {
			p.r.log.Warn("renew reservations", "n", len(ids), "err", err)
			return
		}
		p.retire(reclaim, "the capacity it holds is wanted back (its team's borrowing returned to the owner, or its cluster drains): it finishes its current task and exits")
		p.retire(missing, "its placement reservation is gone (it expired): it finishes its current task and exits")
	}
	p.releaseOrphans(ctx, now)
	// A rebalance of its own, so that reclaims happen when nobody starts
	// workers (an owner's quota raised, a cluster disabled).
	if err := p.r.cfg.Store.Place(ctx, now, func(snap *placement.Snapshot) (store.PlaceWrite, error) {
		p.noteClusters(snap.Clusters)
		return store.PlaceWrite{Reclaim: placement.Rebalance(snap)}, nil
	}); err != nil {
		p.r.log.Warn("placement rebalance", "err", err)
	}
}

// retire asks the Fleets to retire the workers named.
func (p *placer) retire(ids []string, why string) {
	if len(ids) == 0 {
		return
	}
	now := p.r.now()
	for _, s := range p.r.shards {
		s.mu.Lock()
		for _, id := range ids {
			if w := s.workers[id]; w != nil && !w.exiting && s.fleet != nil {
				if err := s.fleet.Retire(id, why, now); err == nil {
					s.log.Info("worker retired by placement", "worker", id, "job", w.job, "why", why)
				}
			}
		}
		s.mu.Unlock()
	}
}

// blockedTier is the last placement refusal of a (job, tier), for why.
type blockedTier struct {
	blocker placement.Blocker
	at      time.Time
}

// placeStarts places the starts a Step decided (outside the shard's
// lock), hands the refused ones back to the Fleet and returns the specs
// to start, each with its cluster.
func (s *shard) placeStarts(ctx context.Context, starts []WorkerSpec) []WorkerSpec {
	p := s.place
	if p == nil || len(starts) == 0 {
		return starts
	}
	prio := make([]int32, len(starts))
	created := make([]time.Time, len(starts))
	s.mu.Lock()
	for i, sp := range starts {
		if jr := s.jobs[sp.JobID]; jr != nil {
			prio[i], created[i] = jr.job.Priority, jr.job.CreatedAt
		}
	}
	s.mu.Unlock()
	results := p.place(ctx, starts, prio, created)
	now := s.now()
	out := starts[:0]
	var unplaced []string
	s.mu.Lock()
	for i, res := range results {
		sp := starts[i]
		w := s.workers[sp.ID]
		jr := s.jobs[sp.JobID]
		if res.Placed {
			if jr != nil && int(sp.TierIndex) < len(jr.blocked) {
				jr.blocked[sp.TierIndex] = blockedTier{}
			}
			if w == nil {
				unplaced = append(unplaced, sp.ID) // ended meanwhile (its job was poisoned)
				continue
			}
			sp.Cluster = res.Reservation.Cluster
			w.cluster, w.resources = sp.Cluster, res.Reservation.Resources
			out = append(out, sp)
			continue
		}
		if jr != nil && int(sp.TierIndex) < len(jr.blocked) {
			jr.blocked[sp.TierIndex] = blockedTier{blocker: res.Blocker, at: now}
		}
		if w == nil {
			continue
		}
		delete(s.workers, sp.ID)
		s.nworkers.Add(-1)
		if jr != nil && int(sp.TierIndex) < len(jr.workers) {
			jr.workers[sp.TierIndex] = slices.DeleteFunc(jr.workers[sp.TierIndex], func(id string) bool { return id == sp.ID })
		}
		if s.fleet != nil {
			if err := s.fleet.Refused(sp.ID, now.Add(placeHold), now); err != nil {
				s.log.Warn("hand a refused start back to the fleet", "worker", sp.ID, "err", err)
			}
		}
		s.log.Debug("worker start refused by placement", "worker", sp.ID, "job", sp.JobID, "tier", sp.TierIndex, "why", res.Blocker.Detail)
	}
	s.mu.Unlock()
	for _, id := range unplaced {
		p.release(id)
	}
	return out
}

// maxClaimOnly bounds the claim-only requests one Step of a shard sends.
const maxClaimOnly = 64

// claimStarved asks placement, with claim-only requests, for the room the
// tiers the Fleet left without slots are owed (the runner's worker cap is
// used up): if borrowers of other teams hold it, they are marked to give
// it back and the room is claimed, so that the freed slot and room go to
// the owner. A shard asks at most once per placeHold.
func (s *shard) claimStarved(ctx context.Context, starved []fleet.Starved) {
	p := s.place
	if p == nil || len(starved) == 0 {
		return
	}
	now := s.now()
	var reqs []placement.Request
	var tiers []int32
	s.mu.Lock()
	if now.Sub(s.claimAt) < placeHold {
		s.mu.Unlock()
		return
	}
	s.claimAt = now
	for _, st := range starved {
		jr := s.jobs[st.Job]
		if jr == nil || int(st.Tier) >= len(jr.claimAsked) || now.Sub(jr.claimAsked[st.Tier]) < placeHold || int(st.Tier) >= len(jr.job.Tiers) {
			continue
		}
		jr.claimAsked[st.Tier] = now
		for i := range st.Want {
			if len(reqs) == maxClaimOnly {
				break
			}
			t := jr.job.Tiers[st.Tier]
			reqs = append(reqs, placement.Request{ID: fmt.Sprintf("%s-%d-claim%d", st.Job, st.Tier, i), Team: jr.job.Namespace, Job: st.Job,
				Priority: jr.job.Priority, Created: jr.job.CreatedAt, Resources: t.Resources(), NodeSelector: t.NodeSelector,
				Clusters: p.names, ClaimOnly: true})
			tiers = append(tiers, st.Tier)
		}
	}
	s.mu.Unlock()
	if len(reqs) == 0 {
		return
	}
	results := p.decide(ctx, reqs)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, res := range results {
		jr := s.jobs[reqs[i].Job]
		if jr == nil || int(tiers[i]) >= len(jr.blocked) {
			continue
		}
		if res.Blocker.Kind == "" {
			jr.blocked[tiers[i]] = blockedTier{} // room exists: the runner's cap is what holds it
			continue
		}
		jr.blocked[tiers[i]] = blockedTier{blocker: res.Blocker, at: now}
	}
}

// orphanGrace is how long after its last renewal a reservation whose
// runner is no longer a member is kept: long enough for the runner that
// takes over its shards to adopt its workers and renew their
// reservations (the shard lease's TTL, the adoption grace, two renewals
// and a margin). After that, its worker is gone: the room comes back
// well before the reservation's own expiry.
func (r *Runner) orphanGrace() time.Duration {
	return r.cfg.LeaseTTL + r.cfg.AdoptGrace + 2*renewEvery + 5*time.Second
}

// orphanBatch bounds the reservations one look for orphans reads.
const orphanBatch = 1000

// releaseOrphans releases the reservations of runners that are no longer
// members (their membership lease expired or was given up) and that no
// one renewed for orphanGrace.
func (p *placer) releaseOrphans(ctx context.Context, now time.Time) {
	st := p.r.cfg.Store
	cutoff := now.Add(ReservationTTL - p.r.orphanGrace())
	rs, err := st.ListReservations(ctx, store.ReservationFilter{ExpiresBefore: cutoff, Limit: orphanBatch})
	if err != nil || len(rs) == 0 {
		if err != nil {
			p.r.log.Warn("look for orphaned reservations", "err", err)
		}
		return
	}
	members, err := st.ListLeases(ctx, store.MemberLeasePrefix)
	if err != nil {
		p.r.log.Warn("look for orphaned reservations: list members", "err", err)
		return
	}
	live := map[string]bool{p.r.cfg.Holder: true}
	for _, m := range members {
		if m.ExpiresAt.After(now) {
			live[m.Holder] = true
		}
	}
	var ids []string
	for _, r := range rs {
		if !live[r.Holder] {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	if err := st.ReleaseReservations(ctx, ids); err != nil {
		p.r.log.Warn("release orphaned reservations", "n", len(ids), "err", err)
		return
	}
	p.r.log.Info("released the reservations of workers whose runner is gone", "n", len(ids))
}
