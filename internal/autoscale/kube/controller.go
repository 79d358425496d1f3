package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/haul-dev/haul/internal/autoscale"
)

// provisionTimeout is how long launched instances count as in flight
// before their nodes must have registered.
const provisionTimeout = 15 * time.Minute

// Controller runs the planner against a cluster: every interval it takes
// the Source's snapshot, adds the launches still in flight and the current
// prices, plans, launches through the Provider (reporting what came back,
// so short configs get marked), and terminates the nodes the plan removes.
// What it could not do, and why, is in Status.
type Controller struct {
	cfg      autoscale.Config
	planner  *autoscale.Planner
	provider autoscale.Provider
	source   *Source
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	inflight []inflight
	status   Status
}

type inflight struct {
	config string
	ids    map[string]bool
	at     time.Time
}

// Status is what the autoscaler did last and could not do, served at
// /status and shown by `haul cluster status`.
type Status struct {
	Time            time.Time              `json:"time"`
	Pending         int                    `json:"pending_pods"`
	Nodes           map[string]ConfigNodes `json:"nodes"` // by config
	InFlight        map[string]int         `json:"in_flight"`
	SpendPerHour    float64                `json:"spend_per_hour"`
	MaxSpendPerHour float64                `json:"max_spend_per_hour"`
	MaxNodes        int                    `json:"max_nodes"`
	Launched        []autoscale.Order      `json:"launched"`
	Removed         []string               `json:"removed"`
	Shortfall       []autoscale.Shortfall  `json:"shortfall"`
	CapacityLimited []string               `json:"capacity_limited"`
	Errors          []string               `json:"errors"`
}

// ConfigNodes counts a config's nodes.
type ConfigNodes struct {
	Ready    int `json:"ready"`
	NotReady int `json:"not_ready"`
	Busy     int `json:"busy"` // running worker pods
}

