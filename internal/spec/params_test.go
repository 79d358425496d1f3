package spec

import (
	"reflect"
	"strings"
	"testing"
)

const paramSpec = `name: sweep-{params.run}
params:
  run: r1
  n: "3"
  model:
labels:
  model: "{params.model}"
env:
  RUN: "{params.run}"
notify: {webhook: "https://hooks.example/{params.run}"}
tasks:
  - key: prep-{params.run}
    command: [echo, "{params.model}"]
    cwd: /data/{params.run}
  - key: sim-{params.run}-{i}
    foreach: {range: [0, 2]}
    command: [sh, -c, "echo {i} of {params.n} ${{HOME}"]
    env: {M: "{params.model}"}
    after: ["prep-{params.run}"]
`

func TestParams(t *testing.T) {
	t.Parallel()
	j, _, err := CompileWith([]byte(paramSpec), "job.yaml", Limits{}, map[string]string{"model": "m{x}", "run": "r2"})
	if err != nil {
		t.Fatalf("CompileWith: %v", err)
	}
	if want := map[string]string{"run": "r2", "n": "3", "model": "m{x}"}; !reflect.DeepEqual(j.Params, want) {
		t.Errorf("Params = %v, want %v", j.Params, want)
	}
	if j.Name != "sweep-r2" || j.Labels["model"] != "m{x}" || j.Env["RUN"] != "r2" {
		t.Errorf("name %q labels %v env %v", j.Name, j.Labels, j.Env)
	}
	if j.Notify == nil || j.Notify.Webhook != "https://hooks.example/r2" || !reflect.DeepEqual(j.Notify.On, []string{"failed"}) {
		t.Errorf("Notify = %+v", j.Notify)
	}
	prep := j.Tasks[0]
	if prep.Key != "prep-r2" || prep.Command[1] != "m{x}" || prep.Cwd != "/data/r2" {
		t.Errorf("prep = %+v", prep)
	}
	sim := j.Tasks[2]
	if sim.Key != "sim-r2-1" || sim.Command[2] != "echo 1 of 3 ${HOME}" || sim.Env["M"] != "m{x}" || sim.After[0] != "prep-r2" {
		t.Errorf("sim = %+v", sim)
	}
	// Without values, the required parameter is missing.
	if _, _, err := Compile([]byte(paramSpec), "job.yaml", Limits{}); err == nil ||
		!strings.Contains(err.Error(), "job.yaml:5: field params.model: parameter model is required (it has no default): give it a value with --set model=VALUE") {
		t.Errorf("missing required: %v", err)
	}
}

func TestParamErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		set  map[string]string
		want []string
	}{
		{
			name: "unknown --set name, close",
			src:  "name: j\nparams: {count: \"1\"}\ntasks:\n  - key: a\n    command: [echo]\n",
			set:  map[string]string{"cout": "2"},
			want: []string{`job.yaml:2: field params: unknown parameter "cout" given with --set (did you mean "count"?)`},
		},
		{
			name: "unknown --set name, no params",
			src:  "name: j\ntasks:\n  - key: a\n    command: [echo]\n",
			set:  map[string]string{"x": "2"},
			want: []string{`job.yaml: field params: unknown parameter "x" given with --set: the spec declares no params`},
		},
		{
			name: "unknown reference",
			src:  "name: j\nparams: {count: \"1\"}\ntasks:\n  - key: a\n    command: [echo, \"{params.cont}\"]\n",
			want: []string{`job.yaml:5: task "a" (tasks[0]) field command[1]: unknown parameter reference "{params.cont}" (did you mean "{params.count}"?)`},
		},
		{
			name: "unknown reference in a foreach key",
			src:  "name: j\ntasks:\n  - key: a-{params.x}-{i}\n    foreach: {range: [0, 3]}\n    command: [echo]\n",
			want: []string{`job.yaml:3: task "a-{params.x}-{i}" (tasks[0]) field key: unknown parameter reference "{params.x}": the spec declares no params`},
		},
		{
			name: "bad name and null default",
			src:  "name: j\nparams:\n  9x: a\n  ok: null\ntasks:\n  - key: a\n    command: [echo]\n",
			want: []string{
				`job.yaml:3: field params.9x: bad parameter name "9x": use letters, digits and '_', not starting with a digit (at most 64 bytes)`,
				`job.yaml:4: field params.ok: parameter ok is required (it has no default): give it a value with --set ok=VALUE`,
			},
		},
		{
			name: "bad notify",
			src:  "name: j\nnotify: {webhook: \"ftp://x\", on: [failed, done]}\ntasks:\n  - key: a\n    command: [echo]\n",
			want: []string{
				`job.yaml:2: field notify.webhook: "ftp://x" is not an http(s) URL`,
				`job.yaml:2: field notify.on[1]: unknown event "done": use failed, succeeded, cancelled`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := CompileWith([]byte(tt.src), "job.yaml", Limits{}, tt.set)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// A dependency typo in every element of a foreach is one line.
func TestDependencyErrorsGrouped(t *testing.T) {
	t.Parallel()
	src := "name: j\ntasks:\n  - key: prep\n    command: [echo]\n  - key: sim-{i}\n    foreach: {range: [0, 100]}\n    command: [echo]\n    after: [prepp]\n  - key: x-{i}\n    foreach: {range: [0, 3]}\n    command: [echo]\n    after: [\"y-{i}\"]\n"
	got := errLines(t, src, Limits{})
	want := []string{
		`job.yaml:8: task "sim-0" (tasks[1] element 0) field after: unknown dependency "prepp" (did you mean "prep"?) (and 99 more elements)`,
		`job.yaml:12: task "x-0" (tasks[2] element 0) field after: unknown dependency "y-0" (did you mean "x-0"?)`,
		`job.yaml:12: task "x-1" (tasks[2] element 1) field after: unknown dependency "y-1" (did you mean "x-1"?)`,
		`job.yaml:12: task "x-2" (tasks[2] element 2) field after: unknown dependency "y-2" (did you mean "x-2"?)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
