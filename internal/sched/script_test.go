package sched

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/dag"
	"github.com/haul-dev/haul/internal/scripttest"
)

// TestScripts runs the scenario scripts in testdata. A script is a sequence
// of blocks, each a command line, optional input lines, a "----" line and the
// expected output, ended by a blank line; lines starting with # between
// blocks are comments. `go test ./internal/sched -rewrite` rewrites the
// expected output with the actual one.
//
// Commands (durations in Go syntax; the clock starts at t=0 at `job`):
//
//	job [tiers=N] [retries=N] [timeout=D] [backoff=D] [backoff-max=D] [max-lost=N]
//	  NAME [after=A,B,glob-*] [tier=N] [retries=N] [timeout=D]   (input lines, one per task)
//	restore NAME=STATE[:ATTEMPTS[:FAILED[:TIER]]] ...
//	start
//	next [tier=N] [n=K|n=all]
//	finish NAME [attempt=N] [outcome=success|failure|timeout|lost|killed|oom]
//	tick [+D]     (advance the clock, then Tick)
//	advance +D    (advance the clock only)
//	cancel
//	cancel-task NAME
//	extend       (input lines as for job: the tasks to add)
//	state        (every task, its tier when it moved up, the counts and the tiers)
//	counts
func TestScripts(t *testing.T) {
	t.Parallel()
	scripttest.Run(t, "testdata/*.txt", func(t *testing.T) func(scripttest.Block) ([]string, error) {
		h := &harness{t: t}
		return func(b scripttest.Block) ([]string, error) { return h.run(b), nil }
	})
}

// harness holds one script's job, its task names and its fake clock.
type harness struct {
	t     *testing.T
	t0    time.Time
	now   time.Time
	names []string
	after [][]string
	index map[string]int32
	job   *Job
}

// args splits "k=v" words; bare words are returned in pos.
func args(words []string) (kv map[string]string, pos []string) {
	kv = map[string]string{}
	for _, w := range words {
		if k, v, ok := strings.Cut(w, "="); ok {
			kv[k] = v
		} else {
			pos = append(pos, w)
		}
	}
	return kv, pos
}

func (h *harness) run(b scripttest.Block) []string {
	words := strings.Fields(b.Cmd)
	kv, pos := args(words[1:])
	out, err := h.exec(words[0], kv, pos, words[1:], b.Input)
	if err != nil {
		return append(out, "error: "+err.Error())
	}
	if h.job != nil {
		h.check()
	}
	return out
}

