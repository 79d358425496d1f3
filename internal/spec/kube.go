package spec

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"
)

// Kubernetes is a job's override of its worker pods on the Kubernetes
// backend: the image its tasks run in (the taskhost is installed into it at
// run time), the service account, extra environment, and volumes with their
// mounts. Volumes and VolumeMounts are Kubernetes Volume and VolumeMount
// objects as JSON, passed through to the pod as written; the API server
// validates them when the pod is created.
type Kubernetes struct {
	Image          string
	ServiceAccount string
	Env            map[string]string
	Volumes        [][]byte
	VolumeMounts   [][]byte
}

// Toleration is a Kubernetes toleration a tier's worker pods carry.
type Toleration struct {
	Key, Operator, Value, Effect string
}

var (
	kubeFields       = []string{"image", "service_account", "env", "volumes", "volume_mounts"}
	tolerationFields = []string{"key", "operator", "value", "effect"}
	// dnsSubdomain is a Kubernetes object name such as a service account's.
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// kubernetes reads the job's `kubernetes:` block.
func (c *compiler) kubernetes(n *yaml.Node) *Kubernetes {
	ps, ok := c.mapping(jobLoc, "kubernetes", n)
	if !ok {
		return nil
	}
	k := &Kubernetes{}
	for _, p := range ps {
		f := "kubernetes." + p.key
		switch p.key {
		case "image":
			if s, ok := c.scalar(jobLoc, f, p.v); ok {
				if bad := text(s); bad != "" || s == "" || len(s) > 4096 {
					c.e.add(jobLoc, p.v.Line, f, nil, "%q is not an image reference", s)
					continue
				}
				k.Image = s
			}
		case "service_account":
			if s, ok := c.scalar(jobLoc, f, p.v); ok {
				if len(s) > 253 || !dnsSubdomain.MatchString(s) {
					c.e.add(jobLoc, p.v.Line, f, nil, "%q is not a valid service account name: lowercase letters, digits, '-' and '.'", s)
					continue
				}
				k.ServiceAccount = s
			}
		case "env":
			names, vals, _ := c.env(jobLoc, f, p.v, feNone)
			if len(names) > 0 {
				k.Env = make(map[string]string, len(names))
				for i, name := range names {
					k.Env[name] = vals[i].text
				}
			}
		case "volumes", "volume_mounts":
			items, ok := c.list(jobLoc, f, p.v)
			if !ok {
				continue
			}
			required := []string{"name"}
			if p.key == "volume_mounts" {
				required = []string{"name", "mountPath"}
			}
			for i, it := range items {
				if raw, ok := c.object(f, i, it, required); ok {
					if p.key == "volumes" {
						k.Volumes = append(k.Volumes, raw)
					} else {
						k.VolumeMounts = append(k.VolumeMounts, raw)
					}
				}
			}
		default:
			c.unknownField(jobLoc, "kubernetes.", p, kubeFields)
		}
	}
	return k
}

// object converts a YAML mapping to JSON, requiring the given string fields.
func (c *compiler) object(field string, i int, n *yaml.Node, required []string) ([]byte, bool) {
	n = c.w.visit(n)
	f := field + "[" + strconv.Itoa(i) + "]"
	if n.Kind != yaml.MappingNode {
		c.e.add(jobLoc, n.Line, f, nil, "must be a mapping, got %s", kindName(n))
		return nil, false
	}
	var v map[string]any
	if err := n.Decode(&v); err != nil {
		c.e.add(jobLoc, n.Line, f, nil, "%v", err)
		return nil, false
	}
	for _, r := range required {
		if s, ok := v[r].(string); !ok || s == "" {
			c.e.add(jobLoc, n.Line, f+"."+r, nil, "is required (a string)")
			return nil, false
		}
	}
	raw, err := json.Marshal(v)
	if err != nil {
		c.e.add(jobLoc, n.Line, f, nil, "cannot be written as JSON: %v", err)
		return nil, false
	}
	return raw, true
}

// labelMap reads a mapping of label keys to values of at most maxVal
// bytes: the job's labels, or a tier's node selector (Kubernetes label
// values, at most 63 bytes).
func (c *compiler) labelMap(field string, n *yaml.Node, maxVal int) map[string]string {
	ps, ok := c.mapping(jobLoc, field, n)
	if !ok || len(ps) == 0 {
		return nil
	}
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		f := field + "." + p.key
		v, ok := c.scalar(jobLoc, f, p.v)
		if !ok {
			continue
		}
		v = c.subst(jobLoc, f, p.v.Line, v, feNone)
		switch bad := text(v); {
		case !labelKey.MatchString(p.key):
			c.e.add(jobLoc, p.k.Line, f, nil, "bad label name %q: use at most 63 letters, digits, '-', '_', '.' and '/', starting and ending with a letter or digit", p.key)
		case len(v) > maxVal:
			c.e.add(jobLoc, p.v.Line, f, nil, "value is %d bytes, more than %d", len(v), maxVal)
		case bad != "":
			c.e.add(jobLoc, p.v.Line, f, nil, "value %s", bad)
		default:
			m[p.key] = v
		}
	}
	return m
}

// tolerations reads a tier's tolerations.
func (c *compiler) tolerations(field string, n *yaml.Node) []Toleration {
	items, ok := c.list(jobLoc, field, n)
	if !ok {
		return nil
	}
	var out []Toleration
	for i, it := range items {
		f := field + "[" + strconv.Itoa(i) + "]"
		ps, ok := c.mapping(jobLoc, f, it)
		if !ok {
			continue
		}
		var t Toleration
		good := true
		for _, p := range ps {
			ff := f + "." + p.key
			if !slices.Contains(tolerationFields, p.key) {
				c.unknownField(jobLoc, f+".", p, tolerationFields)
				good = false
				continue
			}
			s, ok := c.scalar(jobLoc, ff, p.v)
			if !ok {
				good = false
				continue
			}
			switch p.key {
			case "key":
				t.Key = s
			case "operator":
				if s != "Exists" && s != "Equal" {
					c.e.add(jobLoc, p.v.Line, ff, nil, "%q: want Exists or Equal", s)
					good = false
				}
				t.Operator = s
			case "value":
				t.Value = s
			case "effect":
				if s != "" && s != "NoSchedule" && s != "PreferNoSchedule" && s != "NoExecute" {
					c.e.add(jobLoc, p.v.Line, ff, nil, "%q: want NoSchedule, PreferNoSchedule or NoExecute (or leave it out for all)", s)
					good = false
				}
				t.Effect = s
			}
		}
		if t.Operator == "Exists" && t.Value != "" {
			c.e.add(jobLoc, c.w.visit(it).Line, f+".value", nil, "must be empty with operator Exists")
			good = false
		}
		if good {
			out = append(out, t)
		}
	}
	return out
}
