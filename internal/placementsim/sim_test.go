package placementsim

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/placement"
)

// smallRun is a 4-hour run at a hundred-thousandth of the full day
// (10,000 tasks a day), quick enough for every test to afford.
func smallRun(t *testing.T, seed int64) Report {
	t.Helper()
	r, err := Run(Config{Seed: seed, Scale: 1e-5, Duration: 4 * time.Hour})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return r
}

func TestRunSmallIsDeterministicAndSound(t *testing.T) {
	t.Parallel()
	a := smallRun(t, 7)
	b := smallRun(t, 7)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two runs with seed 7 differ:\n%s\n%s", a.Table(), b.Table())
	}
	if c := smallRun(t, 8); reflect.DeepEqual(a, c) {
		t.Errorf("seeds 7 and 8 gave the same report")
	}
	if a.QuotaViolations != 0 || a.CapacityViolations != 0 || a.AccountingErrors != 0 {
		t.Errorf("violations: quota %d, capacity %d, accounting %d\n%s", a.QuotaViolations, a.CapacityViolations, a.AccountingErrors, a.Table())
	}
	if a.Jobs == 0 || a.TasksRun == 0 || a.WorkersStarted == 0 {
		t.Fatalf("nothing ran:\n%s", a.Table())
	}
	if a.TasksRun+a.TasksQueued > a.TasksSubmitted {
		t.Errorf("tasks run %d + queued %d > submitted %d", a.TasksRun, a.TasksQueued, a.TasksSubmitted)
	}
	if len(a.Clusters) != 4 || len(a.Teams) != 20 {
		t.Fatalf("%d clusters, %d teams; want 4 and 20", len(a.Clusters), len(a.Teams))
	}
	var used bool
	for _, c := range a.Clusters {
		for _, u := range c.Utilization {
			if !(u.Mean >= 0 && u.Mean <= u.Peak && u.Peak <= 1) {
				t.Errorf("cluster %s %s: utilisation mean %v peak %v, want 0 <= mean <= peak <= 1", c.Name, u.Resource, u.Mean, u.Peak)
			}
			used = used || u.Peak > 0
		}
		if c.PodsPeak > int(math.Floor(c.PodsBudget)) || c.SecondsOverBudget != 0 {
			t.Errorf("cluster %s: peak %d pods/s, %d seconds over a budget of %v", c.Name, c.PodsPeak, c.SecondsOverBudget, c.PodsBudget)
		}
	}
	if !used {
		t.Errorf("no cluster was ever used:\n%s", a.Table())
	}
	var run int64
	for _, tr := range a.Teams {
		run += tr.TasksRun
		if tr.WaitP50 < 0 || tr.WaitP99 < tr.WaitP50 {
			t.Errorf("team %s: wait p50 %v p99 %v", tr.Team, tr.WaitP50, tr.WaitP99)
		}
		if tr.BorrowedShare < 0 || tr.BorrowedShare > 1 {
			t.Errorf("team %s: borrowed share %v", tr.Team, tr.BorrowedShare)
		}
		if tr.Quota == nil && tr.TasksRun > 0 && tr.BorrowedShare != 1 {
			t.Errorf("team %s has no quota but held owned workers (borrowed share %v)", tr.Team, tr.BorrowedShare)
		}
	}
	if run != a.TasksRun {
		t.Errorf("teams ran %d tasks, total says %d", run, a.TasksRun)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Scale: 0, Duration: time.Hour}, "scale 0"},
		{Config{Scale: 2, Duration: time.Hour}, "scale 2"},
		{Config{Scale: math.NaN(), Duration: time.Hour}, "scale NaN"},
		{Config{Scale: 0.1, Duration: 0}, "duration 0s"},
		{Config{Scale: 0.1, Duration: 8 * 24 * time.Hour}, "duration 192h"},
	} {
		_, err := Run(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v): %v, want an error mentioning %q", tc.cfg, err, tc.want)
		}
	}
}

