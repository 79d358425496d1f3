package reusesim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"text/tabwriter"
)

// TiersConfig is a workload for the resource-tiers simulation: tasks whose
// memory grows while they run, most of them small, a few large.
type TiersConfig struct {
	// Tasks is the number of tasks.
	Tasks int `json:"tasks"`
	// LargeFraction of the tasks peak uniformly in (SmallPeakGiB,
	// LargePeakGiB]; the others uniformly in [SmallPeakGiB/10,
	// SmallPeakGiB).
	LargeFraction float64 `json:"large_fraction"`
	SmallPeakGiB  float64 `json:"small_peak_gib"`
	LargePeakGiB  float64 `json:"large_peak_gib"`
	// Each task runs for a time drawn log-uniformly from
	// [MinTaskSeconds, MaxTaskSeconds], independently of its memory.
	MinTaskSeconds float64 `json:"min_task_seconds"`
	MaxTaskSeconds float64 `json:"max_task_seconds"`
	// MaxSizing is the memory every task requests without tiers (GiB).
	MaxSizing float64 `json:"max_sizing_gib"`
	// Tiers are the memory requests tried in order (GiB): an attempt whose
	// usage crosses its tier's request is killed (OOM) at that moment and
	// the task reruns from scratch on the next tier.
	Tiers []float64 `json:"tiers_gib"`
}

// DefaultTiersConfig is the workload of RunTiers: 10,000 tasks, 95% peaking
// under 1 GiB and 5% between 1 and 30 GiB, running 1 to 30 minutes; 32 GiB
// for every task against tiers of 1 and 32 GiB.
func DefaultTiersConfig() TiersConfig {
	return TiersConfig{
		Tasks: 10000, LargeFraction: 0.05, SmallPeakGiB: 1, LargePeakGiB: 30,
		MinTaskSeconds: 60, MaxTaskSeconds: 1800,
		MaxSizing: 32, Tiers: []float64{1, 32},
	}
}

// Validate reports what is wrong with c, or nil.
func (c TiersConfig) Validate() error {
	var errs []error
	pos := func(name string, v float64) {
		if !(v > 0) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("%s: %v, want a positive number", name, v))
		}
	}
	if c.Tasks < 1 {
		errs = append(errs, fmt.Errorf("tasks: %d, want at least 1", c.Tasks))
	}
	if !(c.LargeFraction >= 0 && c.LargeFraction <= 1) {
		errs = append(errs, fmt.Errorf("large fraction: %v, want 0 to 1", c.LargeFraction))
	}
	pos("small peak", c.SmallPeakGiB)
	pos("large peak", c.LargePeakGiB)
	if c.LargePeakGiB < c.SmallPeakGiB {
		errs = append(errs, fmt.Errorf("large peak %v GiB is below the small peak %v GiB", c.LargePeakGiB, c.SmallPeakGiB))
	}
	pos("min task seconds", c.MinTaskSeconds)
	pos("max task seconds", c.MaxTaskSeconds)
	if c.MaxTaskSeconds < c.MinTaskSeconds {
		errs = append(errs, fmt.Errorf("max task seconds %v is below min task seconds %v", c.MaxTaskSeconds, c.MinTaskSeconds))
	}
	pos("max sizing", c.MaxSizing)
	if len(c.Tiers) == 0 {
		errs = append(errs, errors.New("tiers: none"))
	}
	for i, t := range c.Tiers {
		pos(fmt.Sprintf("tiers[%d]", i), t)
		if i > 0 && !(t > c.Tiers[i-1]) {
			errs = append(errs, fmt.Errorf("tiers[%d]: %v GiB, want more than tiers[%d] (%v GiB)", i, t, i-1, c.Tiers[i-1]))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tiers workload: %w", err)
	}
	return nil
}

// TierRun is what one sizing policy requested and used over the workload.
type TierRun struct {
	Policy string `json:"policy"`
	// Requested sums request × attempt duration over every attempt, OOM
	// attempts included, in GiB·hours.
	Requested float64 `json:"requested_gib_hours"`
	// Used sums usage × time over every attempt, OOM attempts included,
	// in GiB·hours.
	Used float64 `json:"used_gib_hours"`
	// Wasted is the part of Requested spent on attempts killed by OOM.
	Wasted   float64 `json:"wasted_gib_hours"`
	Attempts int     `json:"attempts"`
	OOMs     int     `json:"ooms"`
	// Failed counts tasks that ran out of memory on the last tier.
	Failed int `json:"failed"`
}

// TiersResult compares sizing every task for the largest with tiers.
type TiersResult struct {
	Config TiersConfig `json:"config"`
	// Large is the number of tasks that peak above the first tier.
	Large     int     `json:"large_tasks"`
	MaxSizing TierRun `json:"max_sizing"`
	Tiers     TierRun `json:"tiers"`
	// Reduction is MaxSizing.Requested / Tiers.Requested.
	Reduction float64 `json:"reduction"`
}

