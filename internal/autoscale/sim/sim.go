package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/haul-dev/haul/internal/autoscale"
)

// DefaultStart is when simulations start unless Config.Start says
// otherwise: a Monday, midnight UTC.
var DefaultStart = time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)

// Config is one simulation: the world (launch configs, the cloud, the
// workload) and how long to run it.
type Config struct {
	Start    time.Time     // default DefaultStart
	Duration time.Duration // simulated time to run
	Interval time.Duration // planning interval (default 30s)
	Configs  []autoscale.LaunchConfig
	// Limits are the global limits; the simulator only uses
	// MaxSpendPerHour, to count the intervals whose spend rate exceeded
	// it, whatever the policy knows of it.
	Limits   autoscale.Limits
	Cloud    CloudConfig
	Workload Workload
	Seed     int64 // seeds the cloud
}

// Metrics is what a simulation measured.
type Metrics struct {
	Policy    string
	Intervals int
	// Cost is the dollars billed: each node's price, integrated over the
	// time it lived (booting included).
	Cost float64
	// PendingP50 and PendingP99 are percentiles of the time pods waited
	// from pending to placed on a node, at one-second resolution; a pod
	// that waits again after a spot interruption counts again; pods still
	// pending at the end count with their wait so far.
	PendingP50, PendingP99 time.Duration
	PendingMax             time.Duration
	// PendingPodIntervals sums the pending pods over the intervals.
	PendingPodIntervals int64
	NodesLaunched       int
	LaunchAsked         int // instances the policy ordered
	PeakNodes           int
	PeakSpendPerHour    float64
	// SpendCapViolations counts the intervals at whose end the spend rate
	// exceeded Limits.MaxSpendPerHour.
	SpendCapViolations int
	// SpendCapLaunches counts the violations in whose interval the policy
	// launched nodes (the others come from spot prices rising under nodes
	// that are busy).
	SpendCapLaunches int
	// BusyRemovals counts nodes the policy removed while pods ran on them
	// (the simulator removes them and the pods become pending again).
	BusyRemovals int
	// UnmetPodIntervals sums Plan.Shortfall pods over the intervals: the
	// demand the policy reported it could not cover.
	UnmetPodIntervals int64
	// InvalidOrders counts orders for unknown configs or of no nodes;
	// UnknownRemovals counts removals of unknown node IDs.
	InvalidOrders, UnknownRemovals int
	SpotInterruptions              int
	PodsArrived                    int
	PodsCompleted                  int
	PodsRequeued                   int // back to pending after their node went away
	PodsRunningAtEnd               int
	PodsPendingAtEnd               int
}

// Sim runs a Policy against a Cloud and a Workload in simulated time. It is
// not safe for concurrent use; separate Sims are independent.
type Sim struct {
	cfg      Config
	policy   autoscale.Policy
	cloud    *Cloud
	interval int64
	end      int64
	now      int64 // the current (or next) tick, seconds since start

	shapes []Shape
	sreq   []res
	sgpu   []string
	compat [][]bool // shape × config
	order  []int    // shapes in the scheduler's order, largest first
	pods   []pod
	queues []fifo // pending pods per shape
	nodes  []node // parallel to cloud.inst
	live   []int32
	dead   int // nodes in live that are gone
	events eventQueue
	waits  []int32 // seconds each placement waited
	m      Metrics
	addErr error
	done   bool

	statePods  []autoscale.Pod
	stateNodes []autoscale.Node
}

const (
	podPending uint8 = iota
	podRunning
	podDone
)

type pod struct {
	id    string
	since int64 // pending since
	node  int32
	run   int32 // seconds
	gen   uint32
	shape uint16
	state uint8
}

type node struct {
	free      res
	pods      []int32
	idleSince int64
	ready     bool
	alive     bool
}

// fifo is a queue of pod indices.
type fifo struct {
	items []int32
	head  int
}

func (f *fifo) len() int      { return len(f.items) - f.head }
func (f *fifo) push(p int32)  { f.items = append(f.items, p) }
func (f *fifo) view() []int32 { return f.items[f.head:] }
func (f *fifo) pop() int32 {
	p := f.items[f.head]
	f.head++
	if f.head > 1024 && f.head*2 > len(f.items) {
		n := copy(f.items, f.items[f.head:])
		f.items = f.items[:n]
		f.head = 0
	}
	return p
}

