package placement

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Place decides reqs in the order given and returns one Result per
// request, in the same order, and the IDs of the borrowed reservations it
// marked for reclaim. It updates s as it goes, so that later requests of
// the batch see earlier ones: a placed request adds to s.Usage (and, when
// borrowed, is appended to s.Borrowed); a reclaim sets Reclaim in
// s.Borrowed. The rules are in the package documentation.
func Place(s *Snapshot, reqs []Request, now time.Time) (results []Result, reclaim []string) {
	st := newState(s)
	results = make([]Result, 0, len(reqs))
	for _, req := range reqs {
		results = append(results, st.place(req, now))
	}
	return results, st.marked
}

// Rebalance marks for reclaim the borrowed reservations that must go:
// every one in a draining cluster not yet marked, then, while the
// unmarked borrowed reservations hold more of a resource than the
// lendable pool, more of them in the reclaim order. It returns their IDs
// in the order marked and sets Reclaim in s.Borrowed.
func Rebalance(s *Snapshot) []string {
	st := newState(s)
	for i := range s.Borrowed {
		r := &s.Borrowed[i]
		if r.Reclaim {
			continue
		}
		if c, ok := st.cluster[r.Cluster]; ok && c.State == Draining {
			st.mark(i)
		}
	}
	st.fitPool()
	return st.marked
}

type teamCluster struct{ team, cluster string }

type usageKey struct {
	team, cluster string
	borrowed      bool
}

// state indexes a snapshot for one Place or Rebalance call and keeps the
// indexes in step with the changes it makes to the snapshot.
type state struct {
	s        *Snapshot
	clusters []*Cluster // by name
	cluster  map[string]*Cluster
	quota    map[string]*Quota // the first quota of each team
	quotas   []*Quota          // the same, by team

	usageAt  map[usageKey]int          // index into s.Usage
	held     map[string]Resources      // cluster: every reservation
	teamHeld map[teamCluster]Resources // team in cluster: owned and borrowed
	owned    map[string]Resources      // team: owned, all clusters
	ownedIn  map[teamCluster]Resources // team in cluster: owned

	borrowedAt map[string][]int     // cluster: indexes into s.Borrowed
	borrowedIn map[string]Resources // cluster: borrowed, marked or not
	markedIn   map[string]Resources // cluster: borrowed and marked
	unmarked   Resources            // all unmarked borrowed reservations
	limits     Resources            // sum of all quota limits
	enabledCap Resources            // capacity of the enabled clusters
	// Claims: room held for teams owed it (see Claim), by cluster, by
	// team in cluster and by team; oldClaims are the IDs of the claims
	// the snapshot came with, by job, until the job asks again (dropOld).
	claimed     map[string]Resources
	claimedBy   map[teamCluster]Resources
	claimedTeam map[string]Resources
	oldClaims   map[string][]string
	marked      []string
	lenders     []*Quota
}

func newState(s *Snapshot) *state {
	st := &state{
		s:           s,
		cluster:     map[string]*Cluster{},
		quota:       map[string]*Quota{},
		usageAt:     map[usageKey]int{},
		held:        map[string]Resources{},
		teamHeld:    map[teamCluster]Resources{},
		owned:       map[string]Resources{},
		ownedIn:     map[teamCluster]Resources{},
		borrowedAt:  map[string][]int{},
		borrowedIn:  map[string]Resources{},
		markedIn:    map[string]Resources{},
		claimed:     map[string]Resources{},
		claimedBy:   map[teamCluster]Resources{},
		claimedTeam: map[string]Resources{},
		oldClaims:   map[string][]string{},
	}
	for _, c := range s.Claims {
		st.claim(c, 1)
		if c.Job != "" {
			st.oldClaims[c.Job] = append(st.oldClaims[c.Job], c.ID)
		}
	}
	for i := range s.Clusters {
		c := &s.Clusters[i]
		if _, dup := st.cluster[c.Name]; dup {
			continue
		}
		st.cluster[c.Name] = c
		st.clusters = append(st.clusters, c)
		if c.State == Enabled {
			st.enabledCap = st.enabledCap.Add(positive(c.Capacity))
		}
	}
	slices.SortFunc(st.clusters, func(a, b *Cluster) int { return cmp.Compare(a.Name, b.Name) })
	for i := range s.Quotas {
		q := &s.Quotas[i]
		if _, dup := st.quota[q.Team]; dup {
			continue
		}
		st.quota[q.Team] = q
		st.quotas = append(st.quotas, q)
		st.limits = st.limits.Add(positive(q.Limit))
	}
	slices.SortFunc(st.quotas, func(a, b *Quota) int { return cmp.Compare(a.Team, b.Team) })
	for _, q := range st.quotas {
		if q.Lend {
			st.lenders = append(st.lenders, q)
		}
	}
	for i, u := range s.Usage {
		k := usageKey{u.Team, u.Cluster, u.Borrowed}
		if _, ok := st.usageAt[k]; !ok {
			st.usageAt[k] = i
		}
		st.count(u.Team, u.Cluster, u.Borrowed, u.Held)
	}
	for i, r := range s.Borrowed {
		st.borrowedAt[r.Cluster] = append(st.borrowedAt[r.Cluster], i)
		addAt(st.borrowedIn, r.Cluster, r.Resources, 1)
		if r.Reclaim {
			addAt(st.markedIn, r.Cluster, r.Resources, 1)
		} else {
			addTo(&st.unmarked, r.Resources, 1)
		}
	}
	return st
}

