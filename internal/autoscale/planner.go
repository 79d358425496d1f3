package autoscale

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultScaleDownGrace  = 10 * time.Minute
	DefaultCapacityBackoff = 5 * time.Minute
	DefaultInterval        = 30 * time.Second
)

// Shortfall reasons (Shortfall.Reason). Plan lists its shortfalls in this
// order.
const (
	ReasonNoConfigFits    = "no config fits"
	ReasonCapacityLimited = "capacity-limited"
	ReasonGlobalMaxNodes  = "global max nodes"
	ReasonGlobalMaxSpend  = "global max spend"
	ReasonConfigMaxNodes  = "config max nodes"
	ReasonConfigMaxSpend  = "config max spend"
	ReasonAddRate         = "add rate"
	ReasonConfigAddRate   = "config add rate"
)

var reasonOrder = []string{
	ReasonNoConfigFits,
	ReasonCapacityLimited,
	ReasonGlobalMaxNodes,
	ReasonGlobalMaxSpend,
	ReasonConfigMaxNodes,
	ReasonConfigMaxSpend,
	ReasonAddRate,
	ReasonConfigAddRate,
}

// ErrInvalidConfig is wrapped by every error NewPlanner returns.
var ErrInvalidConfig = errors.New("invalid autoscaler config")

// spendSlack absorbs floating-point rounding in spend-rate comparisons.
const spendSlack = 1e-9

// Planner is haul's autoscaling policy (see the package documentation). It
// is a pure decision core: it does no I/O, starts no goroutines and reads
// the time only from State.Now and the now arguments. Its memory between
// calls is the capacity-limited marks and the recent launches and removals
// that the add and remove rates count. It is safe for concurrent use.
type Planner struct {
	mu    sync.Mutex
	cfg   Config // validated, defaults applied, owned
	index map[string]int
	caps  []res
	rank  rankFunc
	// ceiling is, per spot config, the on-demand price of its instance type
	// (0 when none is configured): spot prices do not exceed it, so spend
	// limits count spot nodes at it and hold however spot prices move.
	ceiling []float64

	limitedUntil []time.Time // per config; limited while now is before it
	adds         []rateEvent // from Launched, got > 0
	removes      []rateEvent // from Plan, one per planning time
}

type rateEvent struct {
	at time.Time
	n  int
	ci int // the config, or -1 when unknown
}

var _ Policy = (*Planner)(nil)

