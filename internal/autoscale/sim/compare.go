package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/haul-dev/haul/internal/autoscale"
)

// NewHaulPolicy constructs haul's planner for Compare: autoscale.NewPlanner
// unless replaced (before any Compare runs); Compare fails if it is nil.
var NewHaulPolicy func(autoscale.Config) (autoscale.Policy, error) = newPlanner

func newPlanner(c autoscale.Config) (autoscale.Policy, error) {
	p, err := autoscale.NewPlanner(c)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Week is the default length of a comparison.
const Week = 7 * 24 * time.Hour

// ScenarioConfig returns the simulation of a named scenario (spike,
// diurnal, steady) over duration d: the Catalogue and its limits, the
// default cloud with capacity shortages drawn from the seed (and, in the
// spike scenario, no spot capacity at all in two of the three zones for 1–3
// hours from each burst), and the scenario's workload.
func ScenarioConfig(scenario string, seed int64, d time.Duration) (Config, error) {
	w, err := NewWorkload(scenario, seed, d)
	if err != nil {
		return Config{}, fmt.Errorf("scenario: %w", err)
	}
	configs := Catalogue()
	cc := DefaultCloudConfig()
	cc.Shortages = randomShortages(configs, seed, d)
	for i, sp := range w.Spikes() {
		// Everyone surges at once: the spot market dries up in two zones.
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(0x5b1e+i)))
		skip := rng.IntN(len(Zones))
		until := sp.At + time.Duration(1+rng.IntN(3))*time.Hour
		for zi, z := range Zones {
			if zi != skip {
				cc.Shortages = append(cc.Shortages, Shortage{Zone: z, Purchase: autoscale.Spot, From: sp.At, To: until})
			}
		}
	}
	return Config{
		Start:    DefaultStart,
		Duration: d,
		Interval: 30 * time.Second,
		Configs:  configs,
		Limits:   CatalogueLimits(),
		Cloud:    cc,
		Workload: w,
		Seed:     seed,
	}, nil
}

// randomShortages draws, per config, shortages as a Poisson process: spot
// configs about once every 3 days for 20 minutes to 4 hours (usually no
// instances at all, else 1–3 per launch), on-demand configs about once
// every 10 days for 15 minutes to 2 hours (0–5 per launch).
func randomShortages(configs []autoscale.LaunchConfig, seed int64, d time.Duration) []Shortage {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5407))
	var out []Shortage
	for i := range configs {
		c := &configs[i]
		every, minDur, maxDur := 10*24*time.Hour, 15*time.Minute, 2*time.Hour
		if c.Purchase == autoscale.Spot {
			every, minDur, maxDur = 3*24*time.Hour, 20*time.Minute, 4*time.Hour
		}
		for t := time.Duration(0); ; {
			t += time.Duration(rng.ExpFloat64() * float64(every))
			if t >= d {
				break
			}
			per := rng.IntN(6)
			if c.Purchase == autoscale.Spot {
				per = 0
				if rng.Float64() < 0.4 {
					per = 1 + rng.IntN(3)
				}
			}
			out = append(out, Shortage{
				InstanceType: c.InstanceType, Zone: c.Zone, Purchase: c.Purchase,
				From: t.Truncate(time.Second), To: (t + logUniform(rng, minDur, maxDur)).Truncate(time.Second),
				PerLaunch: per,
			})
		}
	}
	return out
}

// PlannerConfig is what haul's planner gets for a simulation: its launch
// configs and global limits, the cost strategy, a 10-minute scale-down
// grace, a 5-minute capacity backoff and the simulation's interval.
func PlannerConfig(c Config) autoscale.Config {
	interval := c.Interval
	if interval == 0 {
		interval = 30 * time.Second
	}
	return autoscale.Config{
		Configs:         c.Configs,
		Limits:          c.Limits,
		Strategy:        "cost",
		ScaleDownGrace:  10 * time.Minute,
		CapacityBackoff: 5 * time.Minute,
		Interval:        interval,
	}
}

// Report is the outcome of a comparison: one Metrics per policy, baseline
// first.
type Report struct {
	Scenario string
	Seed     int64
	Duration time.Duration
	Interval time.Duration
	SpendCap float64 // the global MaxSpendPerHour violations count against
	Results  []Metrics
}

