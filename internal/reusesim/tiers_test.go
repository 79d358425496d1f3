package reusesim

import (
	"math"
	"strings"
	"testing"
)

func TestTiersInvariants(t *testing.T) {
	t.Parallel()
	for seed := int64(1); seed <= 20; seed++ {
		r := RunTiers(seed)
		c := r.Config
		m, ti := r.MaxSizing, r.Tiers
		if m.Attempts != c.Tasks || m.OOMs != 0 || m.Failed != 0 || m.Wasted != 0 {
			t.Fatalf("seed %d: max-sizing %+v, want one attempt per task and no OOM", seed, m)
		}
		if ti.OOMs != r.Large || ti.Attempts != c.Tasks+r.Large || ti.Failed != 0 {
			t.Fatalf("seed %d: tiers %+v with %d large tasks, want one OOM per large task", seed, ti, r.Large)
		}
		for _, run := range []TierRun{m, ti} {
			if !(run.Used > 0) || run.Requested < run.Used || run.Wasted > run.Requested {
				t.Fatalf("seed %d: %s requested %v, used %v, wasted %v", seed, run.Policy, run.Requested, run.Used, run.Wasted)
			}
		}
		// Tiers use what max-sizing uses plus the OOM attempts' usage.
		if ti.Used < m.Used || ti.Used > m.Used+ti.Wasted {
			t.Fatalf("seed %d: tiers used %v, max-sizing %v, wasted %v", seed, ti.Used, m.Used, ti.Wasted)
		}
		if frac := float64(r.Large) / float64(c.Tasks); math.Abs(frac-c.LargeFraction) > 0.02 {
			t.Fatalf("seed %d: %.3f of the tasks are large, want about %v", seed, frac, c.LargeFraction)
		}
		if want := m.Requested / ti.Requested; r.Reduction != want {
			t.Fatalf("seed %d: reduction %v, want %v", seed, r.Reduction, want)
		}
	}
}

func TestTiersLastTierTooSmall(t *testing.T) {
	t.Parallel()
	c := DefaultTiersConfig()
	c.Tiers = []float64{1}
	r, err := SimulateTiers(c, 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Tiers.Failed != r.Large || r.Tiers.OOMs != r.Large || r.Large == 0 {
		t.Fatalf("tiers [1]: %+v with %d large tasks, want each large task failed", r.Tiers, r.Large)
	}
}

func TestTiersErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		change func(*TiersConfig)
		want   string
	}{
		{func(c *TiersConfig) { c.Tasks = 0 }, "tasks"},
		{func(c *TiersConfig) { c.LargeFraction = 1.5 }, "large fraction"},
		{func(c *TiersConfig) { c.LargePeakGiB = 0.5 }, "below the small peak"},
		{func(c *TiersConfig) { c.MinTaskSeconds = math.NaN() }, "min task seconds"},
		{func(c *TiersConfig) { c.MaxTaskSeconds = 1 }, "below min task seconds"},
		{func(c *TiersConfig) { c.Tiers = nil }, "tiers: none"},
		{func(c *TiersConfig) { c.Tiers = []float64{4, 2} }, "tiers[1]"},
		{func(c *TiersConfig) { c.MaxSizing = -1 }, "max sizing"},
	} {
		c := DefaultTiersConfig()
		tc.change(&c)
		if _, err := SimulateTiers(c, 1); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SimulateTiers: error %v, want one mentioning %q", err, tc.want)
		}
	}
}

func TestTiersTable(t *testing.T) {
	t.Parallel()
	out := RunTiers(1).Table()
	for _, want := range []string{"max-sizing", "tiers", "1, 32", "REQUESTED GiB·h", "less memory than max-sizing"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
