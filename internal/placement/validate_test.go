package placement

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestParseResources(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Resources
		err  string // part of the error; "" when it parses
	}{
		{"", Resources{}, ""},
		{"cpu=4,memory=16Gi,gpu/a100=2", Resources{MilliCPU: 4000, Memory: 16 << 30, GPU: map[string]int64{"a100": 2}}, ""},
		{"cpu=0.5 memory=512Mi", Resources{MilliCPU: 500, Memory: 512 << 20}, ""},
		{"cpu=500m,memory=1G", Resources{MilliCPU: 500, Memory: 1e9}, ""},
		{"memory=1.5Gi", Resources{Memory: 3 << 29}, ""},
		{"memory=2048", Resources{Memory: 2048}, ""},
		{"memory=1Ti,memory2=1", Resources{}, `unknown resource "memory2"`},
		{"memory=1Ki gpu/t4=0", Resources{Memory: 1024}, ""},
		{"cpu=4,,memory=3K", Resources{MilliCPU: 4000, Memory: 3000}, ""},
		{"cpu=-1", Resources{}, "cpu \"-1\": negative"},
		{"cpu=0.0005", Resources{}, "not a whole number"},
		{"cpu=1.5m", Resources{}, "not a whole number"},
		{"cpu=4x", Resources{}, `unknown suffix "x"`},
		{"cpu", Resources{}, `"cpu" is not name=amount`},
		{"cpu=", Resources{}, "not a number"},
		{"cpu=1.2.3", Resources{}, "not a number"},
		{"cpu=1,cpu=2", Resources{}, "cpu is given twice"},
		{"gpu/A100=1", Resources{}, `GPU type "A100" is not a DNS label`},
		{"gpu/=1", Resources{}, `GPU type "" is not a DNS label`},
		{"gpu/a100=1.5", Resources{}, "gpu/a100 \"1.5\": not a whole number"},
		{"gpu/a100=1Gi", Resources{}, `unknown suffix "Gi"`},
		{"memory=99999999Ti", Resources{}, "too large"},
		{"disk=1", Resources{}, `unknown resource "disk"`},
	} {
		got, err := ParseResources(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrBadInput) {
				t.Errorf("ParseResources(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseResources(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParseResources checks that ParseResources never panics and that
// what it accepts prints (Resources.String) to a form it reads back to
// the same value.
func FuzzParseResources(f *testing.F) {
	for _, s := range []string{"cpu=4,memory=16Gi,gpu/a100=2", "cpu=0.5 memory=1.5Gi", "cpu=500m", "memory=7", "gpu/t4=0", "cpu=1,cpu=2", "cpu=-1", "memory=1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseResources(s)
		if err != nil {
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("error %v is not ErrBadInput", err)
			}
			return
		}
		again, err := ParseResources(r.String())
		if r.IsZero() {
			if err != nil || !again.IsZero() {
				t.Fatalf("zero %q printed as %q reads back as %v, %v", s, r.String(), again, err)
			}
			return
		}
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("%q -> %v -> %q -> %v, %v", s, r, r.String(), again, err)
		}
	})
}

