package sched

import (
	"fmt"
	"path"
	"strings"

	"github.com/haul-dev/haul/internal/dag"
)

// csr lays out a dag.Graph by hand, the way dag.Build does (tasks first,
// then one node per group), so that this package is tested without dag.Build.
// It takes n tasks, the given group count, and edges between node ids
// (groups numbered n, n+1, …) as a Graph.
func csr(n int, groups []string, edges [][2]int32) *dag.Graph {
	nodes := n + len(groups)
	g := &dag.Graph{
		N:        n,
		Groups:   groups,
		ChildOff: make([]int32, nodes+1),
		Child:    make([]int32, len(edges)),
		NParents: make([]int32, nodes),
	}
	for _, e := range edges {
		g.ChildOff[e[0]+1]++
		g.NParents[e[1]]++
	}
	for v := 0; v < nodes; v++ {
		g.ChildOff[v+1] += g.ChildOff[v]
	}
	next := make([]int32, nodes)
	copy(next, g.ChildOff[:nodes])
	for _, e := range edges {
		g.Child[next[e[0]]] = e[1]
		next[e[0]]++
	}
	return g
}

// buildNamed builds a graph from task names and their `after` lists; an
// entry with a glob metacharacter is a group dependency.
func buildNamed(names []string, after [][]string) (*dag.Graph, error) {
	index := make(map[string]int32, len(names))
	for i, name := range names {
		if _, dup := index[name]; dup {
			return nil, fmt.Errorf("duplicate task %q", name)
		}
		index[name] = int32(i)
	}
	n := len(names)
	var groups []string
	groupID := map[string]int32{}
	var edges [][2]int32
	for child, deps := range after {
		for _, dep := range deps {
			if !strings.ContainsAny(dep, "*?[") {
				p, ok := index[dep]
				if !ok {
					return nil, fmt.Errorf("task %q: unknown dependency %q", names[child], dep)
				}
				edges = append(edges, [2]int32{p, int32(child)})
				continue
			}
			id, ok := groupID[dep]
			if !ok {
				if _, err := path.Match(dep, ""); err != nil {
					return nil, fmt.Errorf("task %q: bad glob %q: %w", names[child], dep, err)
				}
				id = int32(n + len(groups))
				groupID[dep] = id
				groups = append(groups, dep)
				for m, name := range names {
					if ok, _ := path.Match(dep, name); ok {
						edges = append(edges, [2]int32{int32(m), id})
					}
				}
			}
			edges = append(edges, [2]int32{id, int32(child)})
		}
	}
	return csr(n, groups, edges), nil
}
