package autoscale

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

const gib = int64(1) << 30

func TestFits(t *testing.T) {
	t.Parallel()
	spot := LaunchConfig{
		Name:     "spot",
		Capacity: Resources{MilliCPU: 4000, MemoryBytes: 16 * gib, GPU: 1, GPUType: "a10g"},
		Labels:   map[string]string{"lifecycle": "spot", "zone": "a"},
		Taints: []Taint{
			{Key: "spot", Value: "true", Effect: EffectNoSchedule},
			{Key: "soft", Value: "x", Effect: EffectPreferNoSchedule},
		},
	}
	tolerate := []Toleration{{Key: "spot", Operator: "Exists"}}
	tests := []struct {
		name string
		pod  Pod
		want bool
	}{
		{"untolerated taint", Pod{Requests: Resources{MilliCPU: 1000}}, false},
		{"tolerated", Pod{Requests: Resources{MilliCPU: 1000}, Tolerations: tolerate}, true},
		{"exactly the capacity", Pod{Requests: Resources{MilliCPU: 4000, MemoryBytes: 16 * gib, GPU: 1}, Tolerations: tolerate}, true},
		{"too much cpu", Pod{Requests: Resources{MilliCPU: 4001}, Tolerations: tolerate}, false},
		{"too much memory", Pod{Requests: Resources{MemoryBytes: 17 * gib}, Tolerations: tolerate}, false},
		{"too many gpus", Pod{Requests: Resources{GPU: 2}, Tolerations: tolerate}, false},
		{"gpu type matches", Pod{Requests: Resources{GPU: 1, GPUType: "a10g"}, Tolerations: tolerate}, true},
		{"gpu type differs", Pod{Requests: Resources{GPU: 1, GPUType: "a100"}, Tolerations: tolerate}, false},
		{"gpu type without gpus is ignored", Pod{Requests: Resources{GPUType: "a100"}, Tolerations: tolerate}, true},
		{"selector matches", Pod{NodeSelector: map[string]string{"zone": "a", "lifecycle": "spot"}, Tolerations: tolerate}, true},
		{"selector value differs", Pod{NodeSelector: map[string]string{"zone": "b"}, Tolerations: tolerate}, false},
		{"selector label missing", Pod{NodeSelector: map[string]string{"team": ""}, Tolerations: tolerate}, false},
		{"wildcard toleration", Pod{Tolerations: []Toleration{{Operator: "Exists"}}}, true},
		{"negative requests count as zero", Pod{Requests: Resources{MilliCPU: -5}, Tolerations: tolerate}, true},
	}
	for _, tc := range tests {
		if got := Fits(tc.pod, spot); got != tc.want {
			t.Errorf("%s: Fits = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestTolerates(t *testing.T) {
	t.Parallel()
	taint := Taint{Key: "spot", Value: "true", Effect: EffectNoSchedule}
	tests := []struct {
		tol  Toleration
		want bool
	}{
		{Toleration{Key: "spot", Operator: "Exists"}, true},
		{Toleration{Key: "spot", Operator: "Exists", Effect: EffectNoSchedule}, true},
		{Toleration{Key: "spot", Operator: "Exists", Effect: EffectNoExecute}, false},
		{Toleration{Key: "spot", Operator: "Equal", Value: "true"}, true},
		{Toleration{Key: "spot", Value: "true"}, true}, // empty operator is Equal
		{Toleration{Key: "spot", Operator: "Equal", Value: "false"}, false},
		{Toleration{Key: "other", Operator: "Exists"}, false},
		{Toleration{Operator: "Exists"}, true},
		{Toleration{Operator: "Equal", Value: "true"}, false},
		{Toleration{Key: "spot", Operator: "Sometimes"}, false},
	}
	for _, tc := range tests {
		if got := Tolerates([]Toleration{tc.tol}, taint); got != tc.want {
			t.Errorf("Tolerates(%+v) = %v, want %v", tc.tol, got, tc.want)
		}
	}
	if !Tolerates(nil, Taint{Key: "k", Effect: EffectPreferNoSchedule}) {
		t.Error("a PreferNoSchedule taint keeps pods off")
	}
}

func validConfig() Config {
	return Config{Configs: []LaunchConfig{{
		Name:         "small",
		Capacity:     Resources{MilliCPU: 2000, MemoryBytes: 8 * gib},
		PricePerHour: 0.1,
		Labels:       map[string]string{"pool": "a"},
	}}}
}

func TestNewPlannerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"no configs", func(c *Config) { c.Configs = nil }, "Configs is empty"},
		{"empty name", func(c *Config) { c.Configs[0].Name = "" }, "launch config #0: Name is empty"},
		{"duplicate", func(c *Config) { c.Configs = append(c.Configs, c.Configs[0]) }, `launch config "small": Name is not unique`},
		{"cpu", func(c *Config) { c.Configs[0].Capacity.MilliCPU = 0 }, `launch config "small": Capacity.MilliCPU must be positive`},
		{"memory", func(c *Config) { c.Configs[0].Capacity.MemoryBytes = -1 }, `launch config "small": Capacity.MemoryBytes must be positive`},
		{"gpu", func(c *Config) { c.Configs[0].Capacity.GPU = -1 }, "Capacity.GPU must not be negative"},
		{"price", func(c *Config) { c.Configs[0].PricePerHour = -0.1 }, `launch config "small": PricePerHour`},
		{"price NaN", func(c *Config) { c.Configs[0].PricePerHour = math.NaN() }, "PricePerHour must be a non-negative number, got NaN"},
		{"price Inf", func(c *Config) { c.Configs[0].PricePerHour = math.Inf(1) }, "PricePerHour"},
		{"config max nodes", func(c *Config) { c.Configs[0].MaxNodes = -1 }, `launch config "small": MaxNodes`},
		{"config max spend", func(c *Config) { c.Configs[0].MaxSpendPerHour = -1 }, `launch config "small": MaxSpendPerHour`},
		{"purchase", func(c *Config) { c.Configs[0].Purchase = "reserved" }, `Purchase "reserved" is unknown`},
		{"taint key", func(c *Config) { c.Configs[0].Taints = []Taint{{Effect: EffectNoSchedule}} }, "Taints[0].Key is empty"},
		{"taint effect", func(c *Config) { c.Configs[0].Taints = []Taint{{Key: "k", Effect: "Never"}} }, `Taints[0].Effect "Never" is unknown`},
		{"max nodes", func(c *Config) { c.Limits.MaxNodes = -1 }, "Limits.MaxNodes"},
		{"max spend", func(c *Config) { c.Limits.MaxSpendPerHour = math.NaN() }, "Limits.MaxSpendPerHour"},
		{"max add", func(c *Config) { c.Limits.MaxAddPerInterval = -1 }, "Limits.MaxAddPerInterval"},
		{"max remove", func(c *Config) { c.Limits.MaxRemovePerInterval = -1 }, "Limits.MaxRemovePerInterval"},
		{"strategy", func(c *Config) { c.Strategy = "random" }, `Strategy "random" is unknown`},
		{"grace", func(c *Config) { c.ScaleDownGrace = -time.Second }, "ScaleDownGrace"},
		{"backoff", func(c *Config) { c.CapacityBackoff = -time.Second }, "CapacityBackoff"},
		{"interval", func(c *Config) { c.Interval = -time.Second }, "Interval"},
	}
	for _, tc := range tests {
		cfg := validConfig()
		tc.modify(&cfg)
		p, err := NewPlanner(cfg)
		if err == nil || p != nil {
			t.Errorf("%s: NewPlanner = %v, %v; want an error", tc.name, p, err)
			continue
		}
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want ErrInvalidConfig mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestNewPlannerDefaultsAndCopy(t *testing.T) {
	t.Parallel()
	cfg := validConfig()
	p, err := NewPlanner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.cfg.Strategy != StrategyCost || p.cfg.ScaleDownGrace != DefaultScaleDownGrace ||
		p.cfg.CapacityBackoff != DefaultCapacityBackoff || p.cfg.Interval != DefaultInterval {
		t.Errorf("defaults not applied: %+v", p.cfg)
	}
	// The planner owns its copy: changing the caller's config changes nothing.
	cfg.Configs[0].Labels["pool"] = "b"
	cfg.Configs[0].Name = "renamed"
	s := State{Now: time.Unix(0, 0), Pending: []Pod{{NodeSelector: map[string]string{"pool": "a"}}}}
	want := Plan{Launches: []Order{{Config: "small", Count: 1}}}
	if got := p.Plan(s); !reflect.DeepEqual(got, want) {
		t.Errorf("Plan = %+v, want %+v", got, want)
	}
}

func TestPlanEmpty(t *testing.T) {
	t.Parallel()
	p, err := NewPlanner(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Plan(State{}); !reflect.DeepEqual(got, Plan{}) {
		t.Errorf("Plan of nothing = %+v, want the zero Plan", got)
	}
}

func TestPlanPodsRequestingNothing(t *testing.T) {
	t.Parallel()
	p, err := NewPlanner(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := State{Now: time.Unix(0, 0), Pending: make([]Pod, 1000)}
	want := Plan{Launches: []Order{{Config: "small", Count: 1}}}
	if got := p.Plan(s); !reflect.DeepEqual(got, want) {
		t.Errorf("Plan = %+v, want %+v", got, want)
	}
}

func TestPlanHugeInFlightCount(t *testing.T) {
	t.Parallel()
	p, err := NewPlanner(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := State{
		Now:      time.Unix(0, 0),
		Pending:  []Pod{{Requests: Resources{MilliCPU: 1000}}},
		InFlight: []Launch{{Config: "small", Count: math.MaxInt32}, {Config: "gone", Count: 3}, {Config: "small", Count: -4}},
	}
	if got := p.Plan(s); !reflect.DeepEqual(got, Plan{}) {
		t.Errorf("Plan = %+v, want nothing: the in-flight launch covers the pod", got)
	}
}

func TestLaunchedMarks(t *testing.T) {
	t.Parallel()
	cfg := validConfig()
	cfg.Configs = append(cfg.Configs, LaunchConfig{Name: "big", Capacity: Resources{MilliCPU: 8000, MemoryBytes: 32 * gib}, PricePerHour: 1})
	cfg.CapacityBackoff = time.Minute
	p, err := NewPlanner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	p.Launched("small", 0, 0, t0) // asked for nothing: no mark
	p.Launched("big", 4, 3, t0)
	p.Launched("small", 2, 1, t0)
	p.Launched("nosuch", 2, 0, t0)
	if got, want := p.CapacityLimited(t0), []string{"big", "small"}; !reflect.DeepEqual(got, want) {
		t.Errorf("CapacityLimited = %v, want %v", got, want)
	}
	p.Launched("small", 1, 1, t0.Add(time.Second))
	if got, want := p.CapacityLimited(t0.Add(59*time.Second)), []string{"big"}; !reflect.DeepEqual(got, want) {
		t.Errorf("CapacityLimited = %v, want %v", got, want)
	}
	if got := p.CapacityLimited(t0.Add(time.Minute)); got != nil {
		t.Errorf("CapacityLimited after the backoff = %v, want none", got)
	}
}
