package sched

// ring is a FIFO of task indices in a power-of-two circular buffer. Entries
// may go stale (their task left Queued without being popped); the consumer
// skips those, so nothing is ever removed from the middle.
type ring struct {
	buf  []int32
	head int
	n    int
}

// ringKeep is the largest buffer an empty ring keeps; a larger one is freed
// so that a burst of a million ready tasks does not pin 4 MB for ever.
const ringKeep = 4096

func (r *ring) push(v int32) {
	if r.n == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = v
	r.n++
}

func (r *ring) grow() {
	c := 2 * len(r.buf)
	if c < 16 {
		c = 16
	}
	buf := make([]int32, c)
	k := copy(buf, r.buf[r.head:])
	copy(buf[k:], r.buf[:r.head])
	r.buf, r.head = buf, 0
}

func (r *ring) pop() int32 {
	v := r.buf[r.head]
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if r.n == 0 {
		r.head = 0
		if len(r.buf) > ringKeep {
			r.buf = nil
		}
	}
	return v
}

func (r *ring) reset() { *r = ring{} }

// timed is a heap entry: a task (and the attempt it is about) due at a time.
type timed struct {
	at      int64 // unix nanoseconds
	task    int32
	attempt int32
}

func (a timed) less(b timed) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	if a.task != b.task {
		return a.task < b.task
	}
	return a.attempt < b.attempt
}

// timedHeap is a binary min-heap of timed entries. Entries may go stale;
// their owner skips them when they surface and compacts the heap when stale
// entries outnumber live ones.
type timedHeap []timed

func (h *timedHeap) push(e timed) {
	*h = append(*h, e)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *timedHeap) pop() timed {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	s.down(0)
	*h = s
	return top
}

func (h timedHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r].less(h[l]) {
			m = r
		}
		if !h[m].less(h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// filter keeps the entries for which keep returns true and restores the
// heap order.
func (h *timedHeap) filter(keep func(timed) bool) {
	s := (*h)[:0]
	for _, e := range *h {
		if keep(e) {
			s = append(s, e)
		}
	}
	clear((*h)[len(s):])
	for i := len(s)/2 - 1; i >= 0; i-- {
		s.down(i)
	}
	if len(s) == 0 {
		s = nil
	}
	*h = s
}
