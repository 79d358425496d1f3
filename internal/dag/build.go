package dag

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strings"
)

// Error is one problem Build found in a job's dependencies.
type Error struct {
	// Task is the key of the task the problem is about.
	Task string
	// Field is the spec field at fault: "after" or "key".
	Field string
	// Msg says what is wrong, in one line.
	Msg string
	// Index is the position of Task in the keys given to Build.
	Index int
	// First is, for a duplicate key, the position of the first task with
	// that key; -1 otherwise.
	First int
}

func (e Error) Error() string {
	return fmt.Sprintf("task %q field %s: %s", e.Task, e.Field, e.Msg)
}

// Errors is every problem Build found, in a stable order: per-task problems
// in task order, then globs that match nothing, then cycles.
type Errors []Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// IsGlob reports whether an `after` entry is a glob (it holds one of `*?[`)
// rather than an exact task key.
func IsGlob(s string) bool { return strings.ContainsAny(s, "*?[") }

// maxNodes bounds tasks plus groups so that every id fits an int32.
const maxNodes = math.MaxInt32 - 1

// suggestBudget bounds the work spent finding "did you mean" keys, in
// compared bytes over all unknown dependencies of one Build call.
const suggestBudget = 64 << 20

// A cycle longer than cycleHead+cycleTail is printed with its middle elided.
const (
	cycleHead = 30
	cycleTail = 5
)

// globScanLimit is the number of distinct globs up to which each glob is
// matched by a scan of all keys; beyond it Build sorts the keys once and
// matches each glob within the range of keys sharing its literal prefix.
const globScanLimit = 32

// Build turns task keys (in spec order) and their `after` lists into a Graph.
// after[i] lists the dependencies of task i as written: exact keys, or globs
// (see IsGlob) with path.Match syntax. Each distinct glob becomes one group
// node whose parents are the tasks it matches.
//
// Build reports every problem it finds as Errors: a duplicate key, an unknown
// dependency (with a near key suggested when one is close), a task depending
// on itself, a malformed glob, a glob matching no task, and each dependency
// cycle, printed in `after` order as `a -> b -> a` (a group shows as its glob).
// It runs in O(N+E) time and memory (plus a sort of the keys when a job uses
// many distinct globs) without recursion.
func Build(keys []string, after [][]string) (*Graph, error) {
	n := len(keys)
	if len(after) != n {
		return nil, fmt.Errorf("dag: %d after lists for %d keys", len(after), n)
	}
	if n > maxNodes {
		return nil, fmt.Errorf("dag: %d tasks is more than the limit of %d", n, maxNodes)
	}
	b := builder{keys: keys, after: after, n: n}
	b.index = make(map[string]int32, n)
	for i, k := range keys {
		if j, ok := b.index[k]; ok {
			b.errs = append(b.errs, Error{Task: k, Field: "key", Index: i, First: int(j),
				Msg: fmt.Sprintf("duplicate key (also task #%d)", j)})
			continue
		}
		b.index[k] = int32(i)
	}
	if err := b.taskParents(); err != nil {
		return nil, err
	}
	b.index = nil
	if err := b.groupParents(); err != nil {
		return nil, err
	}
	g := b.graph()
	b.cycles(g)
	if len(b.errs) > 0 {
		return nil, b.errs
	}
	return g, nil
}

type builder struct {
	keys  []string
	after [][]string
	n     int
	index map[string]int32
	errs  Errors

	globs     []string
	globFirst []int32 // first task that wrote each glob
	// par[parOff[v]:parOff[v+1]] are the parents of node v, tasks then groups.
	par    []int32
	parOff []int32

	suggestLeft int
}

func (b *builder) taskParents() error {
	n := b.n
	edges := 0
	for _, a := range b.after {
		edges += len(a)
	}
	if edges > math.MaxInt32 {
		return fmt.Errorf("dag: %d dependencies is more than the limit of %d", edges, math.MaxInt32)
	}
	b.par = make([]int32, 0, edges)
	b.parOff = make([]int32, n+1, n+2)
	b.suggestLeft = suggestBudget
	groupID := make(map[string]int32)
	mark := make([]int32, n) // mark[p] == i+1: task i already lists task p
	var gmark []int32        // same for groups
	for i := range n {
		stamp := int32(i + 1)
		for _, d := range b.after[i] {
			if IsGlob(d) {
				g, ok := groupID[d]
				if !ok {
					if _, err := path.Match(d, ""); err != nil {
						b.errs = append(b.errs, Error{Task: b.keys[i], Field: "after", Index: i, First: -1,
							Msg: fmt.Sprintf("malformed glob %q", d)})
						g = -1
					} else {
						if n+len(b.globs) >= maxNodes {
							return fmt.Errorf("dag: more than %d tasks and groups", maxNodes)
						}
						g = int32(len(b.globs))
						b.globs = append(b.globs, d)
						b.globFirst = append(b.globFirst, int32(i))
						gmark = append(gmark, 0)
					}
					groupID[d] = g
				}
				if g < 0 || gmark[g] == stamp {
					continue
				}
				gmark[g] = stamp
				b.par = append(b.par, int32(n)+g)
				continue
			}
			p, ok := b.index[d]
			switch {
			case !ok:
				b.errs = append(b.errs, Error{Task: b.keys[i], Field: "after", Index: i, First: -1,
					Msg: b.unknownMsg(d)})
			case int(p) == i || b.keys[i] == d:
				b.errs = append(b.errs, Error{Task: b.keys[i], Field: "after", Index: i, First: -1,
					Msg: "task depends on itself"})
			case mark[p] != stamp:
				mark[p] = stamp
				b.par = append(b.par, p)
			}
		}
		b.parOff[i+1] = int32(len(b.par))
	}
	return nil
}

