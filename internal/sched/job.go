package sched

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/haul-dev/haul/internal/dag"
)

// Config is the job-wide scheduling configuration.
type Config struct {
	// Tiers is the number of worker tiers of the job, 1 to MaxTiers.
	Tiers int
	// BackoffBase is the delay before the first retry (0 means 1s). Retry n
	// waits min(BackoffBase*2^(n-1), BackoffMax).
	BackoffBase time.Duration
	// BackoffMax caps the retry delay (0 means 1m).
	BackoffMax time.Duration
	// MaxLost is how many lost attempts a task may have before it fails with
	// reason "lost" (0 means 5; at most MaxMaxLost). Lost attempts never use
	// up the task's retries.
	MaxLost int
}

// Limits on Config.
const (
	MaxTiers   = 256
	MaxMaxLost = 255
)

// Defaults applied to zero Config fields.
const (
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = time.Minute
	DefaultMaxLost     = 5
)

// TaskConfig is the scheduling configuration of one task.
type TaskConfig struct {
	Tier    int32         // the tier its first attempt runs on, 0 to Config.Tiers-1
	Retries int32         // failed (or timed out) attempts that are retried
	Timeout time.Duration // per attempt; 0 means none
}

// Per-task state byte: the State in the low bits, flags above.
const (
	stateMask         = 0x07
	flagBackoff       = 0x08 // Queued, waiting out a retry backoff (not in a ready ring)
	flagKillTimeout   = 0x10 // Running, a timeout Kill was emitted for the current attempt
	flagKillCancel    = 0x20 // Running, a cancel Kill was emitted for the current attempt
	flagCancelPending = 0x40 // Running, the task was cancelled: it ends Cancelled unless it succeeds
	flagKeep          = 0x80 // restored Running, before Start: its attempt may still run (Keep)
)

// kind is one distinct (tier, retries, timeout) combination; tasks point at
// an interned kind instead of carrying 16 bytes of configuration each.
type kind struct {
	tier    int32
	retries int32
	timeout int64
}

// tierQueue is the ready queue and the counters of one tier.
type tierQueue struct {
	ring    ring
	ready   int // Queued and in ring
	waiting int // Queued, in ring or in backoff
	running int
}

// Job is the scheduling state of one job. It is not safe for concurrent use:
// the caller serialises calls.
//
// Memory per task is a handful of small integers in parallel arrays (about
// 20 bytes with the ready queues); the graph is the caller's and is not
// copied.
type Job struct {
	g   *dag.Graph
	n   int32
	cfg Config
	err error

	state     []uint8 // per node (tasks, then groups): State | flags
	remaining []int32 // per node: parents not yet succeeded (valid after Start)
	attempts  []int32 // per task: attempts started
	failures  []int32 // per task: attempts that failed or timed out
	lost      []uint8 // per task: attempts lost
	// upCause is, per task, the Failed task whose failure made it
	// UpstreamFailed (see UpstreamCause), -1 for none or unknown; nil
	// until the first such task. Four bytes a task, where a map entry of a
	// million-task cascade cost about forty.
	upCause []int32
	kindOf  []uint32 // per task: index into kinds
	tier    []uint8  // per task: the tier it runs on now (its kind's, or later after OOM kills)
	kinds   []kind

	tiers     []tierQueue
	backoff   timedHeap // tasks waiting out a retry backoff (attempt unused)
	nBackoff  int       // live entries in backoff
	deadlines timedHeap // running attempts with a timeout

	counts    [NumStates]int64
	started   bool
	cancelled bool
	quiet     bool // Start computes its transitions at the end

	out, spare Output
	stack      []int32
}

// Validate reports the first problem that would make New reject g, tasks
// and cfg: a malformed graph (offsets, child indices, parent counts that do
// not match the edges, a cycle), a task count that is not g.N, a tier out of
// range, a negative retry count, timeout or backoff.
func Validate(g *dag.Graph, tasks []TaskConfig, cfg Config) error {
	return validate(g, tasks, cfg, nil)
}

func validate(g *dag.Graph, tasks []TaskConfig, cfg Config, scratch []int32) error {
	if err := validateConfig(cfg); err != nil {
		return err
	}
	if err := validateGraph(g, scratch); err != nil {
		return fmt.Errorf("graph: %w", err)
	}
	if len(tasks) != g.N {
		return fmt.Errorf("tasks: %d task configs for a graph of %d tasks", len(tasks), g.N)
	}
	for i, tc := range tasks {
		if tc.Tier < 0 || int(tc.Tier) >= cfg.Tiers {
			return fmt.Errorf("task %d: tier %d out of range: the job has %d tiers", i, tc.Tier, cfg.Tiers)
		}
		if tc.Retries < 0 {
			return fmt.Errorf("task %d: retries %d is negative", i, tc.Retries)
		}
		if tc.Timeout < 0 {
			return fmt.Errorf("task %d: timeout %v is negative", i, tc.Timeout)
		}
	}
	return nil
}

