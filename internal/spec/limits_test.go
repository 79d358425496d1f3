package spec

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// nodes counts the nodes yaml.v3 builds for a text.
func nodes(t *testing.T, src string) int {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("%q: %v", src, err)
	}
	var count func(n *yaml.Node) int
	count = func(n *yaml.Node) int {
		c := 1
		for _, k := range n.Content {
			c += count(k)
		}
		return c
	}
	return count(&doc) - 1 // the document node itself costs nothing per value
}

// TestCountValues checks the estimate against the nodes the decoder really
// builds: never under half of them, for every shape of YAML and JSON.
func TestCountValues(t *testing.T) {
	t.Parallel()
	srcs := []string{
		"a",
		"name: j\ntasks: []\n",
		"[1,2,3,4,5,6,7,8,9]",
		"[1, 2, 3]",
		"{a, b, c, d, e, f}", // keys without values: the worst case
		"{a: 1, b: 2}",
		"- a\n- b\n- c\n",
		"a:\n  b:\n    c: [x, y]\n    d: {e: f}\n",
		`{"name":"j","tasks":[{"key":"a","command":["x","y"]}]}`,
		"a: |\n  line\n  line\n",
		"a: &x [1, 2]\nb: *x\nc: *x\n",
		"x: --input\ny: -1\nz: a-b\n",
	}
	for _, src := range srcs {
		got, want := CountValues([]byte(src), 0), nodes(t, src)
		if 2*got < want {
			t.Errorf("CountValues(%q) = %d, but the decoder builds %d nodes: the estimate must be at least half", src, got, want)
		}
	}
	if got := CountValues([]byte(strings.Repeat("1,", 1000)), 10); got != 11 {
		t.Errorf("CountValues with stop 10 = %d, want 11 (it stops counting past stop)", got)
	}
}

func TestSpecValuesLimit(t *testing.T) {
	t.Parallel()
	list := "[" + strings.Repeat("a,", 999) + "a]"
	src := "name: j\ntasks:\n  - key: \"v-{i}\"\n    command: [echo, \"{item}\"]\n    foreach: {values: " + list + "}\n"
	if _, _, err := Compile([]byte(src), "job.yaml", Limits{MaxSpecValues: 2000}); err != nil {
		t.Fatalf("1,000 values under a limit of 2,000: %v", err)
	}
	_, _, err := Compile([]byte(src), "job.yaml", Limits{MaxSpecValues: 900})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "more than 900 YAML values") {
		t.Fatalf("1,000 values over a limit of 900: want ErrTooLarge naming the limit, got %v", err)
	}
	frag := "tasks:\n  - key: \"w-{i}\"\n    command: [echo, \"{item}\"]\n    foreach: {values: " + list + "}\n"
	_, err = CompileFragment([]byte(frag), "tasks.yaml", Base{Limits: Limits{MaxSpecValues: 900}})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "the fragment holds more than 900 YAML values") {
		t.Fatalf("fragment over the values limit: want ErrTooLarge naming it, got %v", err)
	}
}

// TestJobBytesCounted checks what MaxJobBytes counts: key, argv, the task's
// own environment, cwd and dependencies, not the job's environment (stored
// once with the job).
func TestJobBytesCounted(t *testing.T) {
	t.Parallel()
	// One task: key "a" 1, argv "x\0" 2, env "K=vv\0" 1+2+2 = 5, cwd "/d"
	// 2, after "b\0" 2: 12; task "b": 1 + 2 = 3. Total 15.
	src := `name: j
env: {BIG: "0123456789012345678901234567890123456789"}
tasks:
  - {key: b, command: [x]}
  - {key: a, command: [x], env: {K: vv}, cwd: /d, after: [b]}
`
	if _, _, err := Compile([]byte(src), "job.yaml", Limits{MaxJobBytes: 15}); err != nil {
		t.Fatalf("15 bytes under a limit of 15: %v", err)
	}
	_, _, err := Compile([]byte(src), "job.yaml", Limits{MaxJobBytes: 14})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "the first 2 tasks alone take 15") {
		t.Fatalf("15 bytes over a limit of 14: want ErrTooLarge with the count, got %v", err)
	}
	// Element-dependent env and after are counted per element.
	src = `name: j
tasks:
  - {key: "p-{i}", command: [x], foreach: {range: [0, 10]}}
  - {key: "q-{i}", command: [x], env: {I: "{i}"}, after: ["p-{i}"], foreach: {range: [0, 10]}}
`
	// p-i: 3 + 2 = 5 each, 50; q-i: 3 + 2 + (1+1+2) + (3+1) = 13 each, 130.
	if _, _, err := Compile([]byte(src), "job.yaml", Limits{MaxJobBytes: 180}); err != nil {
		t.Fatalf("180 bytes under a limit of 180: %v", err)
	}
	if _, _, err := Compile([]byte(src), "job.yaml", Limits{MaxJobBytes: 179}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("180 bytes over a limit of 179: want ErrTooLarge, got %v", err)
	}
	frag := "tasks:\n  - {key: \"w-{i}\", command: [x], foreach: {range: [0, 1000]}}\n"
	_, err = CompileFragment([]byte(frag), "tasks.yaml", Base{Limits: Limits{MaxJobBytes: 100}})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "more than the limit of 100 bytes") {
		t.Fatalf("fragment over the job-bytes limit: want ErrTooLarge naming it, got %v", err)
	}
}

