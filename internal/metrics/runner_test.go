package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/metrics"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
)

// callAll calls every method of r once with ordinary arguments.
func callAll(r *metrics.Runner) {
	r.ObserveDispatch(30 * time.Millisecond)
	r.ObserveCommit(2*time.Millisecond, 5, nil)
	r.ObserveCommit(time.Millisecond, 3, errors.New("boom"))
	r.SetShardOwned(3, true)
	r.ShardFailover()
	r.LeaseRenewal(metrics.LeaseOK)
	r.SetWorkers(metrics.WorkerLive, 2)
	r.SetTasks(string(store.TaskQueued), 4)
	r.SetTaskCounts(store.TaskCounts{Running: 1})
	r.SetJobsActive(1)
	r.AttemptEnded("success")
	r.ObservePlacement(3*time.Millisecond, 1)
	r.Placed("owned")
	r.Placed("quota")
}

func TestNilRunnerIsNoOp(t *testing.T) {
	t.Parallel()
	var r *metrics.Runner
	callAll(r) // must not panic
}

func TestRunnerMetrics(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry()
	r := reg.Runner()

	// Before anything happens every known series is there at 0.
	before := scrape(t, reg)
	requireLines(t, before,
		`haul_shard_owned{shard="0"} 0`,
		`haul_shard_owned{shard="31"} 0`,
		`haul_shards_owned 0`,
		`haul_lease_renewals_total{result="lost"} 0`,
		`haul_commit_errors_total{kind="fenced"} 0`,
		`haul_tasks{state="upstream_failed"} 0`,
		`haul_workers{state="idle"} 0`,
		`haul_attempts_total{outcome="oom"} 0`,
		`haul_shard_failovers_total 0`,
		`haul_jobs_active 0`,
		`haul_placements_total{result="quota"} 0`,
		`haul_placement_reclaims_total 0`,
	)

	callAll(r)
	r.Placed("borrowed")
	r.Placed("sideways")            // unknown: other
	r.ObserveDispatch(-time.Second) // a clock that stepped back counts as 0
	r.ObserveCommit(time.Millisecond, 7, fmt.Errorf("commit shard 3: %w", store.ErrFenced))
	r.ObserveCommit(time.Millisecond, 1, fmt.Errorf("commit: %w", store.ErrRejected))
	r.ObserveCommit(time.Millisecond, 1, context.Canceled)
	r.SetShardOwned(7, true)
	r.SetShardOwned(3, false)
	r.SetShardOwned(32, true) // no such shard: ignored
	r.SetShardOwned(-1, true) // no such shard: ignored
	r.LeaseRenewal(metrics.LeaseLost)
	r.LeaseRenewal("sideways") // unknown: other
	r.SetWorkers("zombie", 1)  // unknown: other
	r.SetTasks("limbo", 9)     // unknown: other
	r.AttemptEnded("oom")
	r.AttemptEnded("vanished") // unknown: other

	after := scrape(t, reg)
	requireLines(t, after,
		`haul_dispatch_seconds_count 2`,
		`haul_dispatch_seconds_bucket{le="0.001"} 1`,
		`haul_dispatch_seconds_bucket{le="0.05"} 2`,
		`haul_commit_seconds_count 5`,
		`haul_commit_batch_changes_count 5`,
		`haul_commit_batch_changes_sum 17`,
		`haul_commit_batch_changes_bucket{le="4"} 3`,
		`haul_commit_errors_total{kind="error"} 1`,
		`haul_commit_errors_total{kind="fenced"} 1`,
		`haul_commit_errors_total{kind="rejected"} 1`,
		`haul_commit_errors_total{kind="canceled"} 1`,
		`haul_shard_owned{shard="3"} 0`,
		`haul_shard_owned{shard="7"} 1`,
		`haul_shards_owned 1`,
		`haul_shard_failovers_total 1`,
		`haul_lease_renewals_total{result="ok"} 1`,
		`haul_lease_renewals_total{result="lost"} 1`,
		`haul_lease_renewals_total{result="other"} 1`,
		`haul_workers{state="live"} 2`,
		`haul_workers{state="other"} 1`,
		`haul_tasks{state="queued"} 0`, // SetTaskCounts set every state after SetTasks
		`haul_tasks{state="running"} 1`,
		`haul_tasks{state="other"} 9`,
		`haul_placement_seconds_count 1`,
		`haul_placement_reclaims_total 1`,
		`haul_placements_total{result="owned"} 1`,
		`haul_placements_total{result="borrowed"} 1`,
		`haul_placements_total{result="quota"} 1`,
		`haul_placements_total{result="other"} 1`,
		`haul_jobs_active 1`,
		`haul_attempts_total{outcome="success"} 1`,
		`haul_attempts_total{outcome="oom"} 1`,
		`haul_attempts_total{outcome="other"} 1`,
	)
	for _, bad := range []string{`shard="32"`, `shard="-1"`, "sideways", "zombie", "limbo", "vanished"} {
		if strings.Contains(after, bad) {
			t.Errorf("/metrics has %s, a label value outside its list", bad)
		}
	}
}

// The label lists follow the vocabularies they count: a task state or an
// attempt outcome added there must show up here (as its own series, not
// "other").
func TestLabelListsFollowVocabularies(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry()
	reg.Runner()
	text := scrape(t, reg)
	var want []string
	for _, s := range store.TaskStates {
		want = append(want, fmt.Sprintf(`haul_tasks{state="%s"} 0`, s))
	}
	for o := sched.Outcome(0); !strings.HasPrefix(o.String(), "outcome("); o++ {
		want = append(want, fmt.Sprintf(`haul_attempts_total{outcome="%s"} 0`, o))
	}
	requireLines(t, text, want...)
}
