package autoscale

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/scripttest"
	"time"
)

// TestScenarios runs the scripts in testdata. A script is a sequence of
// blocks, each a command line, optional input lines, a "----" line and the
// expected output, ended by a blank line; lines starting with # between
// blocks are comments. `go test ./internal/autoscale -run TestScenarios
// -rewrite` rewrites the expected output with the actual one.
//
// Commands (quantities: cpu=2 or 500m, mem=4Gi, 512Mi or bytes; durations
// in Go syntax; the clock starts at 2025-01-01T00:00:00Z):
//
//	configs [strategy=S] [max-nodes=N] [max-spend=F] [max-add=N] [max-remove=N]
//	        [grace=D] [backoff=D] [interval=D]
//	  NAME cpu=Q mem=Q [gpu=N] [gpu-type=T] [price=F] [reserved] [spot]
//	       [labels=k:v,...] [taints=k:v:Effect,...] [max-nodes=N] [max-spend=F]
//	       [max-add=N] [max-remove=N]
//	nodes          (replaces the nodes; free defaults to the capacity
//	                without workers, to nothing with)
//	  ID CONFIG [notready] [workers=N] [idle=D|noidle] [age=D] [free=cpu:Q,mem:Q,gpu:N]
//	inflight       (replaces the in-flight launches)
//	  CONFIG N [ago=D]
//	pods           (replaces the pending pods; tolerate=KEY is Exists,
//	                KEY:VALUE Equal, an effect may follow as a third part)
//	  N cpu=Q mem=Q [gpu=N] [gpu-type=T] [select=k:v,...] [tolerate=T,...]
//	prices         (replaces the price overrides)
//	  CONFIG F
//	plan           (prints the plan and the capacity-limited configs)
//	apply          (the last plan happens: launches become in-flight and are
//	                reported delivered in full, removed nodes go)
//	launched CONFIG asked=N got=M
//	advance D
func TestScenarios(t *testing.T) {
	t.Parallel()
	scripttest.Run(t, "testdata/*.txt", func(*testing.T) func(scripttest.Block) ([]string, error) {
		return newHarness().run
	})
}

// harness holds one script's planner, state and clock.
type harness struct {
	t0, now time.Time
	cfg     Config
	p       *Planner
	state   State
	last    Plan
}

func newHarness() *harness {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	return &harness{t0: t0, now: t0}
}

