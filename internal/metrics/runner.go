package metrics

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/haul-dev/haul/internal/store"
)

// shardCount is the number of logical shards jobs are spread over, fixed
// for every deployment.
const shardCount = store.NumShards

// Lease renewal results, for Runner.LeaseRenewal.
const (
	LeaseOK    = "ok"    // the lease was renewed
	LeaseError = "error" // the renewal failed (store away); the lease may still hold
	LeaseLost  = "lost"  // another holder has the lease: this runner lost it
)

// Worker states, for Runner.SetWorkers.
const (
	WorkerStarting = "starting" // asked for, not yet polling
	WorkerLive     = "live"     // polling, running attempts
	WorkerIdle     = "idle"     // polling, nothing to run
	WorkerExiting  = "exiting"  // told to exit, not yet gone
)

// Commit error kinds, the kind label of haul_commit_errors_total.
const (
	CommitFenced   = "fenced"   // the shard's lease is held by another runner now (store.ErrFenced)
	CommitRejected = "rejected" // the store refused the data; retrying cannot help (store.ErrRejected)
	CommitCanceled = "canceled" // the commit's context ended (shutdown, deadline)
	CommitError    = "error"    // anything else: the store unreachable or failing
)

var (
	leaseResults = newLabelSet(LeaseOK, LeaseError, LeaseLost)
	workerStates = newLabelSet(WorkerStarting, WorkerLive, WorkerIdle, WorkerExiting)
	commitKinds  = newLabelSet(CommitFenced, CommitRejected, CommitCanceled, CommitError)
	taskStates   = newLabelSet(string(store.TaskBlocked), string(store.TaskQueued), string(store.TaskRunning), string(store.TaskSucceeded), string(store.TaskFailed), string(store.TaskUpstreamFailed), string(store.TaskCancelled))
	attemptEnds  = newLabelSet("success", "failure", "timeout", "lost", "killed", "oom") // sched.Outcome's names
	// placeResults: a worker start placed owned or borrowed, or refused by
	// its blocker's kind (placement.BlockerKind), "placement" when the
	// store failed.
	placeResults = newLabelSet("owned", "borrowed", "invalid", "no-cluster", "unavailable", "quota", "reclaiming", "capacity", "placement")
	shardLabels  = func() []string {
		l := make([]string, shardCount)
		for i := range l {
			l[i] = strconv.Itoa(i)
		}
		return l
	}()
)

// Buckets of the runner's histograms.
var (
	// dispatchBuckets: from an idle worker polling at once (1 ms) to a
	// task that waited a minute for a worker to start.
	dispatchBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	// commitBuckets: one store transaction, from a local SQLite file
	// (0.5 ms) to a PostgreSQL under strain (10 s).
	commitBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// batchBuckets: 1 to 8192 changes in one commit, doubling.
	batchBuckets = prometheus.ExponentialBuckets(1, 2, 14)
)

// Runner is the runner's metric set. Its methods are what the runner's
// shell calls as things happen (ObserveDispatch, ObserveCommit,
// LeaseRenewal, AttemptEnded, ShardFailover) or after it recounts
// (SetTasks, SetWorkers, SetJobsActive, SetShardOwned). A label value
// outside its list (an unknown state or outcome) is recorded as "other".
// Every series of a known label value exists from the start at 0, so
// rate() and alerts see a counter's first increase and an unowned shard.
// All methods are safe for concurrent use, and do nothing on a nil Runner.
type Runner struct {
	dispatch      prometheus.Histogram
	commitSeconds prometheus.Histogram
	commitBatch   prometheus.Histogram
	commitErrors  *prometheus.CounterVec
	shardOwned    *prometheus.GaugeVec
	shardsOwned   prometheus.Gauge
	leaseRenewals *prometheus.CounterVec
	workers       *prometheus.GaugeVec
	tasks         *prometheus.GaugeVec
	jobsActive    prometheus.Gauge
	failovers     prometheus.Counter
	attempts      *prometheus.CounterVec
	placeSeconds  prometheus.Histogram
	placements    *prometheus.CounterVec
	reclaims      prometheus.Counter

	mu    sync.Mutex // guards owned and the two shard gauges together
	owned [shardCount]bool
}

