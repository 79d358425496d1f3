package spec

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

type feKind uint8

const (
	feNone feKind = iota
	feRange
	feValues
)

// foreach is an entry's foreach, with its element count computed before
// anything is expanded.
type foreach struct {
	kind        feKind
	start, step int64
	count       uint64 // 1 for a task without foreach
	items       []string
	line        int
}

// entry is one item of the spec's tasks list, ready to expand.
type entry struct {
	index   int
	keyText string // as written
	key     tmpl
	keyLine int

	command     []tmpl
	commandLine int
	envNames    []string
	envVals     []tmpl
	envLine     int
	cwd         tmpl
	after       []tmpl
	afterLine   int
	tier        int32
	retries     int32
	timeoutMS   int64
	fe          foreach

	// start is the index of the entry's first task in Job.Tasks.
	start int
}

// task reads one entry of the tasks list. It returns nil when the entry is
// too broken to count its tasks.
func (c *compiler) task(index int, n *yaml.Node) *entry {
	l := taskLoc("", index)
	ps, ok := c.mapping(l, "", n)
	if !ok {
		return nil
	}
	f := map[string]pair{}
	var keyNode *yaml.Node
	for _, p := range ps {
		if v := c.w.visit(p.v); p.key == "key" && v.Kind == yaml.ScalarNode && !isNull(v) {
			l.task, keyNode = v.Value, v
		}
	}
	for _, p := range ps {
		if _, ok := f[p.key]; ok {
			continue
		}
		switch p.key {
		case "key", "command", "env", "cwd", "after", "retries", "timeout", "worker", "foreach":
			if !optionalNull(p, "key", "command") {
				f[p.key] = p
			}
		default:
			c.unknownField(l, "", p, taskFields)
		}
	}
	e := &entry{index: index, keyText: l.task, retries: c.job.Retries, timeoutMS: c.job.TimeoutMS, fe: foreach{count: 1}}
	feBroken := false
	if p, ok := f["foreach"]; ok {
		feBroken = !c.foreach(l, p.v, &e.fe)
	}
	fe := e.fe.kind
	if keyNode != nil {
		// The key's parameters are substituted before anything reads it, so
		// that errors name the task by its key with the values in.
		l.task = c.subst(l, "key", keyNode.Line, l.task, fe)
		e.keyText = l.task
	}
	tmplOf := func(field string, line int, s string) tmpl {
		if field != "key" {
			s = c.subst(l, field, line, s, fe)
		}
		t, err := parseTmpl(s, fe)
		if err != nil {
			c.e.add(l, line, field, nil, "%v", err)
		}
		return t
	}

	if p, ok := f["key"]; !ok {
		c.e.add(l, n.Line, "key", nil, "is required")
	} else if _, ok := c.scalar(l, "key", p.v); ok {
		e.keyLine = p.v.Line
		e.key = tmplOf("key", p.v.Line, l.task)
		switch {
		case feBroken:
			// The foreach is reported; the key's placeholders mean nothing
			// without it.
		case l.task == "":
			c.e.add(l, p.v.Line, "key", nil, "must not be empty")
		case fe == feRange && !e.key.hasI:
			c.e.add(l, p.v.Line, "key", nil, "must contain {i} so that each foreach element gets its own key")
		case fe == feValues && !e.key.hasI && !e.key.hasItem:
			c.e.add(l, p.v.Line, "key", nil, "must contain {item} or {i} so that each foreach element gets its own key")
		case fe == feNone && (strings.Contains(l.task, "{i}") || strings.Contains(l.task, "{item}")):
			c.e.add(l, p.v.Line, "key", nil, "uses a placeholder but the task has no foreach")
		case fe == feNone:
			if msg := badKey(l.task, c.lim.MaxKeyLen); msg != "" {
				c.e.add(l, p.v.Line, "key", nil, "%s", msg)
			}
		}
	}

	if p, ok := f["command"]; !ok {
		c.e.add(l, n.Line, "command", nil, "is required: a list of strings, the program and its arguments")
	} else if v := c.w.visit(p.v); v.Kind == yaml.ScalarNode && !isNull(v) {
		c.e.add(l, p.v.Line, "command", nil, "must be a list: [prog, arg, ...]; for a shell command line write [sh, -c, %q]", v.Value)
	} else if items, ok := c.list(l, "command", p.v); ok {
		e.commandLine = p.v.Line
		if len(items) == 0 {
			c.e.add(l, p.v.Line, "command", nil, "must not be empty")
		}
		for i, it := range items {
			field := fmt.Sprintf("command[%d]", i)
			s, ok := c.scalar(l, field, it)
			if !ok {
				continue
			}
			if strings.IndexByte(s, 0) >= 0 {
				c.e.add(l, it.Line, field, nil, "contains a NUL byte")
				continue
			}
			t := tmplOf(field, it.Line, s)
			if i == 0 && t.parts == nil && t.text == "" {
				c.e.add(l, it.Line, field, nil, "must not be empty: it names the program to run")
			}
			e.command = append(e.command, t)
		}
	}

	if p, ok := f["env"]; ok {
		e.envLine = p.v.Line
		e.envNames, e.envVals, _ = c.env(l, "env", p.v, fe)
		for _, name := range e.envNames {
			if _, ok := c.job.SecretEnv[name]; ok {
				c.e.add(l, p.v.Line, "env."+name, nil, "%s is also in the job's secret_env: a variable is either plain (env) or secret (secret_env), not both", name)
			}
		}
	}
	if p, ok := f["cwd"]; ok {
		if s, ok := c.scalar(l, "cwd", p.v); ok {
			if strings.IndexByte(s, 0) >= 0 {
				c.e.add(l, p.v.Line, "cwd", nil, "contains a NUL byte")
			} else {
				e.cwd = tmplOf("cwd", p.v.Line, s)
			}
		}
	}
	if p, ok := f["after"]; ok {
		e.afterLine = p.v.Line
		if items, ok := c.list(l, "after", p.v); ok {
			for i, it := range items {
				field := fmt.Sprintf("after[%d]", i)
				s, ok := c.scalar(l, field, it)
				if !ok {
					continue
				}
				t := tmplOf(field, it.Line, s)
				if t.parts == nil && t.text == "" {
					c.e.add(l, it.Line, field, nil, "must not be empty")
					continue
				}
				if t.parts == nil && len(t.text) > c.lim.MaxKeyLen {
					c.e.add(l, it.Line, field, nil, "is %d bytes, longer than any key can be (%d)", len(t.text), c.lim.MaxKeyLen)
					continue
				}
				e.after = append(e.after, t)
			}
		}
	}
	if p, ok := f["retries"]; ok {
		if v, ok := c.intField(l, "retries", p.v, 0, maxRetries); ok {
			e.retries = int32(v)
		}
	}
	if p, ok := f["timeout"]; ok {
		if v, ok := c.durationField(l, "timeout", p.v); ok {
			e.timeoutMS = v
		}
	}
	if p, ok := f["worker"]; ok {
		if s, ok := c.scalar(l, "worker", p.v); ok {
			e.tier = -1
			var names []string
			for i, t := range c.job.Workers {
				names = append(names, t.Name)
				if t.Name == s {
					e.tier = int32(i)
				}
			}
			if e.tier < 0 && len(names) > 0 {
				c.e.add(l, p.v.Line, "worker", nil, "unknown worker tier %q (the job's tiers: %s)", s, strings.Join(names, ", "))
			}
			e.tier = max(e.tier, 0)
		}
	}
	return e
}

