package spec

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/haul-dev/haul/internal/dag"
)

// elementErrs keeps, per field, the first problem of an entry's elements
// and how many elements had it, so that a million bad elements make one line.
type elementErrs struct {
	c     *compiler
	e     *entry
	first map[string]*Error
	count map[string]int
	order []string
}

func (ee *elementErrs) add(el int, key, field string, line int, err error, format string, args ...any) {
	if ee.first == nil {
		ee.first, ee.count = map[string]*Error{}, map[string]int{}
	}
	ee.count[field]++
	if ee.first[field] != nil {
		return
	}
	ee.order = append(ee.order, field)
	ee.first[field] = &Error{Line: line, Task: key, Entry: ee.e.index, Element: el, Field: field, Msg: fmt.Sprintf(format, args...), Err: err}
}

func (ee *elementErrs) flush() {
	for _, f := range ee.order {
		e := ee.first[f]
		if n := ee.count[f] - 1; n > 0 {
			e.Msg += fmt.Sprintf(" (and %d more elements)", n)
		}
		ee.c.e.add(loc{task: e.Task, entry: e.Entry, element: e.Element}, e.Line, e.Field, e.Err, "%s", e.Msg)
	}
}

// expand fills c.job.Tasks from the entries and returns the keys and after
// lists for dag.Build.
func (c *compiler) expand(entries []*entry) ([]string, [][]string) {
	total := 0
	for _, e := range entries {
		e.start = total
		total += int(e.fe.count)
	}
	tasks := make([]Task, 0, total)
	keys := make([]string, 0, total)
	after := make([][]string, 0, total)
	var b strings.Builder
	// stored counts what the store will hold for the tasks so far (see
	// Limits.MaxJobBytes); expansion stops at the first task past the limit,
	// so that a small spec cannot fill the server's memory.
	stored := 0
	for _, e := range entries {
		ee := elementErrs{c: c, e: e}
		// What does not change from one element to the next is built once
		// and shared.
		constCommand := allConstant(e.command)
		var command []string
		argBytes := 0
		if constCommand {
			command = texts(e.command)
			argBytes = bytesOf(command)
		}
		constEnv := allConstant(e.envVals)
		var env map[string]string
		envBytes := c.jobEnvBytes
		for i, n := range e.envNames {
			if v, ok := c.job.Env[n]; ok {
				envBytes -= len(n) + len(v) + 2
			}
			if constEnv {
				envBytes += len(n) + len(e.envVals[i].text) + 2
			}
		}
		if constEnv && len(e.envNames) > 0 {
			env = make(map[string]string, len(e.envNames))
			for i, n := range e.envNames {
				env[n] = e.envVals[i].text
			}
		}
		constAfter := allConstant(e.after)
		var deps []string
		afterBytes := 0
		if constAfter {
			deps = texts(e.after)
			afterBytes = bytesOf(deps)
		}
		// The task's own environment, as the store holds it.
		taskEnvBytes := 0
		if constEnv {
			for i, n := range e.envNames {
				taskEnvBytes += len(n) + len(e.envVals[i].text) + 2
			}
		}
		var iBuf []byte
		for el := range e.fe.count {
			var is, item string
			switch e.fe.kind {
			case feRange:
				// The value lies in [start, end), so the wrapping
				// arithmetic gives it exactly.
				v := int64(uint64(e.fe.start) + el*uint64(e.fe.step))
				iBuf = strconv.AppendInt(iBuf[:0], v, 10)
				is = string(iBuf)
			case feValues:
				iBuf = strconv.AppendUint(iBuf[:0], el, 10)
				is = string(iBuf)
				item = e.fe.items[el]
			}
			elem := -1
			if e.fe.kind != feNone {
				elem = int(el)
			}
			t := Task{Tier: e.tier, Retries: e.retries, TimeoutMS: e.timeoutMS, Command: command, Env: env, After: deps}
			t.Key = e.key.expand(is, item, &b)
			if !e.key.constant() {
				if msg := badKey(t.Key, c.lim.MaxKeyLen); msg != "" {
					ee.add(elem, t.Key, "key", e.keyLine, nil, "%s", msg)
				}
			}
			n := argBytes
			if !constCommand {
				t.Command = make([]string, len(e.command))
				for i := range e.command {
					t.Command[i] = e.command[i].expand(is, item, &b)
				}
				n = bytesOf(t.Command)
				if t.Command[0] == "" {
					ee.add(elem, t.Key, "command[0]", e.commandLine, nil, "is empty: it names the program to run")
				}
			}
			st := n + len(t.Key) + taskEnvBytes // n is argv's bytes so far
			n += envBytes
			if !constEnv {
				t.Env = make(map[string]string, len(e.envNames))
				for i, name := range e.envNames {
					v := e.envVals[i].expand(is, item, &b)
					t.Env[name] = v
					n += len(name) + len(v) + 2
					st += len(name) + len(v) + 2
				}
			}
			if n > c.lim.MaxArgBytes {
				ee.add(elem, t.Key, "command", e.commandLine, ErrTooLarge, "too large: argv and environment take %d bytes, more than the limit of %d", n, c.lim.MaxArgBytes)
			}
			t.Cwd = e.cwd.expand(is, item, &b)
			st += len(t.Cwd) + afterBytes
			if !constAfter {
				t.After = make([]string, len(e.after))
				for i := range e.after {
					d := e.after[i].expand(is, item, &b)
					t.After[i] = d
					st += len(d) + 1
					if d == "" {
						ee.add(elem, t.Key, fmt.Sprintf("after[%d]", i), e.afterLine, nil, "is empty")
					}
				}
			}
			if stored += st; stored > c.lim.MaxJobBytes {
				ee.flush()
				c.e.add(loc{task: t.Key, entry: e.index, element: elem}, e.keyLine, "", ErrTooLarge,
					"too large: the %d tasks expand to more than the limit of %d bytes (keys, argv, task env, cwd and after, summed over the tasks); the first %d tasks alone take %d",
					total, c.lim.MaxJobBytes, len(tasks)+1, stored)
				return nil, nil
			}
			tasks = append(tasks, t)
			keys = append(keys, t.Key)
			after = append(after, t.After)
		}
		ee.flush()
	}
	c.job.Tasks = tasks
	for _, e := range entries {
		c.job.Entries = append(c.job.Entries, Entry{Key: e.keyText, Start: e.start, Count: int(e.fe.count)})
	}
	return keys, after
}

