package spec

import (
	"slices"
	"strings"
)

// Base is what a spec fragment inherits from the job it is added to: the
// tiers its tasks may name in `worker`, the job's default retries and
// timeout, and its environments (counted against the argument limit).
type Base struct {
	Workers   []Tier
	Retries   int32
	TimeoutMS int64
	Env       map[string]string
	// SecretEnv is the job's secret environment; a server that does not
	// hold the values passes the names with empty values. An added task's
	// env may not use its names, and its values count against
	// Limits.MaxArgBytes.
	SecretEnv map[string]string
	Limits    Limits
}

var fragmentFields = []string{"tasks"}

// CompileFragment reads the tasks a running task adds to its job (a dynamic
// DAG): a YAML or JSON mapping with one field, `tasks`, whose entries are
// exactly those of a job spec (foreach, after, worker, retries, timeout…).
// It expands and checks them like Compile does, except their dependencies:
// `after` may name the job's existing tasks, which only the caller knows,
// so the caller builds the job's graph with the added tasks and reports
// unknown keys and cycles. Its error is an Errors naming every problem.
func CompileFragment(data []byte, filename string, base Base) ([]Task, error) {
	c := newCompiler(filename, base.Limits, len(data))
	if !c.checkSize(data, "fragment") {
		return nil, c.e.result()
	}
	root, err := decodeYAML(data)
	if err != nil {
		c.e.parseFailure(err)
		return nil, c.e.result()
	}
	c.job = &Job{Workers: base.Workers, Retries: base.Retries, TimeoutMS: base.TimeoutMS, Env: base.Env}
	if len(c.job.Workers) == 0 {
		c.job.Workers = []Tier{defaultTier}
	}
	for n, v := range base.Env {
		c.jobEnvBytes += len(n) + len(v) + 2
	}
	c.job.SecretEnv = base.SecretEnv
	for n, v := range base.SecretEnv {
		c.jobEnvBytes += len(n) + len(v) + 2
	}
	ps, ok := c.mapping(jobLoc, "", root)
	if !ok {
		return nil, c.e.result()
	}
	var tasksPair *pair
	for i, p := range ps {
		switch {
		case strings.HasPrefix(p.key, "x-"):
		case p.key == "tasks":
			tasksPair = &ps[i]
		case slices.Contains(jobFields, p.key):
			c.e.add(jobLoc, p.k.Line, p.key, nil, "cannot be changed by adding tasks: a fragment has only `tasks`")
		default:
			c.unknownField(jobLoc, "", p, fragmentFields)
		}
	}
	if tasksPair == nil {
		c.e.add(jobLoc, root.Line, "tasks", nil, "is required: list the tasks to add")
		return nil, c.e.result()
	}
	items, ok := c.list(jobLoc, "tasks", tasksPair.v)
	if !ok {
		return nil, c.e.result()
	}
	if len(items) == 0 {
		c.e.add(jobLoc, tasksPair.v.Line, "tasks", nil, "must not be empty: list at least one task to add")
		return nil, c.e.result()
	}
	entries := make([]*entry, 0, len(items))
	var total uint64
	for i, n := range items {
		e := c.task(i, n)
		if c.w.over {
			break
		}
		if e == nil {
			continue
		}
		entries = append(entries, e)
		total += e.fe.count
	}
	if c.w.over {
		c.e.add(jobLoc, 0, "", errBudget, "%v", errBudget)
	}
	if total > uint64(c.lim.MaxTasks) && !c.e.failed() {
		c.e.add(jobLoc, tasksPair.k.Line, "tasks", ErrTooLarge, "too large: the fragment expands to %d tasks, more than the limit of %d", total, c.lim.MaxTasks)
	}
	if c.e.failed() {
		return nil, c.e.result()
	}
	c.expand(entries)
	if c.e.failed() {
		return nil, c.e.result()
	}
	return c.job.Tasks, nil
}

// BaseOf returns what tasks added to a job inherit from its spec as
// submitted: the job's default retries and timeout (its tiers and env are
// stored with the job). It reads only the top-level fields.
func BaseOf(data []byte) (retries int32, timeoutMS int64, err error) {
	c := newCompiler("spec", Limits{}, len(data))
	root, err := decodeYAML(data)
	if err != nil {
		return 0, 0, err
	}
	ps, ok := c.mapping(jobLoc, "", root)
	if !ok {
		return 0, 0, c.e.result()
	}
	for _, p := range ps {
		switch p.key {
		case "retries":
			if v, ok := c.intField(jobLoc, "retries", p.v, 0, maxRetries); ok {
				retries = int32(v)
			}
		case "timeout":
			if v, ok := c.durationField(jobLoc, "timeout", p.v); ok {
				timeoutMS = v
			}
		}
	}
	if c.e.failed() {
		return 0, 0, c.e.result()
	}
	return retries, timeoutMS, nil
}
