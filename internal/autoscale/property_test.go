package autoscale

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPlanProperties checks the planner's invariants on random states: a
// few planning steps each for many random configurations, with random
// Launched reports in between. A ledger kept by the test recomputes the
// add and remove rates and the capacity-limited marks independently.
func TestPlanProperties(t *testing.T) {
	t.Parallel()
	for seed := range uint64(2000) {
		if err := checkSeed(seed); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

// FuzzPlan runs the same checks on fuzzed seeds.
func FuzzPlan(f *testing.F) {
	for _, s := range []uint64{0, 1, 7, 42, 1 << 40} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		if err := checkSeed(seed); err != nil {
			t.Fatal(err)
		}
	})
}

// ledger is what the test knows of a planner's history.
type ledger struct {
	adds    []rateEvent
	removes []rateEvent
	// last Launched per config with asked > 0: when, and whether short.
	lastAt    map[string]time.Time
	lastShort map[string]bool
}

func checkSeed(seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	cfg := randomConfig(r)
	p, err := NewPlanner(cfg)
	if err != nil {
		return fmt.Errorf("NewPlanner: %w", err)
	}
	eff := p.cfg // with the defaults
	led := &ledger{lastAt: map[string]time.Time{}, lastShort: map[string]bool{}}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for step := range 4 {
		now = now.Add(time.Duration(r.IntN(90)) * time.Second)
		for range r.IntN(4) {
			name := cfg.Configs[r.IntN(len(cfg.Configs))].Name
			if r.IntN(10) == 0 {
				name = "unknown"
			}
			asked := r.IntN(6)
			got := asked
			if r.IntN(2) == 0 {
				got = r.IntN(asked + 1)
			}
			at := now.Add(-time.Duration(r.IntN(int(eff.Interval/time.Second)+1)) * time.Second)
			p.Launched(name, asked, got, at)
			if got > 0 {
				led.adds = append(led.adds, rateEvent{at: at, n: got, ci: configIndex(cfg, name)})
			}
			if asked > 0 && name != "unknown" {
				led.lastAt[name] = at
				led.lastShort[name] = got < asked
			}
		}
		s := randomState(r, cfg, now)
		tr := &trace{}
		p.mu.Lock()
		plan := p.plan(&s, tr)
		p.mu.Unlock()
		if err := checkPlan(eff, led, &s, plan, tr); err != nil {
			return fmt.Errorf("step %d: %w\nstate: %+v\nplan: %+v", step, err, s, plan)
		}
		// Same state, same plan: again, and with the slices shuffled.
		if again := p.Plan(s); !reflect.DeepEqual(again, plan) {
			return fmt.Errorf("step %d: not deterministic:\n%+v\n%+v", step, plan, again)
		}
		sh := s
		sh.Nodes = shuffled(r, s.Nodes)
		sh.Pending = shuffled(r, s.Pending)
		sh.InFlight = shuffled(r, s.InFlight)
		if again := p.Plan(sh); !reflect.DeepEqual(again, plan) {
			return fmt.Errorf("step %d: depends on input order:\n%+v\n%+v", step, plan, again)
		}
		led.removes = slices.DeleteFunc(led.removes, func(e rateEvent) bool { return e.at.Equal(now) })
		for _, id := range plan.Removals {
			for _, n := range s.Nodes {
				if n.ID == id {
					led.removes = append(led.removes, rateEvent{at: now, n: 1, ci: configIndex(cfg, n.Config)})
					break
				}
			}
		}
	}
	return nil
}

