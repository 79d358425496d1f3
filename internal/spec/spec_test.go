package spec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/dag"
)

// errLines compiles src and returns its error, one string per problem.
func errLines(t *testing.T, src string, lim Limits) []string {
	t.Helper()
	_, _, err := Compile([]byte(src), "job.yaml", lim)
	if err == nil {
		t.Fatalf("Compile accepted:\n%s", src)
	}
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error %T is not Errors: %v", err, err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Error())
	}
	if strings.Join(out, "\n") != err.Error() {
		t.Errorf("Error() = %q, want the lines joined", err.Error())
	}
	return out
}

func compile(t *testing.T, src string) *Job {
	t.Helper()
	j, g, err := Compile([]byte(src), "job.yaml", Limits{})
	if err != nil {
		t.Fatalf("Compile:\n%v", err)
	}
	if g.N != len(j.Tasks) {
		t.Fatalf("graph has %d tasks, job %d", g.N, len(j.Tasks))
	}
	return j
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		lim  Limits
		want []string
	}{
		{
			name: "empty command",
			src: `name: j
tasks:
  - key: a
    command: [x]
  - key: "sim-{i}"
    foreach: {range: [0, 3]}
    command: []
`,
			want: []string{`job.yaml:7: task "sim-{i}" (tasks[1]) field command: must not be empty`},
		},
		{
			name: "missing and empty key, missing command",
			src: `name: j
tasks:
  - command: [x]
  - key: ""
    command: [x]
  - key: a
`,
			want: []string{
				`job.yaml:3: task (tasks[0]) field key: is required`,
				`job.yaml:4: task (tasks[1]) field key: must not be empty`,
				`job.yaml:6: task "a" (tasks[2]) field command: is required: a list of strings, the program and its arguments`,
			},
		},
		{
			name: "command as a string",
			src:  "name: j\ntasks:\n  - {key: a, command: echo hi}\n",
			want: []string{`job.yaml:3: task "a" (tasks[0]) field command: must be a list: [prog, arg, ...]; for a shell command line write [sh, -c, "echo hi"]`},
		},
		{
			name: "empty program",
			src:  "name: j\ntasks:\n  - {key: a, command: ['', x]}\n",
			want: []string{`job.yaml:3: task "a" (tasks[0]) field command[0]: must not be empty: it names the program to run`},
		},
		{
			name: "unknown dependency with suggestion",
			src: `name: j
tasks:
  - {key: split, command: [x]}
  - key: "sim-{i}"
    foreach: {range: [0, 2]}
    command: [x]
    after: [splt]
`,
			want: []string{
				`job.yaml:7: task "sim-0" (tasks[1] element 0) field after: unknown dependency "splt" (did you mean "split"?) (and 1 more elements)`,
			},
		},
		{
			name: "cycle",
			src: `name: j
tasks:
  - {key: a, command: [x], after: [c]}
  - {key: b, command: [x], after: [a]}
  - {key: c, command: [x], after: ["b*"]}
`,
			want: []string{`job.yaml:3: task "a" (tasks[0]) field after: dependency cycle: a -> c -> b* -> b -> a`},
		},
		{
			name: "self dependency and glob matching nothing",
			src: `name: j
tasks:
  - {key: a, command: [x], after: [a]}
  - {key: b, command: [x], after: ["q-*"]}
`,
			want: []string{
				`job.yaml:3: task "a" (tasks[0]) field after: task depends on itself`,
				`job.yaml:4: task "b" (tasks[1]) field after: glob "q-*" matches no task`,
			},
		},
		{
			name: "duplicate key names both positions",
			src: `name: j
tasks:
  - {key: sim-3, command: [x]}
  - key: "sim-{i}"
    foreach: {range: [0, 5]}
    command: [x]
`,
			want: []string{`job.yaml:4: task "sim-3" (tasks[1] element 3) field key: duplicate key: tasks[0] (line 3) has the same key`},
		},
		{
			name: "duplicate values",
			src:  "name: j\ntasks:\n  - key: \"f-{item}\"\n    foreach: {values: [a, b, a]}\n    command: [x]\n",
			want: []string{`job.yaml:3: task "f-a" (tasks[0] element 2) field key: duplicate key: tasks[0] element 0 (line 3) has the same key`},
		},
		{
			name: "bad quantities",
			src: `name: j
workers:
  - {name: small, cpu: 500x, memory: 1GB}
  - {name: big, cpu: -1, memory: "0"}
tasks: [{key: a, command: [x]}]
`,
			want: []string{
				`job.yaml:3: field workers[0].cpu: bad quantity "500x": unknown suffix "x" (use one of Ki Mi Gi Ti Pi Ei, k M G T P E, m, or an exponent like e9)`,
				`job.yaml:3: field workers[0].memory: bad quantity "1GB": unknown suffix "GB" (use one of Ki Mi Gi Ti Pi Ei, k M G T P E, m, or an exponent like e9)`,
				`job.yaml:4: field workers[1].cpu: bad quantity "-1": must not be negative`,
				`job.yaml:4: field workers[1].memory: bad quantity "0": must be more than zero`,
			},
		},
		{
			name: "bad durations",
			src: `name: j
timeout: 10 minutes
tasks:
  - {key: a, command: [x], timeout: -5s}
`,
			want: []string{
				`job.yaml:2: field timeout: bad duration "10 minutes": use a duration like 90s, 15m or 1h30m, or a whole number of seconds`,
				`job.yaml:4: task "a" (tasks[0]) field timeout: bad duration "-5s": must not be negative`,
			},
		},
		{
			name: "unknown worker tier",
			src: `name: j
workers: [{name: small}, {name: big, memory: 8Gi}]
tasks:
  - {key: a, command: [x], worker: huge}
`,
			want: []string{`job.yaml:4: task "a" (tasks[0]) field worker: unknown worker tier "huge" (the job's tiers: small, big)`},
		},
		{
			name: "negative retries",
			src:  "name: j\nretries: -1\ntasks:\n  - {key: a, command: [x], retries: -2}\n",
			want: []string{
				`job.yaml:2: field retries: must not be negative, got -1`,
				`job.yaml:4: task "a" (tasks[0]) field retries: must not be negative, got -2`,
			},
		},
		{
			name: "unknown fields",
			src: `name: j
tsks: []
workers: [{name: a, mem: 1Gi}]
tasks:
  - key: a
    comand: [x]
    command: [x]
    foreach: {rnage: [0, 1]}
    bogus_field: 1
`,
			want: []string{
				`job.yaml:2: field tsks: unknown field (did you mean "tasks"?)`,
				`job.yaml:3: field workers[0].mem: unknown field (known fields: name, cpu, memory, gpu, gpu_type, node_selector, tolerations)`,
				`job.yaml:6: task "a" (tasks[0]) field comand: unknown field (did you mean "command"?)`,
				`job.yaml:9: task "a" (tasks[0]) field bogus_field: unknown field (known fields: key, command, env, cwd, after, retries, timeout, worker, foreach)`,
				`job.yaml:8: task "a" (tasks[0]) field foreach.rnage: unknown field (did you mean "range"?)`,
				`job.yaml:8: task "a" (tasks[0]) field foreach: needs exactly one of range, values or lines`,
			},
		},
		{
			name: "field given twice",
			src:  "name: j\nname: k\ntasks: [{key: a, command: [x]}]\n",
			want: []string{`job.yaml:2: field "name" given twice (first on line 1)`},
		},
		{
			name: "too many tasks from a range, before expanding",
			src:  "name: j\ntasks:\n  - {key: \"s-{i}\", command: [x], foreach: {range: [0, 1000000000000000000]}}\n",
			want: []string{`job.yaml:3: task "s-{i}" (tasks[0]) field foreach.range: too large: 1000000000000000000 elements, more than the limit of 2000000 tasks`},
		},
		{
			name: "range bound over int64",
			src:  "name: j\ntasks:\n  - {key: \"s-{i}\", command: [x], foreach: {range: [0, 99999999999999999999]}}\n",
			want: []string{`job.yaml:3: task "s-{i}" (tasks[0]) field foreach.range: too large: "99999999999999999999" does not fit a 64-bit integer`},
		},
		{
			name: "too many tasks in total",
			lim:  Limits{MaxTasks: 10},
			src: `name: j
tasks:
  - {key: "a-{i}", command: [x], foreach: {range: [0, 6]}}
  - {key: "b-{i}", command: [x], foreach: {range: [0, 6]}}
`,
			want: []string{`job.yaml:2: field tasks: too large: the spec expands to 12 tasks, more than the limit of 10`},
		},
		{
			name: "spec too large",
			lim:  Limits{MaxSpecBytes: 10},
			src:  "name: j\ntasks: []\n",
			want: []string{`job.yaml: too large: the spec is 18 bytes, more than the limit of 10 (checked before decoding)`},
		},
		{
			name: "too many values, refused before decoding",
			lim:  Limits{MaxSpecValues: 5},
			// Not even valid YAML: the limit is checked first.
			src:  "name: j\ntasks: [[[[[\n",
			want: []string{`job.yaml: too large: the spec holds more than 5 YAML values (the limit, checked before decoding); use foreach: {range: …} rather than long lists`},
		},
		{
			name: "expanded job too large, stops at the first task past the limit",
			lim:  Limits{MaxJobBytes: 1000},
			src: `name: j
tasks:
  - key: "s-{i}"
    foreach: {range: [0, 1000000]}
    command: [echo, "{i}", "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"]
`,
			// Each of the first ten tasks takes 3 (key) + 5 (echo) + 2
			// ({i}) + 101 = 111 bytes: the tenth is past the limit.
			want: []string{`job.yaml:3: task "s-9" (tasks[0] element 9) too large: the 1000000 tasks expand to more than the limit of 1000 bytes (keys, argv, task env, cwd and after, summed over the tasks); the first 10 tasks alone take 1110`},
		},
		{
			name: "argv too large, counted once per entry",
			lim:  Limits{MaxArgBytes: 100},
			src: `name: j
env: {PAD: "0123456789012345678901234567890123456789"}
tasks:
  - key: "s-{i}"
    foreach: {range: [0, 3]}
    command: [echo, "{i}", "01234567890123456789012345678901234567890123456789"]
`,
			want: []string{`job.yaml:6: task "s-0" (tasks[0] element 0) field command: too large: argv and environment take 103 bytes, more than the limit of 100 (and 2 more elements)`},
		},
		{
			name: "key too long",
			lim:  Limits{MaxKeyLen: 8},
			src:  "name: j\ntasks:\n  - {key: \"long-{i}\", command: [x], foreach: {range: [99998, 100001]}}\n",
			want: []string{`job.yaml:3: task "long-99998" (tasks[0] element 0) field key: key "long-99998" is 10 bytes, more than the limit of 8 (and 2 more elements)`},
		},
		{
			name: "bad key characters",
			src:  "name: j\ntasks:\n  - {key: \"a b\", command: [x]}\n",
			want: []string{`job.yaml:3: task "a b" (tasks[0]) field key: key "a b" contains ' ': keys may not contain whitespace or any of * ? [ ] \ { }`},
		},
		{
			name: "bad key characters from an item",
			src:  "name: j\ntasks:\n  - {key: \"f-{item}\", command: [x], foreach: {values: [ok, \"x*\", \"y z\"]}}\n",
			want: []string{`job.yaml:3: task "f-x*" (tasks[0] element 1) field key: key "f-x*" contains '*': keys may not contain whitespace or any of * ? [ ] \ { } (and 1 more elements)`},
		},
		{
			name: "foreach key without placeholder",
			src: `name: j
tasks:
  - {key: a, command: [x], foreach: {range: [0, 2]}}
  - {key: b, command: [x], foreach: {values: [p, q]}}
`,
			want: []string{
				`job.yaml:3: task "a" (tasks[0]) field key: must contain {i} so that each foreach element gets its own key`,
				`job.yaml:4: task "b" (tasks[1]) field key: must contain {item} or {i} so that each foreach element gets its own key`,
			},
		},
		{
			name: "placeholder without foreach",
			src:  "name: j\ntasks:\n  - {key: \"sim-{i}\", command: [x]}\n",
			want: []string{`job.yaml:3: task "sim-{i}" (tasks[0]) field key: uses a placeholder but the task has no foreach`},
		},
		{
			name: "placeholders",
			src: `name: j
tasks:
  - key: "a-{i}"
    foreach: {range: [0, 2]}
    command: [x, "{item}", "${HOME}", "{oops"]
`,
			want: []string{
				`job.yaml:5: task "a-{i}" (tasks[0]) field command[1]: {item} needs foreach values (a range gives only {i})`,
				`job.yaml:5: task "a-{i}" (tasks[0]) field command[2]: unknown placeholder "{HOME}": use {i}, {item}, or {{ for a literal brace`,
				`job.yaml:5: task "a-{i}" (tasks[0]) field command[3]: unmatched '{': write {{ for a literal brace`,
			},
		},
		{
			name: "bad foreach",
			src: `name: j
tasks:
  - {key: "a-{i}", command: [x], foreach: {range: [0]}}
  - {key: "b-{i}", command: [x], foreach: {range: [5, 5]}}
  - {key: "c-{i}", command: [x], foreach: {range: [0, 5, 0]}}
  - {key: "d-{i}", command: [x], foreach: {range: [0, 1.5]}}
  - {key: "e-{i}", command: [x], foreach: {values: []}}
  - {key: "f-{i}", command: [x], foreach: {values: [a], range: [0, 1]}}
  - {key: "g-{i}", command: [x], foreach: {values: [[a]]}}
`,
			want: []string{
				`job.yaml:3: task "a-{i}" (tasks[0]) field foreach.range: must be [start, end] or [start, end, step], got 1 numbers`,
				`job.yaml:4: task "b-{i}" (tasks[1]) field foreach.range: range [5, 5) with step 1 is empty: the entry would have no tasks`,
				`job.yaml:5: task "c-{i}" (tasks[2]) field foreach.range: step must not be 0`,
				`job.yaml:6: task "d-{i}" (tasks[3]) field foreach.range: "1.5": must be a whole number`,
				`job.yaml:7: task "e-{i}" (tasks[4]) field foreach.values: must not be empty: the entry would have no tasks`,
				`job.yaml:8: task "f-{i}" (tasks[5]) field foreach: needs exactly one of range, values or lines`,
				`job.yaml:9: task "g-{i}" (tasks[6]) field foreach.values[0]: must be a string or a number, got a list`,
			},
		},
		{
			name: "unresolved lines",
			src:  "name: j\ntasks:\n  - {key: \"a-{item}\", command: [x], foreach: {lines: scenes.txt}}\n",
			want: []string{`job.yaml:3: task "a-{item}" (tasks[0]) field foreach.lines: must be resolved by the client before the spec is sent: the haul CLI replaces it with values read from the file; API clients send values`},
		},
		{
			name: "job fields",
			src: `namespace: Perception_Team
labels: {"-x": a, ok: {b: c}}
env: {"1X": a, HAUL_JOB: b}
max_workers: lots
priority: 1001
tasks: []
`,
			want: []string{
				`job.yaml:1: field name: is required`,
				`job.yaml:1: field namespace: "Perception_Team" is not a valid namespace: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
				`job.yaml:2: field labels.-x: bad label name "-x": use at most 63 letters, digits, '-', '_', '.' and '/', starting and ending with a letter or digit`,
				`job.yaml:2: field labels.ok: must be a string, got a mapping`,
				`job.yaml:3: field env.1X: bad variable name "1X": use letters, digits and '_', not starting with a digit`,
				`job.yaml:3: field env.HAUL_JOB: names starting with HAUL_ are reserved for haul`,
				`job.yaml:4: field max_workers: "lots": must be a whole number`,
				`job.yaml:5: field priority: must be between -1000 and 1000, got 1001`,
				`job.yaml:6: field tasks: must not be empty: a job needs at least one task`,
			},
		},
		{
			name: "tiers",
			src: `name: j
workers: [{name: a}, {name: a}, {cpu: 2}, {name: BIG}]
tasks: [{key: t, command: [x]}]
`,
			want: []string{
				`job.yaml:2: field workers[1].name: tier "a" is already workers[0]`,
				`job.yaml:2: field workers[2].name: is required`,
				`job.yaml:2: field workers[3].name: "BIG" is not a valid tier name: use at most 63 lowercase letters, digits and '-'`,
				`job.yaml:2: field workers[3].name: is required`,
			},
		},
		{
			name: "not a mapping",
			src:  "- a\n- b\n",
			want: []string{`job.yaml:1: must be a mapping, got a list`},
		},
		{
			name: "syntax error",
			src:  "name: j\ntasks: [\n",
			want: []string{`job.yaml:2: did not find expected node content`},
		},
		{
			name: "empty",
			src:  "# nothing\n",
			want: []string{`job.yaml: the spec is empty`},
		},
		{
			name: "two documents",
			src:  "name: j\n---\nname: k\n",
			want: []string{"job.yaml: the spec must be a single YAML document (found a second `---`)"},
		},
		{
			name: "alias bomb",
			lim:  Limits{MaxSpecBytes: 4096},
			src: `x-a: &a {k0: x, k1: x, k2: x, k3: x, k4: x, k5: x, k6: x, k7: x, k8: x, k9: x}
x-b: &b {<<: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]}
x-c: &c {<<: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]}
x-d: &d {<<: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]}
x-e: &e {<<: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}
name: j
env: {<<: *e}
tasks: [{key: t, command: [x]}]
`,
			want: []string{`job.yaml: the spec is too complex: its anchors and aliases expand to too many nodes`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := errLines(t, tt.src, tt.lim)
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestCompileErrorsWrap(t *testing.T) {
	t.Parallel()
	_, _, err := Compile([]byte("name: j\ntasks:\n  - {key: a, command: [x], after: [b]}\n"), "j.yaml", Limits{})
	var de dag.Errors
	if !errors.As(err, &de) || len(de) != 1 || de[0].Task != "a" {
		t.Fatalf("errors.As(dag.Errors) = %v from %v", de, err)
	}
	var se Errors
	if !errors.As(err, &se) || se[0].Entry != 0 || se[0].Field != "after" || se[0].Line != 3 {
		t.Fatalf("spec error = %+v", se)
	}
	_, _, err = Compile([]byte("name: j\ntasks:\n  - {key: \"a{i}\", command: [x], foreach: {range: [0, 100]}}\n"), "j.yaml", Limits{MaxTasks: 10})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("errors.Is(ErrTooLarge) false for %v", err)
	}
}

// TestCompileManyErrors checks that a million bad elements make a bounded
// report.
func TestCompileManyErrors(t *testing.T) {
	t.Parallel()
	src := "name: j\ntasks:\n  - {key: \"s-{i}\", command: [x], after: [\"missing-{i}\"], foreach: {range: [0, 5000]}}\n"
	got := errLines(t, src, Limits{})
	if len(got) != maxErrors+1 {
		t.Fatalf("%d error lines, want %d", len(got), maxErrors+1)
	}
	if want := "job.yaml: and 4900 more problems not shown"; got[maxErrors] != want {
		t.Errorf("last line %q, want %q", got[maxErrors], want)
	}
}

func TestCompileDefaults(t *testing.T) {
	t.Parallel()
	j := compile(t, "name: j\ntasks: [{key: a, command: [x]}]\n")
	want := &Job{
		Name: "j", Namespace: "default", Workers: []Tier{{Name: "default", CPU: 1, MemoryBytes: 1 << 30}},
		Tasks:   []Task{{Key: "a", Command: []string{"x"}}},
		Entries: []Entry{{Key: "a", Start: 0, Count: 1}},
	}
	if !reflect.DeepEqual(j, want) {
		t.Errorf("job = %+v\nwant %+v", j, want)
	}
	// Optional fields left empty read as absent.
	j = compile(t, "name: j\nenv:\nlabels:\nworkers:\nretries:\ntasks:\n  - key: a\n    command: [x]\n    env:\n    after:\n    timeout:\n")
	if !reflect.DeepEqual(j, want) {
		t.Errorf("job with empty fields = %+v\nwant %+v", j, want)
	}
}

func TestCompileFull(t *testing.T) {
	t.Parallel()
	j := compile(t, `name: resim
