package dag

import "slices"

// Dependents returns the tasks of seeds and, transitively, every task that
// depends on one of them (through an exact key or a group) and for which
// follow returns true, in index order. A task for which follow is false is
// left out and its own dependents are not reached through it.
func (g *Graph) Dependents(seeds []int32, follow func(task int32) bool) []int32 {
	seen := make([]bool, g.Nodes())
	var out, stack []int32
	for _, s := range seeds {
		if s >= 0 && int(s) < g.N && !seen[s] {
			seen[s] = true
			out = append(out, s)
			stack = append(stack, s)
		}
	}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range g.Children(v) {
			if seen[c] {
				continue
			}
			seen[c] = true
			if !g.IsGroup(c) {
				if !follow(c) {
					continue
				}
				out = append(out, c)
			}
			stack = append(stack, c)
		}
	}
	slices.Sort(out)
	return out
}
