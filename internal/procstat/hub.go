package procstat

import (
	"cmp"
	"sync"
	"sync/atomic"
	"time"
)

// A Hub samples many process trees with one read of /proc per round: a
// taskhost running 16 short attempts at once, each read by a sampler of
// its own, read every process's stat file for each of them, a sixth of its
// CPU with /bin/true tasks (issue 18). A round reads /proc once and samples
// every tree that is due within the coalescing window of now; each tree
// keeps its own schedule (FirstDelay, then Interval) otherwise. The
// package's Start is a Hub of one tree.
//
// A Sampler's Summary, OnLimit (called once, in a goroutine of its own,
// which Stop waits for) and PIDs are those of its own tree. Close ends the
// Hub; Samplers started after it take no sample.
type Hub struct {
	scan *Scanner
	// Coalesce is how far ahead of its time a tree is sampled with a round
	// another tree asked for.
	coalesce time.Duration

	mu     sync.Mutex
	subs   map[*Sampler]struct{}
	closed bool
	wake   chan struct{}
	done   chan struct{}

	reads atomic.Int64 // rounds that read /proc

	// round is held while a round samples its trees: Stop waits on it, so
	// that no sample is added after Stop returns.
	round sync.Mutex
}

// NewHub starts a Hub on procRoot ("" means /proc). Samples within
// coalesce of their time are taken together (0: 10ms).
func NewHub(procRoot string, coalesce time.Duration) *Hub {
	h := &Hub{
		scan:     NewScanner(procRoot),
		coalesce: cmp.Or(coalesce, 10*time.Millisecond),
		subs:     map[*Sampler]struct{}{},
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	go h.loop()
	return h
}

// Close stops the Hub's goroutine; Samplers still started take no more
// samples and their Stop still returns their Summary.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.mu.Unlock()
	h.poke()
	<-h.done
}

// Start samples the tree of process group pgid, as the package's Start
// does, in the Hub's rounds.
func (h *Hub) Start(pgid int, opts Options) *Sampler {
	opts.FirstDelay = cmp.Or(opts.FirstDelay, 20*time.Millisecond)
	opts.Interval = cmp.Or(opts.Interval, 250*time.Millisecond)
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	s := &Sampler{pgid: pgid, opts: opts, hub: h}
	s.start = opts.Clock()
	s.due = time.Now().Add(opts.FirstDelay)
	h.mu.Lock()
	if !h.closed {
		h.subs[s] = struct{}{}
	}
	h.mu.Unlock()
	h.poke()
	return s
}

// Reads returns how many times the Hub read /proc.
func (h *Hub) Reads() int64 { return h.reads.Load() }

func (h *Hub) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// remove takes s out of the rounds and waits for a round that may be
// sampling it.
func (h *Hub) remove(s *Sampler) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	h.round.Lock()
	h.round.Unlock() // (only waits out the round in progress)
}

func (h *Hub) loop() {
	defer close(h.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return
		}
		var next time.Time
		for s := range h.subs {
			if next.IsZero() || s.due.Before(next) {
				next = s.due
			}
		}
		h.mu.Unlock()
		if next.IsZero() {
			<-h.wake
			continue
		}
		if d := time.Until(next); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-h.wake:
				if !t.Stop() {
					<-t.C
				}
				continue // a new tree may be due sooner, or the Hub closed
			}
		}
		h.sampleRound()
	}
}

// sampleRound reads /proc once and samples every tree due by now plus
// the coalescing window.
func (h *Hub) sampleRound() {
	h.round.Lock()
	defer h.round.Unlock()
	now := time.Now()
	h.mu.Lock()
	var due []*Sampler
	for s := range h.subs {
		if !s.due.After(now.Add(h.coalesce)) {
			due = append(due, s)
		}
	}
	h.mu.Unlock()
	if len(due) == 0 {
		return
	}
	h.reads.Add(1)
	err := h.scan.read()
	for _, s := range due {
		var smp Sample
		if err == nil {
			smp = h.scan.tree(s.pgid, s.opts.Marker, s.opts.Reaper, s.opts.Clock())
		}
		if s.add(smp, err) {
			s.limits.Go(func() { s.opts.OnLimit(smp) })
		}
		h.mu.Lock()
		s.due = now.Add(s.opts.Interval)
		h.mu.Unlock()
	}
}
