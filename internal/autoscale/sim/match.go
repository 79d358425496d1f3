package sim

import (
	"math"

	"github.com/haul-dev/haul/internal/autoscale"
)

// res is an amount of CPU (millicores), memory (bytes) and GPUs.
type res struct{ cpu, mem, gpu int64 }

func toRes(r autoscale.Resources) res {
	return res{cpu: max(r.MilliCPU, 0), mem: max(r.MemoryBytes, 0), gpu: int64(max(r.GPU, 0))}
}

func (a res) sub(b res, n int64) res {
	return res{cpu: a.cpu - n*b.cpu, mem: a.mem - n*b.mem, gpu: a.gpu - n*b.gpu}
}

func (a res) resources(gpuType string) autoscale.Resources {
	return autoscale.Resources{MilliCPU: a.cpu, MemoryBytes: a.mem, GPU: int32(a.gpu), GPUType: gpuType}
}

// fitCount is how many requests req fit into free (MaxInt64 for an empty
// request).
func fitCount(free, req res) int64 {
	n := int64(math.MaxInt64)
	if req.cpu > 0 {
		n = min(n, free.cpu/req.cpu)
	}
	if req.mem > 0 {
		n = min(n, free.mem/req.mem)
	}
	if req.gpu > 0 {
		n = min(n, free.gpu/req.gpu)
	}
	return max(n, 0)
}

// compatible reports whether a pod with these requests, node selector and
// tolerations may run on an empty node of config c: the planner's own test
// (autoscale.Fits), so both sides of the simulation agree on what fits.
func compatible(req autoscale.Resources, sel map[string]string, tols []autoscale.Toleration, c *autoscale.LaunchConfig) bool {
	return autoscale.Fits(autoscale.Pod{Requests: req, NodeSelector: sel, Tolerations: tols}, *c)
}
