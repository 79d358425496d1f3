package placement

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/scripttest"
)

// TestScripts runs the scenario scripts in testdata. A script is a sequence
// of blocks, each a command line, optional input lines, a "----" line and
// the expected output, ended by a blank line; lines starting with # between
// blocks are comments. `go test ./internal/placement -rewrite` rewrites the
// expected output with the actual one.
//
// Commands (resources as for ParseResources, one word per resource):
//
//	cluster NAME cpu=.. memory=.. gpu/TYPE=.. [state=enabled|disabled|draining] [labels=k=v|v2,k2=v3]
//	quota TEAM cpu=.. ... [lend] [split=CLUSTER:cpu=..,gpu/a100=..]...
//	place ID TEAM cpu=.. ... [selector=k=v,k2=v2] [clusters=a,b] [job=J]
//	place                 (input lines, each "ID TEAM ..." as above: one batch)
//	release ID            (the worker exits: its reservation goes)
//	state NAME enable|disable|drain
//	rebalance
//	show                  (usage per cluster and team, the borrowed total and the pool)
//
// The clock starts at t=0 and each place command runs one second later
// than the one before, so that later reservations are newer.
func TestScripts(t *testing.T) {
	t.Parallel()
	scripttest.Run(t, "testdata/*.txt", func(t *testing.T) func(scripttest.Block) ([]string, error) {
		h := &harness{res: map[string]Reservation{}, now: time.Unix(0, 0).UTC()}
		return func(b scripttest.Block) ([]string, error) {
			out, err := h.exec(b)
			if err != nil {
				out = append(out, "error: "+err.Error())
			}
			return out, nil
		}
	})
}

// harness holds one script's snapshot and every live reservation (the
// snapshot holds only usage and the borrowed ones, as the store gives).
type harness struct {
	s   Snapshot
	res map[string]Reservation
	now time.Time
}

func (h *harness) exec(b scripttest.Block) ([]string, error) {
	words := strings.Fields(b.Cmd)
	args := words[1:]
	switch words[0] {
	case "cluster":
		if len(args) < 1 {
			return nil, fmt.Errorf("usage: cluster NAME resources... [state=S] [labels=...]")
		}
		c := Cluster{Name: args[0], State: Enabled}
		var res []string
		for _, a := range args[1:] {
			k, v, _ := strings.Cut(a, "=")
			switch k {
			case "state":
				c.State = ClusterState(v)
			case "labels":
				c.Labels = map[string][]string{}
				for _, kv := range strings.Split(v, ",") {
					lk, lv, _ := strings.Cut(kv, "=")
					c.Labels[lk] = strings.Split(lv, "|")
				}
			default:
				res = append(res, a)
			}
		}
		r, err := ParseResources(strings.Join(res, ","))
		if err != nil {
			return nil, err
		}
		c.Capacity = r
		if err := c.Validate(); err != nil {
			return nil, err
		}
		h.s.Clusters = slices.DeleteFunc(h.s.Clusters, func(x Cluster) bool { return x.Name == c.Name })
		h.s.Clusters = append(h.s.Clusters, c)
		return nil, nil
	case "quota":
		if len(args) < 1 {
			return nil, fmt.Errorf("usage: quota TEAM resources... [lend] [split=CLUSTER:resources]")
		}
		q := Quota{Team: args[0]}
		var res []string
		for _, a := range args[1:] {
			k, v, _ := strings.Cut(a, "=")
			switch {
			case a == "lend":
				q.Lend = true
			case k == "split":
				c, rs, _ := strings.Cut(v, ":")
				r, err := ParseResources(rs)
				if err != nil {
					return nil, err
				}
				if q.Clusters == nil {
					q.Clusters = map[string]Resources{}
				}
				q.Clusters[c] = r
			default:
				res = append(res, a)
			}
		}
		r, err := ParseResources(strings.Join(res, ","))
		if err != nil {
			return nil, err
		}
		q.Limit = r
		if err := q.Validate(); err != nil {
			return nil, err
		}
		h.s.Quotas = slices.DeleteFunc(h.s.Quotas, func(x Quota) bool { return x.Team == q.Team })
		h.s.Quotas = append(h.s.Quotas, q)
		return nil, nil
	case "place":
		lines := b.Input
		if len(args) > 0 {
			lines = []string{strings.Join(args, " ")}
		}
		var reqs []Request
		for _, l := range lines {
			req, err := parseRequest(strings.Fields(l))
			if err != nil {
				return nil, err
			}
			reqs = append(reqs, req)
		}
		h.now = h.now.Add(time.Second)
		results, reclaim := Place(&h.s, reqs, h.now)
		var out []string
		for _, r := range results {
			if !r.Placed && r.Blocker.Kind == "" {
				out = append(out, fmt.Sprintf("%s: not placed (claim only) %s", r.ID, r.Blocker.Detail))
				continue
			}
			if !r.Placed {
				out = append(out, fmt.Sprintf("%s: refused (%s) %s", r.ID, r.Blocker.Kind, r.Blocker.Detail))
				continue
			}
			how := "owned"
			if r.Reservation.Borrowed {
				how = "borrowed"
			}
			out = append(out, fmt.Sprintf("%s: %s %s", r.ID, how, r.Reservation.Cluster))
			h.res[r.ID] = r.Reservation
		}
		if len(reclaim) > 0 {
			out = append(out, "reclaim: "+strings.Join(reclaim, " "))
		}
		return out, nil
	case "release":
		if len(args) != 1 {
			return nil, fmt.Errorf("usage: release ID")
		}
		return nil, h.release(args[0])
	case "state":
		if len(args) != 2 {
			return nil, fmt.Errorf("usage: state NAME enable|disable|drain")
		}
		st := map[string]ClusterState{"enable": Enabled, "disable": Disabled, "drain": Draining}[args[1]]
		i := slices.IndexFunc(h.s.Clusters, func(c Cluster) bool { return c.Name == args[0] })
		if st == "" || i < 0 {
			return nil, fmt.Errorf("no cluster %q or state %q", args[0], args[1])
		}
		h.s.Clusters[i].State = st
		return nil, nil
	case "rebalance":
		ids := Rebalance(&h.s)
		if len(ids) == 0 {
			return []string{"reclaim: none"}, nil
		}
		return []string{"reclaim: " + strings.Join(ids, " ")}, nil
	case "show":
		return h.show(), nil
	}
	return nil, fmt.Errorf("unknown command %q", words[0])
}

