package dag

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// spec is a compact way to write a job in tests: "key:dep,dep key2 key3:dep".
func spec(s string) (keys []string, after [][]string) {
	for _, f := range strings.Fields(s) {
		k, deps, _ := strings.Cut(f, ":")
		keys = append(keys, k)
		var a []string
		if deps != "" {
			a = strings.Split(deps, ",")
		}
		after = append(after, a)
	}
	return keys, after
}

// edges lists the graph's edges as "parent>child" with groups by glob.
func edges(g *Graph) []string {
	name := func(v int32) string {
		if g.IsGroup(v) {
			return g.Groups[int(v)-g.N]
		}
		return strconv.Itoa(int(v))
	}
	var out []string
	for v := range int32(g.Nodes()) {
		for _, c := range g.Children(v) {
			out = append(out, name(v)+">"+name(c))
		}
	}
	return out
}

func TestBuildGraph(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		spec     string
		groups   []string
		edges    []string
		nparents []int32
	}{
		{name: "single", spec: "a", nparents: []int32{0}},
		{name: "chain", spec: "a b:a c:b", edges: []string{"0>1", "1>2"}, nparents: []int32{0, 1, 1}},
		{name: "diamond", spec: "a b:a c:a d:b,c", edges: []string{"0>1", "0>2", "1>3", "2>3"}, nparents: []int32{0, 1, 1, 2}},
		{name: "repeated dependency counts once", spec: "a b:a,a", edges: []string{"0>1"}, nparents: []int32{0, 1}},
		{
			name: "one group node for a glob", spec: "split sim-0:split sim-1:split report:sim-* mail:sim-*",
			groups:   []string{"sim-*"},
			edges:    []string{"0>1", "0>2", "1>sim-*", "2>sim-*", "sim-*>3", "sim-*>4"},
			nparents: []int32{0, 1, 1, 1, 1, 2},
		},
		{
			name: "question mark and class globs", spec: "x1 x2 y3 r:x? s:[xy]3",
			groups:   []string{"x?", "[xy]3"},
			edges:    []string{"0>x?", "1>x?", "2>[xy]3", "x?>3", "[xy]3>4"},
			nparents: []int32{0, 0, 0, 1, 1, 2, 1},
		},
		{
			name: "glob and exact key to the same task", spec: "a b:a,a*",
			groups: []string{"a*"}, edges: []string{"0>1", "0>a*", "a*>1"}, nparents: []int32{0, 2, 1},
		},
		{
			name: "star does not cross a slash", spec: "d/a d/b/c r:d/*",
			groups: []string{"d/*"}, edges: []string{"0>d/*", "d/*>2"}, nparents: []int32{0, 0, 1, 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := Build(spec(tt.spec))
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if !slices.Equal(g.Groups, tt.groups) {
				t.Errorf("groups = %q, want %q", g.Groups, tt.groups)
			}
			if got := edges(g); !slices.Equal(got, tt.edges) {
				t.Errorf("edges = %q, want %q", got, tt.edges)
			}
			if !slices.Equal(g.NParents, tt.nparents) {
				t.Errorf("nparents = %v, want %v", g.NParents, tt.nparents)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec string
		want []string
	}{
		{name: "unknown dependency", spec: "a b:c",
			want: []string{`task "b" field after: unknown dependency "c"`}},
		{name: "near key suggested", spec: "split b:splt",
			want: []string{`task "b" field after: unknown dependency "splt" (did you mean "split"?)`}},
		{name: "case-insensitive key suggested", spec: "Split b:split",
			want: []string{`task "b" field after: unknown dependency "split" (did you mean "Split"?)`}},
		{name: "glob suggested for a prefix", spec: "sim-0 sim-1 r:sim",
			want: []string{`task "r" field after: unknown dependency "sim" (did you mean "sim-*"?)`}},
		{name: "self dependency", spec: "a:a",
			want: []string{`task "a" field after: task depends on itself`}},
		{name: "glob matching no task", spec: "a b:x-* c:x-*",
			want: []string{`task "b" field after: glob "x-*" matches no task`}},
		{name: "malformed glob", spec: "a b:[a",
			want: []string{`task "b" field after: malformed glob "[a"`}},
		{name: "duplicate key", spec: "a b a",
			want: []string{`task "a" field key: duplicate key (also task #0)`}},
		{name: "cycle of two", spec: "a:b b:a",
			want: []string{`task "a" field after: dependency cycle: a -> b -> a`}},
		{name: "cycle of three with a tail", spec: "x c:b a:c,x b:a y:a",
			want: []string{`task "c" field after: dependency cycle: c -> b -> a -> c`}},
		{name: "cycle through a group", spec: "sim-0:report sim-1 report:sim-*",
			want: []string{`task "sim-0" field after: dependency cycle: sim-0 -> report -> sim-* -> sim-0`}},
		{name: "glob matching its writer", spec: "a-0 a-1:a-*",
			want: []string{`task "a-1" field after: dependency cycle: a-1 -> a-* -> a-1`}},
		{name: "two separate cycles", spec: "a:b b:a c:d d:c e:a,c",
			want: []string{
				`task "a" field after: dependency cycle: a -> b -> a`,
				`task "c" field after: dependency cycle: c -> d -> c`,
			}},
		{name: "all problems at once", spec: "a:zz b:b c:q* a",
			want: []string{
				`task "a" field key: duplicate key (also task #0)`,
				`task "a" field after: unknown dependency "zz"`,
				`task "b" field after: task depends on itself`,
				`task "c" field after: glob "q*" matches no task`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := Build(spec(tt.spec))
			if g != nil {
				t.Errorf("Build returned a graph with errors")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Build error = %v, want Errors", err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestBuildLongCycleElided(t *testing.T) {
	t.Parallel()
	keys, after := chain(40)
	after[0] = []string{"t39"}
	_, err := Build(keys, after)
	want := `task "t0" field after: dependency cycle: t0 -> t39 -> t38 -> t37 -> t36 -> t35 -> t34 -> t33 -> t32 -> t31 -> t30 -> ` +
		`t29 -> t28 -> t27 -> t26 -> t25 -> t24 -> t23 -> t22 -> t21 -> t20 -> t19 -> t18 -> t17 -> t16 -> t15 -> t14 -> t13 -> t12 -> t11 -> ` +
		`... 5 more ... -> t5 -> t4 -> t3 -> t2 -> t1 -> t0`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant  %s", err, want)
	}
}

func TestBuildErrorIndex(t *testing.T) {
	t.Parallel()
	_, err := Build(spec("a b:c a"))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("err = %v", err)
	}
	if e := errs[0]; e.Field != "key" || e.Index != 2 || e.First != 0 {
		t.Errorf("duplicate error = %+v", e)
	}
	if e := errs[1]; e.Field != "after" || e.Index != 1 || e.First != -1 {
		t.Errorf("unknown error = %+v", e)
	}
}

func TestBuildMismatchedLengths(t *testing.T) {
	t.Parallel()
	if _, err := Build([]string{"a"}, nil); err == nil {
		t.Fatal("Build accepted 1 key with 0 after lists")
	}
}

// TestBuildManyGlobs exercises the sorted-key glob matching (more globs than
// globScanLimit) against a direct scan.
func TestBuildManyGlobs(t *testing.T) {
	t.Parallel()
	var keys []string
	var after [][]string
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("in-%d-a", i), fmt.Sprintf("in-%d-b", i))
		after = append(after, nil, nil)
	}
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("out-%d", i))
		after = append(after, []string{fmt.Sprintf("in-%d-*", i), "in-1?-a"})
	}
	g, err := Build(keys, after)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Groups) != 201 {
		t.Fatalf("groups = %d, want 201", len(g.Groups))
	}
	for gi, glob := range g.Groups {
		v := int32(g.N + gi)
		var want []int32
		for i, k := range keys {
			if ok, _ := path.Match(glob, k); ok {
				want = append(want, int32(i))
			}
		}
		if int(g.NParents[v]) != len(want) {
			t.Errorf("group %q has %d parents, want %d", glob, g.NParents[v], len(want))
		}
		for _, p := range want {
			if !slices.Contains(g.Children(p), v) {
				t.Errorf("task %q is not a parent of group %q", keys[p], glob)
			}
		}
	}
}