// NewController returns a controller; its Source must be started.
func NewController(cfg autoscale.Config, provider autoscale.Provider, source *Source, log *slog.Logger, clock func() time.Time) (*Controller, error) {
	p, err := autoscale.NewPlanner(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if clock == nil {
		clock = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = autoscale.DefaultInterval
	}
	return &Controller{cfg: cfg, planner: p, provider: provider, source: source, log: log, now: clock}, nil
}

// Run calls Step every interval until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if err := c.Step(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("autoscaler step", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Step makes and carries out one plan.
func (c *Controller) Step(ctx context.Context) error {
	now := c.now()
	pending, nodes, instances, err := c.source.Snapshot(now)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	byName := map[string]autoscale.LaunchConfig{}
	for _, lc := range c.cfg.Configs {
		byName[lc.Name] = lc
	}
	var errs []string
	prices, err := c.provider.Prices(ctx, c.cfg.Configs)
	if err != nil {
		errs = append(errs, "prices: "+err.Error())
	}

	c.mu.Lock()
	// Launches stay in flight until their nodes register or time out.
	registered := map[string]bool{}
	for _, id := range instances {
		registered[id] = true
	}
	var launches []autoscale.Launch
	kept := c.inflight[:0]
	for _, f := range c.inflight {
		for id := range f.ids {
			if registered[id] {
				delete(f.ids, id)
			}
		}
		if len(f.ids) == 0 || now.Sub(f.at) > provisionTimeout {
			continue
		}
		kept = append(kept, f)
		launches = append(launches, autoscale.Launch{Config: f.config, Count: len(f.ids), At: f.at})
	}
	c.inflight = kept
	c.mu.Unlock()

	plan := c.planner.Plan(autoscale.State{Now: now, Pending: pending, Nodes: nodes, InFlight: launches, Prices: prices})
	var launched []autoscale.Order
	for _, o := range plan.Launches {
		lc, ok := byName[o.Config]
		if !ok {
			continue
		}
		got, err := c.provider.Launch(ctx, lc, o.Count)
		if err != nil {
			errs = append(errs, fmt.Sprintf("launch %d of %s: %v", o.Count, o.Config, err))
		}
		c.planner.Launched(o.Config, o.Count, len(got), now)
		if len(got) < o.Count {
			c.log.Warn("launch came back short; config marked capacity-limited", "config", o.Config, "asked", o.Count, "got", len(got))
		}
		if len(got) > 0 {
			f := inflight{config: o.Config, ids: map[string]bool{}, at: now}
			for _, in := range got {
				f.ids[in.ID] = true
			}
			c.mu.Lock()
			c.inflight = append(c.inflight, f)
			c.mu.Unlock()
			launched = append(launched, autoscale.Order{Config: o.Config, Count: len(got)})
		}
	}
	if len(plan.Removals) > 0 {
		ids := make([]string, 0, len(plan.Removals))
		for _, n := range plan.Removals {
			ids = append(ids, instances[n])
		}
		if err := c.provider.Terminate(ctx, ids); err != nil {
			errs = append(errs, "terminate: "+err.Error())
		}
	}
	for _, s := range plan.Shortfall {
		c.log.Warn("demand the limits do not allow", "pods", s.Pods, "reason", s.Reason)
	}

	st := Status{
		Time: now, Pending: len(pending), Nodes: map[string]ConfigNodes{}, InFlight: map[string]int{},
		MaxSpendPerHour: c.cfg.Limits.MaxSpendPerHour, MaxNodes: c.cfg.Limits.MaxNodes,
		Launched: launched, Removed: plan.Removals, Shortfall: plan.Shortfall,
		CapacityLimited: c.planner.CapacityLimited(now), Errors: errs,
	}
	for _, n := range nodes {
		cn := st.Nodes[n.Config]
		switch {
		case !n.Ready:
			cn.NotReady++
		default:
			cn.Ready++
		}
		if n.WorkerPods > 0 {
			cn.Busy++
		}
		st.Nodes[n.Config] = cn
		st.SpendPerHour += price(byName[n.Config], prices)
	}
	c.mu.Lock()
	for _, f := range c.inflight {
		st.InFlight[f.config] += len(f.ids)
		st.SpendPerHour += price(byName[f.config], prices) * float64(len(f.ids))
	}
	c.status = st
	c.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func price(lc autoscale.LaunchConfig, prices map[string]float64) float64 {
	if p, ok := prices[lc.Name]; ok {
		return p
	}
	return lc.PricePerHour
}

// Status returns the outcome of the last step.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Handler serves /status (JSON) and /metrics (Prometheus text format).
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(c.Status())
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		st := c.Status()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP haul_autoscaler_pending_pods Worker pods waiting for a node.\n# TYPE haul_autoscaler_pending_pods gauge\nhaul_autoscaler_pending_pods %d\n", st.Pending)
		fmt.Fprintf(w, "# HELP haul_autoscaler_spend_per_hour Dollars per hour of the nodes and launches.\n# TYPE haul_autoscaler_spend_per_hour gauge\nhaul_autoscaler_spend_per_hour %g\n", st.SpendPerHour)
		fmt.Fprintf(w, "# HELP haul_autoscaler_shortfall_pods Pending pods the limits or capacity left unmet, by reason.\n# TYPE haul_autoscaler_shortfall_pods gauge\n")
		for _, s := range st.Shortfall {
			fmt.Fprintf(w, "haul_autoscaler_shortfall_pods{reason=%q} %d\n", s.Reason, s.Pods)
		}
		configs := make([]string, 0, len(st.Nodes))
		for k := range st.Nodes {
			configs = append(configs, k)
		}
		sort.Strings(configs)
		fmt.Fprintf(w, "# HELP haul_autoscaler_nodes Nodes by launch config.\n# TYPE haul_autoscaler_nodes gauge\n")
		for _, k := range configs {
			fmt.Fprintf(w, "haul_autoscaler_nodes{config=%q} %d\n", k, st.Nodes[k].Ready+st.Nodes[k].NotReady)
		}
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	return mux
}