// claim adds (sign 1) or takes away (-1) a claim from the totals.
func (st *state) claim(c Claim, sign int64) {
	r := positive(c.Resources)
	addAt(st.claimed, c.Cluster, r, sign)
	addAt(st.claimedBy, teamCluster{c.Team, c.Cluster}, r, sign)
	addAt(st.claimedTeam, c.Team, r, sign)
}

// dropOld drops the claims a job had before this call: the job asks
// again now, which says what it still waits for (a new claim, or a
// placement on the room it claimed).
func (st *state) dropOld(job string) {
	ids := st.oldClaims[job]
	if job == "" || len(ids) == 0 {
		return
	}
	delete(st.oldClaims, job)
	drop := map[string]bool{}
	for _, id := range ids {
		drop[id] = true
	}
	st.s.Claims = slices.DeleteFunc(st.s.Claims, func(c Claim) bool {
		if !drop[c.ID] {
			return false
		}
		st.claim(c, -1)
		st.s.ClaimsDropped = append(st.s.ClaimsDropped, c.ID)
		return true
	})
}

// count adds held to the totals (not to s.Usage).
func (st *state) count(team, cluster string, borrowed bool, held Resources) {
	tc := teamCluster{team, cluster}
	addAt(st.held, cluster, held, 1)
	addAt(st.teamHeld, tc, held, 1)
	if !borrowed {
		addAt(st.owned, team, held, 1)
		addAt(st.ownedIn, tc, held, 1)
	}
}

// positive drops negative amounts, so that bad records cannot add room.
func positive(r Resources) Resources {
	out := Resources{MilliCPU: max(0, r.MilliCPU), Memory: max(0, r.Memory)}
	for t, n := range r.GPU {
		if n > 0 {
			out.addGPU(t, n)
		}
	}
	return out
}

// short returns the first resource (in Names order of need) of which need
// asks more than room has, or "" when need fits.
func short(room, need Resources) string {
	for _, name := range need.Names() {
		if need.Get(name) > room.Get(name) {
			return name
		}
	}
	return ""
}

// fitsOn reports whether need fits on top of held within limit: for
// every resource need asks, held + need <= limit. It is short(limit −
// held, need) == "" without building the difference.
func fitsOn(need, held, limit Resources) bool {
	if need.MilliCPU > 0 && held.MilliCPU+need.MilliCPU > limit.MilliCPU {
		return false
	}
	if need.Memory > 0 && held.Memory+need.Memory > limit.Memory {
		return false
	}
	for t, n := range need.GPU {
		if n > 0 && held.GPU[t]+n > limit.GPU[t] {
			return false
		}
	}
	return true
}

// addTo adds sign × r to *dst in place. dst's GPU map must be one the
// state made (it starts nil), never a caller's.
func addTo(dst *Resources, r Resources, sign int64) {
	dst.MilliCPU += sign * r.MilliCPU
	dst.Memory += sign * r.Memory
	for t, n := range r.GPU {
		dst.addGPU(t, sign*n)
	}
}

