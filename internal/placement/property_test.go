package placement

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRandomRuns drives Place and Rebalance through random fleets (1 to 4
// clusters with random capacity, GPU types, labels and states; 0 to 4
// quotas with random limits, splits and lending) and random operations
// (batches of requests, valid and not; workers exiting; cluster state
// changes; quotas raised or added; rebalances). A model keeps every reservation in a plain list
// and recomputes all totals from it by brute force. For each request of
// a batch it runs Place on a copy of the snapshot with the batch up to
// that request, so that it knows the exact state the request was decided
// in, and checks against the model:
//
//   - the outcome: placed owned, placed borrowed or refused, the cluster
//     chosen (the doc's choice order, recomputed), and the blocker kind;
//   - a borrowed placement kept borrowed + request within the pool for
//     its team; a reclaim blocker names a cluster where the marked workers
//     cover the request; marks touch only unmarked borrowed reservations
//     and follow only an owned placement or a reclaim blocker;
//   - prefixes agree: a batch's first k results do not depend on later
//     requests.
//
// And after every operation: owned use of every team within its limit
// and splits; every cluster's reservations within its capacity; the
// unmarked borrowed total within the pool after an owned placement and
// after Rebalance (when there are quotas); no unmarked borrowed
// reservation in a draining cluster after Rebalance; the snapshot's
// usage equal to the model's recomputation; Place deterministic.
func TestRandomRuns(t *testing.T) {
	t.Parallel()
	runs := 300
	if testing.Short() {
		runs = 60
	}
	var st propStats
	for seed := range uint64(runs) {
		if err := randomRun(seed, &st); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
	t.Logf("%d runs: %+v", runs, st)
	for k, n := range map[string]int{
		"owned": st.Owned, "borrowed": st.Borrowed, "reclaim marks": st.Marks,
		string(BlockInvalid): st.Blocked[BlockInvalid], string(BlockNoCluster): st.Blocked[BlockNoCluster],
		string(BlockUnavailable): st.Blocked[BlockUnavailable], string(BlockQuota): st.Blocked[BlockQuota],
		string(BlockReclaiming): st.Blocked[BlockReclaiming], string(BlockCapacity): st.Blocked[BlockCapacity],
	} {
		if n == 0 {
			t.Errorf("the runs never produced %s: %+v", k, st)
		}
	}
}

type propStats struct {
	Owned, Borrowed, Marks int
	Blocked                map[BlockerKind]int
}

// model is the fleet as a plain list of reservations.
type model struct {
	clusters []Cluster
	quotas   []Quota
	res      []Reservation
	claims   []Claim
	now      time.Time
	next     int
}

func (m *model) quota(team string) *Quota {
	for i := range m.quotas {
		if m.quotas[i].Team == team {
			return &m.quotas[i]
		}
	}
	return nil
}

func (m *model) sum(f func(Reservation) bool) Resources {
	var out Resources
	for _, r := range m.res {
		if f(r) {
			out = out.Add(r.Resources)
		}
	}
	return out
}

func (m *model) held(c string) Resources {
	return m.sum(func(r Reservation) bool { return r.Cluster == c })
}

func (m *model) own(team, c string) Resources {
	return m.sum(func(r Reservation) bool { return r.Team == team && !r.Borrowed && (c == "" || r.Cluster == c) })
}

// claimed sums the claims in cluster c ("" for all clusters) of team
// ("" for every team), leaving out team except.
func (m *model) claimed(c, team, except string) Resources {
	var out Resources
	for _, cl := range m.claims {
		if (c == "" || cl.Cluster == c) && (team == "" || cl.Team == team) && (except == "" || cl.Team != except) {
			out = out.Add(cl.Resources)
		}
	}
	return out
}

func (m *model) unmarked() Resources {
	return m.sum(func(r Reservation) bool { return r.Borrowed && !r.Reclaim })
}

func (m *model) pool(name, except string) int64 {
	var capacity, limits, lent int64
	for _, c := range m.clusters {
		if c.State == Enabled {
			capacity += c.Capacity.Get(name)
		}
	}
	for _, q := range m.quotas {
		limits += q.Limit.Get(name)
		if q.Lend && q.Team != except {
			lent += max(0, q.Limit.Get(name)-m.own(q.Team, "").Get(name)-m.claimed("", q.Team, "").Get(name))
		}
	}
	return max(0, capacity-limits) + lent
}

// fits reports whether need fits within have on every resource need asks.
func fits(need, have Resources) bool {
	for _, n := range need.Names() {
		if need.Get(n) > have.Get(n) {
			return false
		}
	}
	return true
}

func (m *model) snapshot() *Snapshot {
	s := &Snapshot{Clusters: slices.Clone(m.clusters), Quotas: slices.Clone(m.quotas), Claims: slices.Clone(m.claims)}
	s.Usage = m.usage()
	for _, r := range m.res {
		if r.Borrowed {
			s.Borrowed = append(s.Borrowed, r)
		}
	}
	return s
}

// usage aggregates the reservations by team, cluster and borrowed, sorted.
func (m *model) usage() []Usage {
	return aggregate(func(yield func(Usage)) {
		for _, r := range m.res {
			yield(Usage{Team: r.Team, Cluster: r.Cluster, Borrowed: r.Borrowed, Held: r.Resources, Workers: 1})
		}
	})
}

func aggregate(each func(func(Usage))) []Usage {
	var out []Usage
	each(func(u Usage) {
		i := slices.IndexFunc(out, func(x Usage) bool { return x.Team == u.Team && x.Cluster == u.Cluster && x.Borrowed == u.Borrowed })
		if i < 0 {
			out = append(out, Usage{Team: u.Team, Cluster: u.Cluster, Borrowed: u.Borrowed})
			i = len(out) - 1
		}
		out[i].Held = out[i].Held.Add(u.Held)
		out[i].Workers += u.Workers
	})
	out = slices.DeleteFunc(out, func(u Usage) bool { return u.Workers == 0 })
	slices.SortFunc(out, func(a, b Usage) int {
		return cmp.Or(cmp.Compare(a.Team, b.Team), cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(fmt.Sprint(a.Borrowed), fmt.Sprint(b.Borrowed)))
	})
	return out
}

func copySnapshot(s *Snapshot) *Snapshot {
	return &Snapshot{Clusters: slices.Clone(s.Clusters), Quotas: slices.Clone(s.Quotas), Usage: slices.Clone(s.Usage), Borrowed: slices.Clone(s.Borrowed), Claims: slices.Clone(s.Claims)}
}

// static reports whether cluster c passes eligibility conditions 1 to 4.
func static(c Cluster, req Request) bool {
	if len(req.Clusters) > 0 && !slices.Contains(req.Clusters, c.Name) {
		return false
	}
	for _, n := range req.Resources.Names() {
		switch n {
		case ResCPU, ResMemory:
			if c.Capacity.Get(n) <= 0 {
				return false
			}
		default:
			if _, ok := c.Capacity.GPU[strings.TrimPrefix(n, resGPU)]; !ok {
				return false
			}
		}
	}
	return c.Matches(req.NodeSelector) && fits(req.Resources, c.Capacity)
}

func modelInvalid(req Request) bool {
	r := req.Resources
	if req.ID == "" || req.Team == "" || r.MilliCPU < 0 || r.Memory < 0 {
		return true
	}
	types := 0
	for t, n := range r.GPU {
		if n < 0 || (n > 0 && t == "") {
			return true
		}
		if n > 0 {
			types++
		}
	}
	return types > 1
}

func domShare(held, capacity Resources) float64 {
	var m float64
	for _, n := range capacity.Names() {
		if capacity.Get(n) > 0 {
			m = max(m, float64(held.Get(n))/float64(capacity.Get(n)))
		}
	}
	return m
}

// choose is the choice order of the doc, written the plain way: sort.
func (m *model) choose(team string, cs []Cluster) string {
	type scored struct {
		name        string
		team, total float64
	}
	var all []scored
	for _, c := range cs {
		all = append(all, scored{c.Name,
			domShare(m.sum(func(r Reservation) bool { return r.Team == team && r.Cluster == c.Name }), c.Capacity),
			domShare(m.held(c.Name), c.Capacity)})
	}
	slices.SortFunc(all, func(a, b scored) int {
		return cmp.Or(cmp.Compare(a.team, b.team), cmp.Compare(a.total, b.total), cmp.Compare(a.name, b.name))
	})
	return all[0].name
}

// expect is what the model says about one request.
type expect struct {
	kind      BlockerKind // "" when it must be placed
	borrowed  bool
	cluster   string
	reclaimOK []string // clusters where reclaim could make room (for reclaiming or capacity)
}

func (m *model) expect(req Request) expect {
	if modelInvalid(req) {
		return expect{kind: BlockInvalid}
	}
	var stat, cands []Cluster
	for _, c := range m.clusters {
		if static(c, req) {
			stat = append(stat, c)
			if c.State == Enabled {
				cands = append(cands, c)
			}
		}
	}
	if len(stat) == 0 {
		return expect{kind: BlockNoCluster}
	}
	if len(cands) == 0 {
		return expect{kind: BlockUnavailable}
	}
	need := req.Resources
	q := m.quota(req.Team)
	var ownedC []Cluster
	if q != nil && fits(need, q.Limit.Sub(m.own(req.Team, ""))) {
		for _, c := range cands {
			if split, ok := q.Clusters[c.Name]; ok && !fits(need, split.Sub(m.own(req.Team, c.Name))) {
				continue
			}
			ownedC = append(ownedC, c)
		}
	}
	// Room is what reservations and other teams' claims leave; a
	// borrower cannot use its own team's claims either.
	withRoom := func(cs []Cluster, borrowed bool) []Cluster {
		var out []Cluster
		for _, c := range cs {
			except := req.Team
			if borrowed {
				except = ""
			}
			if fits(need, c.Capacity.Sub(m.held(c.Name)).Sub(m.claimed(c.Name, "", except))) {
				out = append(out, c)
			}
		}
		return out
	}
	if r := withRoom(ownedC, false); len(r) > 0 {
		return expect{cluster: m.choose(req.Team, r)}
	}
	borrowOK := true
	if len(m.quotas) > 0 {
		for _, n := range need.Names() {
			if m.unmarked().Get(n)+need.Get(n) > m.pool(n, req.Team) {
				borrowOK = false
			}
		}
	}
	if r := withRoom(cands, true); borrowOK && len(r) > 0 {
		return expect{borrowed: true, cluster: m.choose(req.Team, r)}
	}
	if len(ownedC) == 0 && !borrowOK {
		return expect{kind: BlockQuota}
	}
	var can []string
	for _, c := range ownedC {
		b := m.sum(func(r Reservation) bool { return r.Borrowed && r.Cluster == c.Name })
		if fits(need, c.Capacity.Sub(m.held(c.Name)).Add(b).Sub(m.claimed(c.Name, "", ""))) {
			can = append(can, c.Name)
		}
	}
	// Reclaiming when can is not empty, unless requests earlier in the
	// batch already wait for that room (then capacity).
	return expect{kind: BlockCapacity, reclaimOK: can}
}

// check holds the invariants that do not depend on the operation.
func (m *model) check() error {
	for _, c := range m.clusters {
		h := m.held(c.Name)
		if n := h.Exceeds(c.Capacity); n != "" {
			return fmt.Errorf("cluster %s holds %s, more than its capacity %s", c.Name, h, c.Capacity)
		}
	}
	for _, q := range m.quotas {
		if o := m.own(q.Team, ""); o.Exceeds(q.Limit) != "" {
			return fmt.Errorf("team %s owns %s, over its limit %s", q.Team, o, q.Limit)
		}
		for c, split := range q.Clusters {
			if o := m.own(q.Team, c); o.Exceeds(split) != "" {
				return fmt.Errorf("team %s owns %s in %s, over its split %s", q.Team, o, c, split)
			}
		}
	}
	for _, r := range m.res {
		if r.Reclaim && !r.Borrowed {
			return fmt.Errorf("owned reservation %s marked for reclaim", r.ID)
		}
	}
	return nil
}

func (m *model) poolFits() error {
	if len(m.quotas) == 0 {
		return nil
	}
	u := m.unmarked()
	for _, n := range u.Names() {
		if u.Get(n) > m.pool(n, "") {
			return fmt.Errorf("borrowed %s %s, more than the pool %s", n, FormatAmount(n, u.Get(n)), FormatAmount(n, m.pool(n, "")))
		}
	}
	return nil
}

// apply records in the model what a snapshot after Place or Rebalance
// says: new reservations and marks; it checks the marks.
func (m *model) apply(results []Result, marked []string) error {
	for _, r := range results {
		if r.Placed {
			m.res = append(m.res, r.Reservation)
		}
	}
	for _, id := range marked {
		i := slices.IndexFunc(m.res, func(r Reservation) bool { return r.ID == id })
		if i < 0 {
			return fmt.Errorf("marked %s, which is not a reservation", id)
		}
		if !m.res[i].Borrowed || m.res[i].Reclaim {
			return fmt.Errorf("marked %s, which is owned or already marked", id)
		}
		m.res[i].Reclaim = true
	}
	return nil
}

// agrees checks that the snapshot Place or Rebalance left matches the
// model.
func (m *model) agrees(s *Snapshot) error {
	got := aggregate(func(yield func(Usage)) {
		for _, u := range s.Usage {
			yield(u)
		}
	})
	if want := m.usage(); !reflect.DeepEqual(got, want) {
		return fmt.Errorf("snapshot usage\n%v\nmodel\n%v", got, want)
	}
	var want []Reservation
	for _, r := range m.res {
		if r.Borrowed {
			want = append(want, r)
		}
	}
	if !reflect.DeepEqual(s.Borrowed, want) {
		return fmt.Errorf("snapshot borrowed\n%v\nmodel\n%v", s.Borrowed, want)
	}
	byID := func(a, b Claim) int { return cmp.Compare(a.ID, b.ID) }
	got2, want2 := slices.SortedFunc(slices.Values(s.Claims), byID), slices.SortedFunc(slices.Values(m.claims), byID)
	if !reflect.DeepEqual(got2, want2) {
		return fmt.Errorf("snapshot claims\n%v\nmodel\n%v", got2, want2)
	}
	return nil
}

var gpuTypes = []string{"a100", "t4"}

func randResources(rng *rand.Rand, cpu, memGi, gpu int) Resources {
	var r Resources
	if rng.IntN(5) > 0 {
		r.MilliCPU = int64(rng.IntN(cpu*2+1)) * 500
	}
	if rng.IntN(3) > 0 {
		r.Memory = int64(rng.IntN(memGi+1)) << 30
	}
	if gpu > 0 && rng.IntN(2) == 0 {
		r.GPU = map[string]int64{gpuTypes[rng.IntN(len(gpuTypes))]: int64(rng.IntN(gpu + 1))}
	}
	return r
}

func randomFleet(rng *rand.Rand) *model {
	m := &model{now: time.Unix(1000, 0).UTC()}
	for i := range 1 + rng.IntN(4) {
		c := Cluster{Name: fmt.Sprintf("c%d", i), State: Enabled}
		c.Capacity = Resources{MilliCPU: int64(rng.IntN(5)) * 8000, Memory: int64(rng.IntN(5)) * 16 << 30}
		for _, t := range gpuTypes {
			if rng.IntN(3) == 0 {
				c.Capacity.addGPU(t, int64(1+rng.IntN(8)))
				if rng.IntN(3) == 0 {
					c.Capacity.GPU[t] = 0 // offered, none free to haul
				}
			}
		}
		if rng.IntN(2) == 0 {
			c.Labels = map[string][]string{"zone": {fmt.Sprintf("z%d", rng.IntN(2))}}
		}
		if rng.IntN(6) == 0 {
			c.State = []ClusterState{Disabled, Draining}[rng.IntN(2)]
		}
		m.clusters = append(m.clusters, c)
	}
	for i := range rng.IntN(5) {
		q := Quota{Team: fmt.Sprintf("t%d", i), Lend: rng.IntN(2) == 0, Limit: randResources(rng, 24, 64, 6)}
		if rng.IntN(3) == 0 {
			c := m.clusters[rng.IntN(len(m.clusters))].Name
			split := q.Limit
			split.MilliCPU = split.MilliCPU / 2
			q.Clusters = map[string]Resources{c: split}
		}
		m.quotas = append(m.quotas, q)
	}
	return m
}

func (m *model) randomRequest(rng *rand.Rand) Request {
	m.next++
	req := Request{ID: fmt.Sprintf("w%d", m.next), Team: fmt.Sprintf("t%d", rng.IntN(6)), Job: fmt.Sprintf("j%d", rng.IntN(4)), Resources: randResources(rng, 8, 24, 2)}
	switch rng.IntN(40) {
	case 0:
		req.Team = ""
	case 1:
		req.Resources.MilliCPU = -1000
	case 2:
		req.Resources.GPU = map[string]int64{"a100": 1, "t4": 1}
	}
	if rng.IntN(6) == 0 {
		req.NodeSelector = map[string]string{"zone": fmt.Sprintf("z%d", rng.IntN(3))}
	}
	if rng.IntN(6) == 0 {
		for _, c := range m.clusters {
			if rng.IntN(2) == 0 {
				req.Clusters = append(req.Clusters, c.Name)
			}
		}
		if len(req.Clusters) == 0 {
			req.Clusters = []string{"elsewhere"}
		}
	}
	return req
}

func randomRun(seed uint64, st *propStats) error {
	if st.Blocked == nil {
		st.Blocked = map[BlockerKind]int{}
	}
	rng := rand.New(rand.NewPCG(seed, 14))
	m := randomFleet(rng)
	for step := range 60 {
		m.now = m.now.Add(time.Second)
		var err error
		switch p := rng.IntN(20); {
		case p < 12:
			err = m.placeBatch(rng, st)
		case p < 17:
			if len(m.res) > 0 {
				// Marked workers exit more often than others.
				i := rng.IntN(len(m.res))
				for range 2 {
					if !m.res[i].Reclaim {
						i = rng.IntN(len(m.res))
					}
				}
				m.res = slices.Delete(m.res, i, i+1)
			}
		case p < 18:
			c := &m.clusters[rng.IntN(len(m.clusters))]
			c.State = []ClusterState{Enabled, Enabled, Disabled, Draining}[rng.IntN(4)]
		case p < 19:
			// A quota raised or a new one: the unowned pool shrinks,
			// and no team's own use goes over its limit.
			team := fmt.Sprintf("t%d", rng.IntN(6))
			if q := m.quota(team); q != nil {
				q.Limit = q.Limit.Add(randResources(rng, 8, 16, 2))
			} else {
				m.quotas = append(m.quotas, Quota{Team: team, Lend: rng.IntN(2) == 0, Limit: randResources(rng, 16, 32, 4)})
			}
		default:
			err = m.rebalance(st)
		}
		if err == nil {
			err = m.check()
		}
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
	}
	return nil
}

func (m *model) rebalance(st *propStats) error {
	s := m.snapshot()
	marked := Rebalance(s)
	st.Marks += len(marked)
	if err := m.apply(nil, marked); err != nil {
		return err
	}
	if err := m.agrees(s); err != nil {
		return err
	}
	for _, r := range m.res {
		i := slices.IndexFunc(m.clusters, func(c Cluster) bool { return c.Name == r.Cluster })
		if r.Borrowed && !r.Reclaim && m.clusters[i].State == Draining {
			return fmt.Errorf("after Rebalance, borrowed %s in draining cluster %s is not marked", r.ID, r.Cluster)
		}
	}
	return m.poolFits()
}

func (m *model) placeBatch(rng *rand.Rand, st *propStats) error {
	var reqs []Request
	for range 1 + rng.IntN(6) {
		reqs = append(reqs, m.randomRequest(rng))
	}
	base := m.snapshot()
	full, fullMarked := Place(copySnapshot(base), reqs, m.now)
	again, againMarked := Place(copySnapshot(base), reqs, m.now)
	if !reflect.DeepEqual(full, again) || !slices.Equal(fullMarked, againMarked) {
		return fmt.Errorf("Place is not deterministic:\n%v %v\n%v %v", full, fullMarked, again, againMarked)
	}
	if len(full) != len(reqs) {
		return fmt.Errorf("%d results for %d requests", len(full), len(reqs))
	}
	waiting := map[string]bool{} // clusters earlier requests of the batch wait on
	var prevMarked []string
	var s *Snapshot
	asked := map[string]bool{} // jobs whose claims from before the batch are dropped
	for k, req := range reqs {
		if !modelInvalid(req) && !asked[req.Job] {
			asked[req.Job] = true
			m.claims = slices.DeleteFunc(m.claims, func(c Claim) bool {
				return c.Job == req.Job && slices.ContainsFunc(base.Claims, func(b Claim) bool { return b.ID == c.ID })
			})
		}
		want := m.expect(req)
		s = copySnapshot(base)
		results, marked := Place(s, reqs[:k+1], m.now)
		if !reflect.DeepEqual(results, full[:k+1]) || !slices.Equal(marked, fullMarked[:len(marked)]) {
			return fmt.Errorf("the first %d results differ from the whole batch's", k+1)
		}
		if !slices.Equal(marked[:len(prevMarked)], prevMarked) {
			return fmt.Errorf("request %d: marks before it changed", k)
		}
		newMarks := marked[len(prevMarked):]
		prevMarked = marked
		r := results[k]
		if r.ID != req.ID {
			return fmt.Errorf("result %d is for %s, want %s", k, r.ID, req.ID)
		}
		desc := fmt.Sprintf("request %+v: result %+v, model %+v", req, r, want)
		switch {
		case want.kind == "":
			if !r.Placed || r.Reservation.Borrowed != want.borrowed || r.Reservation.Cluster != want.cluster {
				return fmt.Errorf("%s", desc)
			}
			res := r.Reservation
			if res.ID != req.ID || res.Team != req.Team || res.Job != req.Job || !res.Created.Equal(m.now) || !reflect.DeepEqual(res.Resources, positive(req.Resources)) {
				return fmt.Errorf("reservation %+v does not match request %+v", res, req)
			}
			if r.Reservation.Borrowed {
				st.Borrowed++
			} else {
				st.Owned++
			}
		case r.Placed:
			return fmt.Errorf("placed against the model: %s", desc)
		case want.kind == BlockCapacity && r.Blocker.Kind == BlockReclaiming:
			c := r.Blocker.Clusters
			if len(c) != 1 || !slices.Contains(want.reclaimOK, c[0]) {
				return fmt.Errorf("reclaiming in a cluster where reclaim cannot make room: %s", desc)
			}
			waiting[c[0]] = true
		case want.kind == BlockCapacity && r.Blocker.Kind == BlockCapacity:
			for _, c := range want.reclaimOK {
				if !waiting[c] {
					return fmt.Errorf("capacity though reclaim in %s could make room: %s", c, desc)
				}
			}
		case r.Blocker.Kind != want.kind:
			return fmt.Errorf("blocker: %s", desc)
		}
		if !r.Placed {
			st.Blocked[r.Blocker.Kind]++
			if !strings.HasSuffix(r.Blocker.Detail, ".") || len(r.Blocker.Detail) < 20 {
				return fmt.Errorf("blocker detail is not a sentence: %q", r.Blocker.Detail)
			}
		}
		if len(newMarks) > 0 && !(r.Placed && !r.Reservation.Borrowed) && r.Blocker.Kind != BlockReclaiming {
			return fmt.Errorf("marks %v after %s", newMarks, desc)
		}
		st.Marks += len(newMarks)
		if err := m.apply(results[k:], newMarks); err != nil {
			return err
		}
		if r.Blocker.Kind == BlockReclaiming {
			c := r.Blocker.Clusters[0]
			i := slices.IndexFunc(m.clusters, func(x Cluster) bool { return x.Name == c })
			freed := m.clusters[i].Capacity.Sub(m.held(c)).Add(m.sum(func(x Reservation) bool { return x.Cluster == c && x.Reclaim })).Sub(m.claimed(c, "", ""))
			if !fits(req.Resources, freed) {
				return fmt.Errorf("after %s: the marked workers in %s free %s, not enough", desc, c, freed)
			}
			made := s.ClaimsMade
			if len(made) == 0 || made[len(made)-1].ID != req.ID || made[len(made)-1].Cluster != c || made[len(made)-1].Team != req.Team ||
				!made[len(made)-1].ExpiresAt.Equal(m.now.Add(ClaimTTL)) {
				return fmt.Errorf("after %s: no claim on %s for it (made %v)", desc, c, made)
			}
			m.claims = append(m.claims, made[len(made)-1])
		}
		if err := m.agrees(s); err != nil {
			return fmt.Errorf("after %s: %w", desc, err)
		}
		if r.Placed && !r.Reservation.Borrowed {
			if err := m.poolFits(); err != nil {
				return fmt.Errorf("after the owned placement %s: %w", desc, err)
			}
		}
		if err := m.check(); err != nil {
			return fmt.Errorf("after %s: %w", desc, err)
		}
	}
	return nil
}
