package autoscale

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strings"
)

// Taint effects that keep a pod off a node unless it tolerates them.
const (
	EffectNoSchedule       = "NoSchedule"
	EffectPreferNoSchedule = "PreferNoSchedule"
	EffectNoExecute        = "NoExecute"
)

// Fits reports whether pod p can run on an empty node of config c: its
// requests are within c's capacity in every dimension, a GPU type it asks
// for (with GPUs) is c's, every label of its node selector is on c with the
// same value, and it tolerates every NoSchedule and NoExecute taint of c.
func Fits(p Pod, c LaunchConfig) bool {
	s := newShape(&p)
	return s.req.le(toRes(c.Capacity)) && s.matches(c.Labels, c.Taints, c.Capacity.GPUType)
}

// Tolerates reports whether the tolerations let a pod onto a node with the
// taint, with Kubernetes semantics: a toleration with an empty Effect
// matches every effect; Operator "Exists" matches any value (and, with an
// empty Key, any key); Operator "Equal" (or empty) needs Key and Value equal.
// Taints with effect PreferNoSchedule never keep a pod off.
func Tolerates(tols []Toleration, t Taint) bool {
	if t.Effect != EffectNoSchedule && t.Effect != EffectNoExecute {
		return true
	}
	for _, tol := range tols {
		if tolerates(tol, t) {
			return true
		}
	}
	return false
}

func tolerates(tol Toleration, t Taint) bool {
	if tol.Effect != "" && tol.Effect != t.Effect {
		return false
	}
	switch tol.Operator {
	case "Exists":
		return tol.Key == "" || tol.Key == t.Key
	case "", "Equal":
		return tol.Key == t.Key && tol.Value == t.Value
	}
	return false
}

// res is an amount of CPU, memory and GPUs, never negative.
type res struct{ cpu, mem, gpu int64 }

func toRes(r Resources) res {
	return res{cpu: max(r.MilliCPU, 0), mem: max(r.MemoryBytes, 0), gpu: int64(max(r.GPU, 0))}
}

func (a res) le(b res) bool { return a.cpu <= b.cpu && a.mem <= b.mem && a.gpu <= b.gpu }

// minus returns a - n*b; callers make sure n*b <= a.
func (a res) minus(b res, n int64) res {
	return res{cpu: a.cpu - n*b.cpu, mem: a.mem - n*b.mem, gpu: a.gpu - n*b.gpu}
}

// fitCount is how many requests of req fit into free: math.MaxInt64 for a
// request of nothing.
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

// shape is a class of identical pending pods: same requests, node selector
// and tolerations. The planner counts pods of a shape instead of handling
// each one.
type shape struct {
	key   shapeKey
	req   res
	sel   map[string]string
	pairs [][2]string // sel, sorted by key
	tols  []Toleration
	count int64
	first int // index in State.Pending of the first pod of the shape
}

type shapeKey struct {
	cpu, mem, gpu int64
	gpuType       string // only with gpu > 0
	extra         string // node selector and tolerations, canonical
}

func newShape(p *Pod) shape {
	r := toRes(p.Requests)
	k := shapeKey{cpu: r.cpu, mem: r.mem, gpu: r.gpu}
	if r.gpu > 0 {
		k.gpuType = p.Requests.GPUType
	}
	s := shape{key: k, req: r, sel: p.NodeSelector, tols: p.Tolerations}
	if len(p.NodeSelector) > 0 || len(p.Tolerations) > 0 {
		k.extra = canonicalExtra(p.NodeSelector, p.Tolerations)
		s.key = k
		for _, key := range slices.Sorted(maps.Keys(p.NodeSelector)) {
			s.pairs = append(s.pairs, [2]string{key, p.NodeSelector[key]})
		}
	}
	return s
}

// canonicalExtra encodes a node selector and tolerations so that equal sets
// give equal strings whatever their order.
func canonicalExtra(sel map[string]string, tols []Toleration) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(sel[k])
		b.WriteByte(0)
	}
	b.WriteByte(1)
	enc := make([]string, len(tols))
	for i, t := range tols {
		op := t.Operator
		if op == "" {
			op = "Equal"
		}
		enc[i] = t.Key + "\x00" + op + "\x00" + t.Value + "\x00" + t.Effect
	}
	slices.Sort(enc)
	for _, e := range enc {
		b.WriteString(e)
		b.WriteByte(2)
	}
	return b.String()
}

// matches reports whether pods of the shape may run on a node with these
// labels, taints and GPU type, capacity aside.
func (s *shape) matches(labels map[string]string, taints []Taint, gpuType string) bool {
	if s.key.gpuType != "" && s.key.gpuType != gpuType {
		return false
	}
	for _, kv := range s.pairs {
		if lv, ok := labels[kv[0]]; !ok || lv != kv[1] {
			return false
		}
	}
	for _, t := range taints {
		if !Tolerates(s.tols, t) {
			return false
		}
	}
	return true
}

// compareFFD orders shapes for first-fit decreasing: memory, then CPU, then
// GPUs, largest first; the rest of the key only makes the order total.
func compareFFD(a, b shapeKey) int {
	if c := cmp.Compare(b.mem, a.mem); c != 0 {
		return c
	}
	if c := cmp.Compare(b.cpu, a.cpu); c != 0 {
		return c
	}
	if c := cmp.Compare(b.gpu, a.gpu); c != 0 {
		return c
	}
	if c := strings.Compare(a.gpuType, b.gpuType); c != 0 {
		return c
	}
	return strings.Compare(a.extra, b.extra)
}

// buildShapes groups the pending pods into shapes in first-fit-decreasing
// order and returns, for each pod, the index of its shape. A pod is
// compared with the shapes of the same requests first, so that the
// canonical key is built only once per shape in the usual case.
func buildShapes(pods []Pod) ([]shape, []int) {
	type resKey struct {
		cpu, mem, gpu int64
		gpuType       string
	}
	byRes := make(map[resKey][]int)
	var prevKey resKey
	var shapes []shape
	podShape := make([]int, len(pods))
	for i := range pods {
		p := &pods[i]
		r := toRes(p.Requests)
		rk := resKey{cpu: r.cpu, mem: r.mem, gpu: r.gpu}
		if r.gpu > 0 {
			rk.gpuType = p.Requests.GPUType
		}
		j := -1
		if i > 0 && rk == prevKey && maps.Equal(pods[i-1].NodeSelector, p.NodeSelector) &&
			slices.Equal(pods[i-1].Tolerations, p.Tolerations) {
			j = podShape[i-1] // pods of a job tend to come together
		}
		prevKey = rk
		if j < 0 {
			same := byRes[rk]
			for _, c := range same {
				if maps.Equal(shapes[c].sel, p.NodeSelector) && slices.Equal(shapes[c].tols, p.Tolerations) {
					j = c
					break
				}
			}
			if j < 0 {
				s := newShape(p)
				for _, c := range same {
					if shapes[c].key == s.key { // tolerations in another order
						j = c
						break
					}
				}
				if j < 0 {
					j = len(shapes)
					s.first = i
					shapes = append(shapes, s)
					byRes[rk] = append(same, j)
				}
			}
		}
		shapes[j].count++
		podShape[i] = j
	}
	order := make([]int, len(shapes))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return compareFFD(shapes[a].key, shapes[b].key) })
	sorted := make([]shape, len(shapes))
	rank := make([]int, len(shapes))
	for r, i := range order {
		sorted[r] = shapes[i]
		rank[i] = r
	}
	for i, j := range podShape {
		podShape[i] = rank[j]
	}
	return sorted, podShape
}