func TestScenarioShape(t *testing.T) {
	t.Parallel()
	var share float64
	for _, ts := range teamSpecs {
		share += ts.share
	}
	if math.Abs(share-1) > 1e-9 {
		t.Errorf("team shares sum to %v, want 1", share)
	}
	if len(teamSpecs) != 20 || len(clusterSpecs) != 4 {
		t.Errorf("%d teams, %d clusters", len(teamSpecs), len(clusterSpecs))
	}
	// A full day at full scale holds a billion tasks, from jobs of a few
	// tasks to a million, running from a second to minutes each.
	jobs := genDay(1, 0, 1)
	var tasks, biggest int64
	smallest := int64(math.MaxInt64)
	minSecs, maxSecs := math.Inf(1), 0.0
	for i, j := range jobs {
		tasks += j.tasks
		biggest = max(biggest, j.tasks)
		smallest = min(smallest, j.tasks)
		minSecs, maxSecs = math.Min(minSecs, j.taskSecs), math.Max(maxSecs, j.taskSecs)
		if j.submit < 0 || j.submit >= day || (i > 0 && j.submit < jobs[i-1].submit) {
			t.Fatalf("job %d submitted at %v: want sorted within the day", i, j.submit)
		}
	}
	if tasks != TasksPerDay {
		t.Errorf("a day holds %d tasks, want %d", tasks, TasksPerDay)
	}
	if smallest > 10 || biggest < 500_000 || biggest > 1_000_000 {
		t.Errorf("job sizes from %d to %d tasks, want from a few to about a million", smallest, biggest)
	}
	if minSecs < 1 || maxSecs < 60 || maxSecs > 600 {
		t.Errorf("task times from %vs to %vs, want from 1s to minutes", minSecs, maxSecs)
	}
	// Most submissions come in the afternoon peak.
	var peak, night int
	for _, j := range jobs {
		switch h := int(j.submit / 3600); {
		case h >= 15 && h < 19:
			peak++
		case h >= 20 || h < 0:
			night++
		}
	}
	if peak <= night {
		t.Errorf("%d jobs between 3 and 7 pm, %d between 8 pm and midnight: want a peak", peak, night)
	}
}

// floodScenario: one cluster of 20 cores; "steady" has a quota of 10
// and lends it; "flood" has none and submits one job of 200,000 ten-second
// tasks at once, with no max_workers, so it borrows everything it can.
// From the tenth minute, steady submits a 100-task job of 5 s tasks every
// minute: about 8 workers' worth, within its quota.
func floodScenario(ownersFirst bool) scenario {
	worker := placement.Resources{MilliCPU: 1000, Memory: 2 * gib}
	jobs := []jobSpec{{team: 0, submit: 0, tasks: 200_000, taskSecs: 10}}
	for m := 10; m < 60; m++ {
		jobs = append(jobs, jobSpec{team: 1, submit: float64(60 * m), tasks: 100, taskSecs: 5})
	}
	return scenario{
		clusters: []placement.Cluster{{
			Name: "only", State: placement.Enabled,
			Capacity:      placement.Resources{MilliCPU: 20_000, Memory: 40 * gib},
			PodsPerSecond: 5,
		}},
		delays: []float64{2},
		quotas: []placement.Quota{
			{Team: "steady", Limit: placement.Resources{MilliCPU: 10_000, Memory: 20 * gib}, Lend: true},
		},
		teams: []teamWork{{name: "flood", worker: worker}, {name: "steady", worker: worker}},
		jobs: func(d int) []jobSpec {
			if d == 0 {
				return jobs
			}
			return nil
		},
		ownersFirst: ownersFirst,
	}
}

// TestFloodKeepsOthersQuota: whatever the batch order, no quota or
// capacity is exceeded, the flood only borrows and gives room back when
// steady needs it, and steady's tasks run. With the owners' starts
// first in each batch, steady keeps its quota: its tasks wait no more
// than a worker start and its own backlog.
func TestFloodKeepsOthersQuota(t *testing.T) {
	t.Parallel()
	for _, ownersFirst := range []bool{false, true} {
		r, err := runScenario(floodScenario(ownersFirst), 3, 65*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if r.QuotaViolations != 0 || r.CapacityViolations != 0 || r.AccountingErrors != 0 {
			t.Fatalf("owners first %v: violations:\n%s", ownersFirst, r.Table())
		}
		flood, steady := r.Teams[0], r.Teams[1]
		if flood.BorrowedShare != 1 {
			t.Errorf("owners first %v: the flooding team has no quota but held owned room (borrowed share %v)", ownersFirst, flood.BorrowedShare)
		}
		if flood.Reclaimed == 0 || flood.TasksRun == 0 {
			t.Errorf("owners first %v: the flood ran %d tasks and never gave room back:\n%s", ownersFirst, flood.TasksRun, r.Table())
		}
		if steady.TasksRun == 0 {
			t.Errorf("owners first %v: steady ran nothing:\n%s", ownersFirst, r.Table())
		}
		// In the Fleet's order the flood's older job asks first, but the
		// steady team's claims keep the room each reclaim frees for it.
		// A steady job needs about 100·5/10 = 50 s on its quota's 10
		// workers, plus a worker start.
		if steady.TasksRun != 5000 || steady.WaitP99 > 120 {
			t.Errorf("owners first %v: steady ran %d of its 5,000 tasks, p99 wait %vs beside the flood; want all, within 2 minutes:\n%s", ownersFirst, steady.TasksRun, steady.WaitP99, r.Table())
		}
	}
}