func shuffled[T any](r *rand.Rand, xs []T) []T {
	out := slices.Clone(xs)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func randomConfig(r *rand.Rand) Config {
	gib := int64(1) << 30
	var cfg Config
	for i := range 1 + r.IntN(6) {
		lc := LaunchConfig{
			Name:         fmt.Sprintf("c%d", i),
			InstanceType: "t",
			Capacity: Resources{
				MilliCPU:    int64(1+r.IntN(16)) * 1000,
				MemoryBytes: int64(1+r.IntN(64)) * gib,
			},
			PricePerHour: float64(r.IntN(300)) / 100,
		}
		if r.IntN(3) == 0 {
			lc.Capacity.GPU = int32(1 + r.IntN(8))
			lc.Capacity.GPUType = []string{"a10g", "a100", ""}[r.IntN(3)]
		}
		lc.Reserved = r.IntN(5) == 0
		if r.IntN(3) == 0 {
			lc.Labels = map[string]string{"pool": []string{"a", "b"}[r.IntN(2)]}
		}
		switch r.IntN(6) {
		case 0:
			lc.Taints = []Taint{{Key: "spot", Value: "true", Effect: EffectNoSchedule}}
		case 1:
			lc.Taints = []Taint{{Key: "soft", Value: "x", Effect: EffectPreferNoSchedule}}
		case 2:
			lc.Taints = []Taint{{Key: "gpu", Value: "yes", Effect: EffectNoExecute}}
		}
		if r.IntN(3) == 0 {
			lc.MaxNodes = 1 + r.IntN(6)
		}
		if r.IntN(4) == 0 {
			lc.MaxSpendPerHour = float64(r.IntN(800)) / 100
		}
		if r.IntN(4) == 0 {
			lc.MaxAddPerInterval = 1 + r.IntN(4)
		}
		if r.IntN(4) == 0 {
			lc.MaxRemovePerInterval = 1 + r.IntN(3)
		}
		cfg.Configs = append(cfg.Configs, lc)
	}
	if r.IntN(3) == 0 {
		cfg.Limits.MaxNodes = 1 + r.IntN(30)
	}
	if r.IntN(3) == 0 {
		cfg.Limits.MaxSpendPerHour = float64(r.IntN(3000)) / 100
	}
	if r.IntN(3) == 0 {
		cfg.Limits.MaxAddPerInterval = 1 + r.IntN(8)
	}
	if r.IntN(3) == 0 {
		cfg.Limits.MaxRemovePerInterval = 1 + r.IntN(4)
	}
	cfg.Strategy = []string{"", StrategyCost, StrategyPreferLarge, StrategyPreferReserved}[r.IntN(4)]
	if r.IntN(2) == 0 {
		cfg.ScaleDownGrace = time.Duration(r.IntN(20)) * time.Minute
	}
	if r.IntN(2) == 0 {
		cfg.CapacityBackoff = time.Duration(1+r.IntN(5)) * time.Minute
	}
	if r.IntN(2) == 0 {
		cfg.Interval = time.Minute
	}
	return cfg
}

func randomState(r *rand.Rand, cfg Config, now time.Time) State {
	gib := int64(1) << 30
	s := State{Now: now}
	pickConfig := func() (string, Resources) {
		if r.IntN(10) == 0 {
			return "unknown", Resources{MilliCPU: 4000, MemoryBytes: 16 * gib}
		}
		lc := cfg.Configs[r.IntN(len(cfg.Configs))]
		return lc.Name, lc.Capacity
	}
	for i := range r.IntN(16) {
		name, capacity := pickConfig()
		n := Node{ID: fmt.Sprintf("n%02d", i), Config: name, Ready: r.IntN(5) > 0}
		n.LaunchedAt = now.Add(-time.Duration(r.IntN(3600)) * time.Second)
		if r.IntN(10) == 0 {
			n.LaunchedAt = time.Time{}
		}
		if r.IntN(2) == 0 {
			n.WorkerPods = 1 + r.IntN(3)
			n.Free = Resources{
				MilliCPU:    r.Int64N(capacity.MilliCPU + 1),
				MemoryBytes: r.Int64N(capacity.MemoryBytes + 1),
				GPU:         r.Int32N(capacity.GPU + 1),
				GPUType:     capacity.GPUType,
			}
		} else {
			n.Free = capacity
			if r.IntN(6) > 0 {
				n.IdleSince = now.Add(-time.Duration(r.IntN(1800)) * time.Second)
			}
		}
		s.Nodes = append(s.Nodes, n)
	}
	for range r.IntN(4) {
		name, _ := pickConfig()
		s.InFlight = append(s.InFlight, Launch{Config: name, Count: r.IntN(6) - 1, At: now.Add(-time.Minute)})
	}
	for range r.IntN(8) {
		p := Pod{Requests: Resources{
			MilliCPU:    int64(r.IntN(17)) * 500,
			MemoryBytes: int64(r.IntN(40)) * gib,
		}}
		if r.IntN(50) == 0 {
			p.Requests.MilliCPU = -1000
		}
		if r.IntN(6) == 0 {
			p.Requests.GPU = int32(1 + r.IntN(4))
			p.Requests.GPUType = []string{"a10g", "a100", ""}[r.IntN(3)]
		}
		if r.IntN(5) == 0 {
			p.NodeSelector = map[string]string{"pool": []string{"a", "b"}[r.IntN(2)]}
		}
		switch r.IntN(6) {
		case 0:
			p.Tolerations = []Toleration{{Key: "spot", Operator: "Exists"}}
		case 1:
			p.Tolerations = []Toleration{{Key: "spot", Operator: "Equal", Value: "true", Effect: EffectNoSchedule}}
		case 2:
			p.Tolerations = []Toleration{{Operator: "Exists"}}
		}
		for j := range 1 + r.IntN(20) {
			q := p
			q.ID = fmt.Sprintf("p%d-%d", len(s.Pending), j)
			s.Pending = append(s.Pending, q)
		}
	}
	s.Pending = shuffled(r, s.Pending)
	if r.IntN(3) == 0 {
		s.Prices = map[string]float64{}
		for _, lc := range cfg.Configs {
			if r.IntN(2) == 0 {
				s.Prices[lc.Name] = float64(r.IntN(400)-50) / 100 // negative ones are ignored
			}
		}
	}
	return s
}

// testMatch is the test's own reading of the fit rules, capacity aside.
func testMatch(p *Pod, labels map[string]string, taints []Taint, gpuType string) bool {
	if p.Requests.GPU > 0 && p.Requests.GPUType != "" && p.Requests.GPUType != gpuType {
		return false
	}
	for k, v := range p.NodeSelector {
		if labels[k] != v {
			return false
		}
		if _, ok := labels[k]; !ok {
			return false
		}
	}
	for _, t := range taints {
		if t.Effect == EffectPreferNoSchedule {
			continue
		}
		ok := false
		for _, tol := range p.Tolerations {
			if tol.Effect != "" && tol.Effect != t.Effect {
				continue
			}
			if tol.Operator == "Exists" && (tol.Key == "" || tol.Key == t.Key) ||
				tol.Operator == "Equal" && tol.Key == t.Key && tol.Value == t.Value {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func testReq(p *Pod) [3]int64 {
	return [3]int64{max(p.Requests.MilliCPU, 0), max(p.Requests.MemoryBytes, 0), int64(max(p.Requests.GPU, 0))}
}

func testCap(r Resources) [3]int64 {
	return [3]int64{max(r.MilliCPU, 0), max(r.MemoryBytes, 0), int64(max(r.GPU, 0))}
}

func testFits(p *Pod, lc *LaunchConfig) bool {
	req, c := testReq(p), testCap(lc.Capacity)
	return req[0] <= c[0] && req[1] <= c[1] && req[2] <= c[2] && testMatch(p, lc.Labels, lc.Taints, lc.Capacity.GPUType)
}

func checkPlan(cfg Config, led *ledger, s *State, plan Plan, tr *trace) error {
	now := s.Now
	byName := map[string]*LaunchConfig{}
	for i := range cfg.Configs {
		byName[cfg.Configs[i].Name] = &cfg.Configs[i]
	}
	price := func(name string) float64 {
		if v, ok := s.Prices[name]; ok && v >= 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
			return v
		}
		return byName[name].PricePerHour
	}
	limited := func(name string) bool {
		return led.lastShort[name] && now.Before(led.lastAt[name].Add(cfg.CapacityBackoff))
	}

	// Launches name known configs, once each, with positive counts, and no
	// capacity-limited config.
	planned := map[string]int{}
	totalPlanned := 0
	for _, o := range plan.Launches {
		if byName[o.Config] == nil {
			return fmt.Errorf("launch of unknown config %q", o.Config)
		}
		if o.Count <= 0 {
			return fmt.Errorf("launch %+v: count not positive", o)
		}
		if _, dup := planned[o.Config]; dup {
			return fmt.Errorf("config %q launched twice", o.Config)
		}
		if limited(o.Config) {
			return fmt.Errorf("launch of capacity-limited config %q", o.Config)
		}
		planned[o.Config] = o.Count
		totalPlanned += o.Count
	}
	if len(s.Pending) == 0 && totalPlanned > 0 {
		return fmt.Errorf("launches without pending pods")
	}

	// Limits, recomputed.
	count := map[string]int{}
	total := 0
	for _, n := range s.Nodes {
		count[n.Config]++
		total++
	}
	for _, l := range s.InFlight {
		if l.Count > 0 {
			count[l.Config] += l.Count
			total += l.Count
		}
	}
	for name, n := range planned {
		count[name] += n
		total += n
	}
	spend := 0.0
	for name, lc := range byName {
		spend += float64(count[name]) * price(name)
		if planned[name] == 0 {
			continue
		}
		if lc.MaxNodes > 0 && count[name] > lc.MaxNodes {
			return fmt.Errorf("config %q: %d nodes > max %d", name, count[name], lc.MaxNodes)
		}
		if cs := float64(count[name]) * price(name); lc.MaxSpendPerHour > 0 && cs > lc.MaxSpendPerHour+1e-6 {
			return fmt.Errorf("config %q: spend %v > max %v", name, cs, lc.MaxSpendPerHour)
		}
	}
	if totalPlanned > 0 {
		l := cfg.Limits
		if l.MaxNodes > 0 && total > l.MaxNodes {
			return fmt.Errorf("%d nodes > global max %d", total, l.MaxNodes)
		}
		if l.MaxSpendPerHour > 0 && spend > l.MaxSpendPerHour+1e-6 {
			return fmt.Errorf("spend %v > global max %v", spend, l.MaxSpendPerHour)
		}
		recent := 0
		for _, e := range led.adds {
			if e.at.After(now.Add(-cfg.Interval)) && !e.at.After(now) {
				recent += e.n
			}
		}
		if l.MaxAddPerInterval > 0 && recent+totalPlanned > l.MaxAddPerInterval {
			return fmt.Errorf("%d recent + %d planned > max add %d", recent, totalPlanned, l.MaxAddPerInterval)
		}
	}
	for ci, lc := range cfg.Configs {
		if lc.MaxAddPerInterval <= 0 || planned[lc.Name] == 0 {
			continue
		}
		recent := 0
		for _, e := range led.adds {
			if e.ci == ci && e.at.After(now.Add(-cfg.Interval)) && !e.at.After(now) {
				recent += e.n
			}
		}
		if recent+planned[lc.Name] > lc.MaxAddPerInterval {
			return fmt.Errorf("config %q: %d recent + %d planned > max add %d", lc.Name, recent, planned[lc.Name], lc.MaxAddPerInterval)
		}
	}

	// Removals: existing idle Ready nodes of known configs, once each,
	// never with worker pods, none a pending pod could use, within the rate.
	nodes := map[string]*Node{}
	for i := range s.Nodes {
		nodes[s.Nodes[i].ID] = &s.Nodes[i]
	}
	removed := map[string]bool{}
	for _, id := range plan.Removals {
		n := nodes[id]
		switch {
		case n == nil:
			return fmt.Errorf("removal of unknown node %q", id)
		case removed[id]:
			return fmt.Errorf("node %q removed twice", id)
		case n.WorkerPods > 0:
			return fmt.Errorf("removal of node %q with %d worker pods", id, n.WorkerPods)
		case n.WorkerPods != 0 || !n.Ready || byName[n.Config] == nil:
			return fmt.Errorf("removal of node %+v", *n)
		}
		removed[id] = true
		since := n.IdleSince
		if since.IsZero() {
			since = n.LaunchedAt
		}
		if since.IsZero() || now.Sub(since) < cfg.ScaleDownGrace {
			return fmt.Errorf("removal of node %q idle since %v, before the grace", id, since)
		}
		lc := byName[n.Config]
		free := testCap(n.Free)
		for i := range s.Pending {
			p := &s.Pending[i]
			req := testReq(p)
			if testMatch(p, lc.Labels, lc.Taints, lc.Capacity.GPUType) && req[0] <= free[0] && req[1] <= free[1] && req[2] <= free[2] {
				return fmt.Errorf("removal of node %q that pending pod %q fits", id, p.ID)
			}
		}
	}
	if m := cfg.Limits.MaxRemovePerInterval; m > 0 {
		recent := 0
		for _, e := range led.removes {
			if e.at.After(now.Add(-cfg.Interval)) && e.at.Before(now) {
				recent += e.n
			}
		}
		if recent+len(plan.Removals) > m && len(plan.Removals) > 0 {
			return fmt.Errorf("%d recent + %d removals > max remove %d", recent, len(plan.Removals), m)
		}
	}
	for ci, lc := range cfg.Configs {
		if lc.MaxRemovePerInterval <= 0 {
			continue
		}
		recent, now_ := 0, 0
		for _, e := range led.removes {
			if e.ci == ci && e.at.After(now.Add(-cfg.Interval)) && e.at.Before(now) {
				recent += e.n
			}
		}
		for id := range removed {
			if nodes[id].Config == lc.Name {
				now_++
			}
		}
		if now_ > 0 && recent+now_ > lc.MaxRemovePerInterval {
			return fmt.Errorf("config %q: %d recent + %d removals > max remove %d", lc.Name, recent, now_, lc.MaxRemovePerInterval)
		}
	}

	return checkAccounting(cfg, s, plan, tr, planned, limited)
}

// checkAccounting verifies the trace as a certificate: the shapes partition
// the pending pods, every placement fits its bin, the bins are real supply
// or the planned launches, and every pod not placed is in the shortfall
// under a reason that holds.
func checkAccounting(cfg Config, s *State, plan Plan, tr *trace, planned map[string]int, limited func(string) bool) error {
	if len(tr.podShape) != len(s.Pending) {
		return fmt.Errorf("trace covers %d of %d pods", len(tr.podShape), len(s.Pending))
	}
	counts := make([]int64, len(tr.shapes))
	for i, si := range tr.podShape {
		sh := &tr.shapes[si]
		if newShape(&s.Pending[i]).key != sh.key || testReq(&s.Pending[i]) != [3]int64{sh.req.cpu, sh.req.mem, sh.req.gpu} {
			return fmt.Errorf("pod %d is not of shape %d", i, si)
		}
		counts[si]++
	}
	for si := range tr.shapes {
		if counts[si] != tr.shapes[si].count {
			return fmt.Errorf("shape %d counts %d pods, has %d", si, tr.shapes[si].count, counts[si])
		}
	}

	// Bins are real.
	nodes := map[string]*Node{}
	for i := range s.Nodes {
		nodes[s.Nodes[i].ID] = &s.Nodes[i]
	}
	inflight := map[string]int{}
	for _, l := range s.InFlight {
		if l.Count > 0 {
			inflight[l.Config] += l.Count
		}
	}
	binCfg := make([]*LaunchConfig, len(tr.bins))
	seenNode := map[string]bool{}
	plannedBins := map[string]int{}
	inflightBins := map[string]int{}
	for bi, b := range tr.bins {
		kind, name, _ := strings.Cut(b.origin, ":")
		if b.cfg >= 0 {
			binCfg[bi] = &cfg.Configs[b.cfg]
		}
		switch kind {
		case "node", "booting":
			n := nodes[name]
			if n == nil || seenNode[name] {
				return fmt.Errorf("bin %q: no such node, or twice", b.origin)
			}
			seenNode[name] = true
			if kind == "node" && (!n.Ready || b.free != toRes(n.Free)) {
				return fmt.Errorf("bin %q: not the free room of a Ready node", b.origin)
			}
			if kind == "booting" && (n.Ready || n.WorkerPods != 0 || binCfg[bi] == nil || b.free != toRes(binCfg[bi].Capacity)) {
				return fmt.Errorf("bin %q: not a booting node", b.origin)
			}
			if binCfg[bi] != nil && binCfg[bi].Name != n.Config || binCfg[bi] == nil && b.gpuType != n.Free.GPUType {
				return fmt.Errorf("bin %q: wrong config", b.origin)
			}
		case "inflight", "planned":
			if binCfg[bi] == nil || binCfg[bi].Name != name || b.free != toRes(binCfg[bi].Capacity) {
				return fmt.Errorf("bin %q: wrong config or capacity", b.origin)
			}
			if kind == "inflight" {
				inflightBins[name]++
			} else {
				plannedBins[name]++
			}
		default:
			return fmt.Errorf("bin %q: unknown origin", b.origin)
		}
	}
	for name, n := range inflightBins {
		if n > inflight[name] {
			return fmt.Errorf("%d in-flight bins of %q, %d in flight", n, name, inflight[name])
		}
	}
	if !reflect.DeepEqual(plannedBins, planned) {
		return fmt.Errorf("planned bins %v, launches %v", plannedBins, planned)
	}

	// Placements fit.
	used := make([][3]int64, len(tr.bins))
	placed := make([]int64, len(tr.shapes))
	for _, pl := range tr.placed {
		b := tr.bins[pl.bin]
		pod := &s.Pending[tr.shapes[pl.shape].first]
		if pl.n <= 0 {
			return fmt.Errorf("placement %+v: not positive", pl)
		}
		var ok bool
		if lc := binCfg[pl.bin]; lc != nil {
			ok = testMatch(pod, lc.Labels, lc.Taints, lc.Capacity.GPUType)
		} else {
			ok = testMatch(pod, nil, nil, b.gpuType)
		}
		if !ok {
			return fmt.Errorf("placement %+v: pod %+v not allowed on bin %q", pl, *pod, b.origin)
		}
		req := testReq(pod)
		for d := range 3 {
			used[pl.bin][d] += pl.n * req[d]
		}
		placed[pl.shape] += pl.n
	}
	for bi, b := range tr.bins {
		if u := used[bi]; u[0] > b.free.cpu || u[1] > b.free.mem || u[2] > b.free.gpu {
			return fmt.Errorf("bin %q overfull: %v of %+v", b.origin, u, b.free)
		}
	}

	// Every pod is placed or short, once, for a reason that holds.
	short := make([]int64, len(tr.shapes))
	byReason := map[string]int64{}
	for _, sf := range tr.short {
		short[sf.shape] += sf.n
		byReason[sf.reason] += sf.n
		pod := &s.Pending[tr.shapes[sf.shape].first]
		var fitting, unmarked int
		for i := range cfg.Configs {
			if testFits(pod, &cfg.Configs[i]) {
				fitting++
				if !limited(cfg.Configs[i].Name) {
					unmarked++
				}
			}
		}
		switch sf.reason {
		case ReasonNoConfigFits:
			if fitting > 0 {
				return fmt.Errorf("pod %+v: no config fits, yet %d do", *pod, fitting)
			}
		case ReasonCapacityLimited:
			if fitting == 0 || unmarked > 0 {
				return fmt.Errorf("pod %+v: capacity-limited, yet %d of %d fitting configs are not", *pod, unmarked, fitting)
			}
		case ReasonGlobalMaxNodes, ReasonGlobalMaxSpend, ReasonConfigMaxNodes, ReasonConfigMaxSpend, ReasonAddRate, ReasonConfigAddRate:
			if unmarked == 0 {
				return fmt.Errorf("pod %+v: short for %q with no usable config", *pod, sf.reason)
			}
		default:
			return fmt.Errorf("unknown reason %q", sf.reason)
		}
	}
	for si := range tr.shapes {
		if placed[si]+short[si] != tr.shapes[si].count {
			return fmt.Errorf("shape %d: %d placed + %d short != %d pods", si, placed[si], short[si], tr.shapes[si].count)
		}
	}
	var want []Shortfall
	for _, r := range reasonOrder {
		if byReason[r] > 0 {
			want = append(want, Shortfall{Pods: int(byReason[r]), Reason: r})
		}
	}
	if !reflect.DeepEqual(want, plan.Shortfall) {
		return fmt.Errorf("shortfall %+v, trace says %+v", plan.Shortfall, want)
	}
	return nil
}

// configIndex is the position of a config by name, or -1.
func configIndex(cfg Config, name string) int {
	for i, lc := range cfg.Configs {
		if lc.Name == name {
			return i
		}
	}
	return -1
}
