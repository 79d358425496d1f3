package runner

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// taskTable is what the runner keeps of a job's tasks between loading the
// job and dispatching them, packed so that a job of a million tasks costs
// little more than its text: each task's key, cwd, argv and env are one
// length-prefixed record in a byte arena (a foreach-expanded task is a few
// dozen bytes), its dependency list is an index into the distinct lists
// (expanded tasks share theirs), and the only other per-task state is the
// start time and exit code of its current attempt. The scheduling state
// proper lives in sched.Job. Not safe for concurrent use (the runner's lock
// guards it).
type taskTable struct {
	arena   []byte
	off     []uint64 // per task: start of its record in arena
	started []int64  // per task: unix nanos the current (or last) attempt started, 0 for none
	exit    []int32  // per task: exit code of the last finished attempt
	queued  []int64  // per task: unix nanos it last became ready (for the dispatch latency), 0 unknown
	after   []uint32 // per task: index into afters

	afters     [][]string
	afterIndex map[string]uint32 // joined list → index into afters
}

func newTaskTable(n int) *taskTable {
	return &taskTable{
		off: make([]uint64, 0, n), started: make([]int64, 0, n), queued: make([]int64, 0, n), exit: make([]int32, 0, n), after: make([]uint32, 0, n),
		afterIndex: map[string]uint32{},
	}
}

// len returns the number of tasks.
func (tt *taskTable) len() int { return len(tt.off) }

// add appends a task (its Index must be tt.len()).
func (tt *taskTable) add(t *store.Task) {
	tt.off = append(tt.off, uint64(len(tt.arena)))
	tt.putString(t.Key)
	tt.putString(t.Cwd)
	tt.putUvarint(uint64(len(t.Argv)))
	for _, a := range t.Argv {
		tt.putString(a)
	}
	tt.putUvarint(uint64(len(t.Env)))
	for k, v := range t.Env {
		tt.putString(k)
		tt.putString(v)
	}
	var started int64
	if !t.StartedAt.IsZero() {
		started = t.StartedAt.UnixNano()
	}
	tt.started = append(tt.started, started)
	tt.queued = append(tt.queued, 0)
	tt.exit = append(tt.exit, t.ExitCode)
	key := strings.Join(t.After, "\x00")
	x, ok := tt.afterIndex[key]
	if !ok {
		x = uint32(len(tt.afters))
		tt.afters = append(tt.afters, t.After)
		tt.afterIndex[key] = x
	}
	tt.after = append(tt.after, x)
}

func (tt *taskTable) putUvarint(v uint64) { tt.arena = binary.AppendUvarint(tt.arena, v) }

func (tt *taskTable) putString(s string) {
	tt.putUvarint(uint64(len(s)))
	tt.arena = append(tt.arena, s...)
}

// reader walks one task's record.
type reader struct {
	b []byte
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	r.b = r.b[n:]
	return v
}

func (r *reader) string() string {
	n := r.uvarint()
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (tt *taskTable) record(i int32) *reader { return &reader{b: tt.arena[tt.off[i]:]} }

// key returns task i's key.
func (tt *taskTable) key(i int32) string { return tt.record(i).string() }

// spec returns task i's key, cwd, argv and env, as stored.
func (tt *taskTable) spec(i int32) (key, cwd string, argv []string, env map[string]string) {
	r := tt.record(i)
	key, cwd = r.string(), r.string()
	argv = make([]string, r.uvarint())
	for j := range argv {
		argv[j] = r.string()
	}
	if n := r.uvarint(); n > 0 {
		env = make(map[string]string, n)
		for range n {
			k := r.string()
			env[k] = r.string()
		}
	}
	return key, cwd, argv, env
}

// afterOf returns task i's dependencies as written.
func (tt *taskTable) afterOf(i int32) []string { return tt.afters[tt.after[i]] }

// queuedAt returns when task i last became ready (zero: before this
// runner loaded it).
func (tt *taskTable) queuedAt(i int32) time.Time {
	if ns := tt.queued[i]; ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// startedAt returns when task i's current attempt started (zero for none).
func (tt *taskTable) startedAt(i int32) time.Time {
	if ns := tt.started[i]; ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// bytes estimates the table's memory.
func (tt *taskTable) bytes() int {
	n := cap(tt.arena) + 8*cap(tt.off) + 8*cap(tt.started) + 8*cap(tt.queued) + 4*cap(tt.exit) + 4*cap(tt.after)
	for _, a := range tt.afters {
		for _, s := range a {
			n += 16 + len(s)
		}
	}
	return n
}