func (h *harness) run(b scripttest.Block) ([]string, error) {
	verb, args := splitArgs(b.Cmd)
	if verb != "configs" && verb != "advance" && h.p == nil {
		return nil, fmt.Errorf("%s before configs", verb)
	}
	switch verb {
	case "configs":
		return h.configs(args, b.Input)
	case "nodes":
		h.state.Nodes = nil
		for _, l := range b.Input {
			n, err := h.parseNode(l)
			if err != nil {
				return nil, err
			}
			h.state.Nodes = append(h.state.Nodes, n)
		}
		return []string{fmt.Sprintf("%d nodes", len(h.state.Nodes))}, nil
	case "inflight":
		h.state.InFlight = nil
		for _, l := range b.Input {
			name, a := splitArgs(l)
			n, err := strconv.Atoi(a.take())
			if err != nil {
				return nil, fmt.Errorf("inflight %q: %w", l, err)
			}
			ago, err := a.duration("ago")
			if err != nil {
				return nil, err
			}
			h.state.InFlight = append(h.state.InFlight, Launch{Config: name, Count: n, At: h.now.Add(-ago)})
			if err := a.done(); err != nil {
				return nil, err
			}
		}
		return []string{fmt.Sprintf("%d launches in flight", len(h.state.InFlight))}, nil
	case "pods":
		h.state.Pending = nil
		for _, l := range b.Input {
			pods, err := h.parsePods(l)
			if err != nil {
				return nil, err
			}
			h.state.Pending = append(h.state.Pending, pods...)
		}
		return []string{fmt.Sprintf("%d pending pods", len(h.state.Pending))}, nil
	case "prices":
		h.state.Prices = make(map[string]float64)
		for _, l := range b.Input {
			f := strings.Fields(l)
			if len(f) != 2 {
				return nil, fmt.Errorf("price %q: want CONFIG PRICE", l)
			}
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return nil, fmt.Errorf("price %q: %w", l, err)
			}
			h.state.Prices[f[0]] = v
		}
		return []string{fmt.Sprintf("%d prices", len(h.state.Prices))}, nil
	case "plan":
		h.state.Now = h.now
		h.last = h.p.Plan(h.state)
		return h.formatPlan(h.last), nil
	case "apply":
		for _, o := range h.last.Launches {
			h.state.InFlight = append(h.state.InFlight, Launch{Config: o.Config, Count: o.Count, At: h.now})
			h.p.Launched(o.Config, o.Count, o.Count, h.now)
		}
		h.state.Nodes = slices.DeleteFunc(h.state.Nodes, func(n Node) bool {
			return slices.Contains(h.last.Removals, n.ID)
		})
		h.last = Plan{}
		return []string{fmt.Sprintf("%d nodes, %d launches in flight", len(h.state.Nodes), len(h.state.InFlight))}, nil
	case "launched":
		name := args.take()
		asked, err := args.int("asked")
		if err != nil {
			return nil, err
		}
		got, err := args.int("got")
		if err != nil {
			return nil, err
		}
		if err := args.done(); err != nil {
			return nil, err
		}
		h.p.Launched(name, asked, got, h.now)
		return []string{h.limited()}, nil
	case "advance":
		d, err := time.ParseDuration(args.take())
		if err != nil {
			return nil, err
		}
		h.now = h.now.Add(d)
		return []string{"t=+" + h.now.Sub(h.t0).String()}, nil
	}
	return nil, fmt.Errorf("unknown command %q", verb)
}

func (h *harness) limited() string {
	if names := h.p.CapacityLimited(h.now); len(names) > 0 {
		return "capacity-limited: " + strings.Join(names, " ")
	}
	return "capacity-limited: none"
}

func (h *harness) formatPlan(p Plan) []string {
	var out []string
	for _, o := range p.Launches {
		out = append(out, fmt.Sprintf("launch %s x%d", o.Config, o.Count))
	}
	if len(p.Removals) > 0 {
		out = append(out, "remove "+strings.Join(p.Removals, " "))
	}
	for _, s := range p.Shortfall {
		out = append(out, fmt.Sprintf("shortfall %d pods: %s", s.Pods, s.Reason))
	}
	if len(out) == 0 {
		out = append(out, "no change")
	}
	if names := h.p.CapacityLimited(h.now); len(names) > 0 {
		out = append(out, h.limited())
	}
	return out
}