// Compare runs the baseline and haul's planner (built with NewHaulPolicy)
// on the same scenario and seed for duration d (0: a week), side by side.
func Compare(scenario string, seed int64, d time.Duration) (Report, error) {
	if NewHaulPolicy == nil {
		return Report{}, errors.New("compare: sim.NewHaulPolicy is not set: nothing constructs haul's planner")
	}
	return CompareWith(scenario, seed, d, 0)
}

// CompareWith is Compare with the global spend cap set to maxSpend dollars
// per hour (0: the catalogue's). A cap low enough to bind trades pending
// time for spend: haul keeps to it, the baseline has none.
func CompareWith(scenario string, seed int64, d time.Duration, maxSpend float64) (Report, error) {
	if NewHaulPolicy == nil {
		return Report{}, errors.New("compare: sim.NewHaulPolicy is not set: nothing constructs haul's planner")
	}
	if maxSpend < 0 {
		return Report{}, fmt.Errorf("compare: max spend %v must not be negative", maxSpend)
	}
	return compare(context.Background(), scenario, seed, d, maxSpend, "haul", NewHaulPolicy)
}

// compare runs the baseline and the policy that newPolicy builds, each in
// its own goroutine on its own copy of the world.
func compare(ctx context.Context, scenario string, seed int64, d time.Duration, maxSpend float64, name string, newPolicy func(autoscale.Config) (autoscale.Policy, error)) (Report, error) {
	if d == 0 {
		d = Week
	}
	if d < 0 {
		return Report{}, fmt.Errorf("compare: duration %v is negative", d)
	}
	cfgs := make([]Config, 2)
	for i := range cfgs {
		c, err := ScenarioConfig(scenario, seed, d)
		if maxSpend > 0 {
			c.Limits.MaxSpendPerHour = maxSpend
		}
		if err != nil {
			return Report{}, fmt.Errorf("compare: %w", err)
		}
		cfgs[i] = c
	}
	base, err := NewBaseline(PlannerConfig(cfgs[0]), BaselineOptions{Interval: cfgs[0].Interval})
	if err != nil {
		return Report{}, fmt.Errorf("compare: %w", err)
	}
	other, err := newPolicy(PlannerConfig(cfgs[1]))
	if err != nil {
		return Report{}, fmt.Errorf("compare: construct %s policy: %w", name, err)
	}
	if other == nil {
		return Report{}, fmt.Errorf("compare: %s policy constructor returned nil", name)
	}
	policies := []autoscale.Policy{base, other}
	names := []string{"baseline", name}
	results := make([]Metrics, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range policies {
		wg.Go(func() {
			s, err := New(cfgs[i], policies[i])
			if err != nil {
				errs[i] = err
				return
			}
			results[i], errs[i] = s.Run(ctx)
			results[i].Policy = names[i]
			if errs[i] != nil {
				errs[i] = fmt.Errorf("simulate %s: %w", names[i], errs[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Report{}, fmt.Errorf("compare: %w", err)
	}
	return Report{
		Scenario: scenario,
		Seed:     seed,
		Duration: d,
		Interval: cfgs[0].Interval,
		SpendCap: cfgs[0].Limits.MaxSpendPerHour,
		Results:  results,
	}, nil
}

// Table formats the report as a text table, one row per policy: total
// cost, peak spend rate, pending p50/p99, nodes launched, spend-cap
// violations, busy-node removals, unmet pod-intervals, pods pending at the
// end.
func (r Report) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s, seed %d: %s simulated in %d intervals of %s; spend cap $%.0f/h\n",
		r.Scenario, r.Seed, formatDuration(r.Duration), intervals(r.Duration, r.Interval), formatDuration(r.Interval), r.SpendCap)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tcost ($)\tpeak $/h\tpending p50\tpending p99\tnodes launched\tspend-cap violations\tbusy removals\tunmet pod-intervals\tpending at end\t")
	for _, m := range r.Results {
		fmt.Fprintf(tw, "%s\t%.2f\t%.0f\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n",
			m.Policy, m.Cost, m.PeakSpendPerHour, formatDuration(m.PendingP50), formatDuration(m.PendingP99),
			m.NodesLaunched, m.SpendCapViolations, m.BusyRemovals, m.UnmetPodIntervals, m.PodsPendingAtEnd)
	}
	tw.Flush()
	return b.String()
}

func intervals(d, i time.Duration) int64 {
	if i <= 0 {
		return 0
	}
	return int64((d + i - 1) / i)
}

// formatDuration prints whole seconds, without the zero units time.Duration
// prints ("2h0m0s" becomes "2h").
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	s := d.Truncate(time.Second).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
