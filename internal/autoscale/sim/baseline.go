package sim

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/haul-dev/haul/internal/autoscale"
)

// BaselineOptions are the knobs of the baseline, named after the cluster
// autoscaler's flags; zero values take the defaults (the autoscaler's own).
type BaselineOptions struct {
	// MaxNodeProvisionTime: how long requested nodes count as coming
	// before the scale-up is given up (--max-node-provision-time, 15m).
	MaxNodeProvisionTime time.Duration
	// ScaleDownUnneededTime: how long a node must be empty before it is
	// removed (--scale-down-unneeded-time, 10m).
	ScaleDownUnneededTime time.Duration
	// ScaleDownDelayAfterAdd: no scale-down for this long after a
	// scale-up (--scale-down-delay-after-add, 10m).
	ScaleDownDelayAfterAdd time.Duration
	// ScanInterval is the autoscaler's loop period (--scan-interval, 10s);
	// Interval is how often the simulator calls Plan (30s). One Plan does
	// Interval/ScanInterval loops' worth of scale-ups, one node group each.
	ScanInterval, Interval time.Duration
	// MaxEmptyBulkDelete: empty nodes removed per loop
	// (--max-empty-bulk-delete, 10).
	MaxEmptyBulkDelete int
}

func (o BaselineOptions) withDefaults() BaselineOptions {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.MaxNodeProvisionTime, 15*time.Minute)
	def(&o.ScaleDownUnneededTime, 10*time.Minute)
	def(&o.ScaleDownDelayAfterAdd, 10*time.Minute)
	def(&o.ScanInterval, 10*time.Second)
	def(&o.Interval, 30*time.Second)
	if o.MaxEmptyBulkDelete <= 0 {
		o.MaxEmptyBulkDelete = 10
	}
	return o
}

// Baseline is a Policy modelled on the open-source Kubernetes cluster
// autoscaler on AWS, as the reference describes it and as it is commonly
// deployed:
//
//   - One node group (an auto-scaling group) per instance type and purchase
//     option, spanning every zone: the ASG spreads a scale-up evenly over
//     the zones; the autoscaler knows nothing of zones or prices.
//   - Scale-up: pending pods that fit on nodes still coming (booting, or
//     requested and not yet delivered) are left alone; for the rest, each
//     group that could run some of them is an option, sized by bin-packing
//     them onto the group's node template. The least-waste expander picks
//     the option that leaves the smallest fraction of CPU and memory idle,
//     ties going to spot groups, then to catalogue order. One group is
//     scaled per loop (10s), so up to three per 30s Plan.
//   - No capacity feedback: an ASG does not say that a type is unavailable,
//     so the nodes a launch did not deliver count as coming until
//     MaxNodeProvisionTime (15m) passes; then the autoscaler gives up on
//     them and, the pods still pending, asks again, usually the same group.
//     Groups are never marked unavailable.
//   - Limits: each group's maximum size (the sum of its configs' MaxNodes)
//     and the cluster's maximum node count (Limits.MaxNodes, as
//     --max-nodes-total). No spend cap, no add or remove rate.
//   - Scale-down: a ready node empty for ScaleDownUnneededTime (10m) is
//     removed, up to MaxEmptyBulkDelete per loop, but not within
//     ScaleDownDelayAfterAdd (10m) of a scale-up. Nodes with pods are never
//     removed (worker pods are not evictable).
type Baseline struct {
	opts     BaselineOptions
	maxTotal int
	scans    int
	configs  []autoscale.LaunchConfig
	byName   map[string]cfgRef
	groups   []nodeGroup

	lastScaleUp time.Time

	// reused per Plan
	podGroups []podGroup
	bins      []bin
}

type cfgRef struct{ group, zone int }

type nodeGroup struct {
	name     string
	spot     bool
	template res
	gpuType  string
	probe    *autoscale.LaunchConfig // for selector and taint matching
	configs  []int                   // one per zone
	maxSize  int                     // 0: none
	maxZone  []int
	phantoms []phantom
	// reused per Plan
	nodes     int
	zoneNodes []int
}

// phantom is nodes a scale-up asked for that the ASG did not deliver.
type phantom struct {
	at    time.Time
	zone  int
	count int
}

type podGroup struct {
	req    res
	gpu    string
	sel    map[string]string
	tols   []autoscale.Toleration
	count  int64
	compat []bool // per node group
}

// bin is capacity coming: count nodes of group with free capacity each.
type bin struct {
	group int
	free  res
	count int64
}