namespace: perception
labels: {team: perception, app.kubernetes.io/part-of: haul}
env: {MODE: fast, LEVEL: "3"}
workers:
  - {name: small, cpu: 500m, memory: 512Mi}
  - {name: big, cpu: 4, memory: 1e9, gpu: 1, gpu_type: a100}
retries: 2
timeout: 90
max_workers: 50
priority: -5
tasks:
  - key: prep
    command: [prep, --all]
    cwd: /data
    worker: big
    retries: 0
    timeout: 1h30m
  - key: run
    command: [run]
    env: {MODE: slow}
    after: [prep]
`)
	want := &Job{
		Name: "resim", Namespace: "perception",
		Labels:  map[string]string{"team": "perception", "app.kubernetes.io/part-of": "haul"},
		Env:     map[string]string{"MODE": "fast", "LEVEL": "3"},
		Workers: []Tier{{Name: "small", CPU: 0.5, MemoryBytes: 512 << 20}, {Name: "big", CPU: 4, MemoryBytes: 1e9, GPU: 1, GPUType: "a100"}},
		Retries: 2, TimeoutMS: 90_000, MaxWorkers: 50, Priority: -5,
		Tasks: []Task{
			{Key: "prep", Command: []string{"prep", "--all"}, Cwd: "/data", Tier: 1, Retries: 0, TimeoutMS: 5_400_000},
			{Key: "run", Command: []string{"run"}, Env: map[string]string{"MODE": "slow"}, After: []string{"prep"}, Retries: 2, TimeoutMS: 90_000},
		},
		Entries: []Entry{{Key: "prep", Start: 0, Count: 1}, {Key: "run", Start: 1, Count: 1}},
	}
	if !reflect.DeepEqual(j, want) {
		t.Errorf("job = %+v\nwant %+v", j, want)
	}
}

func TestCompileJSON(t *testing.T) {
	t.Parallel()
	src := "{\n\t\"name\": \"j\",\n\t\"tasks\": [{\"key\": \"a\", \"command\": [\"echo\", \"a\\/b\"]}]\n}\n"
	j := compile(t, src)
	if got := j.Tasks[0].Command; !slices.Equal(got, []string{"echo", "a/b"}) {
		t.Errorf("command = %q", got)
	}
	lines := errLines(t, "{\"name\": \"j\", \"tasks\": [{\"key\": \"a\", \"comand\": [\"x\"]}]}", Limits{})
	if want := `job.yaml:1: task "a" (tasks[0]) field comand: unknown field (did you mean "command"?)`; !slices.Contains(lines, want) {
		t.Errorf("errors %q lack %q", lines, want)
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	type want struct {
		key     string
		command []string
		env     map[string]string
		cwd     string
		after   []string
	}
	tests := []struct {
		name  string
		entry string
		want  []want
	}{
		{
			name: "range substitutes i everywhere",
			entry: `key: "sim-{i}"
    foreach: {range: [0, 3]}
    command: [run, "--scene={i}"]
    env: {SCENE: "{i}", FIXED: x}
    cwd: "/work/{i}"
    after: ["prep-{i}", base]`,
			want: []want{
				{"sim-0", []string{"run", "--scene=0"}, map[string]string{"SCENE": "0", "FIXED": "x"}, "/work/0", []string{"prep-0", "base"}},
				{"sim-1", []string{"run", "--scene=1"}, map[string]string{"SCENE": "1", "FIXED": "x"}, "/work/1", []string{"prep-1", "base"}},
				{"sim-2", []string{"run", "--scene=2"}, map[string]string{"SCENE": "2", "FIXED": "x"}, "/work/2", []string{"prep-2", "base"}},
			},
		},
		{
			name:  "range with a step",
			entry: "key: \"s{i}\"\n    foreach: {range: [10, 17, 3]}\n    command: [x]",
			want: []want{
				{"s10", []string{"x"}, nil, "", nil},
				{"s13", []string{"x"}, nil, "", nil},
				{"s16", []string{"x"}, nil, "", nil},
			},
		},
		{
			name:  "range counting down",
			entry: "key: \"s{i}\"\n    foreach: {range: [1, -2, -1]}\n    command: [x]",
			want: []want{
				{"s1", []string{"x"}, nil, "", nil},
				{"s0", []string{"x"}, nil, "", nil},
				{"s-1", []string{"x"}, nil, "", nil},
			},
		},
		{
			name:  "values give item and index",
			entry: "key: \"f-{item}\"\n    foreach: {values: [a.txt, 7, b.txt]}\n    command: [cat, \"{item}\", \"#{i}\"]",
			want: []want{
				{"f-a.txt", []string{"cat", "a.txt", "#0"}, nil, "", nil},
				{"f-7", []string{"cat", "7", "#1"}, nil, "", nil},
				{"f-b.txt", []string{"cat", "b.txt", "#2"}, nil, "", nil},
			},
		},
		{
			name:  "braces escape",
			entry: "key: \"k{i}\"\n    foreach: {range: [0, 1]}\n    command: [sh, -c, \"echo ${{HOME} {{i} }}\", \"{{{i}}\"]",
			want: []want{
				{"k0", []string{"sh", "-c", "echo ${HOME} {i} }}", "{0}"}, nil, "", nil},
			},
		},
		{
			name:  "no substitution outside foreach",
			entry: "key: plain\n    command: [sh, -c, \"echo ${HOME} {i} {{\"]",
			want: []want{
				{"plain", []string{"sh", "-c", "echo ${HOME} {i} {{"}, nil, "", nil},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := "name: j\ntasks:\n  - " + tt.entry + "\n"
			deps := map[string]bool{}
			for _, w := range tt.want {
				for _, a := range w.after {
					deps[a] = true
				}
			}
			for d := range deps {
				src += "  - {key: " + d + ", command: [x]}\n"
			}
			j := compile(t, src)
			for i, w := range tt.want {
				got := j.Tasks[i]
				if got.Key != w.key || !slices.Equal(got.Command, w.command) || !reflect.DeepEqual(got.Env, w.env) ||
					got.Cwd != w.cwd || !slices.Equal(got.After, w.after) {
					t.Errorf("task %d = %+v\nwant %+v", i, got, w)
				}
			}
		})
	}
}

func TestExpandLarge(t *testing.T) {
	t.Parallel()
	const n = 200_000
	j, g, err := Compile([]byte(`name: big