func parseRequest(words []string) (Request, error) {
	if len(words) < 2 {
		return Request{}, fmt.Errorf("want ID TEAM resources...")
	}
	req := Request{ID: words[0], Team: words[1], Job: "j"}
	var res []string
	for _, a := range words[2:] {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "claim-only":
			req.ClaimOnly = true
			continue
		case "selector":
			req.NodeSelector = map[string]string{}
			for _, kv := range strings.Split(v, ",") {
				sk, sv, _ := strings.Cut(kv, "=")
				req.NodeSelector[sk] = sv
			}
		case "clusters":
			req.Clusters = strings.Split(v, ",")
		case "job":
			req.Job = v
		case "raw-gpu":
			// raw-gpu=TYPE:N adds GPUs without parsing, for malformed requests.
			t, n, _ := strings.Cut(v, ":")
			var c int64
			fmt.Sscan(n, &c)
			if req.Resources.GPU == nil {
				req.Resources.GPU = map[string]int64{}
			}
			req.Resources.GPU[t] = c
		default:
			res = append(res, a)
		}
	}
	r, err := ParseResources(strings.Join(res, ","))
	if err != nil {
		return Request{}, err
	}
	for t, n := range req.Resources.GPU {
		if r.GPU == nil {
			r.GPU = map[string]int64{}
		}
		r.GPU[t] = n
	}
	req.Resources = r
	if req.Team == "-" {
		req.Team = ""
	}
	return req, nil
}

func (h *harness) release(id string) error {
	r, ok := h.res[id]
	if !ok {
		return fmt.Errorf("no reservation %s", id)
	}
	delete(h.res, id)
	i := slices.IndexFunc(h.s.Usage, func(u Usage) bool {
		return u.Team == r.Team && u.Cluster == r.Cluster && u.Borrowed == r.Borrowed
	})
	if i < 0 {
		return fmt.Errorf("no usage for %s", id)
	}
	u := &h.s.Usage[i]
	u.Held = u.Held.Sub(r.Resources)
	u.Workers--
	if u.Workers == 0 {
		h.s.Usage = slices.Delete(h.s.Usage, i, i+1)
	}
	h.s.Borrowed = slices.DeleteFunc(h.s.Borrowed, func(b Reservation) bool { return b.ID == id })
	return nil
}

func (h *harness) show() []string {
	var out []string
	cs := slices.Clone(h.s.Clusters)
	slices.SortFunc(cs, byName)
	reclaiming := map[usageKey]int{}
	for _, b := range h.s.Borrowed {
		if b.Reclaim {
			reclaiming[usageKey{b.Team, b.Cluster, true}]++
		}
	}
	for _, c := range cs {
		var held Resources
		var lines []string
		us := slices.Clone(h.s.Usage)
		slices.SortFunc(us, func(a, b Usage) int {
			return strings.Compare(fmt.Sprint(a.Team, a.Borrowed), fmt.Sprint(b.Team, b.Borrowed))
		})
		for _, u := range us {
			if u.Cluster != c.Name {
				continue
			}
			held = held.Add(u.Held)
			how := "own"
			if u.Borrowed {
				how = "borrowed"
			}
			l := fmt.Sprintf("  %s %s: %d %s %s", u.Team, how, u.Workers, plural(u.Workers, "worker", "workers"), u.Held)
			if n := reclaiming[usageKey{u.Team, u.Cluster, u.Borrowed}]; n > 0 {
				l += fmt.Sprintf(" (%d reclaiming)", n)
			}
			lines = append(lines, l)
		}
		out = append(out, fmt.Sprintf("%s %s: %s of %s", c.Name, c.State, held, c.Capacity))
		out = append(out, lines...)
		for _, cl := range h.s.Claims {
			if cl.Cluster == c.Name {
				out = append(out, fmt.Sprintf("  %s claims %s for job %s (%s)", cl.Team, cl.Resources, cl.Job, cl.ID))
			}
		}
	}
	st := newState(&h.s)
	var pool Resources
	for _, name := range st.enabledCap.Add(st.limits).Add(st.unmarked).Names() {
		p := st.pool(name, "")
		switch {
		case name == ResCPU:
			pool.MilliCPU = p
		case name == ResMemory:
			pool.Memory = p
		default:
			pool.addGPU(strings.TrimPrefix(name, resGPU), p)
		}
	}
	out = append(out, fmt.Sprintf("borrowed %s of lendable %s", st.unmarked, pool))
	return out
}
