// Package store is haul's relational store: the durable home of jobs, tasks
// and attempts, shared by the gateway (which writes submitted jobs and reads
// status) and the runner (which loads jobs and records state changes in
// batches). One interface, two drivers (sqlite for the embedded default,
// postgres for production), one conformance suite (storetest) run against
// both. It imports only the standard library and the database drivers.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrNotFound is returned when a job or task does not exist.
var ErrNotFound = errors.New("not found")

// ErrFenced is returned (wrapped) by a write whose Fence no longer holds: the
// lease it names is held by another writer, so the write changed nothing.
var ErrFenced = errors.New("lease not held by this writer")

// ErrRejected is wrapped by a write that the store refused because of what
// it holds (a value out of range, text it cannot store, a broken
// constraint), as opposed to the store being unreachable: retrying the same
// write cannot succeed.
var ErrRejected = errors.New("store refused the data")

// Fence makes a write conditional on a lease: when Lease is set, the write
// transaction checks that Holder still holds the lease named Lease and
// changes nothing (ErrFenced) otherwise, so that a runner that lost its
// lease can never overwrite what its successor wrote.
//
// The check is of the holder only, not of the expiry: a lease that expired
// and that nobody else took is still the holder's to write under (no
// successor can have written), and the moment another holder takes it
// every fenced write of the old holder fails. A zero Fence (Lease empty)
// checks nothing.
//
// With Epoch set (not 0), the transaction also checks that the lease is at
// that epoch (see Lease.Epoch): a holder that lost the lease and took it
// back since holds it at a later epoch, so writes it prepared under the
// earlier one (for state it has since reloaded) fail too. Epoch 0 checks
// the holder only.
type Fence struct {
	Lease  string
	Holder string
	Epoch  int64
}

// Set reports whether the fence names a lease (a zero Fence checks nothing).
func (f Fence) Set() bool { return f.Lease != "" }

// JobState is the lifecycle state of a job.
type JobState string

