package gateway

import (
	"reflect"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/spec"
	"github.com/haul-dev/haul/internal/store"
)

// Groups collapses a compiled job's task graph to its spec entries: direct
// and glob dependencies become edges between groups, dependencies inside a
// group none.
func TestGroups(t *testing.T) {
	js, g, err := spec.Compile([]byte(`
name: j
tasks:
  - key: prep
    command: [x]
  - key: "sim-{i}"
    foreach: {range: [0, 1000]}
    command: [x]
    after: [prep]
  - key: "check-{i}"
    foreach: {range: [0, 3]}
    command: [x]
    after: ["sim-{i}"]
  - key: merge
    command: [x]
    after: ["check-*", prep]
  - key: alone
    command: [x]
`), "j.yaml", spec.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := Groups(js, g)
	want := []store.TaskGroup{
		{Name: "prep", First: 0, Count: 1},
		{Name: "sim-{i}", First: 1, Count: 1000, Parents: []int32{0}},
		{Name: "check-{i}", First: 1001, Count: 3, Parents: []int32{1}},
		{Name: "merge", First: 1004, Count: 1, Parents: []int32{0, 2}},
		{Name: "alone", First: 1005, Count: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("groups =\n%+v\nwant\n%+v", got, want)
	}
}

// The critical path follows, from the group that ended last, the parent
// that ended last; groups that never ended are not on it.
func TestCriticalPath(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(int64(1000+s), 0) }
	groups := []store.TaskGroup{
		{Name: "a"},                      // 0
		{Name: "b", Parents: []int32{0}}, // 1
		{Name: "c", Parents: []int32{0}}, // 2
		{Name: "d", Parents: []int32{1, 2}},
		{Name: "e"},                      // 4: never ended
		{Name: "f", Parents: []int32{4}}, // 5
	}
	ends := []time.Time{at(1), at(5), at(9), at(10), {}, at(3)}
	if got, want := CriticalPath(groups, ends), []int32{0, 2, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("path = %v, want %v", got, want)
	}
	// Ties go to the lower index.
	ends[1] = at(9)
	if got, want := CriticalPath(groups, ends), []int32{0, 1, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("path with a tie = %v, want %v", got, want)
	}
	// The last group to end need not be a sink of the graph.
	ends = []time.Time{at(1), {}, {}, {}, {}, at(20)}
	if got, want := CriticalPath(groups, ends), []int32{5}; !reflect.DeepEqual(got, want) {
		t.Errorf("path = %v, want %v", got, want)
	}
	if got := CriticalPath(groups, make([]time.Time, len(groups))); got != nil {
		t.Errorf("path of a job where nothing ended = %v, want none", got)
	}
	// A (corrupt) cycle or an out-of-range parent ends the walk.
	bad := []store.TaskGroup{{Name: "x", Parents: []int32{1, 7}}, {Name: "y", Parents: []int32{0}}}
	if got := CriticalPath(bad, []time.Time{at(1), at(2)}); len(got) != 2 {
		t.Errorf("path over a cycle = %v, want 2 groups", got)
	}
}

func TestKeyStem(t *testing.T) {
	for key, want := range map[string]string{"chunk-17": "chunk-*", "chunk": "chunk", "17": "*", "a1b2": "a1b*"} {
		if got := keyStem(key); got != want {
			t.Errorf("keyStem(%q) = %q, want %q", key, got, want)
		}
	}
}
