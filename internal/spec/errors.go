package spec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/haul-dev/haul/internal/dag"
)

// ErrTooLarge is wrapped by the errors that report a spec over one of its
// Limits, so that a server can answer "resource exhausted" rather than
// "invalid argument".
var ErrTooLarge = errors.New("too large")

// maxErrors is the number of problems Compile reports before it summarizes
// the rest in one line.
const maxErrors = 100

// Error is one problem in a spec. It prints as one line, for example
//
//	job.yaml:12: task "sim-{i}" (tasks[1]) field command: must not be empty
type Error struct {
	File string
	Line int // 1-based; 0 when unknown
	// Task is the key of the task at fault: as written (with its
	// placeholders) for a problem of a whole task entry, or expanded for a
	// problem of one foreach element. Empty for job fields.
	Task string
	// Entry is the task's position in the spec's `tasks` list, or -1 for a
	// job field.
	Entry int
	// Element is the foreach element at fault, or -1.
	Element int
	// Field is the field at fault, relative to the task for task problems
	// (e.g. "foreach.range", "env.HOME") and to the job otherwise (e.g.
	// "workers[1].memory").
	Field string
	Msg   string
	// Err is the underlying error, if any: a dag.Error for dependency
	// problems, ErrTooLarge for limits.
	Err error
}

func (e Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Entry >= 0 {
		if e.Task != "" {
			fmt.Fprintf(&b, "task %q (tasks[%d]", e.Task, e.Entry)
		} else {
			fmt.Fprintf(&b, "task (tasks[%d]", e.Entry)
		}
		if e.Element >= 0 {
			fmt.Fprintf(&b, " element %d", e.Element)
		}
		b.WriteString(") ")
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %s: ", e.Field)
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e Error) Unwrap() error { return e.Err }

// Errors is every problem Compile found, one per line.
type Errors []Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns the underlying errors: the dependency problems together as
// one dag.Errors, then the others (such as ErrTooLarge) one by one.
func (es Errors) Unwrap() []error {
	var out []error
	var d dag.Errors
	for _, e := range es {
		var de dag.Error
		switch {
		case e.Err == nil:
		case errors.As(e.Err, &de):
			d = append(d, de)
		default:
			out = append(out, e.Err)
		}
	}
	if len(d) > 0 {
		out = append([]error{d}, out...)
	}
	return out
}

// loc is where an error is: a job field (entry -1) or a task entry.
type loc struct {
	task    string
	entry   int
	element int
}

var jobLoc = loc{entry: -1, element: -1}

func taskLoc(key string, entry int) loc { return loc{task: key, entry: entry, element: -1} }

// errs collects problems up to maxErrors and counts the rest.
type errs struct {
	file    string
	list    Errors
	dropped int
}

func (c *errs) add(l loc, line int, field string, err error, format string, args ...any) {
	if len(c.list) >= maxErrors {
		c.dropped++
		return
	}
	c.list = append(c.list, Error{File: c.file, Line: line, Task: l.task, Entry: l.entry, Element: l.element,
		Field: field, Msg: fmt.Sprintf(format, args...), Err: err})
}

func (c *errs) failed() bool { return len(c.list) > 0 }

func (c *errs) result() error {
	if len(c.list) == 0 {
		return nil
	}
	out := c.list
	if c.dropped > 0 {
		out = append(out, Error{File: c.file, Entry: -1, Element: -1,
			Msg: fmt.Sprintf("and %d more problems not shown", c.dropped)})
	}
	return out
}
