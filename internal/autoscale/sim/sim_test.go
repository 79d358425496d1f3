package sim

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/autoscale"
)

// launchCall is one Policy.Launched report.
type launchCall struct {
	config     string
	asked, got int
	at         time.Duration
}

// scriptPolicy is a trivial test policy: while pods are pending and no
// node is booting, it asks for one node of config per pending pod (or
// Count, if set); it removes ready nodes empty for Grace and, with
// RemoveBusy, every node with pods. It records its launches.
type scriptPolicy struct {
	Config     string
	Count      int
	Grace      time.Duration
	RemoveBusy bool

	launched []launchCall
	states   int
}

func (p *scriptPolicy) Plan(s autoscale.State) autoscale.Plan {
	p.states++
	var plan autoscale.Plan
	booting := false
	for _, n := range s.Nodes {
		if !n.Ready {
			booting = true
		}
		if (p.RemoveBusy && n.WorkerPods > 0) || (p.Grace > 0 && n.Ready && n.WorkerPods == 0 && s.Now.Sub(n.IdleSince) >= p.Grace) {
			plan.Removals = append(plan.Removals, n.ID)
		}
	}
	if len(s.Pending) > 0 && !booting {
		n := len(s.Pending)
		if p.Count > 0 {
			n = p.Count
		}
		plan.Launches = append(plan.Launches, autoscale.Order{Config: p.Config, Count: n})
	}
	return plan
}

func (p *scriptPolicy) Launched(config string, asked, got int, now time.Time) {
	p.launched = append(p.launched, launchCall{config, asked, got, now.Sub(DefaultStart)})
}

func smallPod() Shape {
	return Shape{Name: "small", Weight: 1, MinRun: time.Hour, MaxRun: time.Hour,
		Requests:    autoscale.Resources{MilliCPU: 1000, MemoryBytes: 2 * gib},
		Tolerations: []autoscale.Toleration{tolerateSpot}}
}