// foreach reads an entry's foreach and counts its elements.
func (c *compiler) foreach(l loc, n *yaml.Node, fe *foreach) bool {
	ps, ok := c.mapping(l, "foreach", n)
	if !ok {
		return false
	}
	fe.line = n.Line
	var chosen []pair
	for _, p := range ps {
		switch p.key {
		case "range", "values", "lines":
			chosen = append(chosen, p)
		default:
			c.unknownField(l, "foreach.", p, foreachFields)
		}
	}
	if len(chosen) != 1 {
		c.e.add(l, n.Line, "foreach", nil, "needs exactly one of range, values or lines")
		return false
	}
	p := chosen[0]
	field := "foreach." + p.key
	switch p.key {
	case "lines":
		c.e.add(l, p.v.Line, field, nil, "must be resolved by the client before the spec is sent: the haul CLI replaces it with values read from the file; API clients send values")
		return false
	case "values":
		items, ok := c.list(l, field, p.v)
		if !ok {
			return false
		}
		if len(items) == 0 {
			c.e.add(l, p.v.Line, field, nil, "must not be empty: the entry would have no tasks")
			return false
		}
		fe.items = make([]string, len(items))
		good := true
		for i, it := range items {
			it = c.w.visit(it)
			f := fmt.Sprintf("%s[%d]", field, i)
			switch {
			case c.w.over:
				return false
			case it.Kind != yaml.ScalarNode || isNull(it):
				c.e.add(l, it.Line, f, nil, "must be a string or a number, got %s", kindName(it))
				good = false
			case strings.IndexByte(it.Value, 0) >= 0:
				c.e.add(l, it.Line, f, nil, "contains a NUL byte")
				good = false
			default:
				fe.items[i] = it.Value
			}
		}
		if !good {
			return false
		}
		fe.kind, fe.count = feValues, uint64(len(items))
	case "range":
		items, ok := c.list(l, field, p.v)
		if !ok {
			return false
		}
		if len(items) != 2 && len(items) != 3 {
			c.e.add(l, p.v.Line, field, nil, "must be [start, end] or [start, end, step], got %d numbers", len(items))
			return false
		}
		var v [3]int64
		v[2] = 1
		for i, it := range items {
			s, ok := c.scalar(l, field, it)
			if !ok {
				return false
			}
			x, err := parseInt(s)
			if err != nil {
				if err.Error() == "out of range" {
					c.e.add(l, it.Line, field, ErrTooLarge, "too large: %q does not fit a 64-bit integer", s)
				} else {
					c.e.add(l, it.Line, field, nil, "%q: %v", s, err)
				}
				return false
			}
			v[i] = x
		}
		start, end, step := v[0], v[1], v[2]
		if step == 0 {
			c.e.add(l, p.v.Line, field, nil, "step must not be 0")
			return false
		}
		var count uint64
		if step > 0 && end > start {
			diff, s := uint64(end)-uint64(start), uint64(step)
			count = diff / s
			if diff%s != 0 {
				count++
			}
		} else if step < 0 && start > end {
			diff, s := uint64(start)-uint64(end), -uint64(step)
			count = diff / s
			if diff%s != 0 {
				count++
			}
		}
		if count == 0 {
			c.e.add(l, p.v.Line, field, nil, "range [%d, %d) with step %d is empty: the entry would have no tasks", start, end, step)
			return false
		}
		if count > uint64(c.lim.MaxTasks) {
			c.e.add(l, p.v.Line, field, ErrTooLarge, "too large: %d elements, more than the limit of %d tasks", count, c.lim.MaxTasks)
			return false
		}
		fe.kind, fe.start, fe.step, fe.count = feRange, start, step, count
	}
	return true
}

