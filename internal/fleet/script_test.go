package fleet

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/scripttest"
)

// TestScripts runs the scenario scripts in testdata (the format of
// internal/scripttest). `go test ./internal/fleet -rewrite` rewrites the
// expected output with the actual one.
//
// Commands (durations in Go syntax; the clock is at +0s until moved):
//
//	config [idle=D] [worker-timeout=D] [start-timeout=D] [half-life=D] [max=N] [prefix=P] [ns-half-life=NS:D]
//	job ID [tiers=N] [max=N] [created=+D] [ns=NS] [priority=N]
//	end JOB
//	demand JOB [tier=N] [waiting=N] [ready=N] [running=N] [elapsed=D]
//	observe JOB [tier=N] D          (a task of the tier ran for D)
//	poll ID
//	running ID N
//	ended ID
//	adopt ID JOB [tier=N] [running=N]
//	refused ID +D                   (placement refused the start; the tier holds for D)
//	retire ID WHY...                (the shell asks the worker to go)
//	status JOB [tier=N]             (TierStatus)
//	step [+D] [slots=N]             (advance the clock, then Step; slots default 100; then Starved)
//	advance +D                      (advance the clock only)
//	wake                            (NextWake)
//	workers                         (every job and its workers by tier, and the counts)
//	target JOB [tier=N]
//	estimates JOB [tier=N]          (the task estimates of the tier and the namespace, the startup one)
func TestScripts(t *testing.T) {
	t.Parallel()
	scripttest.Run(t, "testdata/*.txt", func(t *testing.T) func(scripttest.Block) ([]string, error) {
		h := &harness{t: t, t0: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
		h.now = h.t0
		return func(b scripttest.Block) ([]string, error) { return h.run(b), nil }
	})
}

// harness holds one script's Fleet and fake clock.
type harness struct {
	t   *testing.T
	t0  time.Time
	now time.Time
	f   *Fleet
}

func (h *harness) fleet() *Fleet {
	if h.f == nil {
		h.f = New(Config{})
	}
	return h.f
}

func (h *harness) run(b scripttest.Block) []string {
	words := strings.Fields(b.Cmd)
	kv, pos := args(words[1:])
	out, err := h.exec(words[0], kv, pos)
	if err != nil {
		return append(out, "error: "+err.Error())
	}
	h.check()
	return out
}

func (h *harness) exec(cmd string, kv map[string]string, pos []string) ([]string, error) {
	f := h.fleet()
	want := func(n int) error {
		if len(pos) != n {
			return fmt.Errorf("%s wants %d plain arguments, got %d", cmd, n, len(pos))
		}
		return nil
	}
	switch cmd {
	case "config":
		var cfg Config
		var err error
		if cfg.IdleTimeout, err = durArg(kv, "idle"); err != nil {
			return nil, err
		}
		if cfg.WorkerTimeout, err = durArg(kv, "worker-timeout"); err != nil {
			return nil, err
		}
		if cfg.StartTimeout, err = durArg(kv, "start-timeout"); err != nil {
			return nil, err
		}
		if cfg.HalfLife, err = durArg(kv, "half-life"); err != nil {
			return nil, err
		}
		if cfg.MaxWorkers, err = intArg(kv, "max", 0); err != nil {
			return nil, err
		}
		cfg.IDPrefix = kv["prefix"]
		if v, ok := kv["ns-half-life"]; ok {
			ns, d, _ := strings.Cut(v, ":")
			hl, err := time.ParseDuration(d)
			if err != nil {
				return nil, fmt.Errorf("ns-half-life=%s: %w", v, err)
			}
			cfg.NamespaceHalfLife = map[string]time.Duration{ns: hl}
		}
		h.f = New(cfg)
		c := h.f.Config()
		return []string{fmt.Sprintf("idle %v, worker timeout %v, start timeout %v, half-life %v, max %d",
			c.IdleTimeout, c.WorkerTimeout, c.StartTimeout, c.HalfLife, c.MaxWorkers)}, nil
	case "job":
		if err := want(1); err != nil {
			return nil, err
		}
		tiers, err := intArg(kv, "tiers", 1)
		if err != nil {
			return nil, err
		}
		maxW, err := intArg(kv, "max", 0)
		if err != nil {
			return nil, err
		}
		created, err := durArg(kv, "created")
		if err != nil {
			return nil, err
		}
		prio, err := intArg(kv, "priority", 0)
		if err != nil {
			return nil, err
		}
		return nil, f.AddJob(Job{ID: pos[0], Namespace: kv["ns"], Tiers: tiers, MaxWorkers: maxW, Created: h.t0.Add(created), Priority: int32(prio)})
	case "refused":
		if err := want(2); err != nil {
			return nil, err
		}
		d, err := time.ParseDuration(strings.TrimPrefix(pos[1], "+"))
		if err != nil {
			return nil, err
		}
		return nil, f.Refused(pos[0], h.now.Add(d), h.now)
	case "retire":
		if len(pos) < 1 {
			return nil, fmt.Errorf("retire: want a worker ID")
		}
		return nil, f.Retire(pos[0], strings.Join(pos[1:], " "), h.now)
	case "status":
		if err := want(1); err != nil {
			return nil, err
		}
		tier, err := intArg(kv, "tier", 0)
		if err != nil {
			return nil, err
		}
		st, err := f.TierStatus(pos[0], int32(tier), h.now)
		if err != nil {
			return nil, err
		}
		line := fmt.Sprintf("target %d, active %d, starting %d, job workers %d of max %d", st.Target, st.Active, st.Starting, st.JobWorkers, st.MaxWorkers)
		if st.Starting > 0 {
			line += ", starting since " + h.at(st.StartingSince)
		}
		if !st.BackoffUntil.IsZero() {
			line += ", backoff until " + h.at(st.BackoffUntil)
		}
		if !st.HeldUntil.IsZero() {
			line += ", held until " + h.at(st.HeldUntil)
		}
		return []string{line}, nil
	case "end":
		if err := want(1); err != nil {
			return nil, err
		}
		return nil, f.EndJob(pos[0])
	case "demand":
		if err := want(1); err != nil {
			return nil, err
		}
		tier, err := intArg(kv, "tier", 0)
		if err != nil {
			return nil, err
		}
		var d Demand
		for _, p := range []struct {
			key string
			v   *int
		}{{"waiting", &d.Waiting}, {"ready", &d.Ready}, {"running", &d.Running}} {
			if *p.v, err = intArg(kv, p.key, 0); err != nil {
				return nil, err
			}
		}
		if _, ok := kv["waiting"]; !ok {
			d.Waiting = d.Ready
		}
		if d.Elapsed, err = durArg(kv, "elapsed"); err != nil {
			return nil, err
		}
		return nil, f.SetDemand(pos[0], int32(tier), d, h.now)
	case "observe":
		if err := want(2); err != nil {
			return nil, err
		}
		tier, err := intArg(kv, "tier", 0)
		if err != nil {
			return nil, err
		}
		d, err := time.ParseDuration(pos[1])
		if err != nil {
			return nil, err
		}
		return nil, f.ObserveTask(pos[0], int32(tier), d, h.now)
	case "poll":
		if err := want(1); err != nil {
			return nil, err
		}
		return nil, f.Polled(pos[0], h.now)
	case "running":
		if err := want(2); err != nil {
			return nil, err
		}
		n, err := strconv.Atoi(pos[1])
		if err != nil {
			return nil, err
		}
		return nil, f.SetRunning(pos[0], n, h.now)
	case "ended":
		if err := want(1); err != nil {
			return nil, err
		}
		g, ok := f.Ended(pos[0], h.now)
		if !ok {
			return []string{"unknown worker"}, nil
		}
		line := fmt.Sprintf("gone: %s/%d, started %s", g.Job, g.Tier, h.at(g.Started))
		if !g.Polled {
			line += fmt.Sprintf("; failed start %d in a row, next start at %s", g.Failures, h.at(g.NextStart))
		}
		return []string{line}, nil
	case "adopt":
		if err := want(2); err != nil {
			return nil, err
		}
		tier, err := intArg(kv, "tier", 0)
		if err != nil {
			return nil, err
		}
		running, err := intArg(kv, "running", 0)
		if err != nil {
			return nil, err
		}
		return nil, f.Adopt(Adoption{ID: pos[0], Job: pos[1], Tier: int32(tier), Running: running}, h.now)
	case "step", "advance":
		if len(pos) == 1 {
			d, err := time.ParseDuration(strings.TrimPrefix(pos[0], "+"))
			if err != nil {
				return nil, err
			}
			h.now = h.now.Add(d)
		}
		out := []string{"now " + h.at(h.now)}
		if cmd == "advance" {
			return out, nil
		}
		slots, err := intArg(kv, "slots", 100)
		if err != nil {
			return nil, err
		}
		for _, d := range f.Step(h.now, slots) {
			out = append(out, d.String())
		}
		for _, st := range f.Starved() {
			out = append(out, fmt.Sprintf("starved %s/%d want %d", st.Job, st.Tier, st.Want))
		}
		return append(out, h.wake()), nil
	case "wake":
		return []string{h.wake()}, nil
	case "estimates":
		if err := want(1); err != nil {
			return nil, err
		}
		tier, err := intArg(kv, "tier", 0)
		if err != nil {
			return nil, err
		}
		j, tr, err := f.lookupTier(pos[0], int32(tier))
		if err != nil {
			return nil, err
		}
		e := f.est[j.ns]
		return []string{fmt.Sprintf("task: tier %s, namespace %s; startup %s", estimate(tr.task), estimate(e.task), estimate(e.startup))}, nil
	case "workers":
		return h.workers(), nil
	case "target":
		if err := want(1); err != nil {
			return nil, err
		}
		tier, err := intArg(kv, "tier", 0)
		if err != nil {
			return nil, err
		}
		n, err := f.Target(pos[0], int32(tier), h.now)
		if err != nil {
			return nil, err
		}
		return []string{fmt.Sprintf("target %d", n)}, nil
	}
	return nil, fmt.Errorf("unknown command %q", cmd)
}

// estimate prints an estimate's value in seconds and its weight.
func estimate(e sched.Estimate) string {
	v, ok := e.Value()
	if !ok {
		return "none"
	}
	return fmt.Sprintf("%.4gs (weight %.3g)", v, e.Weight())
}

func (h *harness) wake() string {
	w := h.f.NextWake()
	if w.IsZero() {
		return "next wake: none"
	}
	return "next wake: " + h.at(w)
}

// workers lists every worker, by job in start order and tier.
func (h *harness) workers() []string {
	f := h.f
	var out []string
	for _, ji := range f.order {
		j := &f.jobs[ji]
		n, _ := f.JobWorkers(j.id)
		line := fmt.Sprintf("job %s: %d workers", j.id, n)
		if j.ended {
			line += ", ended"
		}
		out = append(out, line)
		for t := range j.tiers {
			for _, wi := range j.tiers[t].workers {
				w, _ := f.Worker(f.workers[wi].id)
				line := fmt.Sprintf("%s %s/%d %s", w.ID, w.Job, w.Tier, w.State)
				if w.Running > 0 {
					line += fmt.Sprintf(" running=%d", w.Running)
				}
				out = append(out, "  "+line)
			}
		}
	}
	c := f.Counts()
	var parts []string
	for s, n := range c {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", State(s), n))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "none")
	}
	return append(out, "counts: "+strings.Join(parts, " "))
}

// check verifies the Fleet's bookkeeping after every command: the slabs,
// the indexes, the order and the per-job counts agree.
func (h *harness) check() {
	h.t.Helper()
	if err := h.f.verify(); err != nil {
		h.t.Error(err)
	}
}

func (h *harness) at(t time.Time) string { return "+" + t.Sub(h.t0).String() }

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

func durArg(kv map[string]string, key string) (time.Duration, error) {
	v, ok := kv[key]
	if !ok {
		return 0, nil
	}
	d, err := time.ParseDuration(strings.TrimPrefix(v, "+"))
	if err != nil {
		return 0, fmt.Errorf("%s=%s: %w", key, v, err)
	}
	return d, nil
}

// verify checks the Fleet's internal consistency.
func (f *Fleet) verify() error {
	if len(f.order) != len(f.jobIndex) {
		return fmt.Errorf("%d jobs in order, %d indexed", len(f.order), len(f.jobIndex))
	}
	if !slices.IsSortedFunc(f.order, f.less) {
		return fmt.Errorf("job order not sorted")
	}
	seen := 0
	for _, ji := range f.order {
		j := &f.jobs[ji]
		if i, ok := f.jobIndex[j.id]; !ok || i != ji {
			return fmt.Errorf("job %q at slab %d indexed at %d", j.id, ji, i)
		}
		n := 0
		for t := range j.tiers {
			for _, wi := range j.tiers[t].workers {
				w := &f.workers[wi]
				if w.id == "" || w.job != ji || w.tier != int32(t) || f.workerIndex[w.id] != wi {
					return fmt.Errorf("job %q tier %d lists slab %d: %+v", j.id, t, wi, *w)
				}
				n++
			}
		}
		if n != j.alive {
			return fmt.Errorf("job %q counts %d workers, lists %d", j.id, j.alive, n)
		}
		if j.ended && n == 0 {
			return fmt.Errorf("job %q ended with no workers but is kept", j.id)
		}
		seen += n
	}
	if seen != len(f.workerIndex) {
		return fmt.Errorf("%d workers listed by jobs, %d indexed", seen, len(f.workerIndex))
	}
	c := f.Counts()
	total := 0
	for _, n := range c {
		total += n
	}
	if total != seen {
		return fmt.Errorf("counts %v sum to %d, %d workers", c, total, seen)
	}
	return nil
}
