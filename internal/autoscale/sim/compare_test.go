package sim

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/autoscale"
)

// impatient is a second policy for the comparisons: the baseline with a
// 5-minute provisioning timeout.
func impatient(c autoscale.Config) (autoscale.Policy, error) {
	return NewBaseline(c, BaselineOptions{MaxNodeProvisionTime: 5 * time.Minute})
}

func TestCompareIsDeterministic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	run := func(seed int64) Report {
		r, err := compare(ctx, ScenarioSpike, seed, 12*time.Hour, 0, "impatient", impatient)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a, b, c := run(4), run(4), run(5)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("the same seed gave different reports:\n%s\n%s", a.Table(), b.Table())
	}
	if reflect.DeepEqual(a.Results, c.Results) {
		t.Error("different seeds gave the same results")
	}
	if len(a.Results) != 2 || a.Results[0].Policy != "baseline" || a.Results[1].Policy != "impatient" {
		t.Fatalf("results %+v", a.Results)
	}
	for _, m := range a.Results {
		if m.PodsArrived != m.PodsCompleted+m.PodsRunningAtEnd+m.PodsPendingAtEnd {
			t.Errorf("%s: pods not conserved: %+v", m.Policy, m)
		}
	}
}

func TestCompareRejectsBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, err := compare(ctx, "sawtooth", 1, time.Hour, 0, "x", impatient); err == nil || !strings.Contains(err.Error(), "sawtooth") {
		t.Errorf("unknown scenario: %v", err)
	}
	if _, err := compare(ctx, ScenarioSteady, 1, -time.Hour, 0, "x", impatient); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Errorf("negative duration: %v", err)
	}
	failing := func(autoscale.Config) (autoscale.Policy, error) { return nil, autoscale.ErrInvalidConfig }
	if _, err := compare(ctx, ScenarioSteady, 1, time.Hour, 0, "x", failing); err == nil || !strings.Contains(err.Error(), "construct x policy") {
		t.Errorf("failing constructor: %v", err)
	}
}

// TestCompareNeedsHaulPolicy changes the package variable, so it does not
// run in parallel (parallel tests wait until it is done).
func TestCompareNeedsHaulPolicy(t *testing.T) {
	saved := NewHaulPolicy
	t.Cleanup(func() { NewHaulPolicy = saved })
	NewHaulPolicy = nil
	if _, err := Compare(ScenarioSteady, 1, time.Hour); err == nil || !strings.Contains(err.Error(), "NewHaulPolicy") {
		t.Errorf("Compare without NewHaulPolicy: %v", err)
	}
}

// TestCompareWithPlanner runs haul's planner for a few simulated hours of
// the spike scenario: it must never remove a node with pods.
func TestCompareWithPlanner(t *testing.T) {
	t.Parallel()
	r, err := compare(context.Background(), ScenarioSpike, 2, 6*time.Hour, 0, "haul", newPlanner)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Results {
		if m.BusyRemovals != 0 || m.InvalidOrders != 0 || m.UnknownRemovals != 0 {
			t.Errorf("%s: %d busy removals, %d invalid orders, %d unknown removals", m.Policy, m.BusyRemovals, m.InvalidOrders, m.UnknownRemovals)
		}
		if m.NodesLaunched == 0 {
			t.Errorf("%s launched no nodes", m.Policy)
		}
	}
}

func TestReportTable(t *testing.T) {
	t.Parallel()
	r := Report{
		Scenario: "spike", Seed: 7, Duration: Week, Interval: 30 * time.Second, SpendCap: 300,
		Results: []Metrics{
			{Policy: "baseline", Cost: 1234.567, PendingP50: 30 * time.Second, PendingP99: 2 * time.Hour, NodesLaunched: 10, SpendCapViolations: 3, UnmetPodIntervals: 42},
			{Policy: "haul", Cost: 99, PendingP99: 90 * time.Minute, BusyRemovals: 1, PodsPendingAtEnd: 5},
		},
	}
	got := r.Table()
	for _, want := range []string{
		"scenario spike, seed 7: 168h simulated in 20160 intervals of 30s; spend cap $300/h",
		"cost ($)", "pending p50", "pending p99", "nodes launched", "spend-cap violations", "busy removals", "unmet pod-intervals",
		"1234.57", " 2h ", "1h30m", " 42 ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if lines := strings.Split(strings.TrimSpace(got), "\n"); len(lines) != 4 || !strings.Contains(lines[2], "baseline") || !strings.Contains(lines[3], "haul") {
		t.Errorf("table:\n%s", got)
	}
}
