package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// ResolveFiles prepares a spec on the client for sending: it replaces every
// `foreach: {lines: FILE}` by `foreach: {values: [...]}` holding the file's
// lines (FILE is relative to dir unless absolute; lines that are empty or
// only whitespace are skipped, a trailing CR is dropped), and returns the
// spec re-encoded as indented JSON, with anchors, aliases and merge keys
// expanded. Errors name the file and the task; the rest of the spec is
// checked by Compile.
func ResolveFiles(data []byte, filename, dir string) ([]byte, error) {
	lim := DefaultLimits()
	r := resolver{dir: dir, files: map[string][]*yaml.Node{}, maxBytes: lim.MaxSpecBytes}
	r.e.file = filename
	r.w.budget = 8*len(data) + 10_000
	if len(data) > lim.MaxSpecBytes {
		r.e.add(jobLoc, 0, "", ErrTooLarge, "too large: the spec is %d bytes, more than the limit of %d", len(data), lim.MaxSpecBytes)
		return nil, r.e.result()
	}
	root, err := decodeYAML(data)
	if err != nil {
		r.e.parseFailure(err)
		return nil, r.e.result()
	}
	r.lines(root)
	if r.e.failed() {
		return nil, r.e.result()
	}
	if len(r.files) == 0 {
		// Nothing to inline: send the spec as written, so that the server's
		// errors point at the user's own lines.
		return data, nil
	}
	var out bytes.Buffer
	r.json(&out, root)
	if r.w.over {
		r.e.add(jobLoc, 0, "", errBudget, "%v", errBudget)
	}
	if r.e.failed() {
		return nil, r.e.result()
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, out.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("re-encode %s as JSON: %w", filename, err)
	}
	ind.WriteByte('\n')
	return ind.Bytes(), nil
}

type resolver struct {
	dir      string
	w        walker
	e        errs
	files    map[string][]*yaml.Node // path read -> its lines as nodes
	maxBytes int
}

func (r *resolver) bad(l loc, field string) func(*yaml.Node, string) {
	return func(n *yaml.Node, msg string) { r.e.add(l, n.Line, field, nil, "%s", msg) }
}

// lines finds tasks[*].foreach.lines and replaces each by values. Shapes it
// does not expect are left for Compile to report.
func (r *resolver) lines(root *yaml.Node) {
	root = r.w.visit(root)
	if root.Kind != yaml.MappingNode {
		return
	}
	for _, p := range r.w.pairs(root, 0, r.bad(jobLoc, "")) {
		if p.key != "tasks" {
			continue
		}
		tasks := r.w.visit(p.v)
		if tasks.Kind != yaml.SequenceNode {
			return
		}
		for i, t := range tasks.Content {
			t = r.w.visit(t)
			if t.Kind != yaml.MappingNode {
				continue
			}
			l := taskLoc("", i)
			ps := r.w.pairs(t, 0, r.bad(l, ""))
			for _, q := range ps {
				if v := r.w.visit(q.v); q.key == "key" && v.Kind == yaml.ScalarNode {
					l.task = v.Value
				}
			}
			for _, q := range ps {
				if q.key != "foreach" {
					continue
				}
				fe := r.w.visit(q.v)
				if fe.Kind != yaml.MappingNode {
					continue
				}
				for _, f := range r.w.pairs(fe, 0, r.bad(l, "foreach")) {
					if f.key == "lines" {
						r.replace(l, f)
					}
				}
			}
			if r.w.over {
				return
			}
		}
	}
}

// replace reads the file a `lines` field names and turns the field into
// `values`.
func (r *resolver) replace(l loc, f pair) {
	v := r.w.visit(f.v)
	if v.Kind != yaml.ScalarNode || isNull(v) || v.Value == "" {
		r.e.add(l, f.v.Line, "foreach.lines", nil, "must name a file, got %s", kindName(v))
		return
	}
	name := v.Value
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(r.dir, path)
	}
	items, ok := r.files[path]
	if !ok {
		var err error
		items, err = r.read(path)
		if err != nil {
			r.e.add(l, f.v.Line, "foreach.lines", err, "%v", err)
			return
		}
		r.files[path] = items
	}
	f.k.Value = "values"
	*f.v = yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: f.v.Line, Column: f.v.Column, Content: items}
}

func (r *resolver) read(path string) ([]*yaml.Node, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, int64(r.maxBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > r.maxBytes {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", path, ErrTooLarge, r.maxBytes)
	}
	var items []*yaml.Node
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if !utf8.ValidString(line) {
			return nil, fmt.Errorf("%s:%d: not valid UTF-8", path, i+1)
		}
		if strings.IndexByte(line, 0) >= 0 {
			return nil, fmt.Errorf("%s:%d: contains a NUL byte", path, i+1)
		}
		items = append(items, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: line})
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s has no lines: the entry would have no tasks", path)
	}
	return items, nil
}

var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

// json writes a node as compact JSON, keys in order, aliases and merge keys
// expanded. Scalars keep their exact text: a YAML number that is not a JSON
// number (0x1F, 1_000, .inf) becomes a string, which Compile reads the same.
func (r *resolver) json(b *bytes.Buffer, n *yaml.Node) {
	n = r.w.visit(n)
	if r.w.over {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		for i, p := range r.w.pairs(n, 0, r.bad(jobLoc, "")) {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, p.key)
			b.WriteByte(':')
			r.json(b, p.v)
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			r.json(b, c)
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		switch {
		case n.Tag == "!!null":
			b.WriteString("null")
		case n.Tag == "!!bool" && (n.Value == "true" || n.Value == "false"):
			b.WriteString(n.Value)
		case (n.Tag == "!!int" || n.Tag == "!!float") && jsonNumber.MatchString(n.Value):
			b.WriteString(n.Value)
		default:
			writeJSONString(b, n.Value)
		}
	default:
		r.e.add(jobLoc, n.Line, "", errors.New("unexpected node"), "cannot encode this node as JSON")
	}
}

// writeJSONString writes s as a JSON string that YAML reads back the same:
// characters YAML does not allow raw are written as \u escapes.
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || c == 0xfeff || c == 0xfffe || c == 0xffff:
			b.WriteString(`\u`)
			b.WriteByte(hex[c>>12&0xf])
			b.WriteByte(hex[c>>8&0xf])
			b.WriteByte(hex[c>>4&0xf])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('"')
}
