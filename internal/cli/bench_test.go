package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/bench"
)

func TestBenchPrintsOneLineLast(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "--scenario", "fanout", "--tasks", "40", "--workers", "2", "--capacity", "4"}
	if code := Main(args, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("haul bench: exit %d, stderr %q", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	r, err := bench.ParseLine(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("last line of stdout: %v\n%s", err, stdout.String())
	}
	if r.Scenario != bench.Fanout || r.Executor != bench.Noop || r.Store != bench.SQLite || r.Tasks != 40 || r.Workers != 2 || r.Capacity != 4 {
		t.Errorf("line %q: not what was asked", lines[len(lines)-1])
	}
	if !strings.Contains(stderr.String(), "bench: scenario=fanout") || !strings.Contains(stderr.String(), "durability=sqlite:wal,synchronous=full") {
		t.Errorf("stderr lacks the settings: %q", stderr.String())
	}
}

func TestBenchJSON(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "--executor", "baseline", "--tasks", "6", "--workers", "1", "--capacity", "2", "-o", "json"}
	if code := Main(args, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("haul bench -o json: exit %d, stderr %q", code, stderr.String())
	}
	var r bench.Result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("-o json: %v\n%s", err, stdout.String())
	}
	if r.Executor != bench.Baseline || r.Store != "none" || r.Tasks != 6 || r.Workers != 1 || r.Capacity != 2 || r.WallS <= 0 {
		t.Errorf("-o json: %+v", r)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--scenario", "tall"}, `--scenario "tall"`},
		{[]string{"bench", "--executor", "magic"}, `--executor "magic"`},
		{[]string{"bench", "--store", "csv"}, `--store "csv"`},
		{[]string{"bench", "--tasks", "0"}, "--tasks 0"},
		{[]string{"bench", "--database-url", "postgres://x/y"}, "--database-url needs --store postgres"},
		{[]string{"bench", "--executor", "baseline", "--scenario", "chain"}, "--executor baseline runs --scenario wide only"},
		{[]string{"bench", "extra"}, "unknown command"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(tc.args, strings.NewReader(""), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("haul %s: exit %d, stderr %q; want exit 2 mentioning %q", strings.Join(tc.args, " "), code, stderr.String(), tc.want)
		}
	}
}