func (h *harness) exec(cmd string, kv map[string]string, pos, words, input []string) ([]string, error) {
	if cmd != "job" && h.job == nil {
		return nil, fmt.Errorf("%s before job", cmd)
	}
	switch cmd {
	case "job":
		return h.buildJob(kv, input)
	case "restore":
		for _, w := range words {
			name, spec, ok := strings.Cut(w, "=")
			if !ok {
				return nil, fmt.Errorf("restore %q: want NAME=STATE[:ATTEMPTS[:FAILED[:TIER]]]", w)
			}
			task, err := h.task(name)
			if err != nil {
				return nil, err
			}
			parts := strings.Split(spec, ":")
			s, err := ParseState(parts[0])
			if err != nil {
				return nil, err
			}
			n := [3]int32{0, 0, -1}
			for i, p := range parts[1:] {
				if i >= 3 {
					return nil, fmt.Errorf("restore %s=%s: too many fields", name, spec)
				}
				v, err := strconv.Atoi(p)
				if err != nil {
					return nil, fmt.Errorf("restore %s=%s: %w", name, spec, err)
				}
				n[i] = int32(v)
			}
			if err := h.job.Restore(task, s, n[0], n[1]); err != nil {
				return nil, err
			}
			if n[2] >= 0 {
				if err := h.job.RestoreTier(task, n[2]); err != nil {
					return nil, err
				}
			}
		}
		return h.drain(), nil
	case "keep":
		for _, w := range words {
			task, err := h.task(w)
			if err != nil {
				return nil, err
			}
			if err := h.job.Keep(task); err != nil {
				return nil, err
			}
		}
		return h.drain(), nil
	case "start":
		h.job.Start(h.now)
		return h.drain(), nil
	case "next":
		tier, err := intArg(kv, "tier", 0)
		if err != nil {
			return nil, err
		}
		count := 1
		if v := kv["n"]; v == "all" {
			count = -1
		} else if count, err = intArg(kv, "n", 1); err != nil {
			return nil, err
		}
		var got []string
		for i := 0; count < 0 || i < count; i++ {
			task, attempt, ok := h.job.Next(int32(tier), h.now)
			if !ok {
				got = append(got, "none")
				break
			}
			got = append(got, fmt.Sprintf("%s#%d", h.names[task], attempt))
		}
		return append([]string{"next: " + strings.Join(got, " ")}, h.drain()...), nil
	case "finish":
		if len(pos) != 1 {
			return nil, fmt.Errorf("finish wants one task name")
		}
		task, err := h.task(pos[0])
		if err != nil {
			return nil, err
		}
		attempt, err := intArg(kv, "attempt", int(h.job.Attempts(task)))
		if err != nil {
			return nil, err
		}
		o := Success
		if v, ok := kv["outcome"]; ok {
			if o, err = ParseOutcome(v); err != nil {
				return nil, err
			}
		}
		if !h.job.Finished(task, int32(attempt), o, h.now) {
			return append([]string{"ignored (stale)"}, h.drain()...), nil
		}
		return h.drain(), nil
	case "tick", "advance":
		if len(pos) == 1 {
			d, err := time.ParseDuration(strings.TrimPrefix(pos[0], "+"))
			if err != nil {
				return nil, err
			}
			h.now = h.now.Add(d)
		}
		if cmd == "tick" {
			h.job.Tick(h.now)
		}
		return append([]string{"now " + h.at(h.now)}, h.drain()...), nil
	case "cancel":
		h.job.Cancel(h.now)
		return h.drain(), nil
	case "extend":
		names, after, tasks, err := parseTasks(input, 0, 0)
		if err != nil {
			return nil, err
		}
		g, err := buildNamed(append(slices.Clone(h.names), names...), append(slices.Clone(h.after), after...))
		if err != nil {
			return nil, err
		}
		if err := h.job.Extend(g, tasks, h.now); err != nil {
			return nil, err
		}
		for _, n := range names {
			h.index[n] = int32(len(h.names))
			h.names = append(h.names, n)
		}
		h.after = append(h.after, after...)
		return append(h.describe(g), h.drain()...), nil
	case "cancel-task":
		if len(pos) != 1 {
			return nil, fmt.Errorf("cancel-task wants one task name")
		}
		task, err := h.task(pos[0])
		if err != nil {
			return nil, err
		}
		h.job.CancelTask(task, h.now)
		return h.drain(), nil
	case "state":
		var out []string
		for i, name := range h.names {
			line := fmt.Sprintf("%s: %s attempts=%d", name, h.job.State(int32(i)), h.job.Attempts(int32(i)))
			if tier := h.job.Tier(int32(i)); tier != h.job.FirstTier(int32(i)) {
				line += fmt.Sprintf(" tier=%d", tier)
			}
			out = append(out, line)
		}
		for tier := range h.job.tiers {
			out = append(out, fmt.Sprintf("tier %d: ready=%d waiting=%d running=%d", tier, h.job.Ready(int32(tier)), h.job.Waiting(int32(tier)), h.job.Running(int32(tier))))
		}
		wake := "none"
		if w := h.job.NextWake(); !w.IsZero() {
			wake = h.at(w)
		}
		out = append(out, "next wake: "+wake)
		return append(out, h.counts()...), nil
	case "counts":
		return h.counts(), nil
	}
	return nil, fmt.Errorf("unknown command %q", cmd)
}

func (h *harness) buildJob(kv map[string]string, input []string) ([]string, error) {
	cfg := Config{Tiers: 1}
	var err error
	if cfg.Tiers, err = intArg(kv, "tiers", 1); err != nil {
		return nil, err
	}
	if cfg.BackoffBase, err = durArg(kv, "backoff", 0); err != nil {
		return nil, err
	}
	if cfg.BackoffMax, err = durArg(kv, "backoff-max", 0); err != nil {
		return nil, err
	}
	if cfg.MaxLost, err = intArg(kv, "max-lost", 0); err != nil {
		return nil, err
	}
	retries, err := intArg(kv, "retries", 0)
	if err != nil {
		return nil, err
	}
	timeout, err := durArg(kv, "timeout", 0)
	if err != nil {
		return nil, err
	}
	names, after, tasks, err := parseTasks(input, retries, timeout)
	if err != nil {
		return nil, err
	}
	g, err := buildNamed(names, after)
	if err != nil {
		return nil, err
	}
	j, err := New(g, tasks, cfg)
	if err != nil {
		return nil, err
	}
	h.t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	h.now = h.t0
	h.names = names
	h.after = after
	h.index = map[string]int32{}
	for i, n := range names {
		h.index[n] = int32(i)
	}
	h.job = j
	return h.describe(g), nil
}

