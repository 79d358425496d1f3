package sched

import (
	"errors"
	"fmt"
	"time"

	"github.com/haul-dev/haul/internal/dag"
)

// ErrJobDone is returned by Extend for a job that is Done or cancelled: no
// task can be added to it.
var ErrJobDone = errors.New("the job has ended or is being cancelled")

// Extend adds tasks to a started job (a dynamic DAG: a running task adds
// work to its own job). g is the job's graph rebuilt with the new tasks
// appended: the existing tasks keep their indices 0..Tasks()-1 and their
// own dependencies, and tasks[i] configures new task Tasks()+i. A new task
// may depend on existing tasks and on other new ones; whose parents all
// succeeded is Queued at once, one with a failed (or upstream-failed) parent
// is UpstreamFailed and one with a cancelled parent Cancelled, the rest
// Blocked. Existing tasks keep their state, attempts and flags.
//
// A glob dependency of an existing task matches the new tasks too (a
// `reduce` after "part-*" waits for parts added at run time), as long as
// the task that named it is still Blocked. A new task that would join the
// group of a task that already started is refused, as is anything New
// would reject (a cycle, a bad tier). On error nothing changes.
//
// The cost is a pass over the whole job (O(tasks + edges)), so tasks are
// best added in batches.
func (j *Job) Extend(g *dag.Graph, tasks []TaskConfig, now time.Time) error {
	state, remaining, err := j.prepareExtend(g, tasks)
	if err != nil || len(tasks) == 0 {
		return err
	}
	j.commitExtend(g, tasks, state, remaining)
	return nil
}

// CheckExtend reports whether Extend(g, tasks) would succeed, changing
// nothing: a caller that must store the tasks first checks, stores, then
// extends.
func (j *Job) CheckExtend(g *dag.Graph, tasks []TaskConfig) error {
	_, _, err := j.prepareExtend(g, tasks)
	return err
}

// prepareExtend validates an extension and computes the new node states and
// remaining-parent counts, changing nothing.
func (j *Job) prepareExtend(g *dag.Graph, tasks []TaskConfig) ([]uint8, []int32, error) {
	switch {
	case j.err != nil:
		return nil, nil, j.err
	case !j.started:
		return nil, nil, errors.New("extend: the job has not started")
	case j.cancelled || j.Done():
		return nil, nil, ErrJobDone
	case g == nil || g.N != int(j.n)+len(tasks):
		return nil, nil, fmt.Errorf("extend: a graph of %d tasks for %d existing and %d new", graphN(g), j.n, len(tasks))
	case len(tasks) == 0:
		return nil, nil, nil
	}
	all := make([]TaskConfig, g.N)
	for t := int32(0); t < j.n; t++ {
		k := j.kinds[j.kindOf[t]]
		all[t] = TaskConfig{Tier: k.tier, Retries: k.retries, Timeout: time.Duration(k.timeout)}
	}
	copy(all[j.n:], tasks)
	nodes := g.Nodes()
	remaining := make([]int32, nodes)
	if err := validate(g, all, j.cfg, remaining); err != nil {
		return nil, nil, fmt.Errorf("extend: %w", err)
	}
	// The old tasks' own dependencies must not have changed: their
	// parents may only gain new group members.
	old := j.g
	for t := int32(0); t < j.n; t++ {
		if g.NParents[t] != old.NParents[t] {
			return nil, nil, fmt.Errorf("extend: task %d has %d parents in the new graph, %d before", t, g.NParents[t], old.NParents[t])
		}
	}

	// Node states in the new graph: tasks keep theirs (new ones Blocked);
	// groups are derived from their members.
	state := make([]uint8, nodes)
	copy(state, j.state[:j.n])
	clear(remaining)
	for v := range nodes {
		for _, c := range g.Children(int32(v)) {
			remaining[c]++
		}
	}
	// Members settle their groups first (a group's parents are tasks).
	for t := int32(0); t < int32(g.N); t++ {
		s := State(state[t] & stateMask)
		for _, c := range g.Children(t) {
			if !g.IsGroup(c) {
				continue
			}
			switch s {
			case Succeeded:
				remaining[c]--
			case Failed, UpstreamFailed:
				state[c] = uint8(UpstreamFailed)
			case Cancelled:
				if State(state[c]) != UpstreamFailed {
					state[c] = uint8(Cancelled)
				}
			}
		}
	}
	for v := int32(g.N); v < int32(nodes); v++ {
		if State(state[v]) == Blocked && remaining[v] == 0 {
			state[v] = uint8(Succeeded)
		}
	}
	// Then tasks count their succeeded parents (tasks and groups).
	for v := range nodes {
		if State(state[v]&stateMask) != Succeeded {
			continue
		}
		for _, c := range g.Children(int32(v)) {
			if !g.IsGroup(c) {
				remaining[c]--
			}
		}
	}
	for t := int32(0); t < j.n; t++ {
		s := State(state[t] & stateMask)
		if remaining[t] == 0 || s == Blocked || s.Terminal() && s != Succeeded {
			continue
		}
		for _, p := range parentsOf(g, t) {
			if g.IsGroup(p) && State(state[p]) != Succeeded {
				return nil, nil, &StartedGlobError{Task: t, Glob: g.Groups[int(p)-g.N]}
			}
		}
		return nil, nil, fmt.Errorf("extend: task %d (%v) would gain an unfinished parent", t, s)
	}

	return state, remaining, nil
}

