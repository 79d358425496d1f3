package sim

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/autoscale"
)

func configByName(t *testing.T, configs []autoscale.LaunchConfig, name string) autoscale.LaunchConfig {
	t.Helper()
	for _, c := range configs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no launch config %q", name)
	return autoscale.LaunchConfig{}
}

func TestCatalogue(t *testing.T) {
	t.Parallel()
	configs := Catalogue()
	if len(configs) != 48 {
		t.Fatalf("catalogue has %d configs, want 48", len(configs))
	}
	for _, c := range configs {
		if c.PricePerHour <= 0 || c.MaxNodes <= 0 || c.Capacity.MilliCPU <= 0 || c.Capacity.MemoryBytes <= 0 {
			t.Errorf("%s: price %v, max nodes %d, capacity %+v", c.Name, c.PricePerHour, c.MaxNodes, c.Capacity)
		}
		if c.Purchase == autoscale.Spot {
			od := configByName(t, configs, strings.Replace(c.Name, "/spot", "/on-demand", 1))
			if c.PricePerHour >= od.PricePerHour {
				t.Errorf("%s costs %v, its on-demand twin %v", c.Name, c.PricePerHour, od.PricePerHour)
			}
		}
	}
	// Every shape of the scenarios fits some config.
	for _, sh := range DefaultShapes() {
		fits := 0
		for i := range configs {
			if compatible(sh.Requests, sh.NodeSelector, sh.Tolerations, &configs[i]) {
				fits++
			}
		}
		if fits == 0 {
			t.Errorf("shape %s fits no config", sh.Name)
		}
	}
}

func TestShortageLimitsLaunch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	configs := Catalogue()
	cc := DefaultCloudConfig()
	cc.Shortages = []Shortage{
		{InstanceType: "m5.xlarge", Zone: "us-east-1a", Purchase: autoscale.Spot, To: time.Hour, PerLaunch: 2},
		{InstanceType: "c5.4xlarge", From: 30 * time.Minute, To: 2 * time.Hour},
	}
	c, err := NewCloud(configs, cc, 1, DefaultStart)
	if err != nil {
		t.Fatal(err)
	}
	short := configByName(t, configs, "m5.xlarge/us-east-1a/spot")
	other := configByName(t, configs, "m5.xlarge/us-east-1b/spot")
	c5 := configByName(t, configs, "c5.4xlarge/us-east-1c/on-demand")
	launch := func(cfg autoscale.LaunchConfig, n int) int {
		t.Helper()
		got, err := c.Launch(ctx, cfg, n)
		if err != nil {
			t.Fatalf("launch %s: %v", cfg.Name, err)
		}
		for _, in := range got {
			if in.Config != cfg.Name || in.ID == "" || !in.LaunchedAt.Equal(c.Now()) {
				t.Fatalf("instance %+v at %v", in, c.Now())
			}
		}
		return len(got)
	}
	if got := launch(short, 10); got != 2 {
		t.Errorf("during the shortage a launch of 10 got %d, want 2", got)
	}
	if got := launch(other, 10); got != 10 {
		t.Errorf("another zone got %d of 10", got)
	}
	if got := launch(c5, 3); got != 3 {
		t.Errorf("before its shortage c5 got %d of 3", got)
	}
	c.Advance(DefaultStart.Add(45*time.Minute), nil)
	if got := launch(c5, 3); got != 0 {
		t.Errorf("during a shortage with PerLaunch 0, c5 got %d", got)
	}
	c.Advance(DefaultStart.Add(time.Hour), nil)
	if got := launch(short, 10); got != 10 {
		t.Errorf("after the shortage a launch of 10 got %d", got)
	}
	if _, err := c.Launch(ctx, autoscale.LaunchConfig{Name: "nope"}, 1); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("launch of an unknown config: %v", err)
	}
	if _, err := c.Launch(ctx, short, -1); err == nil {
		t.Error("launch of -1 instances: no error")
	}
	if err := c.Terminate(ctx, []string{"i-1", "i-404"}); err == nil || !strings.Contains(err.Error(), `"i-404"`) {
		t.Errorf("terminate of an unknown instance: %v", err)
	}
	if err := c.Terminate(ctx, []string{"i-1"}); err != nil {
		t.Errorf("terminating twice: %v", err)
	}
}

func TestCloudBootPricesAndBilling(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	configs := Catalogue()
	cc := DefaultCloudConfig()
	cc.SpotInterruptionPerHour = 0
	c, err := NewCloud(configs, cc, 3, DefaultStart)
	if err != nil {
		t.Fatal(err)
	}
	od := configByName(t, configs, "m5.4xlarge/us-east-1a/on-demand")
	got, err := c.Launch(ctx, od, 4)
	if err != nil || len(got) != 4 {
		t.Fatalf("launch: %v, %d", err, len(got))
	}
	ready := map[string]time.Duration{}
	c.Advance(DefaultStart.Add(2*time.Hour), func(ev CloudEvent) {
		if ev.Kind == NodeReady {
			ready[ev.Instance] = ev.At.Sub(DefaultStart)
		}
	})
	for _, in := range got {
		d, ok := ready[in.ID]
		if !ok || d < cc.BootMin || d > cc.BootMax {
			t.Errorf("%s ready after %v (ok %v), want within [%v, %v]", in.ID, d, ok, cc.BootMin, cc.BootMax)
		}
	}
	if want := 4 * od.PricePerHour * 2; math.Abs(c.Cost()-want) > 1e-6 {
		t.Errorf("cost of 4 on-demand nodes for 2h: %v, want %v", c.Cost(), want)
	}
	prices, err := c.Prices(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, cfg := range configs {
		p, ok := prices[cfg.Name]
		if ok != (cfg.Purchase == autoscale.Spot) {
			t.Errorf("%s: in prices %v", cfg.Name, ok)
		}
		if !ok {
			continue
		}
		odTwin := configByName(t, configs, strings.Replace(cfg.Name, "/spot", "/on-demand", 1))
		if p <= 0 || p > odTwin.PricePerHour {
			t.Errorf("%s costs %v (on-demand %v)", cfg.Name, p, odTwin.PricePerHour)
		}
		if p != cfg.PricePerHour {
			moved++
		}
	}
	if moved == 0 {
		t.Error("no spot price moved in 2 hours")
	}
	if _, err := c.Prices(ctx, []autoscale.LaunchConfig{{Name: "nope"}}); err == nil {
		t.Error("prices of an unknown config: no error")
	}
}

func TestNewCloudRejectsBadConfig(t *testing.T) {
	t.Parallel()
	configs := Catalogue()
	for name, tc := range map[string]struct {
		configs []autoscale.LaunchConfig
		cc      CloudConfig
		want    string
	}{
		"no configs":   {nil, DefaultCloudConfig(), "no launch configs"},
		"duplicate":    {append(Catalogue(), configs[0]), DefaultCloudConfig(), "listed twice"},
		"boot range":   {configs, CloudConfig{BootMin: time.Minute, BootMax: time.Second}, "boot delay"},
		"hazard":       {configs, CloudConfig{SpotInterruptionPerHour: -1}, "SpotInterruptionPerHour"},
		"bad shortage": {configs, CloudConfig{Shortages: []Shortage{{From: time.Hour, To: time.Minute}}}, "shortage 0"},
	} {
		if _, err := NewCloud(tc.configs, tc.cc, 1, DefaultStart); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}