func (b *builder) unknownMsg(d string) string {
	msg := fmt.Sprintf("unknown dependency %q", d)
	if s := b.suggest(d); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg
}

// suggest returns a key close to the unknown key d (edit distance at most
// about a third of its length), or a glob when d is a prefix of keys, or "".
// Its work is bounded by suggestLeft over one Build.
func (b *builder) suggest(d string) string {
	limit := min(3, len(d)/3)
	best, bestDist := "", limit+1
	prefixOf := ""
	var row []int
	for _, k := range b.keys {
		if b.suggestLeft <= 0 {
			break
		}
		if prefixOf == "" && len(k) > len(d) && strings.HasPrefix(k, d) {
			prefixOf = k
		}
		if diff := len(k) - len(d); diff > limit || -diff > limit {
			continue
		}
		b.suggestLeft -= len(k) * len(d)
		if strings.EqualFold(k, d) {
			return k
		}
		var dist int
		dist, row = editDistance(d, k, bestDist, row)
		if dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return best
	}
	if prefixOf != "" {
		if rest := prefixOf[len(d):]; rest[0] == '-' || rest[0] == '_' || rest[0] == '.' || rest[0] == '/' {
			return d + rest[:1] + "*"
		}
		return d + "*"
	}
	return ""
}

// editDistance returns the Levenshtein distance of a and b in bytes, or
// bound when it is bound or more. row is scratch space, returned for reuse.
func editDistance(a, b string, bound int, row []int) (int, []int) {
	row = slices.Grow(row[:0], len(b)+1)[:len(b)+1]
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(a); i++ {
		prev := row[0]
		row[0] = i
		rowMin := row[0]
		for j := 1; j <= len(b); j++ {
			cur := row[j]
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			row[j] = min(row[j]+1, row[j-1]+1, prev+cost)
			prev = cur
			rowMin = min(rowMin, row[j])
		}
		if rowMin >= bound {
			return bound, row
		}
	}
	return min(row[len(b)], bound), row
}

