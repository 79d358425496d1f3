package autoscale

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	good := `
strategy: cost
interval: 30s
scale_down_grace: 5m
limits: {max_nodes: 10, max_spend_per_hour: 12.5, max_add_per_interval: 4}
provider: {type: sim}
launch_configs:
  - name: m5.large/a/spot
    instance_type: m5.large
    zone: a
    purchase: spot
    capacity: {cpu: "2", memory: 8Gi}
    price_per_hour: 0.04
    taints: [{key: spot, value: "true", effect: NoSchedule}]
  - name: g5/a/on-demand
    instance_type: g5.xlarge
    capacity: {cpu: 3500m, memory: 16Gi, gpu: 1, gpu_type: a10g}
    price_per_hour: 1.0
`
	cfg, fc, err := ParseConfig([]byte(good), "as.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Configs) != 2 || cfg.Configs[0].Capacity.MilliCPU != 2000 || cfg.Configs[0].Capacity.MemoryBytes != 8<<30 ||
		cfg.Configs[1].Capacity.MilliCPU != 3500 || cfg.Configs[1].Purchase != OnDemand || cfg.Configs[1].Capacity.GPUType != "a10g" {
		t.Fatalf("configs: %+v", cfg.Configs)
	}
	if cfg.Limits.MaxSpendPerHour != 12.5 || cfg.Interval.String() != "30s" || fc.Provider.Type != "sim" {
		t.Fatalf("config: %+v", cfg)
	}
	for _, tc := range []struct{ body, want string }{
		{"provider: {type: sim}\nlaunch_configs: []\n", "at least one launch config"},
		{"provider: {type: gcp}\nlaunch_configs: [{name: a, capacity: {cpu: 1, memory: 1Gi}}]\n", `unknown provider "gcp"`},
		{"provider: {type: sim}\nlaunch_configs: [{name: a, capacity: {cpu: 1, memory: 1Gb}}]\n", "launch_configs[0] (a).capacity.memory"},
		{"provider: {type: sim}\nlaunch_configs: [{name: a, purchase: reserved, capacity: {cpu: 1, memory: 1Gi}}]\n", "unknown purchase option"},
		{"provider: {type: sim}\ninterval: soon\nlaunch_configs: [{name: a, capacity: {cpu: 1, memory: 1Gi}}]\n", `interval: bad duration "soon"`},
		{"provider: {type: sim}\nbogus: 1\nlaunch_configs: [{name: a, capacity: {cpu: 1, memory: 1Gi}}]\n", "field bogus not found"},
		{"provider: {type: aws}\nlaunch_configs: [{name: a, capacity: {cpu: 1, memory: 1Gi}}]\n", "provider.aws: required"},
		{"provider: {type: sim}\nlaunch_configs: [{name: a, capacity: {memory: 1Gi}}]\n", "MilliCPU must be positive"},
	} {
		if _, _, err := ParseConfig([]byte(tc.body), "as.yaml"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config %q: error %v, want one mentioning %q", tc.body, err, tc.want)
		}
	}
}
