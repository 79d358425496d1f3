package spec

import (
	"slices"
	"strings"
	"testing"
)

func TestCompileFragment(t *testing.T) {
	t.Parallel()
	base := Base{Workers: []Tier{{Name: "small"}, {Name: "big"}}, Retries: 2, TimeoutMS: 60_000}
	tasks, err := CompileFragment([]byte(`
tasks:
  - key: "part-{item}"
    foreach: {values: [a, b]}
    command: [process, "{item}"]
    after: [discover]
  - key: merge
    command: [merge]
    worker: big
    retries: 0
    after: ["part-*"]
`), "more.yaml", base)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, tk := range tasks {
		keys = append(keys, tk.Key)
	}
	if !slices.Equal(keys, []string{"part-a", "part-b", "merge"}) {
		t.Fatalf("keys %v", keys)
	}
	if tasks[0].Retries != 2 || tasks[0].TimeoutMS != 60_000 || tasks[0].Tier != 0 || !slices.Equal(tasks[0].After, []string{"discover"}) {
		t.Errorf("part-a %+v: want the job's defaults and its after list", tasks[0])
	}
	if tasks[2].Tier != 1 || tasks[2].Retries != 0 {
		t.Errorf("merge %+v: want tier 1, retries 0", tasks[2])
	}
}

func TestCompileFragmentErrors(t *testing.T) {
	t.Parallel()
	base := Base{Workers: []Tier{{Name: "small"}}}
	for _, tc := range []struct{ src, want string }{
		{"name: x\ntasks: [{key: a, command: [true]}]\n", "more.yaml:1: field name: cannot be changed by adding tasks"},
		{"taks: []\n", `did you mean "tasks"?`},
		{"tasks: []\n", "must not be empty"},
		{"x-a: 1\n", "tasks: is required"},
		{"tasks: [{key: a, command: [true], worker: huge}]\n", `unknown worker tier "huge"`},
		{"tasks: [{key: a}]\n", "command"},
		{"tasks: [{key: a, command: [true]}, {key: a, command: [true]}]\n", ""},
	} {
		_, err := CompileFragment([]byte(tc.src), "more.yaml", base)
		if tc.want == "" {
			continue // duplicates are the caller's to find, with the job's keys
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.src, err, tc.want)
		}
	}
}
