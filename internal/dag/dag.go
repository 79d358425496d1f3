// Package dag turns a job's task keys and their `after` lists into a compact
// dependency graph: integer node ids, CSR adjacency, one node per group
// dependency (`after: ["sim-*"]`) instead of one edge per member. It is used by
// spec validation (unknown dependencies, cycles) and by the scheduling core.
// It imports only the standard library.
package dag

// Graph is a job's dependency graph. Nodes 0..N-1 are tasks in spec order;
// nodes N..N+len(Groups)-1 are groups, one per distinct glob used in `after`.
// A group node's parents are the tasks its glob matches; it is "done" when all
// of them succeeded, and the tasks that wrote the glob are its children.
//
// Children of node v are Child[ChildOff[v]:ChildOff[v+1]]; NParents[v] is the
// number of parents of v (explicit parent tasks plus groups, for a task; the
// member count, for a group).
type Graph struct {
	N        int
	Groups   []string
	ChildOff []int32
	Child    []int32
	NParents []int32
}

// Nodes returns the number of nodes, tasks and groups together.
func (g *Graph) Nodes() int { return g.N + len(g.Groups) }

// Children returns the children of node v. The slice aliases the graph.
func (g *Graph) Children(v int32) []int32 { return g.Child[g.ChildOff[v]:g.ChildOff[v+1]] }

// IsGroup reports whether node v is a group node.
func (g *Graph) IsGroup(v int32) bool { return int(v) >= g.N }
