package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/placementsim"
)

func TestSimPlacement(t *testing.T) {
	t.Parallel()
	args := []string{"sim", "placement", "--scale", "0.001", "--duration", "2h", "--seed", "4"}
	var stdout, stderr bytes.Buffer
	if code := Main(args, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("haul %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr.String())
	}
	for _, want := range []string{"quota violations 0, capacity violations 0", "CLUSTER", "PODS/S BUDGET", "gpu-a100", "gpu/t4", "TEAM", "WAIT P99", "search", "backfill"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("haul sim placement output lacks %q:\n%s", want, stdout.String())
		}
	}

	stdout.Reset()
	stderr.Reset()
	if code := Main(append(args, "-o", "json", "--progress"), strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("haul sim placement -o json: exit %d, stderr %q", code, stderr.String())
	}
	if n := strings.Count(stderr.String(), "simulated "); n != 2 || !strings.Contains(stderr.String(), "simulated 2h0m0s of 2h0m0s in ") {
		t.Errorf("--progress over 2h printed %d lines, want one an hour:\n%s", n, stderr.String())
	}
	var r placementsim.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("haul sim placement -o json: %v\n%s", err, stdout.String())
	}
	if r.Seed != 4 || r.Scale != 0.001 || r.DurationSeconds != 7200 || len(r.Clusters) != 4 || len(r.Teams) != 20 {
		t.Fatalf("JSON report: seed %d, scale %v, %vs, %d clusters, %d teams", r.Seed, r.Scale, r.DurationSeconds, len(r.Clusters), len(r.Teams))
	}
	if r.TasksRun == 0 || r.QuotaViolations != 0 || r.CapacityViolations != 0 || !(r.WallSeconds > 0) {
		t.Fatalf("JSON report: %d tasks run, %d quota and %d capacity violations, wall %vs", r.TasksRun, r.QuotaViolations, r.CapacityViolations, r.WallSeconds)
	}
}

func TestSimPlacementUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"sim", "placement", "--scale", "0"}, "--scale 0: want"},
		{[]string{"sim", "placement", "--scale", "1.5"}, "--scale 1.5: want"},
		{[]string{"sim", "placement", "--scale", "NaN"}, "--scale NaN: want"},
		{[]string{"sim", "placement", "--scale", "lots"}, "invalid argument"},
		{[]string{"sim", "placement", "--duration", "0s"}, "--duration 0s: want"},
		{[]string{"sim", "placement", "--duration", "200h"}, "--duration 200h0m0s: want"},
		{[]string{"sim", "placement", "--duration", "1500ms"}, "whole seconds"},
		{[]string{"sim", "placement", "--seed", "x"}, "invalid argument"},
		{[]string{"sim", "placement", "extra"}, "unknown command"},
		{[]string{"sim", "placement", "--scale", "0.001", "-o", "xml"}, `--output "xml"`},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(tc.args, strings.NewReader(""), &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("haul %s: exit %d, stderr %q; want exit 2 mentioning %q", strings.Join(tc.args, " "), code, stderr.String(), tc.want)
		}
	}
}