// TestBuildRandomDAG checks the graph against its input on random acyclic
// jobs: every edge written is in the graph once, and counts agree.
func TestBuildRandomDAG(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		n := 1 + rng.IntN(60)
		keys := make([]string, n)
		after := make([][]string, n)
		for i := range n {
			keys[i] = fmt.Sprintf("t%d", i)
			for range rng.IntN(4) {
				if i > 0 {
					after[i] = append(after[i], keys[rng.IntN(i)])
				}
			}
		}
		g, err := Build(keys, after)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			want := map[int32]bool{}
			for _, d := range after[i] {
				p, _ := strconv.Atoi(d[1:])
				want[int32(p)] = true
			}
			if int(g.NParents[i]) != len(want) {
				t.Fatalf("task %d: nparents %d, want %d", i, g.NParents[i], len(want))
			}
			for p := range want {
				if n := countOf(g.Children(p), int32(i)); n != 1 {
					t.Fatalf("edge %d>%d appears %d times", p, i, n)
				}
			}
		}
		if int(g.ChildOff[g.Nodes()]) != len(g.Child) {
			t.Fatalf("ChildOff end %d, len(Child) %d", g.ChildOff[g.Nodes()], len(g.Child))
		}
	}
}

// TestBuildRandomCycles plants a cycle in random graphs and checks Build
// reports a cycle whose printed steps are real dependencies.
func TestBuildRandomCycles(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		n := 2 + rng.IntN(40)
		keys := make([]string, n)
		after := make([][]string, n)
		for i := range n {
			keys[i] = fmt.Sprintf("t%d", i)
			for range rng.IntN(3) {
				if i > 0 {
					after[i] = append(after[i], keys[rng.IntN(i)])
				}
			}
		}
		// Close a cycle: an early task waits for a later one that (by a
		// chain) waits for it.
		a := rng.IntN(n - 1)
		b := a + 1 + rng.IntN(n-a-1)
		after[b] = append(after[b], keys[a])
		after[a] = append(after[a], keys[b])
		_, err := Build(keys, after)
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("no error for a cycle: %v", err)
		}
		for _, e := range errs {
			path, ok := strings.CutPrefix(e.Msg, "dependency cycle: ")
			if !ok {
				t.Fatalf("unexpected error %v", e)
			}
			steps := strings.Split(path, " -> ")
			if steps[0] != steps[len(steps)-1] || steps[0] != e.Task {
				t.Fatalf("cycle %q does not start and end at %q", path, e.Task)
			}
			for i := 0; i+1 < len(steps); i++ {
				x, _ := strconv.Atoi(steps[i][1:])
				if !slices.Contains(after[x], steps[i+1]) {
					t.Fatalf("cycle %q: %s does not depend on %s", path, steps[i], steps[i+1])
				}
			}
		}
	}
}

