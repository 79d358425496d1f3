package bench

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/dag"
	"github.com/haul-dev/haul/internal/spec"
)

// compiled is a built scenario compiled the way the server compiles it:
// the spec, then each fragment added (dynamic), keys and after lists of
// the job's tasks in the end.
type compiled struct {
	keys  []string
	after [][]string
	argv  [][]string
}

func compilePlan(t *testing.T, p *Plan) compiled {
	t.Helper()
	job, _, err := spec.Compile(p.Spec, "bench.json", spec.DefaultLimits())
	if err != nil {
		t.Fatalf("compile spec: %v\n%s", err, p.Spec)
	}
	var c compiled
	add := func(tasks []spec.Task) {
		for _, tk := range tasks {
			c.keys = append(c.keys, tk.Key)
			c.after = append(c.after, tk.After)
			c.argv = append(c.argv, tk.Command)
		}
	}
	add(job.Tasks)
	for name, data := range p.Fragments {
		ts, err := spec.CompileFragment(data, name, spec.Base{Limits: spec.DefaultLimits()})
		if err != nil {
			t.Fatalf("compile fragment %s: %v\n%s", name, err, data)
		}
		add(ts)
	}
	if _, err := dag.Build(c.keys, c.after); err != nil {
		t.Fatalf("graph: %v", err)
	}
	return c
}

func TestScenariosBuildGraphsOfTheAskedSize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	adder := func(file string) []string { return []string{AdderProgram, file} }
	for _, sc := range Scenarios() {
		for _, n := range []int{3, 4, 25, 101} {
			p, err := Build(Shape{Scenario: sc, Tasks: n, Layers: 3, Parents: 2, Seed: 7, MaxWorkers: 4, Adder: adder, Dir: dir})
			if err != nil {
				t.Fatalf("%s %d: %v", sc, n, err)
			}
			c := compilePlan(t, p)
			if len(c.keys) != n || p.Tasks != n {
				t.Errorf("%s %d: %d tasks compiled, plan says %d", sc, n, len(c.keys), p.Tasks)
			}
		}
	}
}

func TestScenarioShapes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	build := func(s Shape) compiled {
		t.Helper()
		s.Dir = dir
		s.Adder = func(file string) []string { return []string{"add", file} }
		p, err := Build(s)
		if err != nil {
			t.Fatal(err)
		}
		return compilePlan(t, p)
	}
	byKey := func(c compiled) map[string][]string {
		m := map[string][]string{}
		for i, k := range c.keys {
			m[k] = c.after[i]
		}
		return m
	}

	// chain: each after the one before.
	c := byKey(build(Shape{Scenario: Chain, Tasks: 5}))
	for i, want := range []string{"", "c-0", "c-1", "c-2", "c-3"} {
		got := strings.Join(c["c-"+string(rune('0'+i))], ",")
		if got != want {
			t.Errorf("chain: c-%d after %q, want %q", i, got, want)
		}
	}

	// fanout: src, then the middle, then the sink after all of them.
	c = byKey(build(Shape{Scenario: Fanout, Tasks: 6}))
	if len(c) != 6 || len(c["src"]) != 0 || strings.Join(c["f-3"], ",") != "src" || strings.Join(c["sink"], ",") != "f-*" {
		t.Errorf("fanout: %v", c)
	}

	// layered: every task after the layer before, K distinct parents.
	lc := build(Shape{Scenario: Layered, Tasks: 40, Layers: 4, Parents: 3, Seed: 1})
	for i, k := range lc.keys {
		layer := k[1:strings.IndexByte(k, '-')]
		if layer == "0" {
			if len(lc.after[i]) != 0 {
				t.Errorf("layered: %s has parents %v", k, lc.after[i])
			}
			continue
		}
		seen := map[string]bool{}
		for _, p := range lc.after[i] {
			if seen[p] || !strings.HasPrefix(p, "l"+string(rune(layer[0]-1))+"-") {
				t.Errorf("layered: %s after %v", k, lc.after[i])
			}
			seen[p] = true
		}
		if len(seen) != 3 {
			t.Errorf("layered: %s has %d parents, want 3", k, len(seen))
		}
	}
	// The same seed gives the same DAG; another seed another.
	again := build(Shape{Scenario: Layered, Tasks: 40, Layers: 4, Parents: 3, Seed: 1})
	other := build(Shape{Scenario: Layered, Tasks: 40, Layers: 4, Parents: 3, Seed: 2})
	if strings.Join(lc.after[39], ",") != strings.Join(again.after[39], ",") {
		t.Errorf("layered: same seed, different DAG")
	}
	same := true
	for i := range lc.after {
		same = same && strings.Join(lc.after[i], ",") == strings.Join(other.after[i], ",")
	}
	if same {
		t.Errorf("layered: seeds 1 and 2 gave the same DAG")
	}

	// dynamic: the root adds the adders, each adder its leaves.
	dc := build(Shape{Scenario: Dynamic, Tasks: 100})
	d := byKey(dc)
	if len(d["root"]) != 0 {
		t.Errorf("dynamic: root after %v", d["root"])
	}
	adders := 0
	for i, k := range dc.keys {
		switch {
		case strings.HasPrefix(k, "add-"):
			adders++
			if strings.Join(d[k], ",") != "root" {
				t.Errorf("dynamic: %s after %v", k, d[k])
			}
			if want := filepath.Join(dir, k+".yaml"); dc.argv[i][0] != "add" || dc.argv[i][1] != want {
				t.Errorf("dynamic: %s runs %q, want to add %s", k, dc.argv[i], want)
			}
		case strings.HasPrefix(k, "leaf-"):
			parent := "add-" + strings.Split(k, "-")[1]
			if strings.Join(d[k], ",") != parent {
				t.Errorf("dynamic: %s after %v, want %s", k, d[k], parent)
			}
		}
	}
	if adders != MaxAdders {
		t.Errorf("dynamic: %d adders, want %d", adders, MaxAdders)
	}
}

func TestBuildRejectsBadShapes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    Shape
		want string
	}{
		{Shape{Scenario: "tall", Tasks: 5}, `scenario "tall"`},
		{Shape{Scenario: Wide, Tasks: 0}, "tasks 0"},
		{Shape{Scenario: Fanout, Tasks: 2}, "at least 3"},
		{Shape{Scenario: Layered, Tasks: 3, Layers: 5}, "at least 5"},
		{Shape{Scenario: Layered, Tasks: 30, Layers: -1}, "layers -1"},
		{Shape{Scenario: Dynamic, Tasks: 30}, "adder command"},
		{Shape{Scenario: Dynamic, Tasks: 30, Adder: func(string) []string { return nil }, Dir: "/tmp/{x}"}, "without { or }"},
		{Shape{Scenario: Wide, Tasks: 3, MaxWorkers: -2}, "max workers -2"},
	} {
		if _, err := Build(tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%+v): error %v, want one mentioning %q", tc.s, err, tc.want)
		}
	}
}
