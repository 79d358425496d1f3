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
	// GPUType is the GPU type ("a100", "t4") the tier's GPUs must be: placement
	// matches it against clusters and the team's GPU quota ("" with GPU > 0:
	// the generic type "gpu").
	GPUType string
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
	Name      string
	Namespace string
	Labels    map[string]string
	Env       map[string]string
	// SecretEnv is the job's secret environment (`secret_env:`): it
	// reaches every task's process, after the task's own env, and nothing
	// else; its names appear in no Env. What a server stores as the spec
	// text has these values replaced (RedactSecrets).
	SecretEnv  map[string]string
	Workers    []Tier
	Retries    int32
	TimeoutMS  int64 // the job's default task timeout; 0 means none
	MaxWorkers int32 // 0 means no job-level cap
	// Priority orders the team's jobs for workers: higher first, then
	// older; -MaxPriority to MaxPriority, default 0.
	Priority int32
	// Kubernetes overrides the job's worker pods (nil: the deployment's
	// defaults).
	Kubernetes *Kubernetes
	// LogDestination is where the job's logs are copied when it ends
	// (`logs: {destination: s3://bucket/prefix/}`); empty: the team's
	// destination, if an admin set one. The server accepts only a
	// destination within the team's, whose credentials it uses.
	LogDestination string
	// Params is the value of every parameter the spec declares (`params:`,
	// overlaid by the values given to CompileWith); nil when it declares
	// none.
	Params map[string]string
	// Notify is the job's webhook (`notify:`); nil: none.
	Notify *Notify
	Tasks  []Task
	// Entries are the spec's task entries in order, each with the range
	// of Tasks it expanded to: the groups of the job's graph by group.
	Entries []Entry
}

// Entry is one entry of a spec's tasks list: its key as written ("sim-{i}"
// for a foreach) and its tasks, Tasks[Start:Start+Count].
type Entry struct {
	Key          string
	Start, Count int
}

// MaxPriority bounds a job's priority either way.
const MaxPriority = 1000

// Limits bound what one spec may ask for, and so the memory a server spends
// on it. A zero field means its default. MaxSpecBytes and MaxSpecValues are
// checked before the spec is decoded, MaxTasks before anything is expanded,
// and MaxJobBytes while expanding, which stops at the first task past it.
type Limits struct {
	MaxTasks     int // tasks after foreach expansion; default 2,000,000
	MaxSpecBytes int // size of the spec text; default 16 MiB
	// MaxSpecValues bounds the YAML values (scalars, lists, mappings) of
	// the spec text, counted before decoding by CountValues; default
	// 1,000,000. Decoding costs about 200 bytes of memory per value, so
	// this, not the byte size, bounds the memory of a spec of many short
	// values.
	MaxSpecValues int
	MaxArgBytes   int // per task, argv plus environment (job's and task's); default 128 KiB
	MaxKeyLen     int // bytes of a task key; default 256
	// MaxJobBytes bounds the expanded job: the bytes of every task's key,
	// argv, own environment, cwd and dependencies, summed over its tasks
	// (what the store holds per task); default 128 MiB.
	MaxJobBytes int
}

// DefaultLimits returns the limits a server applies unless configured
// otherwise.
func DefaultLimits() Limits {
	return Limits{MaxTasks: 2_000_000, MaxSpecBytes: 16 << 20, MaxSpecValues: 1_000_000,
		MaxArgBytes: 128 << 10, MaxKeyLen: 256, MaxJobBytes: 128 << 20}
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
	if l.MaxSpecValues <= 0 {
		l.MaxSpecValues = d.MaxSpecValues
	}
	if l.MaxJobBytes <= 0 {
		l.MaxJobBytes = d.MaxJobBytes
	}
	return l
}

// checkSize reports a text over MaxSpecBytes or MaxSpecValues, before
// anything decodes it.
func (c *compiler) checkSize(data []byte, what string) bool {
	if len(data) > c.lim.MaxSpecBytes {
		c.e.add(jobLoc, 0, "", ErrTooLarge, "too large: the %s is %d bytes, more than the limit of %d (checked before decoding)", what, len(data), c.lim.MaxSpecBytes)
		return false
	}
	if n := CountValues(data, c.lim.MaxSpecValues); n > c.lim.MaxSpecValues {
		c.e.add(jobLoc, 0, "", ErrTooLarge, "too large: the %s holds more than %d YAML values (the limit, checked before decoding); use foreach: {range: …} rather than long lists", what, c.lim.MaxSpecValues)
		return false
	}
	return true
}

// CountValues returns an upper estimate of the YAML values (scalars, lists
// and mappings) in a spec text, without decoding it: the places where a
// value can start, which are line breaks, commas, `[`, `{`, and `:` or `-`
// followed by a blank, plus one for the document. It is within a factor of
// two of what the decoder builds (a flow mapping's keys without values,
// `{a, b}`, are the worst case). It stops counting past stop (when stop > 0).
func CountValues(data []byte, stop int) int {
	n := 1
	for i, b := range data {
		switch b {
		case '\n', ',', '[', '{':
			n++
		case ':', '-':
			if i+1 == len(data) || data[i+1] == ' ' || data[i+1] == '\t' || data[i+1] == '\n' || data[i+1] == '\r' {
				n++
			}
		default:
			continue
		}
		if stop > 0 && n > stop {
			return n
		}
	}
	return n
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
// with limits wrap ErrTooLarge. Compile never panics on bad input, checks
// the size of the text before it decodes it and the number of tasks before
// it expands anything.
func Compile(data []byte, filename string, lim Limits) (*Job, *dag.Graph, error) {
	return CompileWith(data, filename, lim, nil)
}

// CompileWith is Compile with parameter values (`--set name=value`): each
// overrides the default of the spec's parameter of that name. A name the
// spec does not declare, a required parameter (empty default) given no
// value, and a `{params.NAME}` naming no parameter are errors.
func CompileWith(data []byte, filename string, lim Limits, params map[string]string) (*Job, *dag.Graph, error) {
	c := newCompiler(filename, lim, len(data))
	c.set = params
	if !c.checkSize(data, "spec") {
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
