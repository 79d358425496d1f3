package sim

import (
	"fmt"

	"github.com/haul-dev/haul/internal/autoscale"
)

// Labels and taints of the catalogue's nodes. Spot nodes carry SpotTaint,
// so only pods that tolerate it run there; GPU nodes carry GPUTaint.
const (
	LabelInstanceType = "node.kubernetes.io/instance-type"
	LabelZone         = "topology.kubernetes.io/zone"
	LabelPurchase     = "haul.dev/purchase"
	LabelGPU          = "haul.dev/gpu-type"
)

var (
	SpotTaint = autoscale.Taint{Key: "haul.dev/spot", Value: "true", Effect: "NoSchedule"}
	GPUTaint  = autoscale.Taint{Key: "nvidia.com/gpu", Value: "true", Effect: "NoSchedule"}
)

const gib = int64(1) << 30

// instanceType is one row of the catalogue: on-demand prices of us-east-1
// (rounded), vCPUs and memory of the machine, GPUs.
type instanceType struct {
	name     string
	vcpu     int64
	memGiB   int64
	gpu      int32
	gpuType  string
	onDemand float64
	maxNodes int // per config (type × zone × purchase)
}

var instanceTypes = []instanceType{
	{name: "m5.xlarge", vcpu: 4, memGiB: 16, onDemand: 0.192, maxNodes: 300},
	{name: "m5.4xlarge", vcpu: 16, memGiB: 64, onDemand: 0.768, maxNodes: 150},
	{name: "m5.12xlarge", vcpu: 48, memGiB: 192, onDemand: 2.304, maxNodes: 80},
	{name: "c5.4xlarge", vcpu: 16, memGiB: 32, onDemand: 0.680, maxNodes: 150},
	{name: "c5.9xlarge", vcpu: 36, memGiB: 72, onDemand: 1.530, maxNodes: 80},
	{name: "r5.4xlarge", vcpu: 16, memGiB: 128, onDemand: 1.008, maxNodes: 100},
	{name: "r5.8xlarge", vcpu: 32, memGiB: 256, onDemand: 2.016, maxNodes: 60},
	{name: "g5.2xlarge", vcpu: 8, memGiB: 32, gpu: 1, gpuType: "a10g", onDemand: 1.212, maxNodes: 25},
}

// Zones of the catalogue.
var Zones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

// Catalogue returns the simulation's launch configs: 8 instance types
// (general purpose, compute and memory optimised, one A10G GPU type) × 3
// zones × spot/on-demand = 48 configs. Capacity is allocatable (the machine
// less what the kubelet and system daemons reserve). Spot prices start at
// 30–45% of on-demand, depending on type and zone; each config has a
// node-count limit. The catalogue is the same for every seed.
func Catalogue() []autoscale.LaunchConfig {
	out := make([]autoscale.LaunchConfig, 0, len(instanceTypes)*len(Zones)*2)
	for ti, it := range instanceTypes {
		capacity := autoscale.Resources{
			MilliCPU:    it.vcpu*1000 - 200,
			MemoryBytes: it.memGiB*gib*92/100 - gib/2,
			GPU:         it.gpu,
			GPUType:     it.gpuType,
		}
		for zi, z := range Zones {
			for _, p := range []autoscale.Purchase{autoscale.Spot, autoscale.OnDemand} {
				price := it.onDemand
				taints := []autoscale.Taint(nil)
				if p == autoscale.Spot {
					price = it.onDemand * (0.30 + 0.05*float64(zi) + 0.02*float64(ti%3))
					taints = append(taints, SpotTaint)
				}
				labels := map[string]string{
					LabelInstanceType: it.name,
					LabelZone:         z,
					LabelPurchase:     string(p),
				}
				if it.gpu > 0 {
					labels[LabelGPU] = it.gpuType
					taints = append(taints, GPUTaint)
				}
				out = append(out, autoscale.LaunchConfig{
					Name:         fmt.Sprintf("%s/%s/%s", it.name, z, p),
					InstanceType: it.name,
					Zone:         z,
					Purchase:     p,
					Capacity:     capacity,
					PricePerHour: roundCents(price),
					Labels:       labels,
					Taints:       taints,
					MaxNodes:     it.maxNodes,
				})
			}
		}
	}
	return out
}

func roundCents(p float64) float64 { return float64(int64(p*10000+0.5)) / 10000 }

// CatalogueLimits returns the global limits that go with Catalogue: at most
// 1,500 nodes, $300 an hour (above the diurnal scenario's daily peak, well
// below what the spike scenario's bursts cost unbounded, so the cap binds
// during spikes), 100 nodes added and 100 removed per planning interval.
func CatalogueLimits() autoscale.Limits {
	return autoscale.Limits{
		MaxNodes:             1500,
		MaxSpendPerHour:      900,
		MaxAddPerInterval:    100,
		MaxRemovePerInterval: 100,
	}
}