// NewPlanner validates cfg, applies the defaults and returns a Planner. The
// error wraps ErrInvalidConfig and names every problem found: which launch
// config and which field.
func NewPlanner(cfg Config) (*Planner, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	c := cfg
	c.Configs = cloneConfigs(cfg.Configs)
	if c.Strategy == "" {
		c.Strategy = StrategyCost
	}
	if c.ScaleDownGrace == 0 {
		c.ScaleDownGrace = DefaultScaleDownGrace
	}
	if c.CapacityBackoff == 0 {
		c.CapacityBackoff = DefaultCapacityBackoff
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	rank, _ := strategyRank(c.Strategy)
	p := &Planner{
		cfg:          c,
		index:        make(map[string]int, len(c.Configs)),
		caps:         make([]res, len(c.Configs)),
		rank:         rank,
		limitedUntil: make([]time.Time, len(c.Configs)),
	}
	onDemand := map[string]float64{}
	for _, lc := range c.Configs {
		if lc.Purchase != Spot {
			onDemand[lc.InstanceType] = max(onDemand[lc.InstanceType], lc.PricePerHour)
		}
	}
	p.ceiling = make([]float64, len(c.Configs))
	for i, lc := range c.Configs {
		p.index[lc.Name] = i
		p.caps[i] = toRes(lc.Capacity)
		if lc.Purchase == Spot && lc.InstanceType != "" {
			p.ceiling[i] = onDemand[lc.InstanceType]
		}
	}
	return p, nil
}

func validate(cfg Config) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if len(cfg.Configs) == 0 {
		bad("Configs is empty: at least one launch config is needed")
	}
	seen := make(map[string]int, len(cfg.Configs))
	for i, lc := range cfg.Configs {
		where := fmt.Sprintf("launch config %q", lc.Name)
		switch j, dup := seen[lc.Name]; {
		case lc.Name == "":
			where = fmt.Sprintf("launch config #%d", i)
			bad("%s: Name is empty", where)
		case dup:
			bad("%s: Name is not unique (also launch config #%d)", where, j)
		default:
			seen[lc.Name] = i
		}
		if lc.Capacity.MilliCPU <= 0 {
			bad("%s: Capacity.MilliCPU must be positive, got %d", where, lc.Capacity.MilliCPU)
		}
		if lc.Capacity.MemoryBytes <= 0 {
			bad("%s: Capacity.MemoryBytes must be positive, got %d", where, lc.Capacity.MemoryBytes)
		}
		if lc.Capacity.GPU < 0 {
			bad("%s: Capacity.GPU must not be negative, got %d", where, lc.Capacity.GPU)
		}
		if !nonNegative(lc.PricePerHour) {
			bad("%s: PricePerHour must be a non-negative number, got %v", where, lc.PricePerHour)
		}
		if lc.MaxNodes < 0 {
			bad("%s: MaxNodes must not be negative, got %d", where, lc.MaxNodes)
		}
		if lc.MaxAddPerInterval < 0 || lc.MaxRemovePerInterval < 0 {
			bad("%s: MaxAddPerInterval and MaxRemovePerInterval must not be negative, got %d and %d", where, lc.MaxAddPerInterval, lc.MaxRemovePerInterval)
		}
		if !nonNegative(lc.MaxSpendPerHour) {
			bad("%s: MaxSpendPerHour must be a non-negative number, got %v", where, lc.MaxSpendPerHour)
		}
		switch lc.Purchase {
		case "", OnDemand, Spot:
		default:
			bad("%s: Purchase %q is unknown (want %q or %q)", where, lc.Purchase, OnDemand, Spot)
		}
		for j, t := range lc.Taints {
			if t.Key == "" {
				bad("%s: Taints[%d].Key is empty", where, j)
			}
			switch t.Effect {
			case EffectNoSchedule, EffectPreferNoSchedule, EffectNoExecute:
			default:
				bad("%s: Taints[%d].Effect %q is unknown (want %s, %s or %s)", where, j, t.Effect,
					EffectNoSchedule, EffectPreferNoSchedule, EffectNoExecute)
			}
		}
	}
	l := cfg.Limits
	if l.MaxNodes < 0 {
		bad("Limits.MaxNodes must not be negative, got %d", l.MaxNodes)
	}
	if !nonNegative(l.MaxSpendPerHour) {
		bad("Limits.MaxSpendPerHour must be a non-negative number, got %v", l.MaxSpendPerHour)
	}
	if l.MaxAddPerInterval < 0 {
		bad("Limits.MaxAddPerInterval must not be negative, got %d", l.MaxAddPerInterval)
	}
	if l.MaxRemovePerInterval < 0 {
		bad("Limits.MaxRemovePerInterval must not be negative, got %d", l.MaxRemovePerInterval)
	}
	if cfg.Strategy != "" {
		if _, ok := strategyRank(cfg.Strategy); !ok {
			bad("Strategy %q is unknown (want %q, %q or %q)", cfg.Strategy,
				StrategyCost, StrategyPreferLarge, StrategyPreferReserved)
		}
	}
	if cfg.ScaleDownGrace < 0 {
		bad("ScaleDownGrace must not be negative, got %v", cfg.ScaleDownGrace)
	}
	if cfg.CapacityBackoff < 0 {
		bad("CapacityBackoff must not be negative, got %v", cfg.CapacityBackoff)
	}
	if cfg.Interval < 0 {
		bad("Interval must not be negative, got %v", cfg.Interval)
	}
	return errors.Join(errs...)
}

func nonNegative(f float64) bool { return f >= 0 && !math.IsInf(f, 1) }

