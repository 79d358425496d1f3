package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/haul-dev/haul/internal/autoscale"
)

// Shape is a kind of worker pod: what it requests, where it may run and how
// long it runs once placed (log-uniform between MinRun and MaxRun).
type Shape struct {
	Name         string
	Requests     autoscale.Resources
	NodeSelector map[string]string
	Tolerations  []autoscale.Toleration
	MinRun       time.Duration
	MaxRun       time.Duration
	// Weight is the shape's share of the generated arrivals.
	Weight float64
}

// Workload produces the pods that arrive in the simulation.
type Workload interface {
	// Shapes is the catalogue of pod shapes; Arrive names them by index.
	Shapes() []Shape
	// Arrive calls add for every pod that arrives in [from, to) (offsets
	// from the start): its shape and how long it runs once placed. The
	// simulator calls it once per interval with consecutive windows.
	Arrive(from, to time.Duration, add func(shape int, run time.Duration))
}

// Scenario names.
const (
	ScenarioSpike   = "spike"
	ScenarioDiurnal = "diurnal"
	ScenarioSteady  = "steady"
)

// Scenarios lists the scenario names.
var Scenarios = []string{ScenarioSpike, ScenarioDiurnal, ScenarioSteady}

var (
	tolerateSpot = autoscale.Toleration{Key: SpotTaint.Key, Operator: "Exists", Effect: "NoSchedule"}
	tolerateGPU  = autoscale.Toleration{Key: GPUTaint.Key, Operator: "Exists", Effect: "NoSchedule"}
	onDemandOnly = map[string]string{LabelPurchase: string(autoscale.OnDemand)}
)

// DefaultShapes is the pod catalogue of the scenarios: small and medium CPU
// pods and big-memory pods that tolerate spot, CPU pods that select
// on-demand nodes, and A10G GPU pods (most tolerate spot, some select
// on-demand).
func DefaultShapes() []Shape {
	return []Shape{
		{Name: "small", Weight: 0.50, MinRun: 5 * time.Minute, MaxRun: 2 * time.Hour,
			Requests:    autoscale.Resources{MilliCPU: 1000, MemoryBytes: 2 * gib},
			Tolerations: []autoscale.Toleration{tolerateSpot}},
		{Name: "medium", Weight: 0.20, MinRun: 10 * time.Minute, MaxRun: 2 * time.Hour,
			Requests:    autoscale.Resources{MilliCPU: 4000, MemoryBytes: 12 * gib},
			Tolerations: []autoscale.Toleration{tolerateSpot}},
		{Name: "big-memory", Weight: 0.08, MinRun: 20 * time.Minute, MaxRun: 3 * time.Hour,
			Requests:    autoscale.Resources{MilliCPU: 8000, MemoryBytes: 100 * gib},
			Tolerations: []autoscale.Toleration{tolerateSpot}},
		{Name: "on-demand", Weight: 0.17, MinRun: 5 * time.Minute, MaxRun: 2 * time.Hour,
			Requests:     autoscale.Resources{MilliCPU: 2000, MemoryBytes: 4 * gib},
			NodeSelector: onDemandOnly},
		{Name: "gpu", Weight: 0.04, MinRun: 15 * time.Minute, MaxRun: 2 * time.Hour,
			Requests:    autoscale.Resources{MilliCPU: 4000, MemoryBytes: 24 * gib, GPU: 1, GPUType: "a10g"},
			Tolerations: []autoscale.Toleration{tolerateSpot, tolerateGPU}},
		{Name: "gpu-on-demand", Weight: 0.01, MinRun: 15 * time.Minute, MaxRun: 2 * time.Hour,
			Requests:     autoscale.Resources{MilliCPU: 4000, MemoryBytes: 24 * gib, GPU: 1, GPUType: "a10g"},
			NodeSelector: onDemandOnly,
			Tolerations:  []autoscale.Toleration{tolerateGPU}},
	}
}

// Spike is one burst of the spike scenario.
type Spike struct {
	At    time.Duration // offset from the start
	Burst int           // pods that arrive at once
	// SurgeFor is how long the arrival rate stays at SurgeFactor times the
	// baseline after the burst (the run-up to an event).
	SurgeFor    time.Duration
	SurgeFactor float64
}

// Generator is the Workload of the named scenarios: Poisson arrivals whose
// rate keeps a target number of pods running (the target divided by the
// mean run time), plus the spikes' bursts.
//
//   - steady: 600 pods on average, all week.
//   - diurnal: 900 pods on average, a daily sine wave from 315 (midnight)
//     to 1,485 (noon).
//   - spike: a quiet 250 pods, and about every 56 hours (3 times a week,
//     at least once) a burst of 2,500–5,000 pods at once followed by 8
//     hours at 3 times the baseline rate.
type Generator struct {
	scenario string
	shapes   []Shape
	cum      []float64 // cumulative weights
	meanRun  float64   // seconds, weighted over the shapes
	spikes   []Spike
	rng      *rand.Rand
}