func (h *harness) configs(a args, input []string) ([]string, error) {
	cfg := Config{Strategy: a.str("strategy")}
	var err error
	if cfg.Limits.MaxNodes, err = a.int("max-nodes"); err != nil {
		return nil, err
	}
	if cfg.Limits.MaxSpendPerHour, err = a.float("max-spend"); err != nil {
		return nil, err
	}
	if cfg.Limits.MaxAddPerInterval, err = a.int("max-add"); err != nil {
		return nil, err
	}
	if cfg.Limits.MaxRemovePerInterval, err = a.int("max-remove"); err != nil {
		return nil, err
	}
	if cfg.ScaleDownGrace, err = a.duration("grace"); err != nil {
		return nil, err
	}
	if cfg.CapacityBackoff, err = a.duration("backoff"); err != nil {
		return nil, err
	}
	if cfg.Interval, err = a.duration("interval"); err != nil {
		return nil, err
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	for _, l := range input {
		lc, err := parseConfig(l)
		if err != nil {
			return nil, err
		}
		cfg.Configs = append(cfg.Configs, lc)
	}
	p, err := NewPlanner(cfg)
	if err != nil {
		return strings.Split(err.Error(), "\n"), nil
	}
	h.cfg, h.p = cfg, p
	return []string{fmt.Sprintf("%d configs", len(cfg.Configs))}, nil
}

func parseConfig(line string) (LaunchConfig, error) {
	name, a := splitArgs(line)
	if name == `""` {
		name = ""
	}
	lc := LaunchConfig{Name: name, InstanceType: name, Purchase: OnDemand}
	var err error
	if lc.Capacity, err = a.resources(); err != nil {
		return lc, err
	}
	if lc.PricePerHour, err = a.float("price"); err != nil {
		return lc, err
	}
	if lc.MaxNodes, err = a.int("max-nodes"); err != nil {
		return lc, err
	}
	if lc.MaxSpendPerHour, err = a.float("max-spend"); err != nil {
		return lc, err
	}
	if lc.MaxAddPerInterval, err = a.int("max-add"); err != nil {
		return lc, err
	}
	if lc.MaxRemovePerInterval, err = a.int("max-remove"); err != nil {
		return lc, err
	}
	lc.Reserved = a.flag("reserved")
	if a.flag("spot") {
		lc.Purchase = Spot
	}
	if lc.Labels, err = a.pairs("labels"); err != nil {
		return lc, err
	}
	for _, t := range a.list("taints") {
		parts := strings.Split(t, ":")
		if len(parts) != 3 {
			return lc, fmt.Errorf("taint %q: want key:value:Effect", t)
		}
		lc.Taints = append(lc.Taints, Taint{Key: parts[0], Value: parts[1], Effect: parts[2]})
	}
	return lc, a.done()
}

func (h *harness) parseNode(line string) (Node, error) {
	id, a := splitArgs(line)
	ready := !a.flag("notready")
	n := Node{ID: id, Config: a.take(), Ready: ready}
	var err error
	if n.WorkerPods, err = a.int("workers"); err != nil {
		return n, err
	}
	age, err := a.duration("age")
	if err != nil {
		return n, err
	}
	if age == 0 {
		age = time.Hour
	}
	n.LaunchedAt = h.now.Add(-age)
	idle, err := a.duration("idle")
	if err != nil {
		return n, err
	}
	if n.WorkerPods == 0 && !a.flag("noidle") {
		n.IdleSince = h.now.Add(-idle)
	}
	for _, lc := range h.cfg.Configs {
		if lc.Name == n.Config && n.WorkerPods == 0 {
			n.Free = lc.Capacity
		}
	}
	if f := a.list("free"); f != nil {
		var fa args
		for _, kv := range f {
			k, v, _ := strings.Cut(kv, ":")
			fa.kv = append(fa.kv, [2]string{k, v})
		}
		if n.Free, err = fa.resources(); err != nil {
			return n, err
		}
		if err := fa.done(); err != nil {
			return n, err
		}
	}
	return n, a.done()
}

func (h *harness) parsePods(line string) ([]Pod, error) {
	count, a := splitArgs(line)
	n, err := strconv.Atoi(count)
	if err != nil {
		return nil, fmt.Errorf("pods %q: count: %w", line, err)
	}
	var p Pod
	if p.Requests, err = a.resources(); err != nil {
		return nil, err
	}
	if p.NodeSelector, err = a.pairs("select"); err != nil {
		return nil, err
	}
	for _, t := range a.list("tolerate") {
		parts := strings.Split(t, ":")
		tol := Toleration{Key: parts[0], Operator: "Exists"}
		if len(parts) > 1 && parts[1] != "" {
			tol.Operator, tol.Value = "Equal", parts[1]
		}
		if len(parts) > 2 {
			tol.Effect = parts[2]
		}
		p.Tolerations = append(p.Tolerations, tol)
	}
	if err := a.done(); err != nil {
		return nil, err
	}
	base := len(h.state.Pending)
	pods := make([]Pod, n)
	for i := range pods {
		pods[i] = p
		pods[i].ID = fmt.Sprintf("p%d", base+i+1)
		pods[i].PendingSince = h.now
	}
	return pods, nil
}

// args are a line's positional words, flags and key=value pairs; every
// one must be used (done) so that a typo is an error.
type args struct {
	pos  []string
	kv   [][2]string
	used map[string]bool
}

// splitArgs returns the first word and the rest as args.
func splitArgs(line string) (string, args) {
	f := strings.Fields(line)
	var a args
	if len(f) == 0 {
		return "", a
	}
	for _, w := range f[1:] {
		if k, v, ok := strings.Cut(w, "="); ok {
			a.kv = append(a.kv, [2]string{k, v})
		} else {
			a.pos = append(a.pos, w)
		}
	}
	return f[0], a
}

// take consumes the first positional word, or returns "".
func (a *args) take() string {
	if len(a.pos) == 0 {
		return ""
	}
	w := a.pos[0]
	a.pos = a.pos[1:]
	return w
}

func (a *args) use(k string) {
	if a.used == nil {
		a.used = make(map[string]bool)
	}
	a.used[k] = true
}

func (a *args) str(k string) string {
	a.use(k)
	for _, kv := range a.kv {
		if kv[0] == k {
			return kv[1]
		}
	}
	return ""
}

// flag consumes a positional word.
func (a *args) flag(w string) bool {
	i := slices.Index(a.pos, w)
	if i < 0 {
		return false
	}
	a.pos = slices.Delete(a.pos, i, i+1)
	return true
}

func (a *args) int(k string) (int, error) {
	s := a.str(k)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s=%s: %w", k, s, err)
	}
	return v, nil
}

