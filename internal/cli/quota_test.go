package cli

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/store"
)

// row reports whether out has a line whose fields are want, in order,
// separated by any run of spaces (a tabwriter row).
func row(out string, want ...string) bool {
	parts := make([]string, len(want))
	for i, w := range want {
		parts[i] = regexp.QuoteMeta(w)
	}
	return regexp.MustCompile(`(?m)^` + strings.Join(parts, `\s+`) + `\s*$`).MatchString(out)
}

func TestQuotaCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFleetServer(t)
	out := f.must(t, f.root, "quota", "set", "a", "cpu=16,memory=64Gi,gpu/a100=2", "--cluster", "east=cpu=8,memory=32Gi", "--lend=true")
	if want := "quota of team a: cpu=16 memory=64Gi gpu/a100=2; in east at most cpu=8 memory=32Gi; lends what it does not use"; !strings.Contains(out, want) {
		t.Errorf("quota set: %q; want %q", out, want)
	}
	f.must(t, f.root, "quota", "set", "b", "cpu=500m,memory=1Gi")
	qs, err := f.st.ListQuotas(ctx)
	if err != nil || len(qs) != 2 {
		t.Fatalf("stored quotas: %v, %v", qs, err)
	}
	if a := qs[0]; a.Team != "a" || a.Limit.MilliCPU != 16000 || a.Limit.Memory != 64<<30 || a.Limit.GPU["a100"] != 2 || !a.Lend ||
		a.Clusters["east"].MilliCPU != 8000 || a.Clusters["east"].Memory != 32<<30 {
		t.Errorf("stored quota of a: %+v", a)
	}
	if b := qs[1]; b.Team != "b" || b.Limit.MilliCPU != 500 || b.Lend {
		t.Errorf("stored quota of b: %+v", b)
	}

	// Team a holds some of its own and borrows some.
	now := time.Now()
	err = f.st.Place(ctx, now, func(*placement.Snapshot) (store.PlaceWrite, error) {
		r := func(id, cluster string, cpu, mem int64, borrowed bool) placement.Reservation {
			return placement.Reservation{ID: id, Team: "a", Job: "j", Cluster: cluster, Resources: placement.Resources{MilliCPU: cpu, Memory: mem},
				Borrowed: borrowed, Holder: "r", Created: now, ExpiresAt: now.Add(time.Hour)}
		}
		return store.PlaceWrite{Insert: []placement.Reservation{r("w1", "east", 4000, 8<<30, false), r("w2", "west", 2000, 4<<30, false), r("w3", "west", 1000, 1<<30, true)}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out = f.must(t, f.root, "quota")
	for _, want := range [][]string{
		{"TEAM", "RESOURCE", "LIMIT", "RESERVED", "BORROWED", "USED", "LEND"},
		{"a", "cpu", "16", "6", "1", "7", "yes"},
		{"a", "memory", "64Gi", "12Gi", "1Gi", "13Gi", "yes"},
		{"a", "gpu/a100", "2", "0", "0", "0", "yes"},
		{"b", "cpu", "0.5", "0", "0", "0", "no"},
		{"a", "east", "cpu=8", "memory=32Gi", "cpu=4", "memory=8Gi", "0", "1"},
		{"a", "west", "-", "cpu=2", "memory=4Gi", "cpu=1", "memory=1Gi", "1", "(+1", "borrowing)"},
	} {
		if !row(out, want...) {
			t.Errorf("haul quota lacks the row %q:\n%s", want, out)
		}
	}
	// A viewer of b sees b alone; -o json.
	var got struct {
		Teams []struct {
			Team      string `json:"team"`
			Resources []struct {
				Resource string `json:"resource"`
				Limit    int64  `json:"limit"` // a number, as every int64 in -o json
				Used     int64  `json:"used"`
			} `json:"resources"`
		} `json:"teams"`
	}
	if err := json.Unmarshal([]byte(f.must(t, f.viewerB, "quota", "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Teams) != 1 || got.Teams[0].Team != "b" || got.Teams[0].Resources[0].Resource != "cpu" || got.Teams[0].Resources[0].Limit != 500 {
		t.Errorf("viewer of b: quota -o json: %+v", got)
	}
	if _, errOut, code := f.haul(f.viewerA, "quota", "--team", "b"); code != 1 || !strings.Contains(errOut, "permission_denied") || !strings.Contains(errOut, `team "b"`) {
		t.Errorf("viewer of a asks for b's quota: exit %d, %q; want 1, permission denied naming b", code, errOut)
	}
	if _, errOut, code := f.haul(f.memberA, "quota", "set", "a", "cpu=1000"); code != 1 || !strings.Contains(errOut, "platform admin") {
		t.Errorf("member of a sets a's quota: exit %d, %q; want 1, platform admins only", code, errOut)
	}

	// Setting again without --lend keeps lending; --lend=false stops it.
	if out := f.must(t, f.root, "quota", "set", "a", "cpu=32,memory=64Gi"); !strings.Contains(out, "lends what it does not use (kept)") {
		t.Errorf("quota set again: %q; want lending kept", out)
	}
	f.must(t, f.root, "quota", "set", "a", "cpu=32,memory=64Gi", "--lend=false")
	if qs, err := f.st.ListQuotas(ctx); err != nil || qs[0].Lend || qs[0].Limit.MilliCPU != 32000 || qs[0].Clusters != nil {
		t.Errorf("quota of a after set --lend=false: %+v, %v; want 32 cores, no split, not lending", qs, err)
	}
	if out := f.must(t, f.root, "quota", "delete", "b"); !strings.Contains(out, "quota of team b deleted") {
		t.Errorf("quota delete: %q", out)
	}
	if _, errOut, code := f.haul(f.root, "quota", "delete", "b"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("quota delete twice: exit %d, %q; want 1, not found", code, errOut)
	}
	// Usage mistakes: exit 2, naming what is wrong.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"quota", "set", "a"}, "accepts 2 arg"},
		{[]string{"quota", "set", "a", "cpu=lots"}, "LIMIT"},
		{[]string{"quota", "set", "a", "disk=1Ti"}, "unknown resource"},
		{[]string{"quota", "set", "a", "cpu=1", "--cluster", "east"}, "--cluster"},
		{[]string{"quota", "set", "a", "cpu=1", "--cluster", "east=cpu=x"}, "--cluster"},
		{[]string{"quota", "set", "a", "cpu=1", "--lend=maybe"}, "lend"},
		{[]string{"quota", "delete"}, "accepts 1 arg"},
	} {
		if _, errOut, code := f.haul(f.root, tc.args...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("haul %s: exit %d, %q; want 2 naming %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
	// Bad input the server refuses names the field.
	if _, errOut, code := f.haul(f.root, "quota", "set", "a", "cpu=1", "--cluster", "east=cpu=2"); code != 1 || !strings.Contains(errOut, "quota.clusters[east]") {
		t.Errorf("split over the limit: exit %d, %q; want 1 naming quota.clusters[east]", code, errOut)
	}
}