// New returns a simulation of cfg driving policy.
func New(cfg Config, policy autoscale.Policy) (*Sim, error) {
	if policy == nil {
		return nil, errors.New("new simulation: nil policy")
	}
	if cfg.Duration <= 0 {
		return nil, fmt.Errorf("new simulation: Duration %v is not positive", cfg.Duration)
	}
	if cfg.Interval == 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Interval < time.Second || cfg.Interval%time.Second != 0 {
		return nil, fmt.Errorf("new simulation: Interval %v must be a positive number of whole seconds", cfg.Interval)
	}
	if cfg.Start.IsZero() {
		cfg.Start = DefaultStart
	}
	if cfg.Workload == nil {
		return nil, errors.New("new simulation: no Workload")
	}
	if cfg.Limits.MaxSpendPerHour < 0 || math.IsNaN(cfg.Limits.MaxSpendPerHour) {
		return nil, fmt.Errorf("new simulation: Limits.MaxSpendPerHour %v is negative", cfg.Limits.MaxSpendPerHour)
	}
	cloud, err := NewCloud(cfg.Configs, cfg.Cloud, cfg.Seed, cfg.Start)
	if err != nil {
		return nil, fmt.Errorf("new simulation: %w", err)
	}
	s := &Sim{
		cfg:      cfg,
		policy:   policy,
		cloud:    cloud,
		interval: seconds(cfg.Interval),
		end:      seconds(cfg.Duration),
		shapes:   cfg.Workload.Shapes(),
	}
	if len(s.shapes) == 0 || len(s.shapes) > math.MaxUint16 {
		return nil, fmt.Errorf("new simulation: workload has %d pod shapes", len(s.shapes))
	}
	for i, sh := range s.shapes {
		r := toRes(sh.Requests)
		if r.cpu == 0 && r.mem == 0 && r.gpu == 0 {
			return nil, fmt.Errorf("new simulation: pod shape %d (%s) requests nothing", i, sh.Name)
		}
		s.sreq = append(s.sreq, r)
		s.sgpu = append(s.sgpu, sh.Requests.GPUType)
		row := make([]bool, len(cfg.Configs))
		for j := range cfg.Configs {
			row[j] = compatible(sh.Requests, sh.NodeSelector, sh.Tolerations, &cfg.Configs[j])
		}
		s.compat = append(s.compat, row)
		s.order = append(s.order, i)
	}
	s.queues = make([]fifo, len(s.shapes))
	slices.SortStableFunc(s.order, func(a, b int) int {
		ra, rb := s.sreq[a], s.sreq[b]
		if ra.gpu != rb.gpu {
			return int(rb.gpu - ra.gpu)
		}
		if ra.mem != rb.mem {
			if ra.mem > rb.mem {
				return -1
			}
			return 1
		}
		if ra.cpu != rb.cpu {
			if ra.cpu > rb.cpu {
				return -1
			}
			return 1
		}
		return 0
	})
	return s, nil
}

// Cloud is the simulated cloud.
func (s *Sim) Cloud() *Cloud { return s.cloud }

// Now is the simulated time of the next interval.
func (s *Sim) Now() time.Time { return s.at(s.now) }

func (s *Sim) at(t int64) time.Time { return s.cfg.Start.Add(time.Duration(t) * time.Second) }

// Done reports whether the simulation has run its Duration.
func (s *Sim) Done() bool { return s.done }

// Run runs the simulation to its end and returns the metrics.
func (s *Sim) Run(ctx context.Context) (Metrics, error) {
	for !s.done {
		if err := s.Step(ctx); err != nil {
			return s.Metrics(), err
		}
	}
	return s.Metrics(), nil
}

// Step runs one planning interval: it processes the events up to now (pods
// finishing, nodes becoming ready, spot interruptions, price moves), adds
// the pods that arrive in this interval, places pending pods with the
// first-fit scheduler, asks the policy for a plan and carries it out; then
// it moves the clock one interval on. After the last interval it bills up
// to the end and marks the simulation done.
func (s *Sim) Step(ctx context.Context) error {
	if s.done {
		return errors.New("step: simulation already done")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("step: %w", err)
	}
	t := s.now
	s.processUntil(t)
	s.cloud.advanceClock(t)
	s.cfg.Workload.Arrive(time.Duration(t)*time.Second, time.Duration(t+s.interval)*time.Second, s.addPod)
	if s.addErr != nil {
		return s.addErr
	}
	s.schedule(t)
	s.compact()

	pending := 0
	for i := range s.queues {
		pending += s.queues[i].len()
	}
	s.m.PendingPodIntervals += int64(pending)

	st, err := s.state(ctx, t)
	if err != nil {
		return err
	}
	plan := s.policy.Plan(st)
	launched := s.m.NodesLaunched
	if err := s.execute(ctx, t, plan); err != nil {
		return err
	}
	launched = s.m.NodesLaunched - launched
	for _, sf := range plan.Shortfall {
		s.m.UnmetPodIntervals += int64(max(sf.Pods, 0))
	}
	rate := s.cloud.SpendRate()
	s.m.PeakSpendPerHour = max(s.m.PeakSpendPerHour, rate)
	if cap := s.cfg.Limits.MaxSpendPerHour; cap > 0 && rate > cap*(1+1e-9) {
		s.m.SpendCapViolations++
		if launched > 0 {
			s.m.SpendCapLaunches++
		}
	}
	s.m.PeakNodes = max(s.m.PeakNodes, len(s.live)-s.dead)
	s.m.Intervals++

	s.now += s.interval
	if s.now >= s.end {
		s.processUntil(s.end)
		s.cloud.advanceClock(s.end)
		s.done = true
	}
	return nil
}