func cloneConfigs(cs []LaunchConfig) []LaunchConfig {
	out := make([]LaunchConfig, len(cs))
	for i, c := range cs {
		if c.Labels != nil {
			m := make(map[string]string, len(c.Labels))
			for k, v := range c.Labels {
				m[k] = v
			}
			c.Labels = m
		}
		c.Taints = slices.Clone(c.Taints)
		out[i] = c
	}
	return out
}

// Launched records the outcome of an Order: got > 0 new nodes count
// against the add rate from now on for one Interval; got < asked marks the
// config capacity-limited until now+CapacityBackoff, and got >= asked > 0
// clears such a mark. Unknown configs only count against the add rate.
func (p *Planner) Launched(config string, asked, got int, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	got = max(got, 0)
	ci, ok := p.index[config]
	if got > 0 {
		evCI := -1
		if ok {
			evCI = ci
		}
		p.adds = append(pruneEvents(p.adds, now.Add(-p.cfg.Interval)), rateEvent{at: now, n: got, ci: evCI})
	}
	if !ok || asked <= 0 {
		return
	}
	if got < asked {
		p.limitedUntil[ci] = now.Add(p.cfg.CapacityBackoff)
	} else {
		p.limitedUntil[ci] = time.Time{}
	}
}

// CapacityLimited returns the names of the configs marked capacity-limited
// at now, sorted.
func (p *Planner) CapacityLimited(now time.Time) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for ci, until := range p.limitedUntil {
		if now.Before(until) {
			names = append(names, p.cfg.Configs[ci].Name)
		}
	}
	slices.Sort(names)
	return names
}

// pruneEvents drops the events at or before cutoff.
func pruneEvents(evs []rateEvent, cutoff time.Time) []rateEvent {
	out := evs[:0]
	for _, e := range evs {
		if e.at.After(cutoff) {
			out = append(out, e)
		}
	}
	return out
}

// Plan decides the launches and removals for state s (see the package
// documentation). The removals it returns count against the remove rate of
// later calls; calling Plan again with the same Now replaces them, so the
// same state gives the same plan.
func (p *Planner) Plan(s State) Plan {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.plan(&s, nil)
}

// planning is one Plan call's working state.
type planning struct {
	p  *Planner
	s  *State
	tr *trace
	nc int

	prices []float64 // current, for ranking by cost
	// spendPrices count toward spend limits: the current price, or a spot
	// config's on-demand ceiling when higher.
	spendPrices []float64
	limited     []bool

	nodes      int     // existing + in flight + planned, every config
	spend      float64 // the same in dollars per hour, known configs
	cfgNodes   []int
	added      int // planned by this call
	recentAdds int
	// Per config: nodes launched within the last Interval and planned now.
	cfgRecentAdds []int
	cfgAdded      []int

	shapes []shape
	match  []bool // [shape*nc+cfg]: labels, taints and GPU type allow
	fits   []bool // match, and the capacity holds one pod
	bins   []bin

	launches []Order
	orderAt  []int // per config: index in launches, or -1
	short    map[string]int64
}

// bin is capacity pods can be placed on: a node's free capacity, a
// booting node, an in-flight launch or a planned node.
type bin struct {
	cfg     int    // -1: a node of a config the planner does not know
	gpuType string // for cfg -1
	free    res
}