func newRunner() *Runner {
	r := &Runner{
		dispatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "haul_dispatch_seconds",
			Help:    "Time from a task becoming queued (ready to run) to its attempt being handed to a worker.",
			Buckets: dispatchBuckets,
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "haul_commit_seconds",
			Help:    "Time of one commit of a shard's batched state changes to the store, failed ones included.",
			Buckets: commitBuckets,
		}),
		commitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "haul_commit_batch_changes",
			Help:    "State changes written in one commit, failed ones included.",
			Buckets: batchBuckets,
		}),
		commitErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haul_commit_errors_total",
			Help: "Commits that failed, by kind: fenced (lease lost), rejected (data refused), canceled, error (store failing).",
		}, []string{"kind"}),
		shardOwned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "haul_shard_owned",
			Help: "1 while this runner holds the shard's lease, else 0; one series per shard (0-31).",
		}, []string{"shard"}),
		shardsOwned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "haul_shards_owned",
			Help: "Number of shards this runner holds.",
		}),
		leaseRenewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haul_lease_renewals_total",
			Help: "Lease renewals (membership and shards), by result: ok, error (store away), lost (another holder has it).",
		}, []string{"result"}),
		workers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "haul_workers",
			Help: "Workers of this runner's jobs, by state: starting, live, idle, exiting.",
		}, []string{"state"}),
		tasks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "haul_tasks",
			Help: "Tasks of the jobs this runner holds, by state.",
		}, []string{"state"}),
		jobsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "haul_jobs_active",
			Help: "Jobs this runner holds that have not ended.",
		}),
		failovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "haul_shard_failovers_total",
			Help: "Shards this runner took over from a holder whose lease had expired (not released to it).",
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haul_attempts_total",
			Help: "Attempts that ended, by outcome: success, failure, timeout, lost, killed, oom.",
		}, []string{"outcome"}),
		placeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "haul_placement_seconds",
			Help:    "Time of one placement transaction (a Step's worker starts, a renewal's rebalance), failed ones included.",
			Buckets: commitBuckets,
		}),
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haul_placements_total",
			Help: "Worker starts asked of placement, by result: owned, borrowed, or the refusal's blocker (quota, capacity, reclaiming, no-cluster, unavailable, invalid; placement when the store failed).",
		}, []string{"result"}),
		reclaims: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "haul_placement_reclaims_total",
			Help: "Borrowed workers this runner's placements marked to give their room back.",
		}),
	}
	initLabels(r.placements.MetricVec, placeResults.values)
	initLabels(r.commitErrors.MetricVec, commitKinds.values)
	initLabels(r.leaseRenewals.MetricVec, leaseResults.values)
	initLabels(r.attempts.MetricVec, attemptEnds.values)
	initLabels(r.workers.MetricVec, workerStates.values)
	initLabels(r.tasks.MetricVec, taskStates.values)
	initLabels(r.shardOwned.MetricVec, shardLabels)
	return r
}

// initLabels creates the series of each value (at 0).
func initLabels(vec *prometheus.MetricVec, values []string) {
	for _, v := range values {
		_, _ = vec.GetMetricWithLabelValues(v)
	}
}

func (r *Runner) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		r.dispatch, r.commitSeconds, r.commitBatch, r.commitErrors,
		r.shardOwned, r.shardsOwned, r.leaseRenewals, r.workers,
		r.tasks, r.jobsActive, r.failovers, r.attempts,
		r.placeSeconds, r.placements, r.reclaims,
	}
}

// seconds is d in seconds, never negative (a clock that stepped back).
func seconds(d time.Duration) float64 {
	return max(d, 0).Seconds()
}

// ObserveDispatch records that a task waited d from becoming queued to
// being handed to a worker.
func (r *Runner) ObserveDispatch(d time.Duration) {
	if r == nil {
		return
	}
	r.dispatch.Observe(seconds(d))
}

