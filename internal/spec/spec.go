// Package spec reads a job spec (YAML or JSON, documented in
// docs/job-spec.md), expands its foreach entries into tasks, validates it
// and builds its dependency graph with package dag. The gateway compiles
// every submitted spec with Compile; the CLI runs ResolveFiles first to
// inline `foreach: {lines: FILE}` from the user's disk.
//
// It imports the standard library, gopkg.in/yaml.v3 and internal/dag.
package spec

import (
	"github.com/haul-dev/haul/internal/dag"
)

// Tier is one worker configuration (resource tier) of a job. A task starts
// on its first tier and moves to the next one when it runs out of memory.
type Tier struct {
	Name        string
	CPU         float64 // cores
	MemoryBytes int64
	GPU         int32
	// NodeSelector and Tolerations steer the tier's worker pods on
	// Kubernetes (spot capacity, a GPU type).
	NodeSelector map[string]string
	Tolerations  []Toleration
}

// Task is one task of a compiled job: one unix process.
//
// Tasks expanded from one foreach entry may share their Command, Env and
// After slices and maps when these do not depend on the element: treat
// them as read-only.
type Task struct {
	Key     string
	Command []string // argv; Command[0] is the program, looked up in PATH
	// Env is the task's own environment; the process gets the job's Env
	// overlaid with it.
	Env map[string]string
	Cwd string // "" means the worker's default directory
	// After lists the task's dependencies as written (after foreach
	// substitution): exact keys or globs.
	After     []string
	Tier      int32 // index into Job.Workers of the first tier to run on
	Retries   int32
	TimeoutMS int64 // 0 means no timeout
}

// Job is a compiled job spec.
type Job struct {
	Name       string
	Namespace  string
	Labels     map[string]string
	Env        map[string]string
	Workers    []Tier
	Retries    int32
	TimeoutMS  int64 // the job's default task timeout; 0 means none
	MaxWorkers int32 // 0 means no job-level cap
	// Kubernetes overrides the job's worker pods (nil: the deployment's
	// defaults).
	Kubernetes *Kubernetes
	Tasks      []Task
}

// Limits bound what one spec may ask for. A zero field means its default.
type Limits struct {
	MaxTasks     int // tasks after foreach expansion; default 2,000,000
	MaxSpecBytes int // size of the spec text; default 64 MiB
	MaxArgBytes  int // per task, argv plus environment (job's and task's); default 128 KiB
	MaxKeyLen    int // bytes of a task key; default 256
}

// DefaultLimits returns the limits a server applies unless configured
// otherwise.
func DefaultLimits() Limits {
	return Limits{MaxTasks: 2_000_000, MaxSpecBytes: 64 << 20, MaxArgBytes: 128 << 10, MaxKeyLen: 256}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxTasks <= 0 {
		l.MaxTasks = d.MaxTasks
	}
	if l.MaxSpecBytes <= 0 {
		l.MaxSpecBytes = d.MaxSpecBytes
	}
	if l.MaxArgBytes <= 0 {
		l.MaxArgBytes = d.MaxArgBytes
	}
	if l.MaxKeyLen <= 0 {
		l.MaxKeyLen = d.MaxKeyLen
	}
	return l
}

// defaultTier is the job's only tier when the spec names none.
var defaultTier = Tier{Name: "default", CPU: 1, MemoryBytes: 1 << 30}

// Compile parses a spec, expands its foreach entries, validates everything
// and builds the dependency graph. filename is used in error messages only.
//
// Its error is an Errors listing every problem (up to a hundred), each
// naming the task and field at fault. Structural problems are reported
// first; dependency problems (unknown keys, cycles, duplicate keys) only
// once the spec is otherwise valid, and those wrap a dag.Errors. Problems
// with limits wrap ErrTooLarge. Compile never panics on bad input, and
// checks the number of tasks before it expands anything.
func Compile(data []byte, filename string, lim Limits) (*Job, *dag.Graph, error) {
	c := newCompiler(filename, lim, len(data))
	if len(data) > c.lim.MaxSpecBytes {
		c.e.add(jobLoc, 0, "", ErrTooLarge, "too large: the spec is %d bytes, more than the limit of %d", len(data), c.lim.MaxSpecBytes)
		return nil, nil, c.e.result()
	}
	root, err := decodeYAML(data)
	if err != nil {
		c.e.parseFailure(err)
		return nil, nil, c.e.result()
	}
	entries := c.parseJob(root)
	if c.w.over {
		c.e.add(jobLoc, 0, "", errBudget, "%v", errBudget)
	}
	if c.e.failed() {
		return nil, nil, c.e.result()
	}
	keys, after := c.expand(entries)
	if c.e.failed() {
		return nil, nil, c.e.result()
	}
	g, err := dag.Build(keys, after)
	if err != nil {
		c.dagErrors(err, entries)
		return nil, nil, c.e.result()
	}
	return c.job, g, nil
}