func (p *Planner) plan(s *State, tr *trace) Plan {
	now := s.Now
	nc := len(p.cfg.Configs)
	pl := &planning{
		p: p, s: s, tr: tr, nc: nc,
		prices:      make([]float64, nc),
		spendPrices: make([]float64, nc),
		limited:     make([]bool, nc),
		cfgNodes:    make([]int, nc),
		orderAt:     make([]int, nc),
		short:       make(map[string]int64),
	}
	for ci, lc := range p.cfg.Configs {
		pl.prices[ci] = lc.PricePerHour
		if price, ok := s.Prices[lc.Name]; ok && nonNegative(price) {
			pl.prices[ci] = price
		}
		pl.spendPrices[ci] = max(pl.prices[ci], p.ceiling[ci])
		pl.limited[ci] = now.Before(p.limitedUntil[ci])
		pl.orderAt[ci] = -1
	}

	// Supply already there or on its way.
	for _, n := range s.Nodes {
		pl.nodes++
		if ci, ok := p.index[n.Config]; ok {
			pl.cfgNodes[ci]++
		}
	}
	for _, l := range s.InFlight {
		if l.Count <= 0 {
			continue
		}
		pl.nodes += l.Count
		if ci, ok := p.index[l.Config]; ok {
			pl.cfgNodes[ci] += l.Count
		}
	}
	for ci := range nc {
		pl.spend += float64(pl.cfgNodes[ci]) * pl.spendPrices[ci]
	}
	p.adds = pruneEvents(p.adds, now.Add(-p.cfg.Interval))
	pl.cfgRecentAdds, pl.cfgAdded = make([]int, nc), make([]int, nc)
	for _, e := range p.adds {
		if !e.at.After(now) {
			pl.recentAdds += e.n
			if e.ci >= 0 && e.ci < nc {
				pl.cfgRecentAdds[e.ci] += e.n
			}
		}
	}

	// Demand.
	var podShape []int
	pl.shapes, podShape = buildShapes(s.Pending)
	if tr != nil {
		tr.podShape = podShape
		tr.shapes = pl.shapes
	}
	pl.match = make([]bool, len(pl.shapes)*nc)
	pl.fits = make([]bool, len(pl.shapes)*nc)
	for si := range pl.shapes {
		sh := &pl.shapes[si]
		for ci, lc := range p.cfg.Configs {
			m := sh.matches(lc.Labels, lc.Taints, lc.Capacity.GPUType)
			pl.match[si*nc+ci] = m
			pl.fits[si*nc+ci] = m && sh.req.le(p.caps[ci])
		}
	}
	rem := make([]int64, len(pl.shapes))
	for si := range pl.shapes {
		rem[si] = pl.shapes[si].count
	}

	pl.supplyBins()
	pl.packExisting(rem)
	pl.planNew(rem)

	var out Plan
	if len(pl.launches) > 0 {
		out.Launches = pl.launches
	}
	for _, r := range reasonOrder {
		if n := pl.short[r]; n > 0 {
			out.Shortfall = append(out.Shortfall, Shortfall{Pods: int(n), Reason: r})
		}
	}
	out.Removals = pl.scaleDown()
	return out
}

// addBin adds a bin; kind and name say where it comes from, for the trace.
func (pl *planning) addBin(b bin, kind, name string) int {
	pl.bins = append(pl.bins, b)
	if pl.tr != nil {
		pl.tr.bins = append(pl.tr.bins, traceBin{origin: kind + ":" + name, cfg: b.cfg, gpuType: b.gpuType, free: b.free})
	}
	return len(pl.bins) - 1
}

// supplyBins turns the Ready nodes' free capacity, the booting nodes and
// the in-flight launches into bins, in an order that does not depend on
// the order of State's slices.
func (pl *planning) supplyBins() {
	p, s := pl.p, pl.s
	order := make([]int, len(s.Nodes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		na, nb := &s.Nodes[a], &s.Nodes[b]
		if na.Ready != nb.Ready {
			if na.Ready {
				return -1
			}
			return 1
		}
		return strings.Compare(na.ID, nb.ID)
	})
	for _, i := range order {
		n := &s.Nodes[i]
		ci, known := p.index[n.Config]
		switch {
		case n.Ready && known:
			pl.addBin(bin{cfg: ci, free: toRes(n.Free)}, "node", n.ID)
		case n.Ready:
			pl.addBin(bin{cfg: -1, gpuType: n.Free.GPUType, free: toRes(n.Free)}, "node", n.ID)
		case known && n.WorkerPods == 0:
			// Launched, not Ready yet: it will offer its whole capacity.
			pl.addBin(bin{cfg: ci, free: p.caps[ci]}, "booting", n.ID)
		}
	}
	// In-flight launches, by config then time. More empty bins of a config
	// than there are pending pods could never all be used.
	inflight := make([]int, len(s.InFlight))
	for i := range inflight {
		inflight[i] = i
	}
	slices.SortStableFunc(inflight, func(a, b int) int {
		la, lb := &s.InFlight[a], &s.InFlight[b]
		if c := strings.Compare(la.Config, lb.Config); c != 0 {
			return c
		}
		if c := la.At.Compare(lb.At); c != 0 {
			return c
		}
		return cmp.Compare(la.Count, lb.Count)
	})
	expanded := make([]int, pl.nc)
	for _, i := range inflight {
		l := &s.InFlight[i]
		ci, known := p.index[l.Config]
		if !known || l.Count <= 0 {
			continue
		}
		n := min(l.Count, len(s.Pending)-expanded[ci])
		for range n {
			pl.addBin(bin{cfg: ci, free: p.caps[ci]}, "inflight", l.Config)
		}
		expanded[ci] += max(n, 0)
	}
}