// parseTasks reads task input lines: NAME [after=A,B] [tier=N] [retries=N] [timeout=D].
func parseTasks(input []string, retries int, timeout time.Duration) ([]string, [][]string, []TaskConfig, error) {
	var names []string
	var after [][]string
	var tasks []TaskConfig
	for _, l := range input {
		words := strings.Fields(l)
		if len(words) == 0 {
			continue
		}
		tkv, pos := args(words[1:])
		if len(pos) > 0 {
			return nil, nil, nil, fmt.Errorf("task %s: unexpected %q", words[0], pos[0])
		}
		tc := TaskConfig{}
		tier, err := intArg(tkv, "tier", 0)
		if err != nil {
			return nil, nil, nil, err
		}
		r, err := intArg(tkv, "retries", retries)
		if err != nil {
			return nil, nil, nil, err
		}
		tc.Tier, tc.Retries = int32(tier), int32(r)
		if tc.Timeout, err = durArg(tkv, "timeout", timeout); err != nil {
			return nil, nil, nil, err
		}
		var deps []string
		if v := tkv["after"]; v != "" {
			deps = strings.Split(v, ",")
		}
		names = append(names, words[0])
		after = append(after, deps)
		tasks = append(tasks, tc)
	}
	return names, after, tasks, nil
}

// describe prints a graph's size and groups.
func (h *harness) describe(g *dag.Graph) []string {
	names := h.names
	out := []string{fmt.Sprintf("%d tasks, %d groups, %d edges", g.N, len(g.Groups), len(g.Child))}
	for i, glob := range g.Groups {
		v := int32(g.N + i)
		var members, children []string
		for m := 0; m < g.N; m++ {
			for _, c := range g.Children(int32(m)) {
				if c == v {
					members = append(members, names[m])
				}
			}
		}
		for _, c := range g.Children(v) {
			children = append(children, names[c])
		}
		out = append(out, fmt.Sprintf("group %s: [%s] -> [%s]", glob, strings.Join(members, " "), strings.Join(children, " ")))
	}
	return out
}

func (h *harness) task(name string) (int32, error) {
	t, ok := h.index[name]
	if !ok {
		return 0, fmt.Errorf("unknown task %q", name)
	}
	return t, nil
}

func (h *harness) at(t time.Time) string { return "+" + t.Sub(h.t0).String() }

func (h *harness) drain() []string {
	o := h.job.Drain()
	var out []string
	for _, tr := range o.Transitions {
		detail := fmt.Sprintf("attempt %d", tr.Attempt)
		if tr.Reason != "" {
			detail += ", " + tr.Reason
		}
		if c, ok := h.job.UpstreamCause(tr.Task); ok && tr.To == UpstreamFailed {
			detail += " of " + h.names[c]
		}
		out = append(out, fmt.Sprintf("%s: %s -> %s (%s)", h.names[tr.Task], tr.From, tr.To, detail))
	}
	for _, k := range o.Kills {
		out = append(out, fmt.Sprintf("kill %s attempt %d (%s)", h.names[k.Task], k.Attempt, k.Reason))
	}
	return out
}

func (h *harness) counts() []string {
	c := h.job.Counts()
	var parts []string
	for s, n := range c {
		if n != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", State(s), n))
		}
	}
	line := "counts: " + strings.Join(parts, " ")
	if h.job.Done() {
		line += "; done: " + h.job.Outcome()
	}
	return []string{line}
}

// check verifies the job's bookkeeping after every command.
func (h *harness) check() {
	h.t.Helper()
	var recount [NumStates]int64
	for i := range h.names {
		recount[h.job.State(int32(i))]++
	}
	if c := h.job.Counts(); c != recount {
		h.t.Errorf("counts %v, but the task states add up to %v", c, recount)
	}
	var waiting, running int
	for tier := range h.job.tiers {
		waiting += h.job.Waiting(int32(tier))
		running += h.job.Running(int32(tier))
	}
	if h.job.started && (int64(waiting) != recount[Queued] || int64(running) != recount[Running]) {
		h.t.Errorf("tiers: %d waiting, %d running; counts: %d queued, %d running", waiting, running, recount[Queued], recount[Running])
	}
}

func intArg(kv map[string]string, key string, def int) (int, error) {
	v, ok := kv[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%s: %w", key, v, err)
	}
	return n, nil
}

func durArg(kv map[string]string, key string, def time.Duration) (time.Duration, error) {
	v, ok := kv[key]
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%s: %w", key, v, err)
	}
	return d, nil
}
