package sim

// event is something that happens at a simulated second: a pod finishing,
// a node becoming ready, a spot interruption, a price change. Events carry
// indices, not pointers, and are invalidated lazily with a generation.
type event struct {
	at   int64 // seconds since the start of the simulation
	seq  uint64
	idx  int32
	gen  uint32
	kind uint8
}

// eventQueue is a binary min-heap of events ordered by time, then by the
// order they were pushed, so that equal times replay deterministically.
type eventQueue struct {
	items []event
	seq   uint64
}

func (q *eventQueue) less(i, j int) bool {
	a, b := &q.items[i], &q.items[j]
	if a.at != b.at {
		return a.at < b.at
	}
	return a.seq < b.seq
}

func (q *eventQueue) push(e event) {
	e.seq = q.seq
	q.seq++
	q.items = append(q.items, e)
	i := len(q.items) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q.items[i], q.items[p] = q.items[p], q.items[i]
		i = p
	}
}

// peek returns the time of the earliest event.
func (q *eventQueue) peek() (int64, bool) {
	if len(q.items) == 0 {
		return 0, false
	}
	return q.items[0].at, true
}

func (q *eventQueue) pop() event {
	top := q.items[0]
	last := len(q.items) - 1
	q.items[0] = q.items[last]
	q.items = q.items[:last]
	i := 0
	for {
		l := 2*i + 1
		if l >= last {
			break
		}
		m := l
		if r := l + 1; r < last && q.less(r, l) {
			m = r
		}
		if !q.less(m, i) {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top
}