func (pl *planning) binMatch(si int, b *bin) bool {
	if b.cfg >= 0 {
		return pl.match[si*pl.nc+b.cfg]
	}
	return pl.shapes[si].matches(nil, nil, b.gpuType)
}

func (pl *planning) place(bi, si int, n int64) {
	b := &pl.bins[bi]
	b.free = b.free.minus(pl.shapes[si].req, n)
	if pl.tr != nil {
		pl.tr.placed = append(pl.tr.placed, tracePlacement{bin: bi, shape: si, n: n})
	}
}

// packExisting covers what it can of the demand with the supply bins,
// first fit decreasing: shapes largest first, each onto the first bins
// with room.
func (pl *planning) packExisting(rem []int64) {
	for si := range pl.shapes {
		req := pl.shapes[si].req
		for bi := range pl.bins {
			if rem[si] == 0 {
				break
			}
			b := &pl.bins[bi]
			if !pl.binMatch(si, b) {
				continue
			}
			if k := min(fitCount(b.free, req), rem[si]); k > 0 {
				pl.place(bi, si, k)
				rem[si] -= k
			}
		}
	}
}

// packBin fills one bin with the shapes, largest first, and returns how
// many pods it placed.
func (pl *planning) packBin(bi int, shapes []int, rem []int64) int64 {
	var placed int64
	for _, si := range shapes {
		if rem[si] == 0 {
			continue
		}
		b := &pl.bins[bi]
		if !pl.binMatch(si, b) {
			continue
		}
		if k := min(fitCount(b.free, pl.shapes[si].req), rem[si]); k > 0 {
			pl.place(bi, si, k)
			rem[si] -= k
			placed += k
		}
	}
	return placed
}

// group is uncovered demand whose pods fit exactly the same configs.
type group struct {
	fit    []int // config indices
	shapes []int // shape indices, largest first
}