func countOf(s []int32, v int32) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// chain returns n tasks, each after the one before it.
func chain(n int) ([]string, [][]string) {
	keys := make([]string, n)
	after := make([][]string, n)
	for i := range n {
		keys[i] = "t" + strconv.Itoa(i)
		if i > 0 {
			after[i] = keys[i-1 : i]
		}
	}
	return keys, after
}

// wide returns n sim tasks after one split task, and one report after all
// of them through a glob.
func wide(n int) ([]string, [][]string) {
	keys := make([]string, n+2)
	after := make([][]string, n+2)
	keys[0] = "split"
	dep := []string{"split"}
	for i := range n {
		keys[i+1] = "sim-" + strconv.Itoa(i)
		after[i+1] = dep
	}
	keys[n+1] = "report"
	after[n+1] = []string{"sim-*"}
	return keys, after
}

func TestBuildLongChain(t *testing.T) {
	t.Parallel()
	const n = bigN
	keys, after := chain(n)
	g, err := Build(keys, after)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Child) != n-1 || g.NParents[n-1] != 1 || g.NParents[0] != 0 {
		t.Fatalf("chain graph has %d edges", len(g.Child))
	}
	// Close the chain into one cycle of a million tasks: no recursion means
	// no stack to overflow, and the cycle is printed whole.
	after[0] = []string{keys[n-1]}
	_, err = Build(keys, after)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 {
		t.Fatalf("err = %.200v", err)
	}
	if want := fmt.Sprintf("dependency cycle: t0 -> t%d -> t%d", n-1, n-2); !strings.HasPrefix(errs[0].Msg, want) {
		t.Fatalf("cycle message starts %.80q, want %q", errs[0].Msg, want)
	}
	if !strings.HasSuffix(errs[0].Msg, "t2 -> t1 -> t0") {
		t.Fatalf("cycle message ends %q", errs[0].Msg[len(errs[0].Msg)-40:])
	}
}

func TestBuildWide(t *testing.T) {
	t.Parallel()
	const n = bigN
	g, err := Build(wide(n))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Groups) != 1 || g.NParents[n+2] != n {
		t.Fatalf("groups %q, group parents %d", g.Groups, g.NParents[n+2])
	}
	// Edges: split->sim (n), sim->group (n), group->report (1).
	if len(g.Child) != 2*n+1 || g.NParents[n+1] != 1 {
		t.Fatalf("edges = %d, want %d", len(g.Child), 2*n+1)
	}
	if c := g.Children(int32(n + 2)); len(c) != 1 || c[0] != int32(n+1) {
		t.Fatalf("group children = %v", c)
	}
}

func BenchmarkBuildChain1M(b *testing.B) {
	keys, after := chain(1_000_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(keys, after); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildWide1M(b *testing.B) {
	keys, after := wide(1_000_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(keys, after); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDependents(t *testing.T) {
	// a <- b <- d; a <- c (via glob "a*" group... c depends on "a*"); e alone.
	keys := []string{"a", "b", "c", "d", "e", "f"}
	after := [][]string{nil, {"a"}, {"a*"}, {"b"}, nil, {"d", "e"}}
	g, err := Build(keys, after)
	if err != nil {
		t.Fatal(err)
	}
	got := g.Dependents([]int32{0}, func(task int32) bool { return task != 3 })
	if want := []int32{0, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("Dependents(a) without d = %v, want %v", got, want)
	}
	got = g.Dependents([]int32{0, 4}, func(int32) bool { return true })
	if want := []int32{0, 1, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("Dependents(a, e) = %v, want %v", got, want)
	}
}
