package sim

import (
	"context"
	"testing"

	"github.com/haul-dev/haul/internal/autoscale"
)

// BenchmarkWeek simulates a week of each scenario at 30-second intervals
// (20,160 intervals) with the baseline and with haul's planner:
//
//	go test -run '^$' -bench Week -benchtime 1x ./internal/autoscale/sim
func BenchmarkWeek(b *testing.B) {
	policies := map[string]func(autoscale.Config) (autoscale.Policy, error){
		"baseline": func(c autoscale.Config) (autoscale.Policy, error) { return NewBaseline(c, BaselineOptions{}) },
		"haul":     newPlanner,
	}
	for _, sc := range Scenarios {
		for _, name := range []string{"baseline", "haul"} {
			b.Run(sc+"/"+name, func(b *testing.B) {
				for b.Loop() {
					cfg, err := ScenarioConfig(sc, 1, Week)
					if err != nil {
						b.Fatal(err)
					}
					p, err := policies[name](PlannerConfig(cfg))
					if err != nil {
						b.Fatal(err)
					}
					s, err := New(cfg, p)
					if err != nil {
						b.Fatal(err)
					}
					m, err := s.Run(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					b.ReportMetric(float64(m.PodsArrived), "pods")
				}
			})
		}
	}
}
