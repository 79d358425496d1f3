package cli

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// storeCostJob stores a job of team created at created and records its
// cost and worker time as the runner does.
func storeCostJob(t *testing.T, st store.Store, seed uint64, team, name string, created time.Time, usd, seconds float64) string {
	t.Helper()
	ctx := context.Background()
	id := store.NewJobID(created, rand.NewChaCha8([32]byte{byte(seed)}))
	job := &store.Job{ID: id, Name: name, Namespace: team, State: store.JobPending, TaskCount: 1, Counts: store.TaskCounts{Blocked: 1},
		CreatedAt: created, Spec: []byte("name: " + name + "\n")}
	if err := st.CreateJob(ctx, job, []store.Task{{Index: 0, Key: "t", Argv: []string{"true"}, State: store.TaskBlocked}}); err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, &store.Batch{Jobs: []store.JobUpdate{{ID: id, State: store.JobSucceeded, Counts: store.TaskCounts{Succeeded: 1},
		StartedAt: created, FinishedAt: created.Add(time.Minute), WorkerSeconds: seconds, CostUSD: usd}}}); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestCostCommand(t *testing.T) {
	t.Parallel()
	f := newFleetServer(t)
	now := time.Now().UTC().Truncate(time.Second)
	storeCostJob(t, f.st, 1, "a", "old", now.Add(-72*time.Hour), 50, 36000)
	big := storeCostJob(t, f.st, 2, "a", "resim", now.Add(-3*time.Hour), 12.5, 7200)
	small := storeCostJob(t, f.st, 3, "a", "lint", now.Add(-2*time.Hour), 0.0034, 12)
	storeCostJob(t, f.st, 4, "b", "train", now.Add(-time.Hour), 3, 3600)

	out := f.must(t, f.root, "cost")
	for _, want := range [][]string{
		{"TEAM", "JOBS", "WORKER-HOURS", "COST"},
		{"a", "2", "2.00", "$12.50"},
		{"b", "1", "1.00", "$3.00"},
		{"total", "3", "3.00", "$15.50"},
	} {
		if !row(out, want...) {
			t.Errorf("haul cost lacks the row %q:\n%s", want, out)
		}
	}
	out = f.must(t, f.viewerA, "cost", "--since", "7d", "--by", "job")
	for _, want := range [][]string{
		{"a", "3", "12.00", "$62.50"},
		{"total", "3", "12.00", "$62.50"},
	} {
		if !row(out, want...) {
			t.Errorf("haul cost --since 7d --by job as a viewer of a lacks the row %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "train") || !strings.Contains(out, big) || !strings.Contains(out, small) || !strings.Contains(out, "$0.0034") {
		t.Errorf("jobs of a viewer of a over 7 days:\n%s", out)
	}
	if strings.Index(out, "old") > strings.Index(out, "resim") || strings.Index(out, "resim") > strings.Index(out, "lint") {
		t.Errorf("jobs not most costly first:\n%s", out)
	}
	out = f.must(t, f.root, "cost", "--by", "job", "--limit", "1", "--since", "7d")
	if !strings.Contains(out, "(3 more jobs counted in the totals, not listed: raise --limit)") {
		t.Errorf("cost --limit 1:\n%s", out)
	}

	var got struct {
		Teams []struct {
			Team    string  `json:"team"`
			CostUSD float64 `json:"cost_usd"`
		} `json:"teams"`
		TotalCostUSD float64 `json:"total_cost_usd"`
		Complete     bool    `json:"complete"`
		Jobs         []any   `json:"jobs"`
	}
	since, until := now.Add(-150*time.Minute).Format(time.RFC3339), now.Add(-30*time.Minute).Format(time.RFC3339)
	if err := json.Unmarshal([]byte(f.must(t, f.root, "cost", "--since", since, "--until", until, "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Complete || got.TotalCostUSD != 3.0034 || len(got.Teams) != 2 || got.Teams[0].CostUSD != 0.0034 || len(got.Jobs) != 0 {
		t.Errorf("cost of [-150m, -30m) -o json: %+v; want lint and train, complete, no job list", got)
	}
	if err := json.Unmarshal([]byte(f.must(t, f.viewerB, "cost", "--team", "b", "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Teams) != 1 || got.Teams[0].Team != "b" || got.TotalCostUSD != 3 {
		t.Errorf("viewer of b, team b: %+v", got)
	}
	if _, errOut, code := f.haul(f.viewerB, "cost", "--team", "a"); code != 1 || !strings.Contains(errOut, `team "a"`) {
		t.Errorf("viewer of b asks for a's cost: exit %d, %q; want 1, permission denied naming a", code, errOut)
	}
	if _, errOut, code := f.haul(f.root, "cost", "--since", now.Format(time.RFC3339), "--until", now.Add(-time.Hour).Format(time.RFC3339)); code != 1 || !strings.Contains(errOut, "since") {
		t.Errorf("since after until: exit %d, %q; want 1 naming since", code, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cost", "--since", "yesterday"}, "--since"},
		{[]string{"cost", "--until", "24h"}, "--until"},
		{[]string{"cost", "--by", "cluster"}, "--by"},
		{[]string{"cost", "--limit", "0"}, "--limit"},
	} {
		if _, errOut, code := f.haul(f.root, tc.args...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("haul %s: exit %d, %q; want 2 naming %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}

// Workers that ran where no price is configured cost "no price", not $0;
// nothing that ran costs $0 itself.
func TestCostText(t *testing.T) {
	for _, c := range []struct {
		usd, seconds float64
		want         string
	}{{0, 3600, "no price"}, {0, 0, "$0.00"}, {0.25, 3600, "$0.2500"}, {12.5, 3600, "$12.50"}} {
		if got := cost(c.usd, c.seconds); got != c.want {
			t.Errorf("cost(%v, %v) = %q, want %q", c.usd, c.seconds, got, c.want)
		}
	}
}
