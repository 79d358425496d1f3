package bench

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

func TestLineRoundTrip(t *testing.T) {
	t.Parallel()
	r := Result{Scenario: Fanout, Store: Postgres, Executor: Noop, Tasks: 1000000, WallS: 81.25, TasksPerS: 12307.7,
		DispatchP50Ms: 1.5, DispatchP99Ms: 4.875, PeakRSSMB: 812.5, DispatchSlotP50Ms: 0.25, DispatchSlotP99Ms: 2.125, SubmitS: 6.125, HeapPerTaskB: 287, HeapMidPerTaskB: 101,
		Workers: 8, Capacity: 128, Durability: "postgres:fsync=on,synchronous_commit=on"}
	line := r.Line()
	if !strings.HasPrefix(line, "scenario=fanout store=postgres executor=noop tasks=1000000 wall_s=81.250 tasks_per_s=12307.7 dispatch_p50_ms=1.500 dispatch_p99_ms=4.875 peak_rss_mb=812.5 ") {
		t.Errorf("line %q does not start with the issue's fields in order", line)
	}
	got, err := ParseLine(" " + line + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got != r {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, r)
	}

	// The JSON form has the same fields under the same names.
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Fields(line) {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, b)
		}
	}
	if len(m) != len(strings.Fields(line)) {
		t.Errorf("JSON has %d fields, the line %d", len(m), len(strings.Fields(line)))
	}

	// Empty text and text with spaces stay one field.
	r2 := Result{Scenario: "a b", Executor: Baseline}
	got, err = ParseLine(r2.Line())
	if err != nil {
		t.Fatal(err)
	}
	if got.Scenario != "a_b" || got.Store != "" || got.Executor != Baseline {
		t.Errorf("got %+v", got)
	}
}

func TestParseLineErrors(t *testing.T) {
	t.Parallel()
	good := Result{Scenario: Wide, Store: SQLite, Executor: Noop}.Line()
	for _, tc := range []struct {
		line, want string
	}{
		{strings.Replace(good, "tasks=0", "tasks=many", 1), `tasks="many": want a whole number`},
		{strings.Replace(good, "wall_s=0.000", "wall_s=fast", 1), `wall_s="fast": want a number`},
		{strings.Replace(good, " workers=0", "", 1), `field "workers" missing`},
		{good + " colour=blue", `unknown field "colour"`},
		{good + " tasks=3", `field "tasks" given twice`},
		{good + " loose", `"loose": want key=value`},
	} {
		if _, err := ParseLine(tc.line); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseLine(%q): error %v, want one mentioning %s", tc.line, err, tc.want)
		}
	}
}

func TestDispatch(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_700_000_000, 0)
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	tasks := []store.Task{
		{Key: "a", StartedAt: at(2), FinishedAt: at(10)},
		{Key: "b", StartedAt: at(5), FinishedAt: at(20)},
		{Key: "c", After: []string{"a", "b"}, StartedAt: at(23), FinishedAt: at(30)}, // last parent b at 20
		{Key: "m-1", After: []string{"a"}, StartedAt: at(11), FinishedAt: at(40)},
		{Key: "m-2", After: []string{"a"}, StartedAt: at(14), FinishedAt: at(35)},
		{Key: "sink", After: []string{"m-*", "c"}, StartedAt: at(47), FinishedAt: at(50)}, // group ends at 40
		{Key: "never", After: []string{"sink"}},                                           // did not start: not counted
	}
	ds, slotted, err := Dispatch(at(0), tasks, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{2, 5, 3, 1, 4, 7}
	if len(ds) != len(want) {
		t.Fatalf("got %v, want %v ms", ds, want)
	}
	for i := range want {
		if ds[i] != want[i]*time.Millisecond {
			t.Errorf("task %s: dispatch %v, want %v", tasks[i].Key, ds[i], want[i]*time.Millisecond)
		}
	}
	// Three slots were always enough here: no task waited for one. In
	// start order: a, b, m-1, m-2, c, sink.
	wantSlotted := []time.Duration{2, 5, 1, 4, 3, 7}
	for i := range wantSlotted {
		if slotted[i] != wantSlotted[i]*time.Millisecond {
			t.Errorf("slotted %v, want %v ms", slotted, wantSlotted)
			break
		}
	}
	if p := Percentile(ds, 50); p != 3*time.Millisecond {
		t.Errorf("p50 %v, want 3ms", p)
	}
	if p := Percentile(ds, 99); p != 7*time.Millisecond {
		t.Errorf("p99 %v, want 7ms", p)
	}
	if p := Percentile(nil, 99); p != 0 {
		t.Errorf("p99 of nothing: %v", p)
	}

	// Two slots, four independent tasks: the last two waited for a slot,
	// and waited 2 ms each once one was free.
	wide := []store.Task{
		{Key: "w-0", StartedAt: at(1), FinishedAt: at(5)},
		{Key: "w-1", StartedAt: at(1), FinishedAt: at(6)},
		{Key: "w-2", StartedAt: at(7), FinishedAt: at(9)},
		{Key: "w-3", StartedAt: at(8), FinishedAt: at(10)},
	}
	ds, slotted, err = Dispatch(at(0), wide, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []time.Duration{1, 1, 7, 8} {
		if ds[i] != want*time.Millisecond {
			t.Errorf("wide: dispatch %v", ds)
			break
		}
	}
	for i, want := range []time.Duration{1, 1, 2, 2} {
		if slotted[i] != want*time.Millisecond {
			t.Errorf("wide: slotted %v", slotted)
			break
		}
	}

	if _, _, err := Dispatch(at(0), []store.Task{{Key: "x", After: []string{"y"}}}, 1); err == nil {
		t.Error("an unknown parent must be an error")
	}
}