// NewBaseline returns the baseline policy for cfg's launch configs: it
// groups them per instance type and purchase option, and takes
// cfg.Limits.MaxNodes as the cluster's maximum size; it ignores the spend
// cap, the rates and the strategy.
func NewBaseline(cfg autoscale.Config, opts BaselineOptions) (*Baseline, error) {
	if len(cfg.Configs) == 0 {
		return nil, errors.New("new baseline: no launch configs")
	}
	opts = opts.withDefaults()
	b := &Baseline{
		opts:     opts,
		maxTotal: cfg.Limits.MaxNodes,
		scans:    max(1, int(opts.Interval/opts.ScanInterval)),
		configs:  cfg.Configs,
		byName:   make(map[string]cfgRef, len(cfg.Configs)),
	}
	index := map[string]int{}
	for i := range cfg.Configs {
		c := &cfg.Configs[i]
		if _, dup := b.byName[c.Name]; dup {
			return nil, fmt.Errorf("new baseline: launch config %q is listed twice", c.Name)
		}
		key := c.InstanceType + "/" + string(c.Purchase)
		g, ok := index[key]
		if !ok {
			g = len(b.groups)
			index[key] = g
			b.groups = append(b.groups, nodeGroup{
				name:     key,
				spot:     c.Purchase == autoscale.Spot,
				template: toRes(c.Capacity),
				gpuType:  c.Capacity.GPUType,
				probe:    c,
			})
		}
		ng := &b.groups[g]
		b.byName[c.Name] = cfgRef{group: g, zone: len(ng.configs)}
		ng.configs = append(ng.configs, i)
		ng.maxZone = append(ng.maxZone, c.MaxNodes)
		ng.zoneNodes = append(ng.zoneNodes, 0)
	}
	for g := range b.groups {
		ng := &b.groups[g]
		for _, m := range ng.maxZone {
			if m <= 0 {
				ng.maxSize = 0
				break
			}
			ng.maxSize += m
		}
	}
	return b, nil
}

// Groups returns the node groups' names ("m5.xlarge/spot"), in the order
// ties are broken.
func (b *Baseline) Groups() []string {
	out := make([]string, len(b.groups))
	for i, g := range b.groups {
		out[i] = g.name
	}
	return out
}

// Launched implements autoscale.Policy: the instances not delivered stay
// "coming" until MaxNodeProvisionTime passes (an ASG gives no quick
// feedback).
func (b *Baseline) Launched(config string, asked, got int, now time.Time) {
	ref, ok := b.byName[config]
	if !ok || got >= asked {
		return
	}
	g := &b.groups[ref.group]
	g.phantoms = append(g.phantoms, phantom{at: now, zone: ref.zone, count: asked - got})
}