// RunTiers runs the DefaultTiersConfig workload drawn from seed.
func RunTiers(seed int64) TiersResult {
	return simulateTiers(DefaultTiersConfig(), seed) // valid: no need to check
}

// tierTask is one task of the tiers workload: its run time, its peak
// memory, and the share of the run over which usage ramps from 0 up to
// the peak (linearly; it then stays at the peak).
type tierTask struct{ seconds, peak, ramp float64 }

// SimulateTiers runs the workload c, drawn from seed, under max-sizing
// (every task requests c.MaxSizing) and under tiers (c.Tiers in order).
//
// Memory is accounted per attempt, not per worker: an attempt holds its
// request for as long as it runs; worker startup and idle time, the same
// under both policies for a given number of attempts, are left out.
func SimulateTiers(c TiersConfig, seed int64) (TiersResult, error) {
	if err := c.Validate(); err != nil {
		return TiersResult{}, err
	}
	return simulateTiers(c, seed), nil
}

func simulateTiers(c TiersConfig, seed int64) TiersResult {
	c.Tiers = slices.Clone(c.Tiers)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x71e5))
	tasks := make([]tierTask, c.Tasks)
	large := 0
	for i := range tasks {
		t := &tasks[i]
		t.seconds = c.MinTaskSeconds * math.Pow(c.MaxTaskSeconds/c.MinTaskSeconds, rng.Float64())
		t.ramp = 0.1 + 0.8*rng.Float64()
		if rng.Float64() < c.LargeFraction {
			// (small, large]: 1-Float64() is in (0, 1].
			t.peak = c.SmallPeakGiB + (c.LargePeakGiB-c.SmallPeakGiB)*(1-rng.Float64())
		} else {
			t.peak = c.SmallPeakGiB * (0.1 + 0.9*rng.Float64())
		}
		if t.peak > c.Tiers[0] {
			large++
		}
	}
	res := TiersResult{
		Config:    c,
		Large:     large,
		MaxSizing: runTiers("max-sizing", tasks, []float64{c.MaxSizing}),
		Tiers:     runTiers("tiers", tasks, c.Tiers),
	}
	if res.Tiers.Requested > 0 {
		res.Reduction = res.MaxSizing.Requested / res.Tiers.Requested
	}
	return res
}

// runTiers runs every task on the tiers in order until one holds its peak.
func runTiers(policy string, tasks []tierTask, tiers []float64) TierRun {
	const hour = 3600.0
	r := TierRun{Policy: policy}
	for _, t := range tasks {
		for i, limit := range tiers {
			r.Attempts++
			if t.peak <= limit {
				// Usage ramps to the peak over ramp·seconds, then holds.
				r.Requested += limit * t.seconds / hour
				r.Used += t.peak * t.seconds * (1 - t.ramp/2) / hour
				break
			}
			// OOM when the ramp crosses the limit.
			at := t.ramp * t.seconds * limit / t.peak
			r.OOMs++
			r.Requested += limit * at / hour
			r.Wasted += limit * at / hour
			r.Used += limit * at / 2 / hour
			if i == len(tiers)-1 {
				r.Failed++
			}
		}
	}
	return r
}

// Table formats the comparison.
func (r TiersResult) Table() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "%d tasks: %d (%.1f%%) peak above %v GiB, up to %v GiB; run times %s to %s\n\n",
		c.Tasks, r.Large, 100*float64(r.Large)/float64(max(c.Tasks, 1)), c.Tiers[0], c.LargePeakGiB,
		fmtSeconds(c.MinTaskSeconds), fmtSeconds(c.MaxTaskSeconds))
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "POLICY\tREQUESTS (GiB)\tREQUESTED GiB·h\tUSED GiB·h\tREQUESTED/USED\tOOM-WASTED GiB·h\tATTEMPTS\tOOMs\tFAILED\t")
	row := func(run TierRun, tiers []float64) {
		ratio := 0.0
		if run.Used > 0 {
			ratio = run.Requested / run.Used
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.1f×\t%.0f\t%d\t%d\t%d\t\n", run.Policy, fmtTiers(tiers),
			run.Requested, run.Used, ratio, run.Wasted, run.Attempts, run.OOMs, run.Failed)
	}
	row(r.MaxSizing, []float64{c.MaxSizing})
	row(r.Tiers, c.Tiers)
	tw.Flush()
	fmt.Fprintf(&b, "\ntiers request %.1f× less memory than max-sizing\n", r.Reduction)
	return b.String()
}

func fmtTiers(ts []float64) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = fmt.Sprint(t)
	}
	return strings.Join(s, ", ")
}
