// Package scripttest runs scenario scripts with golden output, in the style
// of etcd raft's interaction tests: a script is a sequence of blocks, each a
// command line, optional input lines, a "----" line and the expected output,
// ended by a blank line; lines starting with # between blocks are comments.
// Run with -rewrite, a test replaces the expected output with the actual
// one. The scheduling core and the autoscaler's planner are tested this way.
// It imports only the standard library and is for tests only.
package scripttest

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the scripts' expected output with the actual output")

// Block is one command of a script.
type Block struct {
	Line  int    // of the command, 1-based
	Cmd   string // the command line
	Input []string
	pre   []string // comments and blank lines before the command
	want  []string
}

// Run runs every script matching glob (such as "testdata/*.txt"), each in a
// parallel subtest. newRunner makes the state of one script and returns the
// function that runs its blocks in order; an error stops that script. A
// block with no output expects "ok".
func Run(t *testing.T, glob string, newRunner func(t *testing.T) func(Block) ([]string, error)) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no scripts match %s", glob)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)), func(t *testing.T) {
			t.Parallel()
			runFile(t, file, newRunner(t))
		})
	}
}

func runFile(t *testing.T, file string, run func(Block) ([]string, error)) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blocks, trailer, err := parse(string(data))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var out strings.Builder
	for i, b := range blocks {
		got, err := run(b)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", file, b.Line, b.Cmd, err)
		}
		if len(got) == 0 {
			got = []string{"ok"}
		}
		if !*rewrite && strings.Join(got, "\n") != strings.Join(b.want, "\n") {
			t.Errorf("%s:%d: %s\n--- want\n%s\n--- got\n%s", file, b.Line, b.Cmd, strings.Join(b.want, "\n"), strings.Join(got, "\n"))
		}
		for _, l := range b.pre {
			out.WriteString(l + "\n")
		}
		out.WriteString(b.Cmd + "\n")
		for _, l := range b.Input {
			out.WriteString(l + "\n")
		}
		out.WriteString("----\n")
		for _, l := range got {
			out.WriteString(l + "\n")
		}
		if i < len(blocks)-1 || len(trailer) > 0 {
			out.WriteString("\n")
		}
	}
	for _, l := range trailer {
		out.WriteString(l + "\n")
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func parse(text string) (blocks []Block, trailer []string, err error) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	var pre []string
	for i := 0; i < len(lines); {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			pre = append(pre, l)
			i++
			continue
		}
		b := Block{pre: pre, Line: i + 1, Cmd: l}
		pre = nil
		i++
		for ; i < len(lines) && lines[i] != "----"; i++ {
			b.Input = append(b.Input, lines[i])
		}
		if i == len(lines) {
			return nil, nil, fmt.Errorf("line %d: command %q has no ---- line", b.Line, b.Cmd)
		}
		i++ // ----
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			b.want = append(b.want, lines[i])
		}
		i++ // the blank line ending the block
		blocks = append(blocks, b)
	}
	return blocks, pre, nil
}