// Plan implements autoscale.Policy.
func (b *Baseline) Plan(s autoscale.State) autoscale.Plan {
	var plan autoscale.Plan
	total := 0
	for g := range b.groups {
		ng := &b.groups[g]
		ng.phantoms = slices.DeleteFunc(ng.phantoms, func(p phantom) bool {
			return s.Now.Sub(p.at) >= b.opts.MaxNodeProvisionTime
		})
		ng.nodes = 0
		clear(ng.zoneNodes)
		for _, p := range ng.phantoms {
			ng.nodes += p.count
			ng.zoneNodes[p.zone] += p.count
		}
		total += ng.nodes
	}
	b.bins = b.bins[:0]
	for g := range b.groups {
		n := int64(0)
		for _, p := range b.groups[g].phantoms {
			n += int64(p.count)
		}
		if n > 0 {
			b.bins = append(b.bins, bin{group: g, free: b.groups[g].template, count: n})
		}
	}
	for i := range s.Nodes {
		nd := &s.Nodes[i]
		total++
		ref, ok := b.byName[nd.Config]
		if !ok {
			continue
		}
		ng := &b.groups[ref.group]
		ng.nodes++
		ng.zoneNodes[ref.zone]++
		if !nd.Ready {
			b.addBin(ref.group, toRes(nd.Free))
		}
	}

	b.groupPods(s.Pending)
	// Pods that fit on nodes still coming are taken care of.
	for pi := range b.podGroups {
		pg := &b.podGroups[pi]
		b.packComing(pg)
	}

	scaledUp := false
	for range b.scans {
		best, bestNodes, bestWaste := -1, int64(0), math.Inf(1)
		for g := range b.groups {
			n, waste, ok := b.estimate(g, total)
			if !ok {
				continue
			}
			if waste < bestWaste-1e-12 || (math.Abs(waste-bestWaste) <= 1e-12 && b.groups[g].spot && !b.groups[best].spot) {
				best, bestNodes, bestWaste = g, n, waste
			}
		}
		if best < 0 {
			break
		}
		need, _ := b.nodesFor(best)
		limit := b.room(best, total)
		n := min(bestNodes, limit)
		orders, ordered := b.spread(best, int(n))
		if ordered == 0 {
			break
		}
		plan.Launches = append(plan.Launches, orders...)
		n = int64(ordered)
		total += ordered
		b.groups[best].nodes += ordered
		for pi := range b.podGroups {
			pg := &b.podGroups[pi]
			if pg.compat[best] {
				if n >= need {
					pg.count = 0
				} else {
					pg.count -= pg.count * n / need
				}
			}
		}
		scaledUp = true
	}
	if scaledUp {
		b.lastScaleUp = s.Now
	}

	var noFit, atMax int64
	for pi := range b.podGroups {
		pg := &b.podGroups[pi]
		if pg.count == 0 {
			continue
		}
		if !slices.Contains(pg.compat, true) {
			noFit += pg.count
		} else {
			atMax += pg.count
		}
	}
	if noFit > 0 {
		plan.Shortfall = append(plan.Shortfall, autoscale.Shortfall{Pods: int(noFit), Reason: "no node group fits"})
	}
	if atMax > 0 {
		plan.Shortfall = append(plan.Shortfall, autoscale.Shortfall{Pods: int(atMax), Reason: "node groups at max size"})
	}

	if b.lastScaleUp.IsZero() || s.Now.Sub(b.lastScaleUp) >= b.opts.ScaleDownDelayAfterAdd {
		quota := b.opts.MaxEmptyBulkDelete * b.scans
		for i := range s.Nodes {
			if len(plan.Removals) >= quota {
				break
			}
			nd := &s.Nodes[i]
			if nd.Ready && nd.WorkerPods == 0 && !nd.IdleSince.IsZero() && s.Now.Sub(nd.IdleSince) >= b.opts.ScaleDownUnneededTime {
				plan.Removals = append(plan.Removals, nd.ID)
			}
		}
	}
	return plan
}

func (b *Baseline) addBin(g int, free res) {
	for i := range b.bins {
		if b.bins[i].group == g && b.bins[i].free == free {
			b.bins[i].count++
			return
		}
	}
	b.bins = append(b.bins, bin{group: g, free: free, count: 1})
}