// groupParents appends each group's members to par.
func (b *builder) groupParents() error {
	var sorted []int32 // task ids sorted by key, built only for many globs
	if len(b.globs) > globScanLimit {
		sorted = make([]int32, b.n)
		for i := range sorted {
			sorted[i] = int32(i)
		}
		slices.SortFunc(sorted, func(x, y int32) int { return strings.Compare(b.keys[x], b.keys[y]) })
	}
	for g, glob := range b.globs {
		start := len(b.par)
		prefix := glob[:strings.IndexAny(glob, `*?[\`)]
		if sorted == nil {
			for i, k := range b.keys {
				if strings.HasPrefix(k, prefix) {
					if ok, _ := path.Match(glob, k); ok {
						b.par = append(b.par, int32(i))
					}
				}
			}
		} else {
			lo, _ := slices.BinarySearchFunc(sorted, prefix, func(x int32, p string) int { return strings.Compare(b.keys[x], p) })
			for _, i := range sorted[lo:] {
				k := b.keys[i]
				if !strings.HasPrefix(k, prefix) {
					break
				}
				if ok, _ := path.Match(glob, k); ok {
					b.par = append(b.par, i)
				}
			}
			slices.Sort(b.par[start:])
		}
		if len(b.par) == start {
			t := int(b.globFirst[g])
			b.errs = append(b.errs, Error{Task: b.keys[t], Field: "after", Index: t, First: -1,
				Msg: fmt.Sprintf("glob %q matches no task", glob)})
		}
		if len(b.par) > math.MaxInt32 {
			return fmt.Errorf("dag: more than %d dependencies", math.MaxInt32)
		}
		b.parOff = append(b.parOff, int32(len(b.par)))
	}
	return nil
}

// graph builds the children CSR from the parent lists.
func (b *builder) graph() *Graph {
	nodes := b.n + len(b.globs)
	g := &Graph{
		N:        b.n,
		Groups:   b.globs,
		ChildOff: make([]int32, nodes+1),
		Child:    make([]int32, len(b.par)),
		NParents: make([]int32, nodes),
	}
	for v := range nodes {
		g.NParents[v] = b.parOff[v+1] - b.parOff[v]
		for _, p := range b.par[b.parOff[v]:b.parOff[v+1]] {
			g.ChildOff[p+1]++
		}
	}
	for v := range nodes {
		g.ChildOff[v+1] += g.ChildOff[v]
	}
	next := slices.Clone(g.ChildOff[:nodes])
	for v := range nodes {
		for _, p := range b.par[b.parOff[v]:b.parOff[v+1]] {
			g.Child[next[p]] = int32(v)
			next[p]++
		}
	}
	return g
}

// cycles reports one cycle per strongly connected component that has one.
// Kahn's algorithm first peels off every node not on or behind a cycle; the
// rest is split into components by an iterative Tarjan.
func (b *builder) cycles(g *Graph) {
	nodes := g.Nodes()
	indeg := slices.Clone(g.NParents)
	queue := make([]int32, 0, nodes)
	for v := range nodes {
		if indeg[v] == 0 {
			queue = append(queue, int32(v))
		}
	}
	for h := 0; h < len(queue); h++ {
		for _, c := range g.Children(queue[h]) {
			indeg[c]--
			if indeg[c] == 0 {
				queue = append(queue, c)
			}
		}
	}
	if len(queue) == nodes {
		return
	}
	queue = nil
	// Nodes with indeg > 0 remain. Tarjan over them.
	const unvisited = 0
	order := make([]int32, nodes) // 1-based discovery order; 0 unvisited
	low := make([]int32, nodes)
	comp := make([]int32, nodes) // component id + 1, 0 while on stack
	var stack []int32
	type frame struct{ v, ei int32 }
	var call []frame
	var counter, ncomp int32
	var compRep []int32 // per component of size > 1: its smallest node
	for s := range int32(nodes) {
		if indeg[s] == 0 || order[s] != unvisited {
			continue
		}
		counter++
		order[s], low[s] = counter, counter
		stack = append(stack, s)
		call = append(call, frame{v: s})
		for len(call) > 0 {
			f := &call[len(call)-1]
			v := f.v
			ch := g.Children(v)
			if int(f.ei) < len(ch) {
				w := ch[f.ei]
				f.ei++
				if indeg[w] == 0 {
					continue
				}
				if order[w] == unvisited {
					counter++
					order[w], low[w] = counter, counter
					stack = append(stack, w)
					call = append(call, frame{v: w})
				} else if comp[w] == 0 {
					low[v] = min(low[v], order[w])
				}
				continue
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				u := call[len(call)-1].v
				low[u] = min(low[u], low[v])
			}
			if low[v] != order[v] {
				continue
			}
			ncomp++
			rep, size := v, 0
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				comp[w] = ncomp
				rep = min(rep, w)
				size++
				if w == v {
					break
				}
			}
			if size > 1 {
				compRep = append(compRep, rep)
			}
		}
	}
	slices.Sort(compRep)
	// Walk each component through parents in the same component, from its
	// smallest node, until a node repeats: that closes a cycle.
	pos := order // reuse: position+1 of a node on the current walk
	clear(pos)
	var walk []int32
	for _, s := range compRep {
		c := comp[s]
		walk = walk[:0]
		v := s
		for pos[v] == 0 {
			walk = append(walk, v)
			pos[v] = int32(len(walk))
			for _, p := range b.par[b.parOff[v]:b.parOff[v+1]] {
				if comp[p] == c {
					v = p
					break
				}
			}
		}
		cyc := walk[pos[v]-1:]
		for _, w := range walk {
			pos[w] = 0
		}
		// Start the printed cycle at its smallest task node.
		first := 0
		for i, w := range cyc {
			if !g.IsGroup(w) && (g.IsGroup(cyc[first]) || w < cyc[first]) {
				first = i
			}
		}
		var sb strings.Builder
		sb.WriteString("dependency cycle: ")
		for i := 0; i <= len(cyc); i++ {
			if len(cyc) > cycleHead+cycleTail && i == cycleHead {
				fmt.Fprintf(&sb, " -> ... %d more ...", len(cyc)-cycleHead-cycleTail)
				i = len(cyc) - cycleTail - 1
				continue
			}
			w := cyc[(first+i)%len(cyc)]
			if i > 0 {
				sb.WriteString(" -> ")
			}
			if g.IsGroup(w) {
				sb.WriteString(g.Groups[int(w)-g.N])
			} else {
				sb.WriteString(b.keys[w])
			}
		}
		t := int(cyc[first])
		b.errs = append(b.errs, Error{Task: b.keys[t], Field: "after", Index: t, First: -1, Msg: sb.String()})
	}
}