// addAt adds sign × r to m[k] in place.
func addAt[K comparable](m map[K]Resources, k K, r Resources, sign int64) {
	v := m[k]
	addTo(&v, r, sign)
	m[k] = v
}

// share is the dominant share of held in capacity: the largest of
// held/capacity over the resources capacity has more than zero of.
func share(held, capacity Resources) float64 {
	var m float64
	if capacity.MilliCPU > 0 {
		m = max(m, float64(held.MilliCPU)/float64(capacity.MilliCPU))
	}
	if capacity.Memory > 0 {
		m = max(m, float64(held.Memory)/float64(capacity.Memory))
	}
	for t, c := range capacity.GPU {
		if c > 0 {
			m = max(m, float64(held.GPU[t])/float64(c))
		}
	}
	return m
}

func (st *state) room(c *Cluster) Resources {
	return c.Capacity.Sub(st.held[c.Name])
}

// pool is the lendable amount of the named resource for a borrower
// (exclude names the borrowing team, whose own quota it cannot lend to
// itself; "" for the pool as a whole).
func (st *state) pool(name, exclude string) int64 {
	p := max(0, st.enabledCap.Get(name)-st.limits.Get(name))
	for _, q := range st.lenders {
		if q.Team == exclude {
			continue
		}
		p += max(0, q.Limit.Get(name)-st.owned[q.Team].Get(name)-st.claimedTeam[q.Team].Get(name))
	}
	return p
}

func (st *state) place(req Request, now time.Time) Result {
	res := Result{ID: req.ID}
	if b, bad := invalid(req); bad {
		res.Blocker = b
		return res
	}
	st.dropOld(req.Job)
	cands, b, ok := st.eligible(req)
	if !ok {
		res.Blocker = b
		return res
	}
	need := req.Resources
	team := req.Team
	q := st.quota[team]
	ownedOK := q != nil && fitsOn(need, st.owned[team], q.Limit)
	var ownedC []*Cluster
	if ownedOK {
		for _, c := range cands {
			if split, ok := q.Clusters[c.Name]; ok && !fitsOn(need, st.ownedIn[teamCluster{team, c.Name}], split) {
				continue
			}
			ownedC = append(ownedC, c)
		}
	}
	if c := st.best(team, need, ownedC, false); c != nil {
		if req.ClaimOnly {
			return roomFor(res, c)
		}
		res.Placed, res.Reservation = true, st.commit(req, c, false, now)
		st.fitPool()
		return res
	}
	borrowShort := ""
	for _, name := range need.Names() {
		if len(st.quotas) > 0 && st.unmarked.Get(name)+need.Get(name) > st.pool(name, team) {
			borrowShort = name
			break
		}
	}
	if borrowShort == "" {
		if c := st.best(team, need, cands, true); c != nil {
			if req.ClaimOnly {
				return roomFor(res, c)
			}
			res.Placed, res.Reservation = true, st.commit(req, c, true, now)
			return res
		}
	}
	if len(ownedC) > 0 {
		if b, ok := st.reclaimFor(req, ownedC, now); ok {
			res.Blocker = b
			return res
		}
	}
	if len(ownedC) == 0 && borrowShort != "" {
		res.Blocker = st.quotaBlocker(req, cands, ownedOK, borrowShort)
		return res
	}
	full := ownedC
	if borrowShort == "" {
		full = cands
	}
	res.Blocker = st.capacityBlocker(need, full)
	return res
}

// roomFor answers a claim-only request that would be placed in c: not
// placed, no blocker kind, and the cluster named.
func roomFor(res Result, c *Cluster) Result {
	res.Blocker = Blocker{Clusters: []string{c.Name}, Detail: fmt.Sprintf("Cluster %s has room for the worker.", c.Name)}
	return res
}