// planNew plans new nodes for the uncovered demand.
func (pl *planning) planNew(rem []int64) {
	nc := pl.nc
	var groups []*group
	byKey := make(map[string]*group)
	bits := make([]byte, (nc+7)/8)
	for si := range pl.shapes {
		if rem[si] == 0 {
			continue
		}
		clear(bits)
		for ci := range nc {
			if pl.fits[si*nc+ci] {
				bits[ci/8] |= 1 << (ci % 8)
			}
		}
		g, ok := byKey[string(bits)]
		if !ok {
			g = &group{}
			for ci := range nc {
				if pl.fits[si*nc+ci] {
					g.fit = append(g.fit, ci)
				}
			}
			byKey[string(bits)] = g
			groups = append(groups, g) // in order of each group's largest shape
		}
		g.shapes = append(g.shapes, si)
	}

	firstPlanned := len(pl.bins)
	var cands []candidate
	var ranked []*candidate
	for _, g := range groups {
		// Room left on the nodes planned for earlier groups comes first.
		for bi := firstPlanned; bi < len(pl.bins); bi++ {
			pl.packBin(bi, g.shapes, rem)
		}
		var total int64
		for _, si := range g.shapes {
			total += rem[si]
		}
		if total == 0 {
			continue
		}
		if len(g.fit) == 0 {
			pl.shortfall(ReasonNoConfigFits, g.shapes, rem)
			continue
		}
		cands = cands[:0]
		for _, ci := range g.fit {
			if pl.limited[ci] {
				continue
			}
			per := pl.perNode(ci, g.shapes, rem)
			cands = append(cands, candidate{
				cfg:      ci,
				name:     pl.p.cfg.Configs[ci].Name,
				capacity: pl.p.caps[ci],
				reserved: pl.p.cfg.Configs[ci].Reserved,
				perNode:  per,
				unitCost: pl.prices[ci] / float64(per),
			})
		}
		if len(cands) == 0 {
			pl.shortfall(ReasonCapacityLimited, g.shapes, rem)
			continue
		}
		// The best candidate usually covers the group: find it in one
		// pass, and rank the others only when it does not.
		ranked = ranked[:0]
		for i := range cands {
			ranked = append(ranked, &cands[i])
		}
		best := 0
		for i := 1; i < len(ranked); i++ {
			if pl.p.rank(ranked[i], ranked[best]) < 0 {
				best = i
			}
		}
		ranked[0], ranked[best] = ranked[best], ranked[0]
		last := ""
		for i := 0; i < len(ranked); i++ {
			if i == 1 {
				slices.SortFunc(ranked[1:], pl.p.rank)
			}
			c := ranked[i]
			for total > 0 {
				if r := pl.blocked(c.cfg); r != "" {
					last = r
					break
				}
				pl.addNode(c.cfg)
				bi := pl.addBin(bin{cfg: c.cfg, free: pl.p.caps[c.cfg]}, "planned", c.name)
				total -= pl.packBin(bi, g.shapes, rem)
			}
			if total == 0 || last == ReasonGlobalMaxNodes {
				break // the global node limit stops every config alike
			}
		}
		if total > 0 {
			pl.shortfall(last, g.shapes, rem)
		}
	}
}

// perNode is how many of the remaining pods of the shapes one empty node
// of config ci holds, packed largest first. The shapes all fit ci.
func (pl *planning) perNode(ci int, shapes []int, rem []int64) int64 {
	free := pl.p.caps[ci]
	var n int64
	for _, si := range shapes {
		if rem[si] == 0 {
			continue
		}
		req := pl.shapes[si].req
		if k := min(fitCount(free, req), rem[si]); k > 0 {
			free = free.minus(req, k)
			n += k
		}
	}
	return max(n, 1)
}

// blocked returns the limit that one more node of config ci would break,
// or "". The global limits are checked first, the add rate last.
func (pl *planning) blocked(ci int) string {
	l := &pl.p.cfg.Limits
	lc := &pl.p.cfg.Configs[ci]
	price := pl.spendPrices[ci]
	switch {
	case l.MaxNodes > 0 && pl.nodes+1 > l.MaxNodes:
		return ReasonGlobalMaxNodes
	case l.MaxSpendPerHour > 0 && pl.spend+price > l.MaxSpendPerHour+spendSlack:
		return ReasonGlobalMaxSpend
	case lc.MaxNodes > 0 && pl.cfgNodes[ci]+1 > lc.MaxNodes:
		return ReasonConfigMaxNodes
	case lc.MaxSpendPerHour > 0 && float64(pl.cfgNodes[ci]+1)*price > lc.MaxSpendPerHour+spendSlack:
		return ReasonConfigMaxSpend
	case l.MaxAddPerInterval > 0 && pl.recentAdds+pl.added+1 > l.MaxAddPerInterval:
		return ReasonAddRate
	case lc.MaxAddPerInterval > 0 && pl.cfgRecentAdds[ci]+pl.cfgAdded[ci]+1 > lc.MaxAddPerInterval:
		return ReasonConfigAddRate
	}
	return ""
}