// groupPods groups the pending pods by requests, node selector and
// tolerations, and says which node groups each could run on.
func (b *Baseline) groupPods(pods []autoscale.Pod) {
	b.podGroups = b.podGroups[:0]
	last := -1
	for i := range pods {
		p := &pods[i]
		r := toRes(p.Requests)
		gpu := ""
		if r.gpu > 0 {
			gpu = p.Requests.GPUType
		}
		if last >= 0 && b.podGroups[last].same(r, gpu, p) {
			b.podGroups[last].count++
			continue
		}
		last = -1
		for j := range b.podGroups {
			if b.podGroups[j].same(r, gpu, p) {
				last = j
				break
			}
		}
		if last >= 0 {
			b.podGroups[last].count++
			continue
		}
		pg := podGroup{req: r, gpu: gpu, sel: p.NodeSelector, tols: p.Tolerations, count: 1, compat: make([]bool, len(b.groups))}
		for g := range b.groups {
			pg.compat[g] = compatible(p.Requests, p.NodeSelector, p.Tolerations, b.groups[g].probe)
		}
		b.podGroups = append(b.podGroups, pg)
		last = len(b.podGroups) - 1
	}
	// First-fit decreasing: the biggest pods first.
	slices.SortStableFunc(b.podGroups, func(x, y podGroup) int {
		switch {
		case x.req.mem != y.req.mem:
			return cmpInt64(y.req.mem, x.req.mem)
		case x.req.cpu != y.req.cpu:
			return cmpInt64(y.req.cpu, x.req.cpu)
		}
		return cmpInt64(y.req.gpu, x.req.gpu)
	})
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (pg *podGroup) same(r res, gpu string, p *autoscale.Pod) bool {
	if pg.req != r || pg.gpu != gpu || len(pg.sel) != len(p.NodeSelector) || len(pg.tols) != len(p.Tolerations) {
		return false
	}
	for k, v := range pg.sel {
		if pv, ok := p.NodeSelector[k]; !ok || pv != v {
			return false
		}
	}
	for i := range pg.tols {
		if pg.tols[i] != p.Tolerations[i] {
			return false
		}
	}
	return true
}

// packComing removes from pg the pods that fit on the capacity still
// coming, and takes that capacity.
func (b *Baseline) packComing(pg *podGroup) {
	for i := 0; i < len(b.bins) && pg.count > 0; i++ {
		bn := &b.bins[i]
		if bn.count == 0 || !pg.compat[bn.group] {
			continue
		}
		per := fitCount(bn.free, pg.req)
		if per == 0 {
			continue
		}
		take := min(pg.count, per*bn.count)
		full, part := take/per, take%per
		pg.count -= take
		// Split the bin: full nodes lose per pods' worth, one node loses
		// part, the rest stay as they were.
		rest := bn.count - full
		if part > 0 {
			rest--
		}
		free := bn.free
		bn.count = rest
		if full > 0 {
			b.bins = append(b.bins, bin{group: bn.group, free: free.sub(pg.req, per), count: full})
		}
		if part > 0 {
			b.bins = append(b.bins, bin{group: bn.group, free: free.sub(pg.req, part), count: 1})
		}
	}
}

// nodesFor bin-packs the remaining pods that fit node group g onto new
// nodes of its template, biggest pods first, and returns how many nodes
// that takes and the fraction of CPU and memory those nodes leave idle
// (the least-waste expander's score).
func (b *Baseline) nodesFor(g int) (int64, float64) {
	t := b.groups[g].template
	var nodes int64
	var partial res
	havePartial := false
	var used res
	for pi := range b.podGroups {
		pg := &b.podGroups[pi]
		if pg.count == 0 || !pg.compat[g] {
			continue
		}
		rem := pg.count
		used = used.sub(pg.req, -rem)
		if havePartial {
			k := min(fitCount(partial, pg.req), rem)
			partial = partial.sub(pg.req, k)
			rem -= k
		}
		if rem == 0 {
			continue
		}
		per := fitCount(t, pg.req)
		full, r := rem/per, rem%per
		nodes += full
		if r > 0 {
			nodes++
			partial = t.sub(pg.req, r)
			havePartial = true
		} else {
			partial = t.sub(pg.req, per)
			havePartial = true
		}
	}
	if nodes == 0 {
		return 0, 0
	}
	waste := 0.0
	if t.cpu > 0 {
		waste += float64(nodes*t.cpu-used.cpu) / float64(nodes*t.cpu)
	}
	if t.mem > 0 {
		waste += float64(nodes*t.mem-used.mem) / float64(nodes*t.mem)
	}
	return nodes, waste
}

// room is how many nodes group g may still add under its maximum size and
// the cluster's.
func (b *Baseline) room(g, total int) int64 {
	r := int64(math.MaxInt64)
	ng := &b.groups[g]
	if ng.maxSize > 0 {
		r = int64(ng.maxSize - ng.nodes)
	}
	if b.maxTotal > 0 {
		r = min(r, int64(b.maxTotal-total))
	}
	return max(r, 0)
}

// estimate is the scale-up option of group g: nodes to add (capped) and
// its waste; ok is false when g has no pods to help or no room.
func (b *Baseline) estimate(g, total int) (int64, float64, bool) {
	n, waste := b.nodesFor(g)
	if n == 0 {
		return 0, 0, false
	}
	r := b.room(g, total)
	if r == 0 {
		return 0, 0, false
	}
	return min(n, r), waste, true
}

// spread splits n new nodes of group g over its zones the way an ASG
// balances: each to the zone with the fewest nodes that is below its
// config's MaxNodes.
func (b *Baseline) spread(g, n int) ([]autoscale.Order, int) {
	ng := &b.groups[g]
	add := make([]int, len(ng.configs))
	for range n {
		best := -1
		for z := range ng.configs {
			if ng.maxZone[z] > 0 && ng.zoneNodes[z]+add[z] >= ng.maxZone[z] {
				continue
			}
			if best < 0 || ng.zoneNodes[z]+add[z] < ng.zoneNodes[best]+add[best] {
				best = z
			}
		}
		if best < 0 {
			break
		}
		add[best]++
	}
	var out []autoscale.Order
	total := 0
	for z, k := range add {
		if k > 0 {
			ng.zoneNodes[z] += k
			total += k
			out = append(out, autoscale.Order{Config: b.configs[ng.configs[z]].Name, Count: k})
		}
	}
	return out, total
}
