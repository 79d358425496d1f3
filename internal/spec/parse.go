package spec

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

var (
	jobFields     = []string{"name", "namespace", "labels", "env", "secret_env", "workers", "retries", "timeout", "max_workers", "priority", "kubernetes", "logs", "params", "notify", "tasks"}
	tierFields    = []string{"name", "cpu", "memory", "gpu", "gpu_type", "node_selector", "tolerations"}
	taskFields    = []string{"key", "command", "env", "cwd", "after", "retries", "timeout", "worker", "foreach"}
	foreachFields = []string{"range", "values", "lines"}

	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	labelKey = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9._/]{0,61}[A-Za-z0-9])?$`)
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

const (
	maxRetries     = 1000
	maxNameLen     = 253
	maxLabelValLen = 256
	maxEnvNameLen  = 256
)

type compiler struct {
	lim Limits
	w   walker
	e   errs
	job *Job

	jobEnvBytes int // bytes the job's env adds to every task's environment

	// set is the parameter values the caller gave (--set); paramVals every
	// declared parameter's value, once params ran.
	set       map[string]string
	paramVals map[string]string
}

func newCompiler(filename string, lim Limits, size int) *compiler {
	lim = lim.withDefaults()
	return &compiler{
		lim: lim,
		// Every node of the text may be visited a few times over; aliases
		// that multiply this run out of budget.
		w: walker{budget: 8*size + 10_000},
		e: errs{file: filename},
	}
}

// mapping returns the pairs of a mapping node, or reports it is not one.
func (c *compiler) mapping(l loc, field string, n *yaml.Node) ([]pair, bool) {
	n = c.w.visit(n)
	if n.Kind != yaml.MappingNode {
		c.e.add(l, n.Line, field, nil, "must be a mapping, got %s", kindName(n))
		return nil, false
	}
	ps := c.w.pairs(n, 0, func(k *yaml.Node, msg string) {
		c.e.add(l, k.Line, field, nil, "%s", msg)
	})
	return ps, !c.w.over
}

// list returns the items of a sequence node, or reports it is not one.
func (c *compiler) list(l loc, field string, n *yaml.Node) ([]*yaml.Node, bool) {
	n = c.w.visit(n)
	if n.Kind != yaml.SequenceNode {
		c.e.add(l, n.Line, field, nil, "must be a list, got %s", kindName(n))
		return nil, false
	}
	return n.Content, true
}

// scalar returns a scalar's text; any scalar but null reads as a string.
func (c *compiler) scalar(l loc, field string, n *yaml.Node) (string, bool) {
	n = c.w.visit(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		c.e.add(l, n.Line, field, nil, "must be a string, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

func (c *compiler) intField(l loc, field string, n *yaml.Node, lo, hi int64) (int64, bool) {
	s, ok := c.scalar(l, field, n)
	if !ok {
		return 0, false
	}
	v, err := parseInt(s)
	switch {
	case err != nil:
		c.e.add(l, n.Line, field, nil, "%q: %v", s, err)
	case v < lo && lo == 0:
		c.e.add(l, n.Line, field, nil, "must not be negative, got %d", v)
	case v < lo || v > hi:
		c.e.add(l, n.Line, field, nil, "must be between %d and %d, got %d", lo, hi, v)
	default:
		return v, true
	}
	return 0, false
}

func (c *compiler) durationField(l loc, field string, n *yaml.Node) (int64, bool) {
	s, ok := c.scalar(l, field, n)
	if !ok {
		return 0, false
	}
	ms, err := parseDuration(s)
	if err != nil {
		c.e.add(l, n.Line, field, nil, "bad duration %q: %v", s, err)
		return 0, false
	}
	return ms, true
}

func (c *compiler) unknownField(l loc, prefix string, p pair, known []string) {
	msg := "unknown field"
	if s := closest(p.key, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else {
		msg += " (known fields: " + strings.Join(known, ", ") + ")"
	}
	c.e.add(l, p.k.Line, prefix+p.key, nil, "%s", msg)
}

// closest returns the name in known nearest to s, if it is near.
func closest(s string, known []string) string {
	best, bestD := "", 3
	if len(s) > 64 {
		return ""
	}
	for _, k := range known {
		if d := levenshtein(strings.ToLower(s), k); d < bestD && 2*d < len(s) {
			best, bestD = k, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	row := make([]int, len(b)+1)
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(a); i++ {
		prev := row[0]
		row[0] = i
		for j := 1; j <= len(b); j++ {
			cur := row[j]
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			row[j] = min(row[j]+1, row[j-1]+1, prev+cost)
			prev = cur
		}
	}
	return row[len(b)]
}

// optionalNull reports whether p is an optional field left empty (`env:`
// with nothing after it), which reads as if it were not there.
func optionalNull(p pair, required ...string) bool {
	v := p.v
	for v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	return isNull(v) && !slices.Contains(required, p.key)
}

// text checks a free-form string: valid UTF-8, no control characters.
func text(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("contains the control character %q", r)
		}
	}
	return ""
}

// parseJob reads the job's fields into c.job and returns the task entries.
func (c *compiler) parseJob(root *yaml.Node) []*entry {
	ps, ok := c.mapping(jobLoc, "", root)
	if !ok {
		return nil
	}
	f := map[string]pair{}
	for _, p := range ps {
		if strings.HasPrefix(p.key, "x-") {
			continue // extension fields: a place for YAML anchors
		}
		if !slices.Contains(jobFields, p.key) {
			c.unknownField(jobLoc, "", p, jobFields)
			continue
		}
		if optionalNull(p, "name", "tasks") {
			continue
		}
		f[p.key] = p
	}
	j := &Job{Namespace: "default"}
	c.job = j
	if p, ok := f["params"]; ok {
		c.params(&p, c.set)
	} else {
		c.params(nil, c.set)
	}
	if p, ok := f["name"]; !ok {
		c.e.add(jobLoc, root.Line, "name", nil, "is required")
	} else if s, ok := c.scalar(jobLoc, "name", p.v); ok {
		s = c.subst(jobLoc, "name", p.v.Line, s, feNone)
		switch bad := text(s); {
		case strings.TrimSpace(s) == "":
			c.e.add(jobLoc, p.v.Line, "name", nil, "must not be empty")
		case len(s) > maxNameLen:
			c.e.add(jobLoc, p.v.Line, "name", nil, "is %d bytes, more than %d", len(s), maxNameLen)
		case bad != "":
			c.e.add(jobLoc, p.v.Line, "name", nil, "%s", bad)
		default:
			j.Name = s
		}
	}
	if p, ok := f["namespace"]; ok {
		if s, ok := c.scalar(jobLoc, "namespace", p.v); ok {
			if dnsLabel.MatchString(s) {
				j.Namespace = s
			} else {
				c.e.add(jobLoc, p.v.Line, "namespace", nil, "%q is not a valid namespace: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit", s)
			}
		}
	}
	if p, ok := f["labels"]; ok {
		j.Labels = c.labels(p.v)
	}
	if p, ok := f["env"]; ok {
		names, vals, _ := c.env(jobLoc, "env", p.v, feNone)
		if len(names) > 0 {
			j.Env = make(map[string]string, len(names))
			for i, n := range names {
				j.Env[n] = vals[i].text
				c.jobEnvBytes += len(n) + len(vals[i].text) + 2
			}
		}
	}
	if p, ok := f["secret_env"]; ok {
		c.secretEnv(p.v)
	}
	if p, ok := f["retries"]; ok {
		if v, ok := c.intField(jobLoc, "retries", p.v, 0, maxRetries); ok {
			j.Retries = int32(v)
		}
	}
	if p, ok := f["timeout"]; ok {
		if v, ok := c.durationField(jobLoc, "timeout", p.v); ok {
			j.TimeoutMS = v
		}
	}
	if p, ok := f["max_workers"]; ok {
		if v, ok := c.intField(jobLoc, "max_workers", p.v, 0, math.MaxInt32); ok {
			j.MaxWorkers = int32(v)
		}
	}
	if p, ok := f["priority"]; ok {
		if v, ok := c.intField(jobLoc, "priority", p.v, -MaxPriority, MaxPriority); ok {
			j.Priority = int32(v)
		}
	}
	if p, ok := f["kubernetes"]; ok {
		j.Kubernetes = c.kubernetes(p.v)
	}
	if p, ok := f["logs"]; ok {
		j.LogDestination = c.logs(p.v)
	}
	if p, ok := f["notify"]; ok {
		j.Notify = c.notify(p.v)
	}
	if p, ok := f["workers"]; ok {
		j.Workers = c.tiers(p.v)
	} else {
		j.Workers = []Tier{defaultTier}
	}
	p, ok := f["tasks"]
	if !ok {
		c.e.add(jobLoc, root.Line, "tasks", nil, "is required: a job needs at least one task")
		return nil
	}
	items, ok := c.list(jobLoc, "tasks", p.v)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		c.e.add(jobLoc, p.v.Line, "tasks", nil, "must not be empty: a job needs at least one task")
		return nil
	}
	if len(items) > c.lim.MaxTasks {
		c.e.add(jobLoc, p.v.Line, "tasks", ErrTooLarge, "too large: %d tasks, more than the limit of %d", len(items), c.lim.MaxTasks)
		return nil
	}
	entries := make([]*entry, 0, len(items))
	var total uint64
	for i, n := range items {
		e := c.task(i, n)
		if c.w.over {
			return nil
		}
		if e == nil {
			continue
		}
		entries = append(entries, e)
		total += e.fe.count
	}
	if total > uint64(c.lim.MaxTasks) && !c.e.failed() {
		c.e.add(jobLoc, p.k.Line, "tasks", ErrTooLarge, "too large: the spec expands to %d tasks, more than the limit of %d", total, c.lim.MaxTasks)
	}
	return entries
}

func (c *compiler) labels(n *yaml.Node) map[string]string {
	return c.labelMap("labels", n, maxLabelValLen)
}

// env reads an env mapping: names, and values as templates.
func (c *compiler) env(l loc, field string, n *yaml.Node, fe feKind) ([]string, []tmpl, bool) {
	ps, ok := c.mapping(l, field, n)
	if !ok {
		return nil, nil, false
	}
	names := make([]string, 0, len(ps))
	vals := make([]tmpl, 0, len(ps))
	good := true
	for _, p := range ps {
		f := field + "." + p.key
		v, ok := c.scalar(l, f, p.v)
		if !ok {
			good = false
			continue
		}
		v = c.subst(l, f, p.v.Line, v, fe)
		switch {
		case len(p.key) > maxEnvNameLen || !envName.MatchString(p.key):
			c.e.add(l, p.k.Line, f, nil, "bad variable name %q: use letters, digits and '_', not starting with a digit", p.key)
		case strings.HasPrefix(strings.ToUpper(p.key), "HAUL_"):
			c.e.add(l, p.k.Line, f, nil, "names starting with HAUL_ are reserved for haul")
		case strings.IndexByte(v, 0) >= 0:
			c.e.add(l, p.v.Line, f, nil, "value contains a NUL byte")
		default:
			t, err := parseTmpl(v, fe)
			if err != nil {
				c.e.add(l, p.v.Line, f, nil, "%v", err)
				good = false
				continue
			}
			names = append(names, p.key)
			vals = append(vals, t)
			continue
		}
		good = false
	}
	return names, vals, good
}

// secretEnv reads the job's secret_env into c.job.SecretEnv: values under
// the same rules as env, names that env does not also use. Its errors name
// the variable, never its value.
func (c *compiler) secretEnv(n *yaml.Node) {
	names, vals, _ := c.env(jobLoc, "secret_env", n, feNone)
	if len(names) == 0 {
		return
	}
	c.job.SecretEnv = make(map[string]string, len(names))
	for i, name := range names {
		if _, ok := c.job.Env[name]; ok {
			c.e.add(jobLoc, c.w.visit(n).Line, "secret_env."+name, nil, "%s is also in the job's env: a variable is either plain (env) or secret (secret_env), not both", name)
			continue
		}
		c.job.SecretEnv[name] = vals[i].text
		c.jobEnvBytes += len(name) + len(vals[i].text) + 2
	}
}

func (c *compiler) tiers(n *yaml.Node) []Tier {
	items, ok := c.list(jobLoc, "workers", n)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		c.e.add(jobLoc, n.Line, "workers", nil, "must not be empty: leave it out for the default tier, or list at least one")
		return nil
	}
	if len(items) > 64 {
		c.e.add(jobLoc, n.Line, "workers", nil, "%d tiers, more than 64", len(items))
		return nil
	}
	var out []Tier
	for i, it := range items {
		prefix := fmt.Sprintf("workers[%d]", i)
		ps, ok := c.mapping(jobLoc, prefix, it)
		if !ok {
			continue
		}
		t := Tier{CPU: defaultTier.CPU, MemoryBytes: defaultTier.MemoryBytes}
		named := false
		for _, p := range ps {
			f := prefix + "." + p.key
			switch p.key {
			case "name":
				s, ok := c.scalar(jobLoc, f, p.v)
				if !ok {
					continue
				}
				if !dnsLabel.MatchString(s) {
					c.e.add(jobLoc, p.v.Line, f, nil, "%q is not a valid tier name: use at most 63 lowercase letters, digits and '-'", s)
					continue
				}
				for j, o := range out {
					if o.Name == s {
						c.e.add(jobLoc, p.v.Line, f, nil, "tier %q is already workers[%d]", s, j)
					}
				}
				t.Name, named = s, true
			case "cpu":
				s, ok := c.scalar(jobLoc, f, p.v)
				if !ok {
					continue
				}
				v, err := ParseCPU(s)
				if err != nil {
					c.e.add(jobLoc, p.v.Line, f, nil, "bad quantity %q: %v", s, err)
					continue
				}
				t.CPU = v
			case "memory":
				s, ok := c.scalar(jobLoc, f, p.v)
				if !ok {
					continue
				}
				v, err := ParseBytes(s)
				if err == nil && v == 0 {
					err = fmt.Errorf("must be more than zero")
				}
				if err != nil {
					c.e.add(jobLoc, p.v.Line, f, nil, "bad quantity %q: %v", s, err)
					continue
				}
				t.MemoryBytes = v
			case "gpu":
				if v, ok := c.intField(jobLoc, f, p.v, 0, 1024); ok {
					t.GPU = int32(v)
				}
			case "gpu_type":
				s, ok := c.scalar(jobLoc, f, p.v)
				if !ok {
					continue
				}
				if !dnsLabel.MatchString(s) {
					c.e.add(jobLoc, p.v.Line, f, nil, "%q is not a valid GPU type: use at most 63 lowercase letters, digits and '-', such as a100 or t4", s)
					continue
				}
				t.GPUType = s
			case "node_selector":
				t.NodeSelector = c.labelMap(f, p.v, 63)
			case "tolerations":
				t.Tolerations = c.tolerations(f, p.v)
			default:
				c.unknownField(jobLoc, prefix+".", p, tierFields)
			}
		}
		if !named {
			c.e.add(jobLoc, c.w.visit(it).Line, prefix+".name", nil, "is required")
		}
		out = append(out, t)
	}
	return out
}
