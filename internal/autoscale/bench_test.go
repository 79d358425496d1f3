package autoscale

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchSetup builds a planner with 200 launch configs (40 instance types ×
// 5 zone/purchase variants, spot ones tainted) and a state with 500 nodes
// and 5,000 pending pods in 20 shapes.
func benchSetup(b *testing.B) (*Planner, State) {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	gib := int64(1) << 30
	var cfg Config
	for t := range 40 {
		cpu := int64(2<<(t%6)) * 1000
		mem := cpu / 1000 * gib * int64(2+2*(t%3))
		gpu, gpuType := int32(0), ""
		if t%10 == 9 {
			gpu, gpuType = int32(1+t%4), "a10g"
		}
		for v := range 5 {
			lc := LaunchConfig{
				Name:         fmt.Sprintf("type%02d/zone%d", t, v),
				InstanceType: fmt.Sprintf("type%02d", t),
				Zone:         fmt.Sprintf("zone%d", v%3),
				Purchase:     OnDemand,
				Capacity:     Resources{MilliCPU: cpu, MemoryBytes: mem, GPU: gpu, GPUType: gpuType},
				PricePerHour: float64(cpu/1000)*0.04*(1+float64(t%3)/4) + float64(gpu),
				Labels:       map[string]string{"zone": fmt.Sprintf("zone%d", v%3)},
				MaxNodes:     50,
			}
			if v >= 3 {
				lc.Purchase = Spot
				lc.PricePerHour *= 0.35
				lc.Taints = []Taint{{Key: "spot", Value: "true", Effect: EffectNoSchedule}}
			}
			cfg.Configs = append(cfg.Configs, lc)
		}
	}
	cfg.Limits = Limits{MaxNodes: 2000, MaxSpendPerHour: 5000, MaxAddPerInterval: 400, MaxRemovePerInterval: 20}
	p, err := NewPlanner(cfg)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	s := State{Now: now, Prices: map[string]float64{}}
	for i := range 500 {
		lc := cfg.Configs[r.IntN(len(cfg.Configs))]
		n := Node{ID: fmt.Sprintf("node-%04d", i), Config: lc.Name, Ready: i%20 != 0, LaunchedAt: now.Add(-time.Hour)}
		if i%3 == 0 {
			n.Free = lc.Capacity
			n.IdleSince = now.Add(-time.Duration(r.IntN(30)) * time.Minute)
		} else {
			n.WorkerPods = 1 + r.IntN(4)
			n.Free = Resources{MilliCPU: lc.Capacity.MilliCPU / 4, MemoryBytes: lc.Capacity.MemoryBytes / 8}
		}
		s.Nodes = append(s.Nodes, n)
	}
	for i := range 10 {
		s.InFlight = append(s.InFlight, Launch{Config: cfg.Configs[i*17].Name, Count: 3, At: now.Add(-time.Minute)})
	}
	for i := range 20 {
		p := Pod{Requests: Resources{MilliCPU: int64(250 << (i % 6)), MemoryBytes: int64(1+i%7) * gib}}
		switch i % 5 {
		case 1:
			p.Tolerations = []Toleration{{Key: "spot", Operator: "Exists"}}
		case 2:
			p.NodeSelector = map[string]string{"zone": "zone1"}
		case 3:
			p.Requests.GPU, p.Requests.GPUType = 1, "a10g"
		}
		for j := range 250 {
			q := p
			q.ID = fmt.Sprintf("pod-%d-%d", i, j)
			s.Pending = append(s.Pending, q)
		}
	}
	for i := range 40 {
		s.Prices[cfg.Configs[i*5+3].Name] = cfg.Configs[i*5+3].PricePerHour * (0.8 + r.Float64()*0.4)
	}
	return p, s
}

func BenchmarkPlan(b *testing.B) {
	p, s := benchSetup(b)
	plan := p.Plan(s)
	nodes := 0
	for _, o := range plan.Launches {
		nodes += o.Count
	}
	b.ReportMetric(float64(nodes), "launches/op")
	for b.Loop() {
		p.Plan(s)
	}
}
