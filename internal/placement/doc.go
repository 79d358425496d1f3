// Package placement is the pure core that decides where a worker may run
// and on whose account: it checks each worker request against the teams'
// quotas and the clusters' capacity, picks the cluster, marks borrowed
// workers for reclaim when their room is wanted back, and says exactly
// why a request is refused. It does no I/O, starts no goroutine and never
// reads the clock: Place takes `now`. The store reads a Snapshot in one
// transaction, calls Place or Rebalance, and writes the reservations and
// reclaim marks back in the same transaction (docs/design/010-placement.md).
//
// It imports only the standard library.
//
// # Amounts
//
// Resources are integers: CPU in thousandths of a core, memory in bytes,
// GPUs in whole devices by type. A resource a Resources value does not
// list counts as 0 (a quota that names no memory owns no memory). In the
// rules below, "a fits within b" compares only the resources a asks for
// (its non-zero amounts): a fits within b when a.Get(r) <= b.Get(r) for
// each of them. Negative amounts in the snapshot (which Validate refuses)
// are treated as 0 capacity and 0 limit.
//
// # Requests
//
// Place(s, reqs, now) decides reqs one after another, in the order given
// (the caller orders them: priority, then age). Each decision sees the
// ones before it: a placed request adds its resources to s.Usage (its
// team, cluster and borrowed flag; one worker more), a borrowed one is
// also appended to s.Borrowed, and a reclaim sets Reclaim on an entry of
// s.Borrowed. It returns one Result per request in the same order, and the
// IDs marked for reclaim in the order marked. A placed Result's
// Reservation has ID (the request's), Team, Job, Cluster, Resources,
// Borrowed and Created = now; Holder and ExpiresAt are the caller's.
//
// A request is invalid, and refused with BlockInvalid, when it has no ID,
// no team, a negative amount of anything, or GPUs of more than one type
// (or of an empty type name). Zero-count GPU entries are ignored.
//
// # Totals
//
// From the snapshot (every cluster, quota, usage row and borrowed
// reservation; only the first cluster of a name and the first quota of a
// team count):
//
//	held(c)        = Σ Usage.Held in cluster c, owned and borrowed, reclaim-marked included
//	held(t, c)     = Σ Usage.Held of team t in cluster c, owned and borrowed
//	own(t)         = Σ Usage.Held of team t with Borrowed false, all clusters
//	own(t, c)      = the same in cluster c
//	borrowed       = Σ Resources of the reservations in s.Borrowed not marked Reclaim
//	room(c)        = Capacity(c) − held(c)
//	claimed(c)     = Σ Resources of the claims in cluster c (see Claims)
//	claimed(t, c)  = the same, of team t only; claimed(t) of team t in all clusters
//	enabledCap     = Σ Capacity of the clusters whose state is enabled
//	limits         = Σ Limit over all quotas
//	pool(except t) = max(0, enabledCap − limits)
//	                 + Σ over quotas q with Lend and q.Team ≠ t of max(0, q.Limit − own(q.Team) − claimed(q.Team))
//
// each per resource. pool(except "") is the whole lendable pool. Marked
// borrowed reservations still hold their room in held and room until the
// store deletes them, but no longer count in borrowed.
//
// # Eligible clusters
//
// A cluster can run a request when all of these hold:
//
//  1. reachable: its name is in req.Clusters, or req.Clusters is empty;
//  2. it offers every resource asked: Capacity CPU > 0 when CPU is asked,
//     memory > 0 when memory is asked, and the GPU type among its
//     Capacity.GPU keys;
//  3. Cluster.Matches(req.NodeSelector) (unknown labels match anything);
//  4. the request fits within its whole Capacity;
//  5. its state is enabled.
//
// The candidates are the clusters passing all five.
//
// # Owned or borrowed
//
// The request's team t owns it when t has a quota q and req fits within
// q.Limit − own(t). The owned candidates are then the candidates c where,
// if q.Clusters names c, req also fits within q.Clusters[c] − own(t, c).
// A team without a quota owns nothing.
//
// The request may borrow when borrowed + req fits within pool(except t).
// With no quotas at all there is no pool check: every worker borrows and
// only cluster room bounds it, which is how haul behaved before quotas.
//
// # Choice
//
// Among clusters c with room, that is req fitting within room(c) −
// claimed(c) + claimed(t, c) for an owned request and room(c) −
// claimed(c) for a borrowed one (no team places on room another team
// claimed; a team's own claims do not keep it out), the chosen one has the lowest team share, then the lowest total share, then
// the smallest name, where
//
//	share(x, c) = max over resources r with Capacity(c).r > 0 of x.r / Capacity(c).r
//	team share  = share(held(t, c), c)
//	total share = share(held(c), c)
//
// so each team spreads over the clusters in proportion to their size and
// the load balances. The decision, in order:
//
//  1. If some owned candidate has room, place it owned in the chosen one
//     of those; then rebalance the pool (below).
//  2. Else, if it may borrow and some candidate has room, place it
//     borrowed in the chosen candidate.
//  3. Else, if there are owned candidates, try to reclaim (below).
//  4. Else refuse, as below.
//
// # Reclaim
//
// For an owned request that found no room (step 3): among the owned
// candidates, those where req fits within room(c) + B(c) − claimed(c),
// where B(c) is every borrowed reservation in c (marked or not); pick one
// by the choice order above. If there is none, the request is refused
// with BlockCapacity. Otherwise, while req does not fit within room(c) +
// M(c) − claimed(c), M(c) the marked borrowed reservations in c, mark one
// more (the reclaim order below, limited to c and to the first resource
// missing); then make a claim for req on c (below) and refuse with
// BlockReclaiming, naming c and how many marked workers of each team in c
// are giving room back.
//
// # Claim-only requests
//
// A request with ClaimOnly comes from a runner whose worker cap is used
// up: it cannot start the worker now, but its team may be owed room that
// borrowers hold (they may hold the runner's every slot too). It is
// decided like any request, except that where it would be placed (steps
// 1 and 2 of Choice) it is not: the result has Placed false, an empty
// Blocker kind and the cluster with room. Where it would reclaim (step
// 3), it marks and claims as any request does; otherwise it gets the
// same blocker.
//
// # Claims
//
// A claim {ID, Team, Job, Cluster, Resources, ExpiresAt = now + ClaimTTL}
// holds the room a reclaim frees for the team owed it: it is appended to
// s.Claims and to s.ClaimsMade, for the caller to store. Claims keep
// other teams off that room (see Choice), and their team lends that much
// less (see pool), so that a borrower cannot take the room back between
// the marked workers' exit and the owner's next request. The first valid
// request of a job in a Place call drops the claims that job had in the
// snapshot (their IDs go to s.ClaimsDropped): the job says afresh what it
// still waits for, by a placement or a new claim. The store deletes
// claims at ExpiresAt, so that a job that stopped asking frees its room.
//
// Rebalancing the pool: while borrowed holds more of a resource r than
// pool(except ""), with r the first such resource, mark one more borrowed
// reservation holding some of r. Skipped when there are no quotas.
//
// The reclaim order, for a resource r, among the unmarked borrowed
// reservations holding some of r: those in clusters not enabled (or not
// known) first, if there are any; among them, the team holding the most
// of r (ties: the smaller team name); its newest reservation (latest
// Created; ties: the greater ID). Owned reservations are never marked. A
// marked worker finishes its current task and exits; nothing is killed.
//
// # Blockers
//
// A refused request gets the first blocker that applies:
//
//  1. BlockInvalid: the request itself is malformed.
//  2. BlockNoCluster: no cluster passes conditions 1–4: none is reachable
//     (none registered, or none of req.Clusters); none offers a resource
//     asked (Resource names it), or none offers them all together; none
//     offering them matches the node selector; none offering them and
//     matching is big enough (the detail lists their capacity).
//  3. BlockUnavailable: some pass 1–4 but none is enabled; Clusters lists
//     them and the detail gives each one's state.
//  4. BlockQuota: there is no owned candidate (no quota, the limit would be
//     exceeded, or every candidate's split would be) and it may not
//     borrow. Resource, Used and Limit: for a team without a quota, the
//     first resource short in the pool, borrowed and pool(except t); when
//     the limit is exceeded, its first resource, own(t) and the limit;
//     when splits are, the first candidate's, own(t, c) and the split.
//  5. BlockReclaiming: as in Reclaim.
//  6. BlockCapacity: no cluster considered has room (the owned candidates,
//     or every candidate when it may borrow). Clusters lists them;
//     Resource, Used and Limit are the first one's first full resource,
//     held(c) and Capacity(c).
//
// Detail is always a full sentence for `haul task why`.
//
// # Rebalance
//
// Rebalance(s) marks, in this order, every unmarked borrowed reservation
// in a draining cluster (in the order of s.Borrowed), then rebalances the
// pool as above (a quota
// raised, an owner grown, a lender stopped lending or a cluster disabled
// can shrink it). It returns the IDs marked and sets Reclaim in s. The
// store marks a draining cluster's owned reservations itself: Rebalance
// sees only borrowed ones.
//
// # Records
//
// Quota.Validate and Cluster.Validate check records before they are
// stored: names (team, cluster, GPU type, split cluster) are DNS labels
// (1 to 63 lowercase letters, digits and '-', not starting or ending with
// '-'), no amount is negative, a cluster's state is one of the three,
// prices and the pod budget are finite and not negative, and no split
// holds more of a resource than its limit. ParseResources reads the
// "cpu=4,memory=16Gi,gpu/a100=2" form the command line uses.
package placement