// ObserveCommit records one commit of changes state changes that took d
// and ended with err (nil: committed). A failed commit is timed and sized
// too, and counted in haul_commit_errors_total under its kind.
func (r *Runner) ObserveCommit(d time.Duration, changes int, err error) {
	if r == nil {
		return
	}
	r.commitSeconds.Observe(seconds(d))
	r.commitBatch.Observe(float64(max(changes, 0)))
	if err != nil {
		r.commitErrors.WithLabelValues(commitKind(err)).Inc()
	}
}

// commitKind sorts a commit's error into the kind label.
func commitKind(err error) string {
	switch {
	case errors.Is(err, store.ErrFenced):
		return CommitFenced
	case errors.Is(err, store.ErrRejected):
		return CommitRejected
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return CommitCanceled
	}
	return CommitError
}

// SetShardOwned records whether this runner holds shard's lease now, and
// recounts haul_shards_owned. A shard outside 0-31 is ignored: no such
// shard exists, and a series for it would never go away.
func (r *Runner) SetShardOwned(shard int, owned bool) {
	if r == nil || shard < 0 || shard >= shardCount {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owned[shard] = owned
	n := 0
	for _, o := range r.owned {
		if o {
			n++
		}
	}
	v := 0.0
	if owned {
		v = 1
	}
	r.shardOwned.WithLabelValues(shardLabels[shard]).Set(v)
	r.shardsOwned.Set(float64(n))
}

// ShardFailover counts a shard taken over from a holder whose lease
// expired: that runner died or lost the store, and its jobs moved here.
func (r *Runner) ShardFailover() {
	if r == nil {
		return
	}
	r.failovers.Inc()
}

// LeaseRenewal counts one lease renewal by result: LeaseOK, LeaseError or
// LeaseLost.
func (r *Runner) LeaseRenewal(result string) {
	if r == nil {
		return
	}
	r.leaseRenewals.WithLabelValues(leaseResults.of(result)).Inc()
}

// SetWorkers sets the number of workers in state (WorkerStarting,
// WorkerLive, WorkerIdle, WorkerExiting) across this runner's jobs.
func (r *Runner) SetWorkers(state string, n int) {
	if r == nil {
		return
	}
	r.workers.WithLabelValues(workerStates.of(state)).Set(float64(n))
}

// SetTasks sets the number of tasks in state (a store.TaskState's name)
// across the jobs this runner holds.
func (r *Runner) SetTasks(state string, n int64) {
	if r == nil {
		return
	}
	r.tasks.WithLabelValues(taskStates.of(state)).Set(float64(n))
}

// SetTaskCounts sets every task state's gauge from c, the runner's counts
// summed over the jobs it holds.
func (r *Runner) SetTaskCounts(c store.TaskCounts) {
	if r == nil {
		return
	}
	for state, n := range map[store.TaskState]int64{
		store.TaskBlocked:        c.Blocked,
		store.TaskQueued:         c.Queued,
		store.TaskRunning:        c.Running,
		store.TaskSucceeded:      c.Succeeded,
		store.TaskFailed:         c.Failed,
		store.TaskUpstreamFailed: c.UpstreamFailed,
		store.TaskCancelled:      c.Cancelled,
	} {
		r.SetTasks(string(state), n)
	}
}

// SetJobsActive sets the number of jobs this runner holds that have not
// ended.
func (r *Runner) SetJobsActive(n int) {
	if r == nil {
		return
	}
	r.jobsActive.Set(float64(n))
}

// AttemptEnded counts an attempt that ended with outcome (a sched.Outcome's
// name: success, failure, timeout, lost, killed, oom).
func (r *Runner) AttemptEnded(outcome string) {
	if r == nil {
		return
	}
	r.attempts.WithLabelValues(attemptEnds.of(outcome)).Inc()
}

// ObservePlacement records one placement transaction: how long it took
// and how many borrowed workers it marked for reclaim.
func (r *Runner) ObservePlacement(d time.Duration, reclaimed int) {
	if r == nil {
		return
	}
	r.placeSeconds.Observe(seconds(d))
	r.reclaims.Add(float64(max(reclaimed, 0)))
}

// Placed counts one worker start placement decided: result is "owned",
// "borrowed" or the refusal's blocker kind.
func (r *Runner) Placed(result string) {
	if r == nil {
		return
	}
	r.placements.WithLabelValues(placeResults.of(result)).Inc()
}