const (
	JobPending   JobState = "pending" // stored, not yet picked up by a runner
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// Terminal reports whether the job will not change state again.
func (s JobState) Terminal() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

// TaskState is the lifecycle state of a task.
type TaskState string

const (
	TaskBlocked        TaskState = "blocked" // waiting for parents
	TaskQueued         TaskState = "queued"  // ready, waiting for a worker (or a retry backoff)
	TaskRunning        TaskState = "running"
	TaskSucceeded      TaskState = "succeeded"
	TaskFailed         TaskState = "failed"
	TaskUpstreamFailed TaskState = "upstream_failed"
	TaskCancelled      TaskState = "cancelled"
)

// TaskStates lists every task state in lifecycle order.
var TaskStates = []TaskState{TaskBlocked, TaskQueued, TaskRunning, TaskSucceeded, TaskFailed, TaskUpstreamFailed, TaskCancelled}

// Terminal reports whether the task will not change state again.
func (s TaskState) Terminal() bool {
	return s == TaskSucceeded || s == TaskFailed || s == TaskUpstreamFailed || s == TaskCancelled
}

// Tier is a worker config (resource tier).
type Tier struct {
	Name        string  `json:"name"`
	CPU         float64 `json:"cpu"`
	MemoryBytes int64   `json:"memory_bytes"`
	GPU         int32   `json:"gpu"`
	// GPUType is the GPU type the tier's GPUs must be ("a100", "t4"):
	// placement matches it against the clusters' GPU types and the team's
	// GPU quota. Empty with GPU > 0 means the generic type "gpu".
	GPUType string `json:"gpu_type,omitempty"`
	// NodeSelector and Tolerations steer the tier's worker pods on
	// Kubernetes (spot capacity, a GPU type); other backends ignore them.
	NodeSelector map[string]string `json:"node_selector,omitempty"`
	Tolerations  []Toleration      `json:"tolerations,omitempty"`
}

// Toleration is a Kubernetes pod toleration.
type Toleration struct {
	Key      string `json:"key,omitempty"`
	Operator string `json:"operator,omitempty"` // Exists or Equal (default)
	Value    string `json:"value,omitempty"`
	Effect   string `json:"effect,omitempty"` // NoSchedule, PreferNoSchedule, NoExecute; empty: all
}

// WorkerTemplate is a job's override of its worker pods on Kubernetes: the
// user's image the tasks run in, the service account, extra environment
// and volumes. Volumes and VolumeMounts are Kubernetes Volume and
// VolumeMount objects in JSON, passed through as written.
type WorkerTemplate struct {
	Image          string            `json:"image,omitempty"`
	ServiceAccount string            `json:"service_account,omitempty"`
	Env            map[string]string `json:"env,omitempty"`
	Volumes        []json.RawMessage `json:"volumes,omitempty"`
	VolumeMounts   []json.RawMessage `json:"volume_mounts,omitempty"`
}

// Job is a stored job. Tasks are stored separately.
type Job struct {
	ID        string
	Name      string
	Namespace string
	Labels    map[string]string
	Env       map[string]string // job-level env, applied under each task's env
	Tiers     []Tier
	// Worker overrides the job's worker pods on Kubernetes (empty: the
	// deployment's defaults).
	Worker     WorkerTemplate
	MaxWorkers int32
	// Priority orders the team's jobs for workers: higher first, then
	// older (spec field priority, default 0).
	Priority int32
	// LogDestination is where the job's logs are copied when it ends (an
	// s3:// URL within its team's destination); empty: nowhere.
	LogDestination  string
	State           JobState
	TaskCount       int64
	CancelRequested bool
	// Counts is how many tasks are in each state, kept by the runner with
	// every batch; a freshly submitted job counts all its tasks as blocked.
	Counts TaskCounts
	// WorkerSeconds is the time the job's workers have lived, all tiers
	// together; CostUSD estimates what they cost: each worker's lifetime
	// times the share of its node's price that its tier requests.
	WorkerSeconds float64
	CostUSD       float64
	// Usage compares what the job's finished attempts requested with what
	// they used; the runner adds each attempt as it ends.
	Usage      JobUsage
	CreatedAt  time.Time
	StartedAt  time.Time // zero until running
	FinishedAt time.Time // zero until terminal
	// Spec is the submitted spec as received (for reference and export).
	Spec []byte
	// SubmittedBy is who submitted the job: the subject of the caller's
	// identity ("alice@example.com", "ci-nightly", "task:<job>/<key>#<n>");
	// empty for jobs stored before haul recorded it.
	SubmittedBy string
	// SecretEnv holds the job's secret environment values: stored by
	// CreateJob in a column of their own and returned only by
	// ListActiveJobs (which the runner loads jobs with, to build the
	// tasks' environment). GetJob and ListJobs leave it nil, so that no
	// read path of the API can leak it; the store's errors name a secret's
	// key, never its value.
	SecretEnv map[string]string
	// Groups is the job's graph by group, stored by CreateJob and read
	// back only by JobGroups (GetJob and ListJobs leave it nil).
	Groups []TaskGroup
	// Params are the parameters the job was submitted with (spec params:
	// with --set); nil for none.
	Params map[string]string
	// Retries counts the RetryJob calls that ran some of its tasks again.
	Retries int32
	// Notify is the job's webhook and its delivery (nil: none).
	Notify *JobNotify
}

// JobNotify is a job's webhook (spec notify:) and the state of its
// delivery for the job's latest run. CreateJob stores Webhook and On;
// the notifier writes the rest.
type JobNotify struct {
	Webhook string   `json:"webhook"`
	On      []string `json:"on"`
	// State is pending, delivered, failed (given up) or skipped (the run
	// ended in a state not in On); Round is the run (1 + retries) whose
	// end it is for.
	State       string
	Event       string
	Round       int32
	Attempts    int32
	LastError   string
	NextAt      time.Time
	DeliveredAt time.Time
}

// Task is a stored task. Index is its position in the job (0-based, spec
// order after foreach expansion) and, with JobID, its identity.
type Task struct {
	JobID string
	Index int32
	Key   string
	Argv  []string
	Env   map[string]string
	Cwd   string
	After []string // dependencies as written: keys and globs
	Tier  int32    // index into the job's tiers of the first tier to run on
	// RunTier is the tier the task runs on now: Tier, or a later one after
	// its attempts were killed for running out of memory.
	RunTier    int32
	Retries    int32
	TimeoutMS  int64
	State      TaskState
	Attempts   int32 // attempts started so far
	ExitCode   int32 // of the last finished attempt
	Reason     string
	StartedAt  time.Time // of the last attempt
	FinishedAt time.Time
	// DurationMS and PeakRSSBytes are the last finished attempt's run
	// time and peak memory, set with the task's end (DurationMS is -1
	// and PeakRSSBytes 0 until then); ListTasks sorts by them.
	DurationMS   int64
	PeakRSSBytes int64
	// RetryBase is the number of attempts the task had started when the
	// job's latest retry (RetryTasks) ran it again: the failures among
	// them do not count against Retries, and new attempts number on from
	// it. 0 for a task no retry touched.
	RetryBase int32
}

// RetryFilter selects the tasks RetryTasks runs again.
type RetryFilter struct {
	KeyGlob string // shell glob: * ? [...]; empty: all
	// States are the states a matched task must be in: some of failed,
	// upstream_failed, cancelled and succeeded; empty: the first three.
	States []TaskState
}

// RetryResult is what RetryTasks did.
type RetryResult struct {
	// Matched is the keys of the first 100 tasks that matched the filter,
	// in index order.
	Matched []string
	// Retried counts the tasks set to run again: those matched and their
	// dependents that had not succeeded.
	Retried int64
}

// MaxRetryMatched bounds RetryResult.Matched.
const MaxRetryMatched = 100

// TaskGroup is one node of a job's graph by group: the tasks of one spec
// entry, which have contiguous indexes First..First+Count-1, and the groups
// (by their index in the job's list) it depends on. The gateway computes
// the groups at submit; they never change.
type TaskGroup struct {
	Name    string  `json:"name"`
	First   int32   `json:"first"`
	Count   int32   `json:"count"`
	Parents []int32 `json:"parents,omitempty"`
}

// IndexRange is the task indexes First <= index < End of one job.
type IndexRange struct{ First, End int32 }

// RangeStats is what TaskRangeStats finds in one index range: its tasks'
// counts by state, the earliest StartedAt and the latest FinishedAt among
// them (zero when no task has one).
type RangeStats struct {
	Counts     TaskCounts
	StartedAt  time.Time
	FinishedAt time.Time
}

// AttemptState is the state of one run of a task.
type AttemptState string

const (
	AttemptRunning   AttemptState = "running"
	AttemptSucceeded AttemptState = "succeeded"
	AttemptFailed    AttemptState = "failed"
	AttemptLost      AttemptState = "lost" // its worker or runner went away
	AttemptCancelled AttemptState = "cancelled"
)

// Attempt is one run of a task on a worker. Number starts at 1.
type Attempt struct {
	JobID      string
	TaskIndex  int32
	Number     int32
	Tier       int32
	WorkerID   string
	State      AttemptState
	ExitCode   int32
	Signal     int32
	Reason     string // exit, signal, timeout, cancelled, lost, start_error, oom
	Message    string
	StartedAt  time.Time
	FinishedAt time.Time
	// Enforcement is how the tier's memory limit was enforced: cgroup-v1,
	// cgroup-v2, rss-poll or none ("" when the worker did not say).
	Enforcement string
	// Usage is what the attempt's processes used (zero while running).
	Usage Usage
}

// ReasonOOM is the reason of an attempt killed for running out of memory.
const ReasonOOM = "oom"

// OOM reports whether the attempt was killed for running out of memory.
func (a *Attempt) OOM() bool { return a.Reason == ReasonOOM }

// Usage is what one attempt's process tree used.
type Usage struct {
	CPUUserSeconds   float64
	CPUSystemSeconds float64
	PeakRSSBytes     int64
	AvgRSSBytes      int64
	GPUs             []GPUUsage
	// GPUNote says why there are no GPU figures ("no GPU: …"), if so.
	GPUNote string
}

// GPUUsage is what an attempt used of one GPU.
type GPUUsage struct {
	Index                 int32   `json:"index"`
	Name                  string  `json:"name"`
	PeakMemoryBytes       int64   `json:"peak_memory_bytes"`
	AvgUtilizationPercent float64 `json:"avg_utilization_percent"`
}

// JobUsage is the reference's "requested versus used" table for one job:
// over its finished attempts, the tier's memory and CPU times each attempt's
// run time (requested) against average RSS times run time and CPU time
// (used). Memory is in byte-seconds, CPU in core-seconds.
type JobUsage struct {
	MemoryRequestedByteSeconds float64
	MemoryUsedByteSeconds      float64
	CPURequestedSeconds        float64
	CPUUsedSeconds             float64
	PeakRSSBytes               int64 // the largest peak of any attempt
	OOMAttempts                int64 // attempts killed for running out of memory
}

// TaskUpdate sets the mutable fields of a task.
type TaskUpdate struct {
	JobID      string
	Index      int32
	RunTier    int32
	State      TaskState
	Attempts   int32
	ExitCode   int32
	Reason     string
	StartedAt  time.Time
	FinishedAt time.Time
	// PeakRSSBytes is the ending attempt's peak memory, stored with a
	// terminal State (with the duration, FinishedAt - StartedAt).
	PeakRSSBytes int64
}

// TaskCounts is how many tasks of a job are in each state.
type TaskCounts struct {
	Blocked, Queued, Running, Succeeded, Failed, UpstreamFailed, Cancelled int64
}

// Add adds n to the count of state s.
func (c *TaskCounts) Add(s TaskState, n int64) {
	switch s {
	case TaskBlocked:
		c.Blocked += n
	case TaskQueued:
		c.Queued += n
	case TaskRunning:
		c.Running += n
	case TaskSucceeded:
		c.Succeeded += n
	case TaskFailed:
		c.Failed += n
	case TaskUpstreamFailed:
		c.UpstreamFailed += n
	case TaskCancelled:
		c.Cancelled += n
	}
}

// Get returns the count of state s.
func (c TaskCounts) Get(s TaskState) int64 {
	switch s {
	case TaskBlocked:
		return c.Blocked
	case TaskQueued:
		return c.Queued
	case TaskRunning:
		return c.Running
	case TaskSucceeded:
		return c.Succeeded
	case TaskFailed:
		return c.Failed
	case TaskUpstreamFailed:
		return c.UpstreamFailed
	case TaskCancelled:
		return c.Cancelled
	}
	return 0
}

// JobUpdate sets the state, task counts and accounting of a job.
type JobUpdate struct {
	ID            string
	State         JobState
	Counts        TaskCounts
	WorkerSeconds float64
	CostUSD       float64
	Usage         JobUsage
	StartedAt     time.Time
	FinishedAt    time.Time
	// Run, when not 0, makes the update conditional: it applies only while
	// the job's run (Retries + 1) is Run, and is skipped otherwise. A
	// runner sets it to the run it loaded, so that a write from before a
	// retry (RetryTasks) cannot end the retried job again.
	Run int32
}

// Batch is a group of state changes written in one transaction (group
// commit). Attempts are upserted by (JobID, TaskIndex, Number).
type Batch struct {
	// Fence, when set, is checked in the same transaction.
	Fence Fence
	// Queued ranges are written before Tasks.
	Queued   []QueuedRange
	Tasks    []TaskUpdate
	Attempts []Attempt
	Jobs     []JobUpdate
}

// QueuedRange marks the tasks First <= Index < End of a job queued, each
// as a TaskUpdate from blocked to queued would: state queued, no reason, no
// finish time, the other columns as stored. A task whose last parent
// succeeded is written so, a range at a time: when the root of a fan-out
// succeeds, a million tasks become ready at once, and a range costs the
// runner a few bytes where a million TaskUpdates held 130 MB (issue 18).
// Every task of the range must exist.
type QueuedRange struct {
	JobID      string
	First, End int32
}

// Empty reports whether the batch has nothing to write.
func (b *Batch) Empty() bool {
	return len(b.Queued) == 0 && len(b.Tasks) == 0 && len(b.Attempts) == 0 && len(b.Jobs) == 0
}

// JobFilter selects jobs for ListJobs. Jobs are returned newest first.
type JobFilter struct {
	Namespace string // empty: all
	// Namespaces, when non-nil, selects only jobs of these namespaces (the
	// gateway passes the teams the caller may see); an empty, non-nil
	// slice selects no job. It narrows Namespace further when both are set.
	Namespaces []string
	// SubmittedBy, when set, selects the jobs one subject submitted.
	SubmittedBy string
	States      []JobState // empty: all
	Limit       int        // <= 0: a default of 100
	// Before pages: only jobs whose ID sorts before this (IDs sort by creation time).
	Before string
	// NameGlob selects jobs whose name matches a shell glob (* ? [...]).
	NameGlob string
	// Labels selects jobs that have every one of these labels with these
	// values.
	Labels map[string]string
	// CreatedAfter and CreatedBefore bound the creation time (zero: no
	// bound): CreatedAfter <= created < CreatedBefore.
	CreatedAfter, CreatedBefore time.Time
	// IDPrefix selects jobs whose ID starts with it (job IDs are lowercase
	// letters and digits; anything else is refused).
	IDPrefix string
}

// TaskSort orders ListTasks.
type TaskSort int

const (
	SortIndex    TaskSort = iota // by Index
	SortDuration                 // by DurationMS, then Index; ended tasks only
	SortPeakRSS                  // by PeakRSSBytes, then Index; ended tasks only
)

// TaskFilter selects tasks of one job for ListTasks, in index order (or
// by Sort).
type TaskFilter struct {
	JobID   string
	States  []TaskState // empty: all
	KeyGlob string      // shell glob: * ? [...]; empty: all
	After   int32       // only tasks with Index > After; use -1 for the first page
	Limit   int         // <= 0: a default of 1000
	// ExitCode, RunTier: only tasks with this exit code / run tier (nil:
	// any). Reason: only tasks with this reason ("": any).
	ExitCode *int32
	RunTier  *int32
	Reason   string
	// FirstIndex <= Index < EndIndex (EndIndex 0: no upper bound).
	FirstIndex, EndIndex int32
	// Sort orders by duration or peak memory, ascending or, with Desc,
	// descending, ties by Index ascending. Pages continue after the key
	// (AfterValue, After): the last row's sort value and Index (for the
	// first page, After -1; AfterValue is ignored then).
	Sort       TaskSort
	Desc       bool
	AfterValue int64
}

// Lease is a named, expiring claim of one process over work in the store:
// the runner holds the lease "runner" so that no two runners dispatch the
// same jobs, a runner of a sharded deployment holds one lease per shard it
// owns (ShardLease) and one for its membership (MemberLease). Address is
// where the holder serves (for clients to find it).
//
// Epoch counts the lease's tenures: the store sets it to 1 when the lease
// is first taken and adds one whenever the lease passes to another holder
// or is taken again after a release, and keeps it when the holder renews
// (even past the expiry, if nobody took the lease meanwhile). A writer
// that fences its writes with the epoch it acquired (Fence.Epoch) can
// never write over a later tenure, its own included. AcquireLease ignores
// the Epoch it is given.
type Lease struct {
	Name      string
	Holder    string
	Address   string
	ExpiresAt time.Time
	Epoch     int64
}

// MaxSecretBytes is the largest value EnsureSecret stores.
const MaxSecretBytes = 1024

// TaskRef names one task of a job.
type TaskRef struct {
	JobID string
	Index int32
}

// Store is the interface both drivers implement. All methods are safe for
// concurrent use.
type Store interface {
	// CreateJob stores a job and all its tasks in one transaction, in bulk
	// (not one round trip per task): a task with no parents (nothing in
	// After) as queued, the others as blocked, whatever their State says,
	// and the job's counts to match. Tasks must have Index 0..n-1. Input
	// the store refuses (a value it cannot store, a duplicate key or job
	// ID) fails with an error wrapping ErrRejected; so do AppendTasks's
	// refusals (a wrong index, a used key, an ended job).
	CreateJob(ctx context.Context, job *Job, tasks []Task) error
	GetJob(ctx context.Context, id string) (*Job, error)
	ListJobs(ctx context.Context, f JobFilter) ([]Job, error)
	// RequestCancel marks a job for cancellation; the runner acts on it.
	// It returns ErrNotFound for an unknown job and does nothing to a
	// terminal job.
	RequestCancel(ctx context.Context, id string) error
	// ListActiveJobs returns the jobs that are pending or running, oldest first.
	ListActiveJobs(ctx context.Context) ([]Job, error)
	// RetryTasks runs some tasks of an ended job again, in one
	// transaction: the tasks matching f and, transitively, every task
	// depending on one of them (by the tasks' after lists, globs
	// included) that has not succeeded go back to blocked, with their
	// attempts kept (RetryBase set to them), reason, exit code, finish
	// time, duration and peak memory cleared, and their task cancel
	// requests dropped; the job becomes pending with its counts
	// recomputed, its finish time and cancel request cleared, Retries
	// one more, and its webhook's state pending (when it has one). A job
	// that is not ended (its runner owns it), a filter with a state that
	// is not terminal, a bad glob, and a filter
	// that matches no task fail with an error wrapping ErrRejected,
	// changing nothing; ErrNotFound for an unknown job.
	RetryTasks(ctx context.Context, jobID string, f RetryFilter) (RetryResult, error)

	// AppendTasks adds tasks to an active (pending or running) job, in
	// one transaction, in bulk: a dynamic DAG, where a running task adds
	// work. Tasks must have Index TaskCount..TaskCount+n-1 (the job's task
	// count as stored) and keys not yet used in the job; they are stored
	// Blocked, and the job's TaskCount and blocked count grow by n. It
	// returns ErrNotFound for an unknown job, and an error (changing
	// nothing) for a terminal job, a wrong index, a duplicate key or bad
	// input as CreateJob checks it.
	AppendTasks(ctx context.Context, jobID string, tasks []Task) error
	// AppendTasksFenced is AppendTasks conditional on fence: with fence
	// set, the same transaction checks that fence.Holder holds the lease
	// fence.Lease and, if not, changes nothing and returns an error
	// wrapping ErrFenced. AppendTasks is AppendTasksFenced with a zero
	// Fence.
	AppendTasksFenced(ctx context.Context, fence Fence, jobID string, tasks []Task) error

	// LoadTasks returns every task of a job in index order.
	LoadTasks(ctx context.Context, jobID string) ([]Task, error)
	ListTasks(ctx context.Context, f TaskFilter) ([]Task, error)
	// JobGroups returns the graph by group CreateJob stored with a job
	// (Job.Groups; nil for a job stored without one). ErrNotFound for an
	// unknown job.
	JobGroups(ctx context.Context, jobID string) ([]TaskGroup, error)
	// TaskRangeStats counts a job's tasks by state in each index range
	// and finds their earliest start and latest end, reading only the
	// ranges' rows. ErrNotFound for an unknown job.
	TaskRangeStats(ctx context.Context, jobID string, ranges []IndexRange) ([]RangeStats, error)
	GetTask(ctx context.Context, jobID, key string) (*Task, error)
	ListAttempts(ctx context.Context, jobID string, taskIndex int32) ([]Attempt, error)

	// Apply writes a batch of state changes in one transaction. With
	// b.Fence set, the transaction first checks that b.Fence.Holder holds
	// the lease b.Fence.Lease and, if not, changes nothing and returns an
	// error wrapping ErrFenced. A batch that the store refuses for what it
	// holds (a value it cannot store, a row that does not exist) fails with
	// an error wrapping ErrRejected that names the job, task or attempt
	// and the field; retrying it cannot succeed. Any other error (the
	// database unreachable, a timeout) is transient.
	Apply(ctx context.Context, b *Batch) error

	// RequestTaskCancel records a request to cancel one task (and with it
	// its dependents), acted on by the runner. It returns ErrNotFound for an
	// unknown job or key and does nothing to a terminal task. Requesting
	// twice is the same as once.
	RequestTaskCancel(ctx context.Context, jobID string, index int32) error
	// ListTaskCancels returns the cancel requests of tasks of active jobs.
	ListTaskCancels(ctx context.Context) ([]TaskRef, error)

	// AcquireLease takes or renews l (by l.Name) until l.ExpiresAt if it is
	// free (never taken or released), expired at now, or already held by
	// l.Holder. It returns the lease as stored, with its epoch (see
	// Lease.Epoch), and whether l.Holder holds it. An empty name or holder,
	// or text the store cannot hold, fails with an error wrapping
	// ErrRejected.
	AcquireLease(ctx context.Context, l Lease, now time.Time) (Lease, bool, error)
	// AcquireLeases is AcquireLease for each lease of ls, in one
	// transaction: it returns, in ls's order, each lease as stored and
	// whether ls[i].Holder holds it. A runner renews its membership and
	// shard leases this way at the cost of one commit. A name given twice
	// is acquired twice, in ls's order, as separate calls would. If any
	// lease of ls would be refused by AcquireLease, the call fails with an
	// error naming it (wrapping ErrRejected) and changes nothing. An empty
	// ls returns nil results without touching the store.
	AcquireLeases(ctx context.Context, ls []Lease, now time.Time) ([]Lease, []bool, error)
	// ReleaseLease gives up a lease if holder holds it: the lease is free
	// to anyone at once, and its epoch is kept, so that whoever takes it
	// next (holder included) starts a new tenure. It does nothing to a
	// lease holder does not hold.
	ReleaseLease(ctx context.Context, name, holder string) error
	// ListLeases returns the held leases whose name starts with prefix
	// (taken literally: no character is a wildcard; "" lists all), in
	// byte order of their names. Expired leases are listed (the caller
	// judges expiry by its own clock); released ones are not.
	ListLeases(ctx context.Context, prefix string) ([]Lease, error)

	// EnsureSecret stores value under name unless a value is stored there
	// already, and returns the stored value: processes starting together
	// each offer a value of their own and all get the one that was stored
	// first. An empty name or value, a name the store cannot hold, or a
	// value over MaxSecretBytes fails with an error wrapping ErrRejected
	// (naming the secret, never showing a value).
	EnsureSecret(ctx context.Context, name string, value []byte) ([]byte, error)

	// AuthStore keeps issued tokens and the audit log.
	AuthStore
	// PlacementStore keeps clusters, quotas and reservations.
	PlacementStore
	// LogStore keeps the index of archived logs and the workers' history.
	LogStore
	// LogDestinationStore keeps teams' log destinations and the copies
	// of jobs' logs to them.
	LogDestinationStore
	// HistoryStore keeps the history export's batches and bulk readers.
	HistoryStore
	// RetentionStore retires exported finished jobs to job_archive.
	RetentionStore

	Close() error
}
