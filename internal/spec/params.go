package spec

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// paramName is what a parameter may be called.
var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// maxParamNameLen bounds a parameter's name.
const maxParamNameLen = 64

// paramRef opens a parameter reference in a template: {params.NAME}.
const paramRef = "{params."

// Notify is a job's webhook (`notify:`): the URL the server POSTs an event
// to when a run of the job ends in one of On.
type Notify struct {
	Webhook string
	// On is the job states that send the event: failed, succeeded,
	// cancelled; default [failed].
	On []string
}

// NotifyEvents are the job states a webhook may be sent for.
var NotifyEvents = []string{"failed", "succeeded", "cancelled"}

var notifyFields = []string{"webhook", "on"}

// params reads the spec's `params:` (p nil: none) and resolves each
// parameter's value: the caller's (set), else its default. A parameter
// with an empty default is required. Every name in set must be declared.
func (c *compiler) params(p *pair, set map[string]string) {
	var declared []string
	defaults := map[string]string{}
	lines := map[string]int{}
	line := 0
	if p != nil {
		line = p.v.Line
		if ps, ok := c.mapping(jobLoc, "params", p.v); ok {
			for _, q := range ps {
				f := "params." + q.key
				if len(q.key) > maxParamNameLen || !paramName.MatchString(q.key) {
					c.e.add(jobLoc, q.k.Line, f, nil, "bad parameter name %q: use letters, digits and '_', not starting with a digit (at most %d bytes)", q.key, maxParamNameLen)
					continue
				}
				v := c.w.visit(q.v)
				def := ""
				switch {
				case isNull(v):
				case v.Kind == yaml.ScalarNode:
					def = v.Value
				default:
					c.e.add(jobLoc, v.Line, f, nil, "the default must be a string (empty or null: the parameter is required), got %s", kindName(v))
					continue
				}
				if strings.IndexByte(def, 0) >= 0 {
					c.e.add(jobLoc, v.Line, f, nil, "default contains a NUL byte")
					continue
				}
				declared = append(declared, q.key)
				defaults[q.key] = def
				lines[q.key] = q.k.Line
			}
		}
	}
	c.paramVals = make(map[string]string, len(declared))
	var unknown []string
	for name := range set {
		if _, ok := defaults[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		msg := fmt.Sprintf("unknown parameter %q given with --set", name)
		switch s := closest(name, declared); {
		case len(declared) == 0:
			msg += ": the spec declares no params"
		case s != "":
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		default:
			msg += " (the spec's params: " + strings.Join(declared, ", ") + ")"
		}
		c.e.add(jobLoc, line, "params", nil, "%s", msg)
	}
	for _, name := range declared {
		v, ok := set[name]
		if !ok {
			v = defaults[name]
		}
		if v == "" {
			c.e.add(jobLoc, lines[name], "params."+name, nil, "parameter %s is required (it has no default): give it a value with --set %s=VALUE", name, name)
		}
		if strings.IndexByte(v, 0) >= 0 {
			c.e.add(jobLoc, lines[name], "params."+name, nil, "the value given with --set contains a NUL byte")
			v = ""
		}
		c.paramVals[name] = v
	}
	if len(c.paramVals) > 0 {
		c.job.Params = c.paramVals
	}
}

// subst replaces each {params.NAME} in s by the parameter's value. Inside
// a foreach (fe != feNone) `{{` stays an escaped brace and the braces of a
// value are escaped, so that a value is never read as a placeholder. An
// unknown name is reported against l, field and line.
func (c *compiler) subst(l loc, field string, line int, s string, fe feKind) string {
	if !strings.Contains(s, paramRef) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		rest := s[i:]
		switch {
		case strings.HasPrefix(rest, "{{"):
			b.WriteString("{{")
			i += 2
		case strings.HasPrefix(rest, paramRef):
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				b.WriteString(rest)
				i = len(s)
				continue
			}
			name := rest[len(paramRef):end]
			v, ok := c.paramVals[name]
			if !ok {
				known := make([]string, 0, len(c.paramVals))
				for k := range c.paramVals {
					known = append(known, k)
				}
				sort.Strings(known)
				msg := fmt.Sprintf("unknown parameter reference %q", rest[:end+1])
				switch sug := closest(name, known); {
				case len(known) == 0:
					msg += ": the spec declares no params"
				case sug != "":
					msg += fmt.Sprintf(" (did you mean \"{params.%s}\"?)", sug)
				default:
					msg += " (the spec's params: " + strings.Join(known, ", ") + ")"
				}
				c.e.add(l, line, field, nil, "%s", msg)
			}
			if fe != feNone {
				v = strings.ReplaceAll(v, "{", "{{")
			}
			b.WriteString(v)
			i += end + 1
		default:
			b.WriteByte(rest[0])
			i++
		}
	}
	return b.String()
}

// notify reads the job's `notify:`.
func (c *compiler) notify(n *yaml.Node) *Notify {
	ps, ok := c.mapping(jobLoc, "notify", n)
	if !ok {
		return nil
	}
	out := &Notify{}
	hasURL := false
	for _, p := range ps {
		f := "notify." + p.key
		switch p.key {
		case "webhook":
			s, ok := c.scalar(jobLoc, f, p.v)
			if !ok {
				continue
			}
			s = c.subst(jobLoc, f, p.v.Line, s, feNone)
			u, err := url.Parse(s)
			switch {
			case err != nil:
				c.e.add(jobLoc, p.v.Line, f, nil, "bad URL %q: %v", s, err)
			case u.Scheme != "http" && u.Scheme != "https":
				c.e.add(jobLoc, p.v.Line, f, nil, "%q is not an http(s) URL", s)
			case u.Host == "":
				c.e.add(jobLoc, p.v.Line, f, nil, "%q has no host", s)
			case len(s) > 2048:
				c.e.add(jobLoc, p.v.Line, f, nil, "is %d bytes, more than 2048", len(s))
			default:
				out.Webhook, hasURL = s, true
			}
		case "on":
			items, ok := c.list(jobLoc, f, p.v)
			if !ok {
				continue
			}
			if len(items) == 0 {
				c.e.add(jobLoc, p.v.Line, f, nil, "must not be empty: list some of %s, or leave it out for [failed]", strings.Join(NotifyEvents, ", "))
				continue
			}
			for i, it := range items {
				fi := fmt.Sprintf("%s[%d]", f, i)
				s, ok := c.scalar(jobLoc, fi, it)
				if !ok {
					continue
				}
				if !slices.Contains(NotifyEvents, s) {
					c.e.add(jobLoc, it.Line, fi, nil, "unknown event %q: use %s", s, strings.Join(NotifyEvents, ", "))
					continue
				}
				if !slices.Contains(out.On, s) {
					out.On = append(out.On, s)
				}
			}
		default:
			c.unknownField(jobLoc, "notify.", p, notifyFields)
		}
	}
	if !hasURL {
		if !slices.ContainsFunc(ps, func(p pair) bool { return p.key == "webhook" }) {
			c.e.add(jobLoc, n.Line, "notify.webhook", nil, "is required: the http(s) URL to POST the event to")
		}
		return nil
	}
	if len(out.On) == 0 {
		out.On = []string{"failed"}
	}
	return out
}