func (s *Sim) addPod(shape int, run time.Duration) {
	if s.addErr != nil {
		return
	}
	if shape < 0 || shape >= len(s.shapes) {
		s.addErr = fmt.Errorf("workload: arrival names pod shape %d; there are %d", shape, len(s.shapes))
		return
	}
	r := max(int64(run/time.Second), 1)
	if r > math.MaxInt32 {
		s.addErr = fmt.Errorf("workload: run time %v of a %s pod is too long", run, s.shapes[shape].Name)
		return
	}
	idx := int32(len(s.pods))
	s.pods = append(s.pods, pod{
		id:    "pod-" + strconv.Itoa(int(idx)+1),
		since: s.now,
		node:  -1,
		run:   int32(r),
		shape: uint16(shape),
	})
	s.queues[shape].push(idx)
	s.m.PodsArrived++
}

// processUntil processes the cloud's and the pods' events up to t, in time
// order (cloud events first at equal times).
func (s *Sim) processUntil(t int64) {
	for {
		ca, cok := s.cloud.nextAt()
		pa, pok := s.events.peek()
		switch {
		case cok && ca <= t && (!pok || ca <= pa):
			ev, ok := s.cloud.step()
			if ok {
				s.onCloud(ev)
			}
		case pok && pa <= t:
			s.finish(s.events.pop())
		default:
			return
		}
	}
}

func (s *Sim) syncNodes() {
	for len(s.nodes) < len(s.cloud.inst) {
		in := &s.cloud.inst[len(s.nodes)]
		s.nodes = append(s.nodes, node{
			free:      toRes(s.cfg.Configs[in.cfg].Capacity),
			idleSince: in.launched,
			alive:     true,
		})
		s.live = append(s.live, int32(len(s.nodes)-1))
	}
}

func (s *Sim) onCloud(ev CloudEvent) {
	s.syncNodes()
	switch ev.Kind {
	case NodeReady:
		idx := s.cloud.byID[ev.Instance]
		n := &s.nodes[idx]
		n.ready = true
		if len(n.pods) == 0 {
			n.idleSince = s.cloud.now
		}
	case NodeInterrupted:
		s.m.SpotInterruptions++
		s.gone(s.cloud.byID[ev.Instance], s.cloud.now)
	}
}

// gone takes a node out: its pods become pending again at t.
func (s *Sim) gone(idx int32, t int64) {
	n := &s.nodes[idx]
	if !n.alive {
		return
	}
	n.alive = false
	n.ready = false
	for _, p := range n.pods {
		pp := &s.pods[p]
		pp.state = podPending
		pp.node = -1
		pp.since = t
		s.queues[pp.shape].push(p)
		s.m.PodsRequeued++
	}
	n.pods = nil
	s.dead++
}

// finish ends a pod's run, unless the event is stale.
func (s *Sim) finish(e event) {
	p := &s.pods[e.idx]
	if p.state != podRunning || p.gen != e.gen {
		return
	}
	p.state = podDone
	n := &s.nodes[p.node]
	n.free = n.free.sub(s.sreq[p.shape], -1)
	if i := slices.Index(n.pods, e.idx); i >= 0 {
		last := len(n.pods) - 1
		n.pods[i] = n.pods[last]
		n.pods = n.pods[:last]
	}
	if len(n.pods) == 0 {
		n.idleSince = e.at
	}
	p.node = -1
	s.m.PodsCompleted++
}

// schedule places pending pods on ready nodes: shapes largest first, each
// shape's pods in the order they became pending, each onto the first node
// (in launch order) with room.
func (s *Sim) schedule(t int64) {
	s.syncNodes()
	for _, sh := range s.order {
		q := &s.queues[sh]
		if q.len() == 0 {
			continue
		}
		req := s.sreq[sh]
		compat := s.compat[sh]
		for _, ni := range s.live {
			n := &s.nodes[ni]
			if !n.ready || !compat[s.cloud.inst[ni].cfg] {
				continue
			}
			k := fitCount(n.free, req)
			if k == 0 {
				continue
			}
			k = min(k, int64(q.len()))
			for range k {
				s.place(q.pop(), ni, t)
			}
			if q.len() == 0 {
				break
			}
		}
	}
}

