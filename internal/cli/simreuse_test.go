package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/reusesim"
)

func TestSimReuse(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"sim", "reuse", "--workload", "short", "--seed", "3"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("haul sim reuse: exit %d, stderr %q", code, stderr.String())
	}
	for _, want := range []string{"WORKER-SECONDS", "one-per-task", "spark", "reuse", "reuse-warm"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("haul sim reuse output lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), "long") {
		t.Errorf("--workload short printed other workloads:\n%s", stdout.String())
	}

	stdout.Reset()
	if code := Main([]string{"sim", "reuse", "--seed", "3", "-o", "json"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("haul sim reuse -o json: exit %d, stderr %q", code, stderr.String())
	}
	var rs []reusesim.Result
	if err := json.Unmarshal(stdout.Bytes(), &rs); err != nil {
		t.Fatalf("haul sim reuse -o json: %v\n%s", err, stdout.String())
	}
	want, err := reusesim.Compare("mix", 3)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(reusesim.Workloads()) * len(reusesim.Strategies()); len(rs) != n {
		t.Fatalf("haul sim reuse -o json: %d results, want %d", len(rs), n)
	}
	if got := rs[len(rs)-1]; got != want[len(want)-1] {
		t.Fatalf("last JSON result %+v, want %+v", got, want[len(want)-1])
	}
}

func TestSimTiers(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"sim", "tiers", "--seed", "2"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("haul sim tiers: exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "max-sizing") || !strings.Contains(stdout.String(), "less memory") {
		t.Errorf("haul sim tiers output:\n%s", stdout.String())
	}
	stdout.Reset()
	if code := Main([]string{"sim", "tiers", "--seed", "2", "-o", "json"}, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("haul sim tiers -o json: exit %d, stderr %q", code, stderr.String())
	}
	var r reusesim.TiersResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("haul sim tiers -o json: %v\n%s", err, stdout.String())
	}
	if want := reusesim.RunTiers(2); r.Reduction != want.Reduction || r.Tiers != want.Tiers {
		t.Fatalf("JSON result %+v, want %+v", r, want)
	}
}

func TestSimReuseUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sim", "reuse", "--workload", "huge"}, `--workload "huge"`},
		{[]string{"sim", "reuse", "extra"}, "unknown command"},
		{[]string{"sim", "tiers", "--seed", "x"}, "invalid argument"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(tc.args, strings.NewReader(""), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("haul %s: exit %d, stderr %q; want exit 2 mentioning %q", strings.Join(tc.args, " "), code, stderr.String(), tc.want)
		}
	}
}