// commitExtend applies a prepared extension.
func (j *Job) commitExtend(g *dag.Graph, tasks []TaskConfig, state []uint8, remaining []int32) {
	// Commit: grow the per-task arrays, intern the new kinds.
	j.g = g
	j.state = state
	j.remaining = remaining
	j.attempts = append(j.attempts, make([]int32, len(tasks))...)
	j.failures = append(j.failures, make([]int32, len(tasks))...)
	j.lost = append(j.lost, make([]uint8, len(tasks))...)
	index := make(map[kind]uint32, len(j.kinds))
	for i, k := range j.kinds {
		index[k] = uint32(i)
	}
	for _, tc := range tasks {
		k := kind{tier: tc.Tier, retries: tc.Retries, timeout: int64(tc.Timeout)}
		x, ok := index[k]
		if !ok {
			x = uint32(len(j.kinds))
			j.kinds = append(j.kinds, k)
			index[k] = x
		}
		j.kindOf = append(j.kindOf, x)
		j.tier = append(j.tier, uint8(tc.Tier))
	}
	first := j.n
	j.n = int32(g.N)
	j.counts[Blocked] += int64(len(tasks))
	parents := parentsFrom(g, first)
	for t := first; t < j.n; t++ {
		if State(j.state[t]) != Blocked {
			continue // reached by a propagation below
		}
		switch up := j.upstream(parents[t-first]); {
		case up == UpstreamFailed:
			for _, p := range parents[t-first] {
				if c := j.causeOf(p); c >= 0 {
					j.setCause(t, c)
					break
				}
			}
			j.move(t, UpstreamFailed, 0, ReasonUpstream)
			j.propagate(t, UpstreamFailed, ReasonUpstream)
		case up == Cancelled:
			j.move(t, Cancelled, 0, ReasonCancelled)
			j.propagate(t, Cancelled, ReasonCancelled)
		case j.remaining[t] == 0:
			j.move(t, Queued, 0, "")
			j.enqueue(t)
		}
	}
}

// StartedGlobError is Extend's error for a new task that would join the
// glob dependency of a task that already started (and so no longer waits).
type StartedGlobError struct {
	Task int32  // the task that named the glob
	Glob string // the glob the new task matches
}

func (e *StartedGlobError) Error() string {
	return fmt.Sprintf("extend: a new task matches the dependency %q of task %d, which already started: give it a key that does not match", e.Glob, e.Task)
}

// upstream returns UpstreamFailed if one of the parents failed (or is
// upstream-failed), Cancelled if one was cancelled, else Blocked.
func (j *Job) upstream(parents []int32) State {
	out := Blocked
	for _, p := range parents {
		switch State(j.state[p] & stateMask) {
		case Failed, UpstreamFailed:
			return UpstreamFailed
		case Cancelled:
			out = Cancelled
		}
	}
	return out
}

// parentsOf lists the parents of node t by scanning the edges: the graph
// keeps children only, and Extend needs parents rarely.
func parentsOf(g *dag.Graph, t int32) []int32 {
	var out []int32
	for v := range g.Nodes() {
		for _, c := range g.Children(int32(v)) {
			if c == t {
				out = append(out, int32(v))
			}
		}
	}
	return out
}

// parentsFrom lists the parents of tasks first..g.N-1 in one pass over the
// edges.
func parentsFrom(g *dag.Graph, first int32) [][]int32 {
	out := make([][]int32, int32(g.N)-first)
	for v := range g.Nodes() {
		for _, c := range g.Children(int32(v)) {
			if c >= first && int(c) < g.N {
				out[c-first] = append(out[c-first], int32(v))
			}
		}
	}
	return out
}

func graphN(g *dag.Graph) int {
	if g == nil {
		return 0
	}
	return g.N
}