// invalid checks a request on its own.
func invalid(req Request) (Blocker, bool) {
	bad := func(format string, a ...any) (Blocker, bool) {
		return Blocker{Kind: BlockInvalid, Detail: fmt.Sprintf(format, a...)}, true
	}
	r := req.Resources
	switch {
	case req.ID == "":
		return bad("The worker request has no ID.")
	case req.Team == "":
		return bad("Worker %s names no team, and placement needs one to count it against.", req.ID)
	case r.MilliCPU < 0:
		return bad("Worker %s asks for a negative amount of cpu (%s).", req.ID, FormatAmount(ResCPU, r.MilliCPU))
	case r.Memory < 0:
		return bad("Worker %s asks for a negative amount of memory (%d bytes).", req.ID, r.Memory)
	}
	var types []string
	for _, t := range slices.Sorted(maps.Keys(r.GPU)) {
		n := r.GPU[t]
		if n < 0 {
			return bad("Worker %s asks for a negative number of GPUs of type %q (%d).", req.ID, t, n)
		}
		if n > 0 && t == "" {
			return bad("Worker %s asks for GPUs of no named type.", req.ID)
		}
		if n > 0 {
			types = append(types, t)
		}
	}
	if len(types) > 1 {
		return bad("Worker %s asks for GPUs of %d types (%s); a worker holds GPUs of one type.", req.ID, len(types), strings.Join(types, ", "))
	}
	return Blocker{}, false
}

// offers reports whether c has every resource need asks for at all.
func offers(c *Cluster, need Resources) bool {
	if need.MilliCPU > 0 && c.Capacity.MilliCPU <= 0 {
		return false
	}
	if need.Memory > 0 && c.Capacity.Memory <= 0 {
		return false
	}
	for t, n := range need.GPU {
		if _, ok := c.Capacity.GPU[t]; n > 0 && !ok {
			return false
		}
	}
	return true
}

// eligible returns the enabled clusters that could run req, or the
// no-cluster or unavailable blocker when there are none.
func (st *state) eligible(req Request) ([]*Cluster, Blocker, bool) {
	need := req.Resources
	var reach []*Cluster
	if len(req.Clusters) == 0 {
		reach = st.clusters
	} else {
		for _, c := range st.clusters {
			if slices.Contains(req.Clusters, c.Name) {
				reach = append(reach, c)
			}
		}
	}
	if len(reach) == 0 {
		b := Blocker{Kind: BlockNoCluster, Detail: "No cluster is registered, so there is nowhere to start the worker."}
		if len(req.Clusters) > 0 {
			names := slices.Clone(req.Clusters)
			slices.Sort(names)
			b.Detail = fmt.Sprintf("None of the clusters this runner can start workers in (%s) is registered.", strings.Join(names, ", "))
		}
		return nil, b, false
	}
	var offer []*Cluster
	for _, c := range reach {
		if offers(c, need) {
			offer = append(offer, c)
		}
	}
	if len(offer) == 0 {
		missing := ""
		for _, name := range need.Names() {
			one := Resources{}
			switch name {
			case ResCPU:
				one.MilliCPU = 1
			case ResMemory:
				one.Memory = 1
			default:
				one.GPU = map[string]int64{strings.TrimPrefix(name, resGPU): 1}
			}
			if !slices.ContainsFunc(reach, func(c *Cluster) bool { return offers(c, one) }) {
				missing = name
				break
			}
		}
		b := Blocker{Kind: BlockNoCluster, Resource: missing, Clusters: names(reach)}
		if missing != "" {
			b.Detail = fmt.Sprintf("No %s offers %s.", reachPhrase(req), missing)
		} else {
			b.Detail = fmt.Sprintf("No %s offers %s together.", reachPhrase(req), andList(need.Names()))
		}
		return nil, b, false
	}
	var match []*Cluster
	for _, c := range offer {
		if c.Matches(req.NodeSelector) {
			match = append(match, c)
		}
	}
	if len(match) == 0 {
		return nil, Blocker{Kind: BlockNoCluster, Clusters: names(offer), Detail: fmt.Sprintf(
			"No %s that offers what the worker asks has nodes matching its selector %s.", reachPhrase(req), selectorString(req.NodeSelector))}, false
	}
	var big []*Cluster
	for _, c := range match {
		if short(c.Capacity, need) == "" {
			big = append(big, c)
		}
	}
	if len(big) == 0 {
		var caps []string
		for i, c := range match {
			if i == 5 {
				caps = append(caps, fmt.Sprintf("and %d more", len(match)-5))
				break
			}
			caps = append(caps, fmt.Sprintf("%s has %s", c.Name, capOf(c.Capacity, need)))
		}
		return nil, Blocker{Kind: BlockNoCluster, Resource: short(match[0].Capacity, need), Clusters: names(match), Detail: fmt.Sprintf(
			"The worker asks for %s, more than the whole capacity of any %s that could run it (%s).", need, reachPhrase(req), strings.Join(caps, "; "))}, false
	}
	var enabled []*Cluster
	for _, c := range big {
		if c.State == Enabled {
			enabled = append(enabled, c)
		}
	}
	if len(enabled) == 0 {
		var states []string
		for _, c := range big {
			states = append(states, fmt.Sprintf("%s is %s", c.Name, stateName(c.State)))
		}
		return nil, Blocker{Kind: BlockUnavailable, Clusters: names(big), Detail: fmt.Sprintf(
			"Every cluster that could run the worker is out of service: %s.", andList(states))}, false
	}
	return enabled, Blocker{}, true
}