func (s *Sim) place(pi, ni int32, t int64) {
	p := &s.pods[pi]
	n := &s.nodes[ni]
	n.free = n.free.sub(s.sreq[p.shape], 1)
	n.pods = append(n.pods, pi)
	p.state = podRunning
	p.node = ni
	p.gen++
	s.waits = append(s.waits, int32(min(t-p.since, math.MaxInt32)))
	s.events.push(event{at: t + int64(p.run), idx: pi, gen: p.gen})
}

// compact drops the nodes that are gone from the live list.
func (s *Sim) compact() {
	if s.dead == 0 {
		return
	}
	s.live = slices.DeleteFunc(s.live, func(i int32) bool { return !s.nodes[i].alive })
	s.dead = 0
}

// state builds what the policy sees. The slices are reused from one
// interval to the next: a policy must not keep them past Plan. Pods of a
// shape share its NodeSelector and Tolerations.
func (s *Sim) state(ctx context.Context, t int64) (autoscale.State, error) {
	pods := s.statePods[:0]
	for _, sh := range s.order {
		shape := &s.shapes[sh]
		for _, pi := range s.queues[sh].view() {
			p := &s.pods[pi]
			pods = append(pods, autoscale.Pod{
				ID:           p.id,
				Requests:     shape.Requests,
				NodeSelector: shape.NodeSelector,
				Tolerations:  shape.Tolerations,
				PendingSince: s.at(p.since),
			})
		}
	}
	nodes := s.stateNodes[:0]
	for _, ni := range s.live {
		n := &s.nodes[ni]
		if !n.alive {
			continue
		}
		in := &s.cloud.inst[ni]
		nd := autoscale.Node{
			ID:         in.id,
			Config:     s.cfg.Configs[in.cfg].Name,
			Ready:      n.ready,
			LaunchedAt: s.at(in.launched),
			WorkerPods: len(n.pods),
			Free:       n.free.resources(s.cfg.Configs[in.cfg].Capacity.GPUType),
		}
		if len(n.pods) == 0 {
			nd.IdleSince = s.at(n.idleSince)
		}
		nodes = append(nodes, nd)
	}
	s.statePods, s.stateNodes = pods, nodes
	prices, err := s.cloud.Prices(ctx, nil)
	if err != nil {
		return autoscale.State{}, err
	}
	return autoscale.State{Now: s.at(t), Pending: pods, Nodes: nodes, Prices: prices}, nil
}

// execute carries out a plan: removals first, then the launches in order,
// reporting each launch's outcome to the policy.
func (s *Sim) execute(ctx context.Context, t int64, plan autoscale.Plan) error {
	if len(plan.Removals) > 0 {
		ids := make([]string, 0, len(plan.Removals))
		for _, id := range plan.Removals {
			idx, ok := s.cloud.byID[id]
			if !ok {
				s.m.UnknownRemovals++
				continue
			}
			n := &s.nodes[idx]
			if !n.alive {
				continue
			}
			if len(n.pods) > 0 {
				s.m.BusyRemovals++
			}
			s.gone(idx, t)
			ids = append(ids, id)
		}
		if err := s.cloud.Terminate(ctx, ids); err != nil {
			return fmt.Errorf("execute plan: %w", err)
		}
	}
	now := s.at(t)
	for _, o := range plan.Launches {
		ci, ok := s.cloud.byName[o.Config]
		if !ok || o.Count <= 0 {
			s.m.InvalidOrders++
			continue
		}
		got, err := s.cloud.Launch(ctx, s.cfg.Configs[ci], o.Count)
		if err != nil {
			return fmt.Errorf("execute plan: %w", err)
		}
		s.m.LaunchAsked += o.Count
		s.m.NodesLaunched += len(got)
		s.policy.Launched(o.Config, o.Count, len(got), now)
	}
	s.syncNodes()
	return nil
}

// Metrics returns the metrics so far; once Done, the final ones.
func (s *Sim) Metrics() Metrics {
	m := s.m
	m.Cost = s.cloud.Cost()
	m.PodsRunningAtEnd, m.PodsPendingAtEnd = 0, 0
	waits := slices.Clone(s.waits)
	for i := range s.queues {
		for _, pi := range s.queues[i].view() {
			m.PodsPendingAtEnd++
			waits = append(waits, int32(min(s.cloud.now-s.pods[pi].since, math.MaxInt32)))
		}
	}
	for _, ni := range s.live {
		m.PodsRunningAtEnd += len(s.nodes[ni].pods)
	}
	if len(waits) > 0 {
		slices.Sort(waits)
		m.PendingP50 = time.Duration(percentile(waits, 0.50)) * time.Second
		m.PendingP99 = time.Duration(percentile(waits, 0.99)) * time.Second
		m.PendingMax = time.Duration(waits[len(waits)-1]) * time.Second
	}
	return m
}

// percentile of sorted values, nearest rank.
func percentile(sorted []int32, q float64) int32 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