tasks:
  - {key: split, command: [split]}
  - key: "sim-{i}"
    foreach: {range: [0, 200000]}
    command: [run-sim, --scene, "{i}"]
    after: [split]
  - {key: report, command: [report], after: ["sim-*"]}
`), "big.yaml", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Tasks) != n+2 || len(g.Groups) != 1 || g.NParents[g.N] != n {
		t.Fatalf("%d tasks, groups %q", len(j.Tasks), g.Groups)
	}
	if k := j.Tasks[n].Key; k != "sim-199999" {
		t.Errorf("last sim key %q", k)
	}
	// Constant parts are shared, not copied per element.
	if &j.Tasks[1].After[0] != &j.Tasks[2].After[0] {
		t.Errorf("after lists of one entry are not shared")
	}
}

func TestExamples(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		resolved, err := ResolveFiles(data, f, filepath.Dir(f))
		if err != nil {
			t.Errorf("%s: ResolveFiles: %v", f, err)
			continue
		}
		j, _, err := Compile(resolved, f, Limits{})
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		j2, _, err := Compile(data, f, Limits{})
		if err == nil && !reflect.DeepEqual(j, j2) {
			t.Errorf("%s: the resolved spec compiles differently", f)
		}
	}
}

func TestExampleShapes(t *testing.T) {
	t.Parallel()
	read := func(name string) *Job {
		data, err := os.ReadFile("../../examples/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return compile(t, string(data))
	}
	h := read("hello-dag.yaml")
	if len(h.Tasks) != 102 || h.Tasks[0].Key != "split" || h.Tasks[100].Key != "sim-99" || h.Tasks[101].Key != "report" {
		t.Errorf("hello-dag has %d tasks", len(h.Tasks))
	}
	f := read("fail.yaml")
	if len(f.Tasks) != 11 || f.Retries != 1 || !slices.Equal(f.Tasks[10].After, []string{"work-*"}) {
		t.Errorf("fail has %d tasks, retries %d", len(f.Tasks), f.Retries)
	}
}

func BenchmarkCompile1M(b *testing.B) {
	src := []byte(`name: big