func (pl *planning) addNode(ci int) {
	pl.nodes++
	pl.spend += pl.spendPrices[ci]
	pl.cfgNodes[ci]++
	pl.added++
	pl.cfgAdded[ci]++
	if at := pl.orderAt[ci]; at >= 0 {
		pl.launches[at].Count++
		return
	}
	pl.orderAt[ci] = len(pl.launches)
	pl.launches = append(pl.launches, Order{Config: pl.p.cfg.Configs[ci].Name, Count: 1})
}

func (pl *planning) shortfall(reason string, shapes []int, rem []int64) {
	for _, si := range shapes {
		if rem[si] == 0 {
			continue
		}
		pl.short[reason] += rem[si]
		if pl.tr != nil {
			pl.tr.short = append(pl.tr.short, traceShort{shape: si, reason: reason, n: rem[si]})
		}
		rem[si] = 0
	}
}

// scaleDown picks the idle nodes to remove and records them against the
// remove rate.
func (pl *planning) scaleDown() []string {
	p, s := pl.p, pl.s
	now := s.Now
	type idle struct {
		id    string
		since time.Time
		ci    int
	}
	var idles []idle
	for i := range s.Nodes {
		n := &s.Nodes[i]
		ci, known := p.index[n.Config]
		if !n.Ready || n.WorkerPods != 0 || !known {
			continue
		}
		since := n.IdleSince
		if since.IsZero() {
			since = n.LaunchedAt
		}
		if since.IsZero() || since.Add(p.cfg.ScaleDownGrace).After(now) {
			continue
		}
		b := bin{cfg: ci, free: toRes(n.Free)}
		wanted := false
		for si := range pl.shapes {
			if pl.binMatch(si, &b) && fitCount(b.free, pl.shapes[si].req) > 0 {
				wanted = true
				break
			}
		}
		if !wanted {
			idles = append(idles, idle{id: n.ID, since: since, ci: ci})
		}
	}
	slices.SortFunc(idles, func(a, b idle) int {
		if c := a.since.Compare(b.since); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})

	allowed := len(idles)
	p.removes = pruneEvents(p.removes, now.Add(-p.cfg.Interval))
	cfgRecent := make([]int, len(p.cfg.Configs))
	recent := 0
	for _, e := range p.removes {
		if e.at.Before(now) {
			recent += e.n
			if e.ci >= 0 && e.ci < len(cfgRecent) {
				cfgRecent[e.ci] += e.n
			}
		}
	}
	if m := p.cfg.Limits.MaxRemovePerInterval; m > 0 {
		allowed = min(allowed, max(m-recent, 0))
	}
	var out []string
	removedOf := make(map[int]int)
	chosen := make(map[string]bool)
	for _, n := range idles {
		if len(out) == allowed {
			break
		}
		if chosen[n.id] {
			continue // a duplicate ID in State.Nodes
		}
		if m := p.cfg.Configs[n.ci].MaxRemovePerInterval; m > 0 && cfgRecent[n.ci]+removedOf[n.ci] >= m {
			continue // this config's removal rate is used up
		}
		chosen[n.id] = true
		removedOf[n.ci]++
		out = append(out, n.id)
	}
	// This call's removals replace those of an earlier call at the same time.
	p.removes = slices.DeleteFunc(p.removes, func(e rateEvent) bool { return e.at.Equal(now) })
	for _, ci := range slices.Sorted(maps.Keys(removedOf)) {
		p.removes = append(p.removes, rateEvent{at: now, n: removedOf[ci], ci: ci})
	}
	return out
}

// trace records how a plan covers the demand, for tests to check
// independently.
type trace struct {
	podShape []int
	shapes   []shape
	bins     []traceBin
	placed   []tracePlacement
	short    []traceShort
}

type traceBin struct {
	origin  string // node:ID, booting:ID, inflight:CONFIG or planned:CONFIG
	cfg     int
	gpuType string
	free    res // at the start
}

type tracePlacement struct {
	bin, shape int
	n          int64
}

type traceShort struct {
	shape  int
	reason string
	n      int64
}