// setup returns a simulation of a scripted workload on the catalogue.
func setup(t *testing.T, policy autoscale.Policy, cc CloudConfig, d time.Duration, arrivals ...Arrival) *Sim {
	t.Helper()
	s, err := New(Config{
		Duration: d,
		Configs:  Catalogue(),
		Limits:   CatalogueLimits(),
		Cloud:    cc,
		Workload: &Script{ShapeList: []Shape{smallPod()}, Arrivals: arrivals},
		Seed:     1,
	}, policy)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func stepUntil(t *testing.T, s *Sim, d time.Duration) {
	t.Helper()
	for !s.Done() && s.Now().Sub(DefaultStart) < d {
		if err := s.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := s.check(); err != nil {
			t.Fatalf("at %v: %v", s.Now().Sub(DefaultStart), err)
		}
	}
}

// check verifies the simulator's bookkeeping: every pod is pending,
// running on a live node or done, exactly once; every live node's free
// capacity plus its pods' requests is its capacity.
func (s *Sim) check() error {
	seen := make([]uint8, len(s.pods))
	for sh := range s.queues {
		for _, pi := range s.queues[sh].view() {
			if s.pods[pi].state != podPending || int(s.pods[pi].shape) != sh {
				return fmt.Errorf("queued pod %s is in state %d, shape %d", s.pods[pi].id, s.pods[pi].state, s.pods[pi].shape)
			}
			seen[pi]++
		}
	}
	for ni := range s.nodes {
		n := &s.nodes[ni]
		if !n.alive {
			if len(n.pods) > 0 {
				return fmt.Errorf("gone node %d has pods", ni)
			}
			continue
		}
		used := res{}
		for _, pi := range n.pods {
			if s.pods[pi].state != podRunning || s.pods[pi].node != int32(ni) {
				return fmt.Errorf("pod %s on node %d is in state %d on node %d", s.pods[pi].id, ni, s.pods[pi].state, s.pods[pi].node)
			}
			seen[pi]++
			used = used.sub(s.sreq[s.pods[pi].shape], -1)
		}
		if cap := toRes(s.cfg.Configs[s.cloud.inst[ni].cfg].Capacity); n.free.sub(used, -1) != cap || n.free.cpu < 0 || n.free.mem < 0 || n.free.gpu < 0 {
			return fmt.Errorf("node %d: free %+v + used %+v != capacity %+v", ni, n.free, used, cap)
		}
		if len(n.pods) > 0 && !n.ready {
			return fmt.Errorf("node %d has pods before it is ready", ni)
		}
	}
	for pi := range s.pods {
		want := uint8(1)
		if s.pods[pi].state == podDone {
			want = 0
		}
		if seen[pi] != want {
			return fmt.Errorf("pod %s (state %d) found %d times", s.pods[pi].id, s.pods[pi].state, seen[pi])
		}
	}
	m := s.Metrics()
	if m.PodsArrived != m.PodsCompleted+m.PodsRunningAtEnd+m.PodsPendingAtEnd {
		return fmt.Errorf("pods not conserved: %d arrived, %d completed, %d running, %d pending",
			m.PodsArrived, m.PodsCompleted, m.PodsRunningAtEnd, m.PodsPendingAtEnd)
	}
	if live := s.cloud.Live(); live != len(s.live)-s.dead {
		return fmt.Errorf("cloud has %d live instances, the simulator %d nodes", live, len(s.live)-s.dead)
	}
	return nil
}

func pending(s *Sim) int {
	n := 0
	for i := range s.queues {
		n += s.queues[i].len()
	}
	return n
}

func TestPodsRunAndLeave(t *testing.T) {
	t.Parallel()
	p := &scriptPolicy{Config: "m5.4xlarge/us-east-1a/on-demand", Grace: 10 * time.Minute}
	cc := DefaultCloudConfig()
	s := setup(t, p, cc, 3*time.Hour, Arrival{At: 0, Count: 20, Run: time.Hour})
	stepUntil(t, s, 3*time.Hour)
	m := s.Metrics()
	if m.PodsArrived != 20 || m.PodsCompleted != 20 || m.PodsPendingAtEnd != 0 {
		t.Errorf("arrived %d, completed %d, pending %d", m.PodsArrived, m.PodsCompleted, m.PodsPendingAtEnd)
	}
	// 20 pods of 1 CPU and 2 GiB: the 20 nodes asked for are ready within
	// BootMax, so every pod waits at most BootMax plus an interval.
	if m.PendingP99 > cc.BootMax+30*time.Second || m.PendingP50 < cc.BootMin {
		t.Errorf("pending p50 %v, p99 %v", m.PendingP50, m.PendingP99)
	}
	if m.NodesLaunched != 20 || m.BusyRemovals != 0 || s.cloud.Live() != 0 {
		t.Errorf("launched %d, busy removals %d, live at end %d", m.NodesLaunched, m.BusyRemovals, s.cloud.Live())
	}
	if m.Cost <= 0 {
		t.Errorf("cost %v", m.Cost)
	}
}

func TestSpotInterruptionReturnsPodsToPending(t *testing.T) {
	t.Parallel()
	p := &scriptPolicy{Config: "m5.4xlarge/us-east-1a/spot", Count: 1}
	cc := DefaultCloudConfig()
	cc.SpotInterruptionPerHour = 0
	s := setup(t, p, cc, 2*time.Hour, Arrival{At: 0, Count: 5, Run: time.Hour})
	stepUntil(t, s, 5*time.Minute)
	if got := pending(s); got != 0 {
		t.Fatalf("%d pods pending after 5 minutes", got)
	}
	s.cloud.interruptAt(0, s.now+10)
	stepUntil(t, s, s.Now().Sub(DefaultStart)+time.Minute)
	m := s.Metrics()
	if m.SpotInterruptions != 1 || m.PodsRequeued != 5 {
		t.Errorf("interruptions %d, requeued %d; want 1 and 5", m.SpotInterruptions, m.PodsRequeued)
	}
	// The policy saw the node go and the pods pending again, and asked
	// for another node.
	if len(p.launched) != 2 {
		t.Fatalf("launches %+v, want a second one after the interruption", p.launched)
	}
	stepUntil(t, s, 2*time.Hour)
	m = s.Metrics()
	if m.PodsCompleted != 5 || m.PodsPendingAtEnd != 0 {
		t.Errorf("completed %d, pending %d", m.PodsCompleted, m.PodsPendingAtEnd)
	}
}

func TestSpotHazardInterruptsNodes(t *testing.T) {
	t.Parallel()
	p := &scriptPolicy{Config: "m5.xlarge/us-east-1b/spot", Grace: time.Minute}
	cc := DefaultCloudConfig()
	cc.SpotInterruptionPerHour = 6 // ten minutes on average
	s := setup(t, p, cc, 3*time.Hour, Arrival{At: 0, Count: 30, Run: time.Hour})
	stepUntil(t, s, 3*time.Hour)
	m := s.Metrics()
	if m.SpotInterruptions == 0 || m.PodsRequeued == 0 {
		t.Errorf("interruptions %d, requeued %d", m.SpotInterruptions, m.PodsRequeued)
	}
}

func TestBusyRemovalsAreCounted(t *testing.T) {
	t.Parallel()
	p := &scriptPolicy{Config: "m5.4xlarge/us-east-1a/on-demand", Count: 1, RemoveBusy: true}
	s := setup(t, p, DefaultCloudConfig(), 20*time.Minute, Arrival{At: 0, Count: 3, Run: time.Hour})
	stepUntil(t, s, 20*time.Minute)
	m := s.Metrics()
	if m.BusyRemovals == 0 || m.PodsRequeued < 3 {
		t.Errorf("busy removals %d, requeued %d", m.BusyRemovals, m.PodsRequeued)
	}
}

func TestSpendCapViolationsAreCounted(t *testing.T) {
	t.Parallel()
	p := &scriptPolicy{Config: "m5.4xlarge/us-east-1a/on-demand", Count: 1}
	s, err := New(Config{
		Duration: 10 * time.Minute,
		Configs:  Catalogue(),
		Limits:   autoscale.Limits{MaxSpendPerHour: 0.5},
		Workload: &Script{ShapeList: []Shape{smallPod()}, Arrivals: []Arrival{{Count: 1, Run: time.Hour}}},
	}, p)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// One $0.768/h node from the first interval on: every interval is over.
	if m.Intervals != 20 || m.SpendCapViolations != 20 || m.SpendCapLaunches != 1 {
		t.Errorf("intervals %d, violations %d, of which with launches %d", m.Intervals, m.SpendCapViolations, m.SpendCapLaunches)
	}
}

func TestInvalidOrdersAndRemovals(t *testing.T) {
	t.Parallel()
	bad := policyFunc(func(s autoscale.State) autoscale.Plan {
		return autoscale.Plan{
			Launches: []autoscale.Order{{Config: "nope", Count: 1}, {Config: "m5.xlarge/us-east-1a/spot", Count: 0}},
			Removals: []string{"i-404"},
		}
	})
	s := setup(t, bad, DefaultCloudConfig(), time.Minute)
	m, err := s.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m.InvalidOrders != 4 || m.UnknownRemovals != 2 || m.NodesLaunched != 0 {
		t.Errorf("invalid orders %d, unknown removals %d, launched %d", m.InvalidOrders, m.UnknownRemovals, m.NodesLaunched)
	}
}

type policyFunc func(autoscale.State) autoscale.Plan

func (f policyFunc) Plan(s autoscale.State) autoscale.Plan { return f(s) }
func (policyFunc) Launched(string, int, int, time.Time)    {}

func TestNewRejectsBadInput(t *testing.T) {
	t.Parallel()
	ok := Config{Duration: time.Hour, Configs: Catalogue(), Workload: &Script{ShapeList: []Shape{smallPod()}}}
	p := &scriptPolicy{}
	for name, tc := range map[string]struct {
		mod  func(*Config)
		pol  autoscale.Policy
		want string
	}{
		"nil policy":  {func(*Config) {}, nil, "nil policy"},
		"duration":    {func(c *Config) { c.Duration = 0 }, p, "Duration"},
		"interval":    {func(c *Config) { c.Interval = 1500 * time.Millisecond }, p, "Interval"},
		"no workload": {func(c *Config) { c.Workload = nil }, p, "Workload"},
		"no shapes":   {func(c *Config) { c.Workload = &Script{} }, p, "pod shapes"},
		"empty shape": {func(c *Config) { c.Workload = &Script{ShapeList: []Shape{{Name: "nothing"}}} }, p, "nothing"},
		"no configs":  {func(c *Config) { c.Configs = nil }, p, "no launch configs"},
	} {
		c := ok
		tc.mod(&c)
		if _, err := New(c, tc.pol); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
	// A scripted arrival of a shape that does not exist fails the step.
	s := setup(t, p, DefaultCloudConfig(), time.Hour, Arrival{Shape: 3, Count: 1, Run: time.Minute})
	if err := s.Step(context.Background()); err == nil || !strings.Contains(err.Error(), "shape 3") {
		t.Errorf("arrival of shape 3: %v", err)
	}
}

// TestBaselineRetriesUnavailableGroup scripts the reference's complaint:
// the preferred node group has no capacity; the baseline asks it, waits
// out the provisioning timeout with nothing coming, and asks the same
// group again, never trying another.
func TestBaselineRetriesUnavailableGroup(t *testing.T) {
	t.Parallel()
	var configs []autoscale.LaunchConfig
	for _, c := range Catalogue() {
		if c.Zone == "us-east-1a" && (c.InstanceType == "c5.4xlarge" || c.InstanceType == "m5.4xlarge") && c.Purchase == autoscale.Spot {
			configs = append(configs, c)
		}
	}
	cc := DefaultCloudConfig()
	cc.SpotInterruptionPerHour = 0
	cc.Shortages = []Shortage{{InstanceType: "c5.4xlarge", To: 24 * time.Hour}}
	base, err := NewBaseline(autoscale.Config{Configs: configs}, BaselineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Policy: base}
	s, err := New(Config{
		Duration: 50 * time.Minute,
		Configs:  configs,
		Cloud:    cc,
		Workload: &Script{ShapeList: []Shape{smallPod()}, Arrivals: []Arrival{{Count: 10, Run: time.Hour}}},
	}, rec)
	if err != nil {
		t.Fatal(err)
	}
	stepUntil(t, s, 50*time.Minute)
	// Small pods (1 CPU, 2 GiB) waste least on c5.4xlarge, the group with
	// no capacity: asked at 0, 15m, 30m and 45m, never m5.4xlarge.
	want := []launchCall{
		{"c5.4xlarge/us-east-1a/spot", 1, 0, 0},
		{"c5.4xlarge/us-east-1a/spot", 1, 0, 15 * time.Minute},
		{"c5.4xlarge/us-east-1a/spot", 1, 0, 30 * time.Minute},
		{"c5.4xlarge/us-east-1a/spot", 1, 0, 45 * time.Minute},
	}
	if !reflect.DeepEqual(rec.launched, want) {
		t.Errorf("launches:\n got %+v\nwant %+v", rec.launched, want)
	}
	if m := s.Metrics(); m.PodsPendingAtEnd != 10 {
		t.Errorf("%d pods pending at the end, want 10", m.PodsPendingAtEnd)
	}
}

// recorder wraps a policy and records its launches.
type recorder struct {
	autoscale.Policy
	launched []launchCall
}

func (r *recorder) Launched(config string, asked, got int, now time.Time) {
	r.launched = append(r.launched, launchCall{config, asked, got, now.Sub(DefaultStart)})
	r.Policy.Launched(config, asked, got, now)
}

func TestBaselineScalesUpAndDown(t *testing.T) {
	t.Parallel()
	cfg, err := ScenarioConfig(ScenarioSteady, 1, 3*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cloud = DefaultCloudConfig()
	cfg.Workload = &Script{ShapeList: DefaultShapes(), Arrivals: []Arrival{
		{Shape: 0, Count: 200, Run: 30 * time.Minute},
		{Shape: 2, Count: 10, Run: 30 * time.Minute},
		{Shape: 3, Count: 20, Run: 30 * time.Minute},
		{Shape: 4, Count: 3, Run: 30 * time.Minute},
		{Shape: 5, Count: 2, Run: 30 * time.Minute},
	}}
	base, err := NewBaseline(PlannerConfig(cfg), BaselineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Policy: base}
	s, err := New(cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	stepUntil(t, s, 3*time.Hour)
	m := s.Metrics()
	if m.PodsCompleted != 235 || m.PendingP99 > 4*time.Minute {
		t.Errorf("completed %d, pending p99 %v", m.PodsCompleted, m.PendingP99)
	}
	if s.cloud.Live() != 0 || m.BusyRemovals != 0 {
		t.Errorf("%d nodes live at the end, %d busy removals", s.cloud.Live(), m.BusyRemovals)
	}
	// One scale-up per node group per loop, three loops per Plan; a group
	// spreads its nodes over the zones.
	zones := map[string]bool{}
	for _, l := range rec.launched {
		if l.at == 0 {
			zones[strings.Split(l.config, "/")[1]] = true
		}
	}
	if len(zones) != 3 {
		t.Errorf("first scale-up in zones %v, want all three", zones)
	}
}

func TestScenariosRunADay(t *testing.T) {
	t.Parallel()
	for _, sc := range Scenarios {
		t.Run(sc, func(t *testing.T) {
			t.Parallel()
			cfg, err := ScenarioConfig(sc, 11, 24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			base, err := NewBaseline(PlannerConfig(cfg), BaselineOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(cfg, base)
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.check(); err != nil {
				t.Fatal(err)
			}
			if m.Intervals != 2880 || m.PodsArrived == 0 || m.NodesLaunched == 0 || m.Cost <= 0 || m.BusyRemovals != 0 {
				t.Errorf("%+v", m)
			}
		})
	}
}

func TestWorkloadIsDeterministic(t *testing.T) {
	t.Parallel()
	arrivals := func(seed int64) []int {
		g, err := NewWorkload(ScenarioSpike, seed, Week)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(g.Spikes()); n != 3 {
			t.Errorf("a week of spikes has %d bursts, want 3", n)
		}
		var out []int
		for from := time.Duration(0); from < Week; from += time.Hour {
			n := 0
			g.Arrive(from, from+time.Hour, func(int, time.Duration) { n++ })
			out = append(out, n)
		}
		return out
	}
	a, b, c := arrivals(5), arrivals(5), arrivals(6)
	if !slices.Equal(a, b) {
		t.Error("the same seed gave different arrivals")
	}
	if slices.Equal(a, c) {
		t.Error("different seeds gave the same arrivals")
	}
	if _, err := NewWorkload("sawtooth", 1, Week); err == nil || !strings.Contains(err.Error(), "sawtooth") {
		t.Errorf("unknown scenario: %v", err)
	}
}