func allConstant(ts []tmpl) bool {
	for i := range ts {
		if !ts[i].constant() {
			return false
		}
	}
	return true
}

func texts(ts []tmpl) []string {
	if len(ts) == 0 {
		return nil
	}
	out := make([]string, len(ts))
	for i := range ts {
		out[i] = ts[i].text
	}
	return out
}

// bytesOf counts argv as exec passes it: each string and its NUL.
func bytesOf(argv []string) int {
	n := 0
	for _, a := range argv {
		n += len(a) + 1
	}
	return n
}

// dagErrors turns dependency problems into spec errors that name the entry,
// element and line of each.
func (c *compiler) dagErrors(err error, entries []*entry) {
	var des dag.Errors
	if !errors.As(err, &des) {
		c.e.add(jobLoc, 0, "tasks", err, "%v", err)
		return
	}
	where := func(task int) (*entry, int) {
		i := sort.Search(len(entries), func(i int) bool { return entries[i].start > task }) - 1
		e := entries[i]
		if e.fe.kind == feNone {
			return e, -1
		}
		return e, task - e.start
	}
	// The same problem in many elements of one entry (a typo in a
	// foreach's after) is reported once, at its first element, with the
	// count of the others, as elementErrs does for expansion problems.
	type group struct {
		entry      int
		field, msg string
	}
	var order []group
	first := map[group]Error{}
	count := map[group]int{}
	for _, de := range des {
		e, el := where(de.Index)
		var err Error
		switch de.Field {
		case "key":
			fe, fel := where(de.First)
			at := fmt.Sprintf("tasks[%d]", fe.index)
			if fel >= 0 {
				at += fmt.Sprintf(" element %d", fel)
			}
			err = Error{Line: e.keyLine, Field: "key", Msg: fmt.Sprintf("duplicate key: %s (line %d) has the same key", at, fe.keyLine)}
		default:
			err = Error{Line: e.afterLine, Field: de.Field, Msg: de.Msg}
		}
		err.Task, err.Entry, err.Element, err.Err = de.Task, e.index, el, de
		k := group{entry: -1 - len(order), field: err.Field, msg: err.Msg}
		if el >= 0 {
			k.entry = e.index
		}
		if _, ok := first[k]; !ok {
			order = append(order, k)
			first[k] = err
		}
		count[k]++
	}
	for _, k := range order {
		err := first[k]
		if n := count[k] - 1; n > 0 {
			err.Msg += fmt.Sprintf(" (and %d more elements)", n)
		}
		c.e.add(loc{task: err.Task, entry: err.Entry, element: err.Element}, err.Line, err.Field, err.Err, "%s", err.Msg)
	}
}