// badKey says what is wrong with an expanded task key, or "".
func badKey(k string, maxLen int) string {
	if k == "" {
		return "must not be empty"
	}
	if len(k) > maxLen {
		shown := fmt.Sprintf("%q", k)
		if len(k) > 40 {
			shown = fmt.Sprintf("%q...", k[:40])
		}
		return fmt.Sprintf("key %s is %d bytes, more than the limit of %d", shown, len(k), maxLen)
	}
	if bad := text(k); bad != "" {
		return fmt.Sprintf("key %q %s", k, bad)
	}
	for _, r := range k {
		if strings.ContainsRune("*?[]\\{}", r) || unicode.IsSpace(r) {
			return fmt.Sprintf("key %q contains %q: keys may not contain whitespace or any of * ? [ ] \\ { }", k, r)
		}
	}
	return ""
}

// tmpl is a string with foreach placeholders, split into parts.
type tmpl struct {
	text          string  // the text when it has no placeholders
	parts         []tpart // nil when the text has no placeholders
	hasI, hasItem bool
}

type tpart struct {
	lit string
	ph  byte // 0: lit; 'i': {i}; 'x': {item}
}

// parseTmpl splits s into literal text and placeholders. Outside a foreach
// (fe == feNone) text is taken as is.
func parseTmpl(s string, fe feKind) (tmpl, error) {
	if fe == feNone || strings.IndexByte(s, '{') < 0 {
		return tmpl{text: s}, nil
	}
	var t tmpl
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, tpart{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		rest := s[i:]
		switch {
		case rest[0] != '{':
			j := strings.IndexByte(rest, '{')
			if j < 0 {
				j = len(rest)
			}
			lit.WriteString(rest[:j])
			i += j
		case strings.HasPrefix(rest, "{{"):
			lit.WriteByte('{')
			i += 2
		case strings.HasPrefix(rest, "{i}"):
			flush()
			t.parts = append(t.parts, tpart{ph: 'i'})
			t.hasI = true
			i += 3
		case strings.HasPrefix(rest, "{item}"):
			if fe != feValues {
				return tmpl{}, errors.New("{item} needs foreach values (a range gives only {i})")
			}
			flush()
			t.parts = append(t.parts, tpart{ph: 'x'})
			t.hasItem = true
			i += 6
		default:
			end := strings.IndexByte(rest, '}')
			if end < 0 || end > 32 || strings.IndexByte(rest[1:end], '{') >= 0 {
				return tmpl{}, errors.New("unmatched '{': write {{ for a literal brace")
			}
			return tmpl{}, fmt.Errorf("unknown placeholder %q: use {i}, {item}, or {{ for a literal brace", rest[:end+1])
		}
	}
	if t.parts == nil {
		return tmpl{text: lit.String()}, nil
	}
	flush()
	return t, nil
}

// expand returns the template's text for one element.
func (t *tmpl) expand(i, item string, b *strings.Builder) string {
	if t.parts == nil {
		return t.text
	}
	b.Reset()
	for _, p := range t.parts {
		switch p.ph {
		case 'i':
			b.WriteString(i)
		case 'x':
			b.WriteString(item)
		default:
			b.WriteString(p.lit)
		}
	}
	return b.String()
}

func (t *tmpl) constant() bool { return t.parts == nil }
