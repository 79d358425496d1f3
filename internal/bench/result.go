package bench

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Result is what one benchmark run measured. Its line form (Line) is one
// line of space-separated key=value fields, the keys being the JSON names.
type Result struct {
	Scenario string `json:"scenario"`
	Store    string `json:"store"` // sqlite, postgres or none (baseline)
	Executor string `json:"executor"`
	Tasks    int64  `json:"tasks"`
	// WallS is from just before the job was submitted to its end, in
	// seconds; TasksPerS is Tasks/WallS.
	WallS     float64 `json:"wall_s"`
	TasksPerS float64 `json:"tasks_per_s"`
	// DispatchP50Ms and DispatchP99Ms are percentiles of the time from a
	// task's last parent finishing (the job starting, for a root) to the
	// task starting, in milliseconds.
	DispatchP50Ms float64 `json:"dispatch_p50_ms"`
	DispatchP99Ms float64 `json:"dispatch_p99_ms"`
	// PeakRSSMB is this process's peak resident memory (VmHWM) in MiB.
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// DispatchSlotP50Ms and DispatchSlotP99Ms are the same without the
	// wait for a free slot (see Dispatch).
	DispatchSlotP50Ms float64 `json:"dispatch_slot_p50_ms"`
	DispatchSlotP99Ms float64 `json:"dispatch_slot_p99_ms"`
	// SubmitS is how long the SubmitJob call took, in seconds.
	SubmitS float64 `json:"submit_s"`
	// HeapPerTaskB is the peak live heap while the job ran above the live
	// heap at idle, per task, in bytes.
	HeapPerTaskB float64 `json:"heap_per_task_b"`
	// HeapMidPerTaskB is the same with the live heap when half of the
	// tasks were done: the job's steady state, without what loading it
	// took for a while.
	HeapMidPerTaskB float64 `json:"heap_mid_per_task_b"`
	Workers         int     `json:"workers"`
	Capacity        int     `json:"capacity"`
	// Durability says how the store was set up, such as
	// sqlite:wal,synchronous=full.
	Durability string `json:"durability"`
	// BaselineTasksPerS is, for the process executor on the wide scenario,
	// the tasks/s of the bare fork/exec loop run right after in the same
	// command with the same parallelism, and BaselineRatio is
	// TasksPerS/BaselineTasksPerS (the target: at least 0.8); 0
	// otherwise.
	BaselineTasksPerS float64 `json:"baseline_tasks_per_s"`
	BaselineRatio     float64 `json:"baseline_ratio"`
	// Flood is the task count of the flooding job that ran, on another
	// shard, beside the measured one (Config.Flood); 0: none.
	Flood int64 `json:"flood"`
}

// field is one key of the line with the address of its value.
type field struct {
	key string
	ptr any // *string, *int64, *int or *float64
}

func (r *Result) fields() []field {
	return []field{
		{"scenario", &r.Scenario}, {"store", &r.Store}, {"executor", &r.Executor}, {"tasks", &r.Tasks},
		{"wall_s", &r.WallS}, {"tasks_per_s", &r.TasksPerS},
		{"dispatch_p50_ms", &r.DispatchP50Ms}, {"dispatch_p99_ms", &r.DispatchP99Ms},
		{"peak_rss_mb", &r.PeakRSSMB}, {"dispatch_slot_p50_ms", &r.DispatchSlotP50Ms}, {"dispatch_slot_p99_ms", &r.DispatchSlotP99Ms},
		{"submit_s", &r.SubmitS}, {"heap_per_task_b", &r.HeapPerTaskB}, {"heap_mid_per_task_b", &r.HeapMidPerTaskB},
		{"workers", &r.Workers}, {"capacity", &r.Capacity}, {"durability", &r.Durability},
		{"baseline_tasks_per_s", &r.BaselineTasksPerS}, {"baseline_ratio", &r.BaselineRatio},
		{"flood", &r.Flood},
	}
}

// Line formats the result as one line (without a newline), the issue's
// fields first:
//
//	scenario=wide store=sqlite executor=noop tasks=1000 wall_s=0.500 tasks_per_s=2000.0 dispatch_p50_ms=1.250 dispatch_p99_ms=9.500 peak_rss_mb=61.2 dispatch_slot_p50_ms=0.750 dispatch_slot_p99_ms=4.000 submit_s=0.031 heap_per_task_b=412 heap_mid_per_task_b=96 workers=8 capacity=128 durability=sqlite:wal,synchronous=full baseline_tasks_per_s=0.0 baseline_ratio=0.000 flood=0
func (r Result) Line() string {
	var b strings.Builder
	for i, f := range r.fields() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f.key)
		b.WriteByte('=')
		switch p := f.ptr.(type) {
		case *string:
			b.WriteString(word(*p))
		case *int64:
			b.WriteString(strconv.FormatInt(*p, 10))
		case *int:
			b.WriteString(strconv.Itoa(*p))
		case *float64:
			b.WriteString(strconv.FormatFloat(*p, 'f', precision(f.key), 64))
		}
	}
	return b.String()
}

// precision is the number of decimals a figure is printed with.
func precision(key string) int {
	switch key {
	case "wall_s", "submit_s", "dispatch_p50_ms", "dispatch_p99_ms", "dispatch_slot_p50_ms", "dispatch_slot_p99_ms":
		return 3
	case "tasks_per_s", "peak_rss_mb", "baseline_tasks_per_s":
		return 1
	case "baseline_ratio":
		return 3
	}
	return 0
}

// word makes a text value one field of the line: spaces would split it.
func word(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Join(strings.Fields(s), "_")
}

// ParseLine reads a line written by Line (surrounding space ignored). Every
// field must be present, once, and no other.
func ParseLine(line string) (Result, error) {
	var r Result
	fs := r.fields()
	byKey := make(map[string]field, len(fs))
	for _, f := range fs {
		byKey[f.key] = f
	}
	seen := map[string]bool{}
	var errs []error
	for _, kv := range strings.Fields(line) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			errs = append(errs, fmt.Errorf("%q: want key=value", kv))
			continue
		}
		f, known := byKey[k]
		if !known {
			errs = append(errs, fmt.Errorf("unknown field %q", k))
			continue
		}
		if seen[k] {
			errs = append(errs, fmt.Errorf("field %q given twice", k))
			continue
		}
		seen[k] = true
		switch p := f.ptr.(type) {
		case *string:
			if v != "-" {
				*p = v
			}
		case *int64:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want a whole number", k, v))
			}
			*p = n
		case *int:
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want a whole number", k, v))
			}
			*p = n
		case *float64:
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: want a number", k, v))
			}
			*p = x
		}
	}
	for _, f := range fs {
		if !seen[f.key] {
			errs = append(errs, fmt.Errorf("field %q missing", f.key))
		}
	}
	if len(errs) > 0 {
		return Result{}, fmt.Errorf("bench result line: %w", errors.Join(errs...))
	}
	return r, nil
}