// NewWorkload returns the generator of a scenario over duration d,
// deterministic for a seed.
func NewWorkload(scenario string, seed int64, d time.Duration) (*Generator, error) {
	if d <= 0 {
		return nil, fmt.Errorf("workload: duration %v is not positive", d)
	}
	g := &Generator{
		scenario: scenario,
		shapes:   DefaultShapes(),
		rng:      rand.New(rand.NewPCG(uint64(seed), 0x3011)),
	}
	total := 0.0
	for _, s := range g.shapes {
		total += s.Weight
		g.cum = append(g.cum, total)
		g.meanRun += s.Weight * logUniformMean(s.MinRun, s.MaxRun)
	}
	g.meanRun /= total
	switch scenario {
	case ScenarioSteady, ScenarioDiurnal:
	case ScenarioSpike:
		n := max(1, int(math.Round(d.Hours()/56)))
		seg := d / time.Duration(n)
		for k := range n {
			at := time.Duration(k)*seg + time.Duration((0.25+0.4*g.rng.Float64())*float64(seg))
			g.spikes = append(g.spikes, Spike{
				At:          at.Truncate(time.Second),
				Burst:       2500 + g.rng.IntN(2501),
				SurgeFor:    8 * time.Hour,
				SurgeFactor: 3,
			})
		}
	default:
		return nil, fmt.Errorf("workload: unknown scenario %q (want one of %v)", scenario, Scenarios)
	}
	return g, nil
}

// Shapes implements Workload.
func (g *Generator) Shapes() []Shape { return g.shapes }

// Spikes returns the spike scenario's bursts (none for the others).
func (g *Generator) Spikes() []Spike { return g.spikes }

// Target is the number of pods the scenario aims to keep running at t.
func (g *Generator) Target(t time.Duration) float64 {
	switch g.scenario {
	case ScenarioSteady:
		return 600
	case ScenarioDiurnal:
		day := 24 * time.Hour
		phase := float64(t%day) / float64(day)
		return 900 * (1 + 0.65*math.Sin(2*math.Pi*(phase-0.25)))
	default:
		c := 250.0
		for _, s := range g.spikes {
			if t >= s.At && t < s.At+s.SurgeFor {
				c *= s.SurgeFactor
				break
			}
		}
		return c
	}
}

// Arrive implements Workload.
func (g *Generator) Arrive(from, to time.Duration, add func(shape int, run time.Duration)) {
	if to <= from {
		return
	}
	lambda := g.Target(from+(to-from)/2) / g.meanRun * (to - from).Seconds()
	for range poisson(g.rng, lambda) {
		sh := g.pick()
		add(sh, logUniform(g.rng, g.shapes[sh].MinRun, g.shapes[sh].MaxRun))
	}
	for _, s := range g.spikes {
		if s.At >= from && s.At < to {
			for range s.Burst {
				sh := g.pick()
				add(sh, logUniform(g.rng, 20*time.Minute, 2*time.Hour))
			}
		}
	}
}

func (g *Generator) pick() int {
	u := g.rng.Float64() * g.cum[len(g.cum)-1]
	for i, c := range g.cum {
		if u < c {
			return i
		}
	}
	return len(g.cum) - 1
}

// logUniform draws a duration whose logarithm is uniform in [log a, log b],
// rounded to whole seconds (at least one).
func logUniform(rng *rand.Rand, a, b time.Duration) time.Duration {
	if b <= a {
		return max(a.Truncate(time.Second), time.Second)
	}
	la, lb := math.Log(a.Seconds()), math.Log(b.Seconds())
	s := math.Exp(la + rng.Float64()*(lb-la))
	return max(time.Duration(s)*time.Second, time.Second)
}

func logUniformMean(a, b time.Duration) float64 {
	if b <= a {
		return a.Seconds()
	}
	return (b.Seconds() - a.Seconds()) / math.Log(b.Seconds()/a.Seconds())
}

// poisson draws a Poisson variate: by multiplication for small means, by
// the normal approximation for large ones.
func poisson(rng *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda > 30 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64())))
	}
	l := math.Exp(-lambda)
	k, p := 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// Script is a Workload of scripted arrivals, for small experiments and
// tests.
type Script struct {
	ShapeList []Shape
	Arrivals  []Arrival
}

// Arrival is Count pods of shape Shape arriving At, each running Run.
type Arrival struct {
	At    time.Duration
	Shape int
	Count int
	Run   time.Duration
}

// Shapes implements Workload.
func (s *Script) Shapes() []Shape { return s.ShapeList }

// Arrive implements Workload.
func (s *Script) Arrive(from, to time.Duration, add func(shape int, run time.Duration)) {
	for _, a := range s.Arrivals {
		if a.At >= from && a.At < to {
			for range a.Count {
				add(a.Shape, a.Run)
			}
		}
	}
}
