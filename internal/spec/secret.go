package spec

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// SecretPlaceholder stands for a secret_env value wherever haul shows or
// stores a spec: RedactSecrets writes it in place of every value, and the
// CLI shows a secret variable as NAME=<secret>.
const SecretPlaceholder = "<secret>"

// secretHeader starts the first line of every text RedactSecrets returns for
// a spec with secrets; the line lists the secret names, so that a reader of
// the stored spec learns them without decoding the whole text (SecretNames).
const secretHeader = "# haul secret_env (values not stored):"

// RedactSecrets returns the spec text a server may store and show: the
// spec with every value of its `secret_env:` mapping replaced by
// SecretPlaceholder (an anchored value is replaced where it is defined, so
// its aliases show the placeholder too). A spec without secret_env comes back
// as it is; one with secrets is re-encoded as YAML (comments kept, layout
// normalized) under a first comment line that lists the secret names. It
// expects a spec that Compile accepted and says what is wrong otherwise.
func RedactSecrets(data []byte) (out []byte, err error) {
	root, err := decodeYAML(data)
	if err != nil {
		return nil, err
	}
	w := walker{budget: 8*len(data) + 10_000}
	var bad error
	report := func(k *yaml.Node, msg string) {
		if bad == nil {
			bad = fmt.Errorf("line %d: %s", k.Line, msg)
		}
	}
	root = w.visit(root)
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("the spec is not a mapping")
	}
	var sec *yaml.Node
	for _, p := range w.pairs(root, 0, report) {
		if p.key == "secret_env" {
			sec = w.visit(p.v)
		}
	}
	switch {
	case w.over:
		return nil, errBudget
	case bad != nil:
		return nil, bad
	case sec == nil || isNull(sec):
		if bytes.HasPrefix(data, []byte(secretHeader)) {
			// A spec without secrets does not get to name any.
			return append([]byte("\n"), data...), nil
		}
		return data, nil
	case sec.Kind != yaml.MappingNode:
		return nil, fmt.Errorf("line %d: secret_env must be a mapping, got %s", sec.Line, kindName(sec))
	}
	var names []string
	for _, p := range w.pairs(sec, 0, report) {
		v := w.visit(p.v)
		if v.Kind != yaml.ScalarNode || isNull(v) || !envName.MatchString(p.key) {
			// Say nothing of the value: it is a secret.
			return nil, fmt.Errorf("line %d: secret_env.%s: must be a string under a variable name", p.k.Line, p.key)
		}
		v.Value, v.Tag, v.Style = SecretPlaceholder, "!!str", 0
		if !slices.Contains(names, p.key) {
			names = append(names, p.key)
		}
	}
	switch {
	case w.over:
		return nil, errBudget
	case bad != nil:
		return nil, bad
	}
	slices.Sort(names)
	var b bytes.Buffer
	b.Grow(len(data) + 64)
	b.WriteString(secretHeader)
	for _, n := range names {
		b.WriteByte(' ')
		b.WriteString(n)
	}
	b.WriteByte('\n')
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("cannot encode the redacted spec: %v", r)
		}
	}()
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("cannot encode the redacted spec: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("cannot encode the redacted spec: %w", err)
	}
	return b.Bytes(), nil
}

// SecretNames returns the names of the secret_env variables of a spec text
// that RedactSecrets returned, sorted, reading its first line only; nil for
// any other text.
func SecretNames(stored []byte) []string {
	if !bytes.HasPrefix(stored, []byte(secretHeader)) {
		return nil
	}
	line := stored[len(secretHeader):]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	var names []string
	for _, n := range strings.Fields(string(line)) {
		if envName.MatchString(n) {
			names = append(names, n)
		}
	}
	return names
}