func validateConfig(cfg Config) error {
	switch {
	case cfg.Tiers < 1 || cfg.Tiers > MaxTiers:
		return fmt.Errorf("config: tiers %d out of range 1..%d", cfg.Tiers, MaxTiers)
	case cfg.BackoffBase < 0:
		return fmt.Errorf("config: backoff base %v is negative", cfg.BackoffBase)
	case cfg.BackoffMax < 0:
		return fmt.Errorf("config: backoff max %v is negative", cfg.BackoffMax)
	case cfg.MaxLost < 0 || cfg.MaxLost > MaxMaxLost:
		return fmt.Errorf("config: max lost %d out of range 0..%d", cfg.MaxLost, MaxMaxLost)
	}
	return nil
}

// validateGraph checks the CSR structure, that NParents matches the edges,
// and that there is no cycle. indeg, when long enough, is used as scratch.
func validateGraph(g *dag.Graph, indeg []int32) error {
	if g == nil {
		return errors.New("nil graph")
	}
	if g.N < 0 {
		return fmt.Errorf("N %d is negative", g.N)
	}
	nodes := g.Nodes()
	if nodes >= math.MaxInt32 {
		return fmt.Errorf("%d nodes is too many", nodes)
	}
	if len(g.ChildOff) != nodes+1 {
		return fmt.Errorf("ChildOff has %d entries, want %d (nodes+1)", len(g.ChildOff), nodes+1)
	}
	if len(g.NParents) != nodes {
		return fmt.Errorf("NParents has %d entries, want %d (nodes)", len(g.NParents), nodes)
	}
	if g.ChildOff[0] != 0 {
		return fmt.Errorf("ChildOff[0] is %d, want 0", g.ChildOff[0])
	}
	for v := 0; v < nodes; v++ {
		if g.ChildOff[v+1] < g.ChildOff[v] {
			return fmt.Errorf("ChildOff decreases at node %d", v)
		}
	}
	if int(g.ChildOff[nodes]) != len(g.Child) {
		return fmt.Errorf("ChildOff ends at %d but Child has %d entries", g.ChildOff[nodes], len(g.Child))
	}
	if len(indeg) < nodes {
		indeg = make([]int32, nodes)
	}
	indeg = indeg[:nodes]
	clear(indeg)
	for v := 0; v < nodes; v++ {
		for _, c := range g.Child[g.ChildOff[v]:g.ChildOff[v+1]] {
			if c < 0 || int(c) >= nodes {
				return fmt.Errorf("%s has child %d, out of range 0..%d", nodeName(g, int32(v)), c, nodes-1)
			}
			if int(c) == v {
				return fmt.Errorf("%s depends on itself", nodeName(g, c))
			}
			indeg[c]++
		}
	}
	for v := 0; v < nodes; v++ {
		if indeg[v] != g.NParents[v] {
			return fmt.Errorf("%s has %d parent edges but NParents says %d", nodeName(g, int32(v)), indeg[v], g.NParents[v])
		}
	}
	// Kahn's algorithm: every node is popped once iff there is no cycle.
	queue := make([]int32, 0, 64)
	for v := 0; v < nodes; v++ {
		if indeg[v] == 0 {
			queue = append(queue, int32(v))
		}
	}
	seen := 0
	for len(queue) > 0 {
		v := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		seen++
		for _, c := range g.Children(v) {
			indeg[c]--
			if indeg[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
	if seen != nodes {
		for v := 0; v < nodes; v++ {
			if indeg[v] > 0 {
				return fmt.Errorf("cycle: %s is on or after a cycle", nodeName(g, int32(v)))
			}
		}
	}
	return nil
}

func nodeName(g *dag.Graph, v int32) string {
	if g.IsGroup(v) {
		i := int(v) - g.N
		if i < len(g.Groups) {
			return fmt.Sprintf("group %d (%q)", v, g.Groups[i])
		}
		return fmt.Sprintf("group %d", v)
	}
	return fmt.Sprintf("task %d", v)
}

// New builds the state of a job whose tasks are all Blocked, after checking
// its input with Validate. tasks[i] configures task i. The graph is kept,
// not copied: the caller must not change it while the job lives.
func New(g *dag.Graph, tasks []TaskConfig, cfg Config) (*Job, error) {
	var scratch []int32
	if g != nil && g.N >= 0 && g.Nodes() < math.MaxInt32 {
		scratch = make([]int32, g.Nodes())
	}
	if err := validate(g, tasks, cfg, scratch); err != nil {
		return nil, err
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.MaxLost == 0 {
		cfg.MaxLost = DefaultMaxLost
	}
	nodes := g.Nodes()
	j := &Job{
		g:         g,
		n:         int32(g.N),
		cfg:       cfg,
		state:     make([]uint8, nodes),
		remaining: scratch,
		attempts:  make([]int32, g.N),
		failures:  make([]int32, g.N),
		lost:      make([]uint8, g.N),
		kindOf:    make([]uint32, g.N),
		tier:      make([]uint8, g.N),
		tiers:     make([]tierQueue, cfg.Tiers),
	}
	index := make(map[kind]uint32)
	var last kind
	var lastX uint32
	for i, tc := range tasks {
		j.tier[i] = uint8(tc.Tier)
		k := kind{tier: tc.Tier, retries: tc.Retries, timeout: int64(tc.Timeout)}
		if i > 0 && k == last { // neighbours usually share a configuration
			j.kindOf[i] = lastX
			continue
		}
		x, ok := index[k]
		if !ok {
			x = uint32(len(j.kinds))
			j.kinds = append(j.kinds, k)
			index[k] = x
		}
		j.kindOf[i] = x
		last, lastX = k, x
	}
	j.counts[Blocked] = int64(g.N)
	return j, nil
}

// NewJob is New for input that is expected to be valid (built by dag.Build
// and checked by the spec validator). It never panics: on input New would
// reject it returns a job with no edges whose Start fails every task with
// reason "invalid", whose Outcome is "failed", and whose Err says why.
func NewJob(g *dag.Graph, tasks []TaskConfig, cfg Config) *Job {
	j, err := New(g, tasks, cfg)
	if err == nil {
		return j
	}
	n := len(tasks)
	if g != nil && g.N >= 0 && g.N < math.MaxInt32 {
		n = g.N
	}
	j = &Job{
		g:         &dag.Graph{N: n, ChildOff: make([]int32, n+1), NParents: make([]int32, n)},
		n:         int32(n),
		cfg:       Config{Tiers: 1, BackoffBase: DefaultBackoffBase, BackoffMax: DefaultBackoffMax, MaxLost: DefaultMaxLost},
		err:       fmt.Errorf("invalid job: %w", err),
		state:     make([]uint8, n),
		remaining: make([]int32, n),
		attempts:  make([]int32, n),
		failures:  make([]int32, n),
		lost:      make([]uint8, n),
		kindOf:    make([]uint32, n),
		tier:      make([]uint8, n),
		kinds:     []kind{{}},
		tiers:     make([]tierQueue, 1),
	}
	j.counts[Blocked] = int64(n)
	return j
}

// Err reports why NewJob rejected its input, or nil.
func (j *Job) Err() error { return j.err }

// Restore sets a task's state as loaded from the store after a restart; call
// it before Start, at most once per task. attempts is the number of attempts
// started so far and failedAttempts how many of them failed or timed out
// and count against the task's retries (after a retry of the job, only
// those since the retry). A task restored as Running had its attempt lost with the
// old runner: Start treats it as a Lost outcome (re-queued, attempt counter
// kept, no retry used). A task restored as Queued is ready at once (any
// backoff it was waiting out is forgotten). It returns an error, and changes
// nothing, for an unknown task or state, a negative count, or a call after
// Start.
func (j *Job) Restore(task int32, s State, attempts int32, failedAttempts int32) error {
	switch {
	case j.err != nil:
		return j.err
	case j.started:
		return fmt.Errorf("restore task %d: job already started", task)
	case task < 0 || task >= j.n:
		return fmt.Errorf("restore task %d: no such task (the job has %d)", task, j.n)
	case s >= NumStates:
		return fmt.Errorf("restore task %d: unknown state %d", task, uint8(s))
	case attempts < 0 || failedAttempts < 0:
		return fmt.Errorf("restore task %d: negative attempt count (%d, %d failed)", task, attempts, failedAttempts)
	}
	old := State(j.state[task] & stateMask)
	j.counts[old]--
	j.counts[s]++
	j.state[task] = uint8(s)
	j.attempts[task] = attempts
	j.failures[task] = failedAttempts
	return nil
}

// Keep marks a task restored as Running whose attempt may still be running
// on a worker that the runner will adopt (a failover moved the job to
// another runner): Start leaves it Running with its attempt instead of
// treating the attempt as lost, and its timeout, if any, counts from
// Start. The caller reports the attempt's end as usual, or Finished with
// Lost when no worker claims it. Call it after Restore and before Start;
// it returns an error, and changes nothing, for an unknown task, a task
// not restored as Running, or a call after Start.
func (j *Job) Keep(task int32) error {
	switch {
	case j.err != nil:
		return j.err
	case j.started:
		return fmt.Errorf("keep task %d: job already started", task)
	case task < 0 || task >= j.n:
		return fmt.Errorf("keep task %d: no such task (the job has %d)", task, j.n)
	case State(j.state[task]&stateMask) != Running:
		return fmt.Errorf("keep task %d: it is %s, not restored as running", task, State(j.state[task]&stateMask))
	}
	j.state[task] |= flagKeep
	return nil
}

// RestoreTier sets the tier a task runs on, as loaded from the store after a
// restart (a task moves up a tier after each out-of-memory kill); call it
// before Start. It returns an error, and changes nothing, for an unknown task
// or tier, a tier below the task's first, or a call after Start.
func (j *Job) RestoreTier(task, tier int32) error {
	switch {
	case j.err != nil:
		return j.err
	case j.started:
		return fmt.Errorf("restore task %d: job already started", task)
	case task < 0 || task >= j.n:
		return fmt.Errorf("restore task %d: no such task (the job has %d)", task, j.n)
	case tier < j.kinds[j.kindOf[task]].tier || int(tier) >= len(j.tiers):
		return fmt.Errorf("restore task %d: tier %d out of range %d..%d", task, tier, j.kinds[j.kindOf[task]].tier, len(j.tiers)-1)
	}
	j.tier[task] = uint8(tier)
	return nil
}

// Start computes the remaining-parent counts from the succeeded parents
// (a group counts as one parent, done when all its members succeeded),
// queues every ready task, turns restored Running tasks into lost attempts,
// propagates UpstreamFailed and Cancelled from terminal tasks to their
// descendants, and records the transitions (in task order). It does
// something only the first time it is called.
func (j *Job) Start(now time.Time) {
	if j.started {
		return
	}
	j.started = true
	if j.err != nil {
		for t := int32(0); t < j.n; t++ {
			if !State(j.state[t] & stateMask).Terminal() {
				j.move(t, Failed, j.attempts[t], ReasonInvalid)
			}
		}
		return
	}
	g := j.g
	nodes := int32(g.Nodes())
	orig := make([]uint8, j.n)
	copy(orig, j.state[:j.n])
	j.quiet = true

	// Restored Queued and Running tasks restart from Blocked; a Running one
	// lost its attempt, unless it is kept (Keep): then it stays Running,
	// with a fresh deadline.
	at := now.UnixNano()
	for t := int32(0); t < j.n; t++ {
		if j.state[t]&flagKeep != 0 {
			j.state[t] &^= flagKeep
			orig[t] = j.state[t]
			j.tierOf(t).running++
			if d := j.kinds[j.kindOf[t]].timeout; d > 0 {
				j.deadlines.push(timed{at: at + d, task: t, attempt: j.attempts[t]})
			}
			continue
		}
		s := State(j.state[t])
		if s != Queued && s != Running {
			continue
		}
		j.counts[s]--
		j.counts[Blocked]++
		j.state[t] = uint8(Blocked)
		if s == Running {
			if int(j.lost[t]) < j.cfg.MaxLost {
				j.lost[t]++
			} else {
				j.move(t, Failed, j.attempts[t], ReasonLost)
			}
		}
	}

	// Remaining parents: succeeded tasks release their children; groups
	// whose members all succeeded (or that have none) release theirs.
	copy(j.remaining, g.NParents)
	for t := int32(0); t < j.n; t++ {
		if State(j.state[t]) == Succeeded {
			j.settle(t)
		}
	}
	for v := j.n; v < nodes; v++ {
		if j.remaining[v] == 0 && State(j.state[v]) == Blocked {
			j.state[v] = uint8(Succeeded)
			j.settle(v)
		}
	}

	// Terminal failures and cancellations reach every descendant.
	for t := int32(0); t < j.n; t++ {
		switch State(j.state[t]) {
		case Failed, UpstreamFailed:
			j.propagate(t, UpstreamFailed, ReasonUpstream)
		case Cancelled:
			j.propagate(t, Cancelled, ReasonCancelled)
		}
	}

	for t := int32(0); t < j.n; t++ {
		if State(j.state[t]) == Blocked && j.remaining[t] == 0 {
			j.move(t, Queued, j.attempts[t], "")
			j.enqueue(t)
		}
	}
	if j.cancelled {
		j.cancelAll()
	}
	j.quiet = false

	for t := int32(0); t < j.n; t++ {
		from, to := State(orig[t]), State(j.state[t]&stateMask)
		if from == to {
			continue
		}
		reason := ""
		switch {
		case to == UpstreamFailed:
			reason = ReasonUpstream
		case to == Cancelled:
			reason = ReasonCancelled
		case from == Running:
			reason = ReasonLost
		}
		j.emit(t, from, to, j.attempts[t], reason)
	}
}

// settle decrements the remaining-parent count of the children of node v,
// which just succeeded, and settles the groups that thereby complete. It does
// not queue tasks (Start does that in task order).
func (j *Job) settle(v int32) {
	stack := append(j.stack[:0], v)
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range j.g.Children(v) {
			j.remaining[c]--
			if j.remaining[c] == 0 && j.g.IsGroup(c) && State(j.state[c]) == Blocked {
				j.state[c] = uint8(Succeeded)
				stack = append(stack, c)
			}
		}
	}
	j.stack = stack[:0]
}

// Tasks returns the number of tasks of the job.
func (j *Job) Tasks() int { return int(j.n) }

// State returns the state of a task (Blocked for an unknown index).
func (j *Job) State(task int32) State {
	if task < 0 || task >= j.n {
		return Blocked
	}
	return State(j.state[task] & stateMask)
}

// Attempts returns the number of attempts started for a task (0 for an
// unknown index).
func (j *Job) Attempts(task int32) int32 {
	if task < 0 || task >= j.n {
		return 0
	}
	return j.attempts[task]
}

// Failures returns how many attempts of a task failed or timed out (what
// Restore takes as failedAttempts; 0 for an unknown index).
func (j *Job) Failures(task int32) int32 {
	if task < 0 || task >= j.n {
		return 0
	}
	return j.failures[task]
}

// Tier returns the tier a task runs on now: its first tier, or a later one
// after out-of-memory kills (0 for an unknown index).
func (j *Job) Tier(task int32) int32 {
	if task < 0 || task >= j.n {
		return 0
	}
	return int32(j.tier[task])
}

// Timeout returns a task's per-attempt timeout (0: none, or an unknown
// index).
func (j *Job) Timeout(task int32) time.Duration {
	if task < 0 || task >= j.n {
		return 0
	}
	return time.Duration(j.kinds[j.kindOf[task]].timeout)
}

// FirstTier returns the tier a task's first attempt runs on (0 for an
// unknown index).
func (j *Job) FirstTier(task int32) int32 {
	if task < 0 || task >= j.n {
		return 0
	}
	return j.kinds[j.kindOf[task]].tier
}

// Counts returns how many tasks are in each state, indexed by State.
func (j *Job) Counts() [NumStates]int64 { return j.counts }

// Ready returns how many tasks of the tier Next could hand out now (retries
// whose backoff passed count once Tick or Next has released them).
func (j *Job) Ready(tier int32) int {
	if tier < 0 || int(tier) >= len(j.tiers) {
		return 0
	}
	return j.tiers[tier].ready
}

// Waiting returns how many tasks of the tier are Queued, including those
// waiting out a retry backoff.
func (j *Job) Waiting(tier int32) int {
	if tier < 0 || int(tier) >= len(j.tiers) {
		return 0
	}
	return j.tiers[tier].waiting
}

// Running returns how many tasks of the tier are Running.
func (j *Job) Running(tier int32) int {
	if tier < 0 || int(tier) >= len(j.tiers) {
		return 0
	}
	return j.tiers[tier].running
}

// Done reports whether the job started and every task is terminal.
func (j *Job) Done() bool {
	c := &j.counts
	return j.started && c[Succeeded]+c[Failed]+c[UpstreamFailed]+c[Cancelled] == int64(j.n)
}

// Outcome returns "" while the job is not Done; then "succeeded" if every
// task succeeded, "cancelled" if Cancel was called, else "failed".
func (j *Job) Outcome() string {
	switch {
	case !j.Done():
		return ""
	case j.err == nil && j.counts[Succeeded] == int64(j.n):
		return "succeeded"
	case j.cancelled:
		return "cancelled"
	default:
		return "failed"
	}
}