func TestValidate(t *testing.T) {
	t.Parallel()
	good := Cluster{Name: "east-1", State: Enabled, Capacity: Resources{MilliCPU: 1000, GPU: map[string]int64{"a100": 1}},
		PricePerCPUHour: 0.1, PricePerGPUHour: map[string]float64{"a100": 2}, Labels: map[string][]string{"zone": {"a"}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good cluster: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Cluster)
		err  string
	}{
		{"name", func(c *Cluster) { c.Name = "East" }, `cluster "East" is not a DNS label`},
		{"long name", func(c *Cluster) { c.Name = strings.Repeat("a", 64) }, "is not a DNS label"},
		{"dash", func(c *Cluster) { c.Name = "-east" }, "is not a DNS label"},
		{"empty", func(c *Cluster) { c.Name = "" }, `cluster "" is not a DNS label`},
		{"state", func(c *Cluster) { c.State = "off" }, `cluster state "off"`},
		{"no state", func(c *Cluster) { c.State = "" }, `cluster state ""`},
		{"cpu", func(c *Cluster) { c.Capacity.MilliCPU = -1 }, "cpu is negative"},
		{"memory", func(c *Cluster) { c.Capacity.Memory = -1 }, "memory is negative"},
		{"gpu", func(c *Cluster) { c.Capacity.GPU = map[string]int64{"a100": -1} }, "gpu/a100 is negative"},
		{"gpu type", func(c *Cluster) { c.Capacity.GPU = map[string]int64{"A_100": 1} }, `GPU type "A_100"`},
		{"price", func(c *Cluster) { c.PricePerGiBHour = -0.5 }, "price per GiB hour is -0.5"},
		{"nan", func(c *Cluster) { c.PricePerCPUHour = math.NaN() }, "price per CPU hour is NaN"},
		{"pods", func(c *Cluster) { c.PodsPerSecond = math.Inf(1) }, "pods per second"},
		{"gpu price", func(c *Cluster) { c.PricePerGPUHour = map[string]float64{"a100": -1} }, "price per gpu/a100 hour"},
		{"label", func(c *Cluster) { c.Labels = map[string][]string{"": {"a"}} }, "empty key"},
	} {
		c := good
		c.Capacity.GPU = map[string]int64{"a100": 1}
		tc.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: Validate() = %v; want an error with %q", tc.name, err, tc.err)
		}
	}

	q := Quota{Team: "ml", Limit: Resources{MilliCPU: 8000, GPU: map[string]int64{"a100": 2}},
		Clusters: map[string]Resources{"east": {MilliCPU: 4000, GPU: map[string]int64{"a100": 2}}}, Lend: true}
	if err := q.Validate(); err != nil {
		t.Fatalf("good quota: %v", err)
	}
	for _, tc := range []struct {
		name string
		q    Quota
		err  string
	}{
		{"team", Quota{Team: "ML"}, `team "ML" is not a DNS label`},
		{"no team", Quota{}, `team "" is not a DNS label`},
		{"limit", Quota{Team: "ml", Limit: Resources{Memory: -1}}, "limit: memory is negative"},
		{"gpu type", Quota{Team: "ml", Limit: Resources{GPU: map[string]int64{"a 100": 1}}}, `GPU type "a 100"`},
		{"split cluster", Quota{Team: "ml", Clusters: map[string]Resources{"East": {}}}, `split cluster "East"`},
		{"split negative", Quota{Team: "ml", Clusters: map[string]Resources{"east": {MilliCPU: -1}}}, "split for cluster east: cpu is negative"},
		{"split over", Quota{Team: "ml", Limit: Resources{MilliCPU: 1000}, Clusters: map[string]Resources{"east": {MilliCPU: 2000}}},
			"the split for cluster east holds cpu 2, more than the limit of 1"},
		{"split gpu over", Quota{Team: "ml", Clusters: map[string]Resources{"east": {GPU: map[string]int64{"t4": 1}}}},
			"holds gpu/t4 1, more than the limit of 0"},
	} {
		if err := tc.q.Validate(); err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrBadInput) {
			t.Errorf("%s: Validate() = %v; want an error with %q", tc.name, err, tc.err)
		}
	}
}

func TestFormatAmount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		n    int64
		want string
	}{
		{ResCPU, 4000, "4"}, {ResCPU, 500, "0.5"}, {ResCPU, 1250, "1.25"}, {ResCPU, 1001, "1.001"},
		{ResCPU, -1500, "-1.5"}, {ResCPU, 4503599627370497, "4503599627370.497"},
		{ResMemory, 16 << 30, "16Gi"}, {ResMemory, 1000, "1000"}, {ResMemory, 0, "0"},
		{"gpu/a100", 3, "3"},
	} {
		if got := FormatAmount(tc.name, tc.n); got != tc.want {
			t.Errorf("FormatAmount(%s, %d) = %q, want %q", tc.name, tc.n, got, tc.want)
		}
	}
}