tasks:
  - {key: split, command: [split]}
  - key: "sim-{i}"
    foreach: {range: [0, 1000000]}
    command: [run-sim, --scene, "{i}"]
    env: {SCENE: "{i}"}
    after: [split]
  - {key: report, command: [report], after: ["sim-*"]}
`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Compile(src, "big.yaml", Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDocExamples compiles every complete spec (a YAML block with a `name:`
// line) in docs/job-spec.md.
func TestDocExamples(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/job-spec.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, block := range strings.Split(string(doc), "```yaml\n")[1:] {
		src, _, _ := strings.Cut(block, "```")
		if !strings.HasPrefix(src, "name:") && !strings.Contains(src, "\nname:") {
			continue
		}
		n++
		if _, _, err := Compile([]byte(src), "doc.yaml", Limits{}); err != nil {
			t.Errorf("doc example %d:\n%s\n%v", n, src, err)
		}
	}
	if n < 2 {
		t.Errorf("found %d complete examples in the doc", n)
	}
}

// Entries name each spec entry as written and the range of tasks it
// expanded to, in order: the groups of the job's graph.
func TestCompileEntries(t *testing.T) {
	j := compile(t, `
name: j
tasks:
  - key: prep
    command: [x]
  - key: "sim-{i}"
    foreach: {range: [0, 3]}
    command: [x, "{i}"]
    after: [prep]
  - key: merge
    command: [x]
    after: ["sim-*"]
`)
	want := []Entry{{Key: "prep", Start: 0, Count: 1}, {Key: "sim-{i}", Start: 1, Count: 3}, {Key: "merge", Start: 4, Count: 1}}
	if !reflect.DeepEqual(j.Entries, want) {
		t.Fatalf("entries = %+v, want %+v", j.Entries, want)
	}
	if got := len(j.Tasks); got != 5 {
		t.Fatalf("%d tasks, want 5", got)
	}
}