func (a *args) float(k string) (float64, error) {
	s := a.str(k)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%s=%s: %w", k, s, err)
	}
	return v, nil
}

func (a *args) duration(k string) (time.Duration, error) {
	s := a.str(k)
	if s == "" {
		return 0, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s=%s: %w", k, s, err)
	}
	return v, nil
}

func (a *args) list(k string) []string {
	s := a.str(k)
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func (a *args) pairs(k string) (map[string]string, error) {
	l := a.list(k)
	if l == nil {
		return nil, nil
	}
	m := make(map[string]string, len(l))
	for _, kv := range l {
		key, v, ok := strings.Cut(kv, ":")
		if !ok {
			return nil, fmt.Errorf("%s: %q is not key:value", k, kv)
		}
		m[key] = v
	}
	return m, nil
}

func (a *args) resources() (Resources, error) {
	var r Resources
	if s := a.str("cpu"); s != "" {
		v, err := parseCPU(s)
		if err != nil {
			return r, err
		}
		r.MilliCPU = v
	}
	if s := a.str("mem"); s != "" {
		v, err := parseBytes(s)
		if err != nil {
			return r, err
		}
		r.MemoryBytes = v
	}
	gpu, err := a.int("gpu")
	if err != nil {
		return r, err
	}
	r.GPU = int32(gpu)
	r.GPUType = a.str("gpu-type")
	return r, nil
}

// done reports a key or positional word that nothing used.
func (a *args) done() error {
	if len(a.pos) > 0 {
		return fmt.Errorf("unexpected %q", a.pos)
	}
	for _, kv := range a.kv {
		if !a.used[kv[0]] {
			return fmt.Errorf("unknown key %q", kv[0])
		}
	}
	return nil
}

func parseCPU(s string) (int64, error) {
	if m, ok := strings.CutSuffix(s, "m"); ok {
		return strconv.ParseInt(m, 10, 64)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("cpu %q: %w", s, err)
	}
	return int64(f * 1000), nil
}

func parseBytes(s string) (int64, error) {
	for i, suf := range []string{"Ki", "Mi", "Gi", "Ti"} {
		if n, ok := strings.CutSuffix(s, suf); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil {
				return 0, fmt.Errorf("memory %q: %w", s, err)
			}
			return int64(f * float64(int64(1)<<(10*(i+1)))), nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("memory %q: %w", s, err)
	}
	return v, nil
}