func stateName(s ClusterState) string {
	if s == "" {
		return "in no state"
	}
	return string(s)
}

// reachPhrase names the clusters a request could use: "registered
// cluster", or "cluster this runner can reach" when it lists them.
func reachPhrase(req Request) string {
	if len(req.Clusters) == 0 {
		return "registered cluster"
	}
	return "cluster this runner can reach"
}

// capOf formats the amounts of capacity for the resources need asks.
func capOf(capacity, need Resources) string {
	var parts []string
	for _, name := range need.Names() {
		parts = append(parts, name+"="+FormatAmount(name, capacity.Get(name)))
	}
	return strings.Join(parts, " ")
}

func selectorString(sel map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		parts = append(parts, k+"="+sel[k])
	}
	return strings.Join(parts, ",")
}

func names(cs []*Cluster) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

// andList joins "a", "a and b", "a, b and c".
func andList(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// best returns the first cluster of cs with room for need in the choice
// order (see first); nil when none has room. Room claimed by other teams
// is not room; a borrower has no claim of its own to use.
func (st *state) best(team string, need Resources, cs []*Cluster, borrowed bool) *Cluster {
	return st.first(team, cs, func(c *Cluster) bool {
		taken := st.held[c.Name].Add(st.claimed[c.Name])
		if !borrowed {
			taken = taken.Sub(st.claimedBy[teamCluster{team, c.Name}])
		}
		return fitsOn(need, taken, c.Capacity)
	})
}

// first returns the cluster of cs passing ok where the team's dominant
// share is lowest, then the cluster's total dominant share, then the
// name; nil when none passes.
func (st *state) first(team string, cs []*Cluster, ok func(*Cluster) bool) *Cluster {
	var (
		pick        *Cluster
		pTeam, pAll float64
	)
	for _, c := range cs {
		if !ok(c) {
			continue
		}
		ts := share(st.teamHeld[teamCluster{team, c.Name}], c.Capacity)
		as := share(st.held[c.Name], c.Capacity)
		if pick == nil || ts < pTeam || (ts == pTeam && (as < pAll || (as == pAll && c.Name < pick.Name))) {
			pick, pTeam, pAll = c, ts, as
		}
	}
	return pick
}

// commit records a placement in the snapshot and the indexes.
func (st *state) commit(req Request, c *Cluster, borrowed bool, now time.Time) Reservation {
	need := positive(req.Resources)
	r := Reservation{
		ID:        req.ID,
		Team:      req.Team,
		Job:       req.Job,
		Cluster:   c.Name,
		Resources: need,
		Borrowed:  borrowed,
		Created:   now,
	}
	k := usageKey{req.Team, c.Name, borrowed}
	if i, ok := st.usageAt[k]; ok {
		u := &st.s.Usage[i]
		u.Held = u.Held.Add(need)
		u.Workers++
	} else {
		st.usageAt[k] = len(st.s.Usage)
		st.s.Usage = append(st.s.Usage, Usage{Team: req.Team, Cluster: c.Name, Borrowed: borrowed, Held: need.Add(Resources{}), Workers: 1})
	}
	st.count(req.Team, c.Name, borrowed, need)
	if borrowed {
		st.borrowedAt[c.Name] = append(st.borrowedAt[c.Name], len(st.s.Borrowed))
		st.s.Borrowed = append(st.s.Borrowed, r)
		addAt(st.borrowedIn, c.Name, need, 1)
		addTo(&st.unmarked, need, 1)
	}
	return r
}

// mark sets Reclaim on s.Borrowed[i].
func (st *state) mark(i int) {
	r := &st.s.Borrowed[i]
	r.Reclaim = true
	addAt(st.markedIn, r.Cluster, r.Resources, 1)
	addTo(&st.unmarked, r.Resources, -1)
	st.marked = append(st.marked, r.ID)
}

// pick returns the index of the next borrowed reservation to reclaim for
// resource name among the unmarked ones at idx: those in a cluster that
// is not enabled first, then the team holding the most of name among
// them (ties: team name), its newest reservation (ties: greatest ID).
// -1 when none holds any of name.
func (st *state) pick(idx []int, name string) int {
	type cand struct {
		i        int
		disabled bool
	}
	byTeam := map[string]int64{}
	var cands []cand
	anyDisabled := false
	for _, i := range idx {
		r := st.s.Borrowed[i]
		if r.Reclaim || r.Resources.Get(name) <= 0 {
			continue
		}
		c, known := st.cluster[r.Cluster]
		off := !known || c.State != Enabled
		anyDisabled = anyDisabled || off
		cands = append(cands, cand{i, off})
	}
	if len(cands) == 0 {
		return -1
	}
	for _, c := range cands {
		if c.disabled == anyDisabled {
			r := st.s.Borrowed[c.i]
			byTeam[r.Team] += r.Resources.Get(name)
		}
	}
	team := ""
	for _, t := range slices.Sorted(maps.Keys(byTeam)) {
		if team == "" || byTeam[t] > byTeam[team] {
			team = t
		}
	}
	best := -1
	for _, c := range cands {
		r := st.s.Borrowed[c.i]
		if c.disabled != anyDisabled || r.Team != team {
			continue
		}
		if best < 0 {
			best = c.i
			continue
		}
		b := st.s.Borrowed[best]
		if r.Created.After(b.Created) || (r.Created.Equal(b.Created) && r.ID > b.ID) {
			best = c.i
		}
	}
	return best
}

// fitPool marks borrowed reservations until the unmarked ones hold no
// more of any resource than the whole lendable pool.
func (st *state) fitPool() {
	if len(st.quotas) == 0 {
		return // no quotas: cluster room alone bounds borrowing
	}
	var all []int
	for {
		over := ""
		for _, name := range st.unmarked.Names() {
			if st.unmarked.Get(name) > st.pool(name, "") {
				over = name
				break
			}
		}
		if over == "" {
			return
		}
		if all == nil {
			all = make([]int, len(st.s.Borrowed))
			for i := range all {
				all[i] = i
			}
		}
		i := st.pick(all, over)
		if i < 0 {
			return // cannot happen: the unmarked total holds some of over
		}
		st.mark(i)
	}
}

// reclaimFor tries to make room for an owned request that found none: in
// the first cluster of cs (in choice order) where releasing every
// borrowed reservation would make room, it marks borrowed reservations
// until the marked ones (less what the claims there wait for) cover what
// is missing, and leaves a claim on that room (see Claim).
func (st *state) reclaimFor(req Request, cs []*Cluster, now time.Time) (Blocker, bool) {
	need := req.Resources
	c := st.first(req.Team, cs, func(x *Cluster) bool {
		return short(st.room(x).Add(st.borrowedIn[x.Name]).Sub(st.claimed[x.Name]), need) == ""
	})
	if c == nil {
		return Blocker{}, false
	}
	for {
		freed := st.room(c).Add(st.markedIn[c.Name]).Sub(st.claimed[c.Name])
		missing := short(freed, need)
		if missing == "" {
			break
		}
		i := st.pick(st.borrowedAt[c.Name], missing)
		if i < 0 {
			return Blocker{}, false // cannot happen: the check above found enough
		}
		st.mark(i)
	}
	cl := Claim{ID: req.ID, Team: req.Team, Job: req.Job, Cluster: c.Name, Resources: positive(need), ExpiresAt: now.Add(ClaimTTL)}
	st.s.Claims = append(st.s.Claims, cl)
	st.s.ClaimsMade = append(st.s.ClaimsMade, cl)
	st.claim(cl, 1)
	byTeam := map[string]int{}
	total := 0
	for _, i := range st.borrowedAt[c.Name] {
		if r := st.s.Borrowed[i]; r.Reclaim {
			byTeam[r.Team]++
			total++
		}
	}
	var parts []string
	for _, t := range slices.Sorted(maps.Keys(byTeam)) {
		parts = append(parts, fmt.Sprintf("%d of team %s", byTeam[t], t))
	}
	return Blocker{Kind: BlockReclaiming, Clusters: []string{c.Name}, Detail: fmt.Sprintf(
		"Team %s is within its quota, but borrowed workers hold the room in cluster %s: %s %s finishing %s current task to give it back.",
		req.Team, c.Name, andList(parts), plural(total, "is", "are"), plural(total, "its", "their"))}, true
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// quotaBlocker explains why a request can be neither owned nor borrowed.
func (st *state) quotaBlocker(req Request, cands []*Cluster, ownedOK bool, borrowShort string) Blocker {
	need := req.Resources
	team := req.Team
	pool, borrowed := st.pool(borrowShort, team), st.unmarked.Get(borrowShort)
	lead := "nothing lendable is left"
	if pool > borrowed {
		lead = "too little is lendable"
	}
	lend := fmt.Sprintf("%s (%s: %s lendable to it, %s already borrowed, the worker needs %s).", lead, borrowShort,
		FormatAmount(borrowShort, pool), FormatAmount(borrowShort, borrowed), FormatAmount(borrowShort, need.Get(borrowShort)))
	q := st.quota[team]
	if q == nil {
		return Blocker{Kind: BlockQuota, Resource: borrowShort, Used: st.unmarked.Get(borrowShort), Limit: st.pool(borrowShort, team),
			Detail: fmt.Sprintf("Team %s has no quota, and %s", team, lend)}
	}
	if !ownedOK {
		name := short(q.Limit.Sub(st.owned[team]), need)
		used, limit := st.owned[team].Get(name), q.Limit.Get(name)
		return Blocker{Kind: BlockQuota, Resource: name, Used: used, Limit: limit, Detail: fmt.Sprintf(
			"Team %s's quota: %s %s of %s in use and the worker needs %s more; %s", team, name,
			FormatAmount(name, used), FormatAmount(name, limit), FormatAmount(name, need.Get(name)), lend)}
	}
	// Within the limit, but every split that applies is used up.
	c := cands[0]
	split := q.Clusters[c.Name]
	inC := st.ownedIn[teamCluster{team, c.Name}]
	name := short(split.Sub(inC), need)
	return Blocker{Kind: BlockQuota, Resource: name, Used: inC.Get(name), Limit: split.Get(name), Clusters: names(cands), Detail: fmt.Sprintf(
		"Team %s's quota splits are used up in every cluster that could run the worker (%s: %s %s of %s in use); %s", team, c.Name, name,
		FormatAmount(name, inC.Get(name)), FormatAmount(name, split.Get(name)), lend)}
}

// capacityBlocker explains that every cluster of cs is full.
func (st *state) capacityBlocker(need Resources, cs []*Cluster) Blocker {
	b := Blocker{Kind: BlockCapacity, Clusters: names(cs)}
	var parts []string
	for i, c := range cs {
		// Claims count as held: the room they keep is promised.
		taken := st.held[c.Name].Add(st.claimed[c.Name])
		name := short(c.Capacity.Sub(taken), need)
		if name == "" && len(need.Names()) > 0 {
			name = need.Names()[0]
		}
		held := taken.Get(name)
		if i == 0 {
			b.Resource, b.Used, b.Limit = name, held, c.Capacity.Get(name)
		}
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(cs)-5))
			break
		}
		parts = append(parts, fmt.Sprintf("%s has %s %s of %s held", c.Name, name, FormatAmount(name, held), FormatAmount(name, c.Capacity.Get(name))))
	}
	b.Detail = fmt.Sprintf("No cluster that could run the worker has room for %s: %s.", need, andList(parts))
	return b
}