// TestDefaultLimitsAdmit checks that the defaults admit what they must: a
// million-task foreach and a literal spec of a few MB.
func TestDefaultLimitsAdmit(t *testing.T) {
	t.Parallel()
	src := "name: j\ntasks:\n  - {key: \"t-{i}\", command: [/bin/true], foreach: {range: [0, 1000000]}}\n"
	if _, _, err := Compile([]byte(src), "job.yaml", DefaultLimits()); err != nil {
		t.Fatalf("1M-task foreach: %v", err)
	}
	lit := literalSpec(3 << 20)
	j, _, err := Compile(lit, "job.yaml", DefaultLimits())
	if err != nil {
		t.Fatalf("a literal spec of %d bytes: %v", len(lit), err)
	}
	t.Logf("a literal spec of %d bytes (%d tasks, %d values) compiles under the default limits", len(lit), len(j.Tasks), CountValues(lit, 0))
}

func literalSpec(size int) []byte {
	var b strings.Builder
	b.WriteString("name: m\ntasks:\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "  - key: task-%d\n    command: [python, run.py, --input, /data/in/%d.csv, --out, /data/out/%d]\n", i, i, i)
	}
	return []byte(b.String())
}

// BenchmarkCompileMemory reports the bytes Compile allocates per byte of
// spec and per YAML value, for the shapes that bound MaxSpecBytes and
// MaxSpecValues: a literal spec, a flow list of tiny values (the worst
// case per byte) and a JSON list of strings (what `lines: FILE` becomes).
func BenchmarkCompileMemory(b *testing.B) {
	flow := func(n int) []byte {
		var s strings.Builder
		s.WriteString("name: m\nx-list: [")
		s.WriteString(strings.Repeat("1,", n))
		s.WriteString("1]\ntasks: [{key: a, command: [x]}]\n")
		return []byte(s.String())
	}
	json := func(n int) []byte {
		var s strings.Builder
		s.WriteString(`{"name":"m","tasks":[{"key":"v-{i}","command":["echo","{item}"],"foreach":{"values":[`)
		for i := range n {
			fmt.Fprintf(&s, "\"s3://bucket/path/%d\",", i)
		}
		s.WriteString(`"x"]}}]}`)
		return []byte(s.String())
	}
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"literal-4MB", literalSpec(4 << 20)},
		{"flow-900k", flow(900_000)},
		{"json-900k", json(900_000)},
	} {
		b.Run(c.name, func(b *testing.B) {
			var ms runtime.MemStats
			var alloc uint64
			for range b.N {
				runtime.ReadMemStats(&ms)
				before := ms.TotalAlloc
				if _, _, err := Compile(c.data, "bench.yaml", DefaultLimits()); err != nil {
					b.Fatal(err)
				}
				runtime.ReadMemStats(&ms)
				alloc += ms.TotalAlloc - before
			}
			per := float64(alloc) / float64(b.N)
			b.ReportMetric(per/float64(len(c.data)), "alloc-B/spec-B")
			b.ReportMetric(per/float64(CountValues(c.data, 0)), "alloc-B/value")
			b.ReportMetric(float64(len(c.data)), "spec-B")
		})
	}
}
