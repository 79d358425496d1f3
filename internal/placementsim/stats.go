package placementsim

import (
	"container/heap"
	"math"
)

// waitHist counts task waits, in whole ticks, weighted by tasks: exact
// below exactWaits, then in buckets 2% wide (a day is about 340 of them).
type waitHist struct {
	exact [exactWaits]int64
	log   []int64
	total int64
}

const (
	exactWaits = 1024
	logStep    = 1.02
)

func (h *waitHist) add(wait int64, n int64) {
	if n <= 0 {
		return
	}
	h.total += n
	if wait < 0 {
		wait = 0
	}
	if wait < exactWaits {
		h.exact[wait] += n
		return
	}
	b := int(math.Log(float64(wait)/exactWaits) / math.Log(logStep))
	for len(h.log) <= b {
		h.log = append(h.log, 0)
	}
	h.log[b] += n
}

// quantile returns the smallest wait, in seconds, at or below which a
// share q of the tasks waited (the upper edge of its bucket); 0 when
// there are none.
func (h *waitHist) quantile(q float64) float64 {
	if h.total == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var acc int64
	for w, n := range h.exact {
		acc += n
		if acc >= rank {
			return float64(w)
		}
	}
	for b, n := range h.log {
		acc += n
		if acc >= rank {
			return math.Floor(exactWaits * math.Pow(logStep, float64(b+1)))
		}
	}
	return math.Floor(exactWaits * math.Pow(logStep, float64(len(h.log))))
}

// countHist counts ticks by a small whole number (pod creations in a
// tick).
type countHist struct {
	n     []int64
	ticks int64
	sum   int64
}

func (h *countHist) add(v int) {
	for len(h.n) <= v {
		h.n = append(h.n, 0)
	}
	h.n[v]++
	h.ticks++
	h.sum += int64(v)
}

func (h *countHist) quantile(q float64) int {
	if h.ticks == 0 {
		return 0
	}
	rank := max(int64(math.Ceil(q*float64(h.ticks))), 1)
	var acc int64
	for v, n := range h.n {
		acc += n
		if acc >= rank {
			return v
		}
	}
	return len(h.n) - 1
}

func (h *countHist) max() int {
	for v := len(h.n) - 1; v >= 0; v-- {
		if h.n[v] > 0 {
			return v
		}
	}
	return 0
}

// timed is a worker due at a time, in a timeHeap; seq breaks ties in the
// order pushed, so that the order never depends on the heap's layout.
type timed struct {
	at  float64
	seq uint64
	w   int32
	gen uint32
}

type timeHeap []timed

func (h timeHeap) Len() int { return len(h) }
func (h timeHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].seq < h[j].seq
}
func (h timeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)   { *h = append(*h, x.(timed)) }
func (h *timeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

var _ heap.Interface = (*timeHeap)(nil)
