package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/haul-dev/haul/internal/dag"
	"github.com/haul-dev/haul/internal/store"
)

// Dispatch measures, for every task that started, the time from its last
// parent finishing to its start (the task's StartedAt, which the runner
// sets when it hands the attempt to a worker): for a task with parents,
// the latest FinishedAt among them (a group dependency counts its
// members); for a root, the job's StartedAt. Tasks must be all of the
// job's tasks, in index order (as LoadTasks returns them).
//
// That is the definition, and it counts the time a ready task
// waits in the queue for a free slot: with 1,000,000 tasks ready at once
// and 1,000 slots, most of it. slotted takes the queue out: the time from
// the later of the last parent finishing and a slot being free to the
// start, where of slots attempts at once the k-th start (in time order)
// needs k-slots+1 attempts finished, the slot of the earliest finish
// among those going first. It ignores which worker a slot belongs to and
// counts every slot as there from the start, so it errs long while
// workers start.
func Dispatch(jobStarted time.Time, tasks []store.Task, slots int) (dispatch, slotted []time.Duration, err error) {
	keys := make([]string, len(tasks))
	after := make([][]string, len(tasks))
	for i := range tasks {
		keys[i], after[i] = tasks[i].Key, tasks[i].After
	}
	g, err := dag.Build(keys, after)
	if err != nil {
		return nil, nil, fmt.Errorf("bench: rebuild the job's graph: %w", err)
	}
	// ready[v]: when node v's last parent finished (0: no parent).
	ready := make([]int64, g.Nodes())
	for v := range int32(g.N) {
		fin := tasks[v].FinishedAt.UnixNano()
		for _, c := range g.Children(v) {
			ready[c] = max(ready[c], fin)
		}
	}
	for v := int32(g.N); v < int32(g.Nodes()); v++ {
		for _, c := range g.Children(v) {
			ready[c] = max(ready[c], ready[v])
		}
	}
	var started []int32
	var finishes []int64
	for i := range tasks {
		if !tasks[i].FinishedAt.IsZero() {
			finishes = append(finishes, tasks[i].FinishedAt.UnixNano())
		}
		if tasks[i].StartedAt.IsZero() {
			continue
		}
		started = append(started, int32(i))
		if g.NParents[i] == 0 {
			ready[i] = jobStarted.UnixNano()
		}
		dispatch = append(dispatch, time.Duration(tasks[i].StartedAt.UnixNano()-ready[i]))
	}
	slices.Sort(finishes)
	slices.SortFunc(started, func(a, b int32) int { return tasks[a].StartedAt.Compare(tasks[b].StartedAt) })
	slotted = make([]time.Duration, 0, len(started))
	for k, i := range started {
		from := ready[i]
		if need := k - max(slots, 1) + 1; need > 0 && len(finishes) > 0 {
			from = max(from, finishes[min(need, len(finishes))-1])
		}
		slotted = append(slotted, max(0, time.Duration(tasks[i].StartedAt.UnixNano()-from)))
	}
	return dispatch, slotted, nil
}

// Percentile returns the p-th percentile (0 < p ≤ 100, nearest rank) of
// ds, which it sorts; 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(math.Ceil(p / 100 * float64(len(ds))))
	return ds[min(max(rank, 1), len(ds))-1]
}

// PeakRSS returns this process's peak resident set size (VmHWM).
func PeakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("bench: peak RSS: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "VmHWM:" {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: peak RSS: %q: %w", sc.Text(), err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("bench: peak RSS: no VmHWM in /proc/self/status")
}

const (
	metricLive   = "/gc/heap/live:bytes"
	metricCycles = "/gc/cycles/total:gc-cycles"
)

// readHeap returns the live heap as of the last GC cycle and the number of
// completed cycles.
func readHeap() (live, cycles uint64) {
	s := []metrics.Sample{{Name: metricLive}, {Name: metricCycles}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		live = s[0].Value.Uint64()
	}
	if s[1].Value.Kind() == metrics.KindUint64 {
		cycles = s[1].Value.Uint64()
	}
	return live, cycles
}

// IdleHeap forces a garbage collection and returns the live heap.
func IdleHeap() uint64 {
	runtime.GC()
	live, _ := readHeap()
	return live
}

// heapSampler records the peak live heap while a job runs. The live heap
// is what the garbage collector found reachable at the end of its last
// cycle: it counts no garbage, whatever the GC's pace, and costs nothing
// to read. Only cycles that began after Begin count, so that what the
// submission left behind (the compiled spec) is not taken for the
// runner's state.
type heapSampler struct {
	every    time.Duration
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	mu      sync.Mutex
	from    uint64 // cycles at Begin
	started bool
	peak    uint64
	counted int
}

func newHeapSampler(every time.Duration) *heapSampler {
	return &heapSampler{every: every, stop: make(chan struct{}), done: make(chan struct{})}
}

// Run samples until Stop.
func (h *heapSampler) run() {
	defer close(h.done)
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		h.sample()
	}
}

func (h *heapSampler) sample() {
	live, cycles := readHeap()
	h.mu.Lock()
	defer h.mu.Unlock()
	// Cycle from+1 may have begun before Begin; from+2 began after.
	if h.started && cycles >= h.from+2 {
		h.peak = max(h.peak, live)
		h.counted++
	}
}

// halt stops sampling; it is idempotent.
func (h *heapSampler) halt() {
	h.stopOnce.Do(func() { close(h.stop) })
	<-h.done
}

// begin marks the moment from which GC cycles count.
func (h *heapSampler) begin() {
	_, cycles := readHeap()
	h.mu.Lock()
	h.from, h.started = cycles, true
	h.mu.Unlock()
}

// finish stops sampling and returns the peak live heap. If no cycle began
// and ended after begin (a short run), it forces one now and returns what
// it finds.
func (h *heapSampler) finish() uint64 {
	h.halt()
	h.sample()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counted == 0 {
		runtime.GC()
		live, _ := readHeap()
		return live
	}
	return h.peak
}
