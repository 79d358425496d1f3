package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxMergeDepth bounds nested YAML merge keys (`<<: *base` inside a base).
const maxMergeDepth = 32

// decodeYAML parses one YAML (or JSON) document into a node tree. A panic
// inside the YAML library becomes an error: bad input never crashes a server.
func decodeYAML(data []byte) (root *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			root, err = nil, fmt.Errorf("cannot parse: %v", r)
		}
	}()
	root, err = decodeOne(data)
	if err != nil && looksLikeJSON(data) {
		// YAML has no `\/` escape, which JSON has; a JSON spec using it is
		// parsed again without it.
		if fixed, ok := unescapeJSONSlashes(data); ok {
			if r2, err2 := decodeOne(fixed); err2 == nil {
				return r2, nil
			}
		}
	}
	return root, err
}

func decodeOne(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the spec is empty")
		}
		return nil, syntaxErr(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("the spec must be a single YAML document (found a second `---`)")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("the spec is empty")
	}
	return doc.Content[0], nil
}

// SyntaxError is a spec that YAML cannot parse.
type SyntaxError struct {
	Line int // 0 when unknown
	Msg  string
}

func (e *SyntaxError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

var yamlLine = regexp.MustCompile(`^line ([0-9]+): (.*)$`)

func syntaxErr(err error) *SyntaxError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return &SyntaxError{Line: n, Msg: m[2]}
	}
	return &SyntaxError{Msg: msg}
}

// report adds a parse failure to c, at its line when known.
func (c *errs) parseFailure(err error) {
	var se *SyntaxError
	if errors.As(err, &se) {
		c.add(jobLoc, se.Line, "", err, "%s", se.Msg)
		return
	}
	c.add(jobLoc, 0, "", err, "%v", err)
}

func looksLikeJSON(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}

// unescapeJSONSlashes replaces `\/` by `/` inside the strings of a JSON
// text. It reports false when there is nothing to replace.
func unescapeJSONSlashes(data []byte) ([]byte, bool) {
	if !bytes.Contains(data, []byte(`\/`)) {
		return nil, false
	}
	out := make([]byte, 0, len(data))
	for i := 0; i < len(data); i++ {
		if data[i] == '\\' && i+1 < len(data) {
			if data[i+1] == '/' {
				out = append(out, '/')
			} else {
				out = append(out, data[i], data[i+1])
			}
			i++
			continue
		}
		out = append(out, data[i])
	}
	return out, true
}

// walker reads a node tree with a budget on the nodes it visits, so that
// aliases (which the tree keeps as pointers) cannot make a small spec cost
// unbounded work.
type walker struct {
	budget int
	over   bool
}

var errBudget = errors.New("the spec is too complex: its anchors and aliases expand to too many nodes")

// visit follows aliases and charges one node to the budget.
func (w *walker) visit(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	w.budget--
	if w.budget < 0 {
		w.over = true
	}
	return n
}

// pair is one key of a mapping with its value.
type pair struct {
	key   string
	k, v  *yaml.Node
	first int // for a key given twice: the line of its first occurrence
}

// pairs returns the keys of a mapping node in order, with YAML merge keys
// (`<<: *base`) applied: keys written in the mapping win over merged ones.
// Keys that are not scalars, or given twice, are reported through bad.
func (w *walker) pairs(n *yaml.Node, depth int, bad func(k *yaml.Node, msg string)) []pair {
	if depth > maxMergeDepth {
		bad(n, "merge keys (<<) nested too deeply")
		return nil
	}
	var out []pair
	var index map[string]int
	seen := func(key string) (int, bool) {
		if index != nil {
			i, ok := index[key]
			return i, ok
		}
		for i, p := range out {
			if p.key == key {
				return i, true
			}
		}
		if len(out) >= 16 {
			index = make(map[string]int, len(n.Content)/2)
			for i, p := range out {
				index[p.key] = i
			}
		}
		return 0, false
	}
	add := func(p pair) {
		if index != nil {
			index[p.key] = len(out)
		}
		out = append(out, p)
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := w.visit(n.Content[i]), n.Content[i+1]
		if w.over {
			return nil
		}
		if k.Kind != yaml.ScalarNode {
			bad(k, "mapping keys must be strings")
			continue
		}
		if k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if j, ok := seen(k.Value); ok {
			bad(k, fmt.Sprintf("field %q given twice (first on line %d)", k.Value, out[j].k.Line))
			continue
		}
		add(pair{key: k.Value, k: k, v: v})
	}
	for _, m := range merges {
		m = w.visit(m)
		var sources []*yaml.Node
		switch m.Kind {
		case yaml.MappingNode:
			sources = []*yaml.Node{m}
		case yaml.SequenceNode:
			sources = m.Content
		default:
			bad(m, "a merge key (<<) needs a mapping or a list of mappings")
			continue
		}
		for _, s := range sources {
			s = w.visit(s)
			if s.Kind != yaml.MappingNode {
				bad(s, "a merge key (<<) needs a mapping or a list of mappings")
				continue
			}
			for _, p := range w.pairs(s, depth+1, bad) {
				if _, ok := seen(p.key); !ok {
					add(p)
				}
			}
		}
		if w.over {
			return nil
		}
	}
	return out
}

// kindName describes a node's kind for an error message.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }
