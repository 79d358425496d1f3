package sched

import "time"

// PendingParents returns the tasks a task waits for: its parents that
// have not succeeded, a group parent standing for the tasks it gathers
// that have not succeeded (groups of groups are followed). It returns at
// most limit of them, in node order of discovery, and how many there are
// in all. It walks the whole graph (every edge once): for explaining, not
// for scheduling.
func (j *Job) PendingParents(task int32, limit int) (parents []int32, total int) {
	if task < 0 || task >= j.n {
		return nil, 0
	}
	g := j.g
	nodes := int32(g.Nodes())
	// parentsOf lists the nodes with an edge to v.
	parentsOf := func(v int32) []int32 {
		var out []int32
		for u := range nodes {
			for _, c := range g.Children(u) {
				if c == v {
					out = append(out, u)
					break
				}
			}
		}
		return out
	}
	seen := map[int32]bool{}
	stack := parentsOf(task)
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[v] || State(j.state[v]&stateMask) == Succeeded {
			continue
		}
		seen[v] = true
		if g.IsGroup(v) {
			stack = append(stack, parentsOf(v)...)
			continue
		}
		total++
		if len(parents) < limit {
			parents = append(parents, v)
		}
	}
	return parents, total
}

// BackoffUntil returns when a queued task's retry backoff ends, and
// whether it waits one.
func (j *Job) BackoffUntil(task int32) (time.Time, bool) {
	if task < 0 || task >= j.n || j.state[task] != uint8(Queued)|flagBackoff {
		return time.Time{}, false
	}
	var at int64
	for _, e := range j.backoff {
		if e.task == task && e.at > at {
			at = e.at
		}
	}
	if at == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, at).UTC(), true
}

// InBackoff returns how many tasks of a tier wait out a retry backoff,
// and when the first of them ends.
func (j *Job) InBackoff(tier int32) (n int, first time.Time) {
	var at int64
	seen := map[int32]bool{}
	for _, e := range j.backoff {
		t := e.task
		if seen[t] || j.state[t] != uint8(Queued)|flagBackoff || int32(j.tier[t]) != tier {
			continue
		}
		seen[t] = true
		n++
		if at == 0 || e.at < at {
			at = e.at
		}
	}
	if at != 0 {
		first = time.Unix(0, at).UTC()
	}
	return n, first
}
