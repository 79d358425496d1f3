package storesql

import (
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// ScanArchivedJob reads a job_archive row, in the column order of both
// drivers' archive queries.
func ScanArchivedJob(r Row) (store.ArchivedJob, error) {
	var (
		a                          store.ArchivedJob
		labels                     []byte
		state                      string
		created, started, finished *int64
		archived                   int64
		retired                    *int64
	)
	c := &a.Counts
	if err := r.Scan(&a.ID, &a.Name, &a.Namespace, &labels, &state, &a.TaskCount,
		&c.Blocked, &c.Queued, &c.Running, &c.Succeeded, &c.Failed, &c.UpstreamFailed, &c.Cancelled,
		&a.CostUSD, &a.WorkerSeconds, &created, &started, &finished, &a.SubmittedBy, &a.ExportBatch,
		&archived, &a.History, &retired); err != nil {
		return a, err
	}
	a.State = store.JobState(state)
	a.CreatedAt, a.StartedAt, a.FinishedAt = FromNanos(created), FromNanos(started), FromNanos(finished)
	a.ArchivedAt, a.Retiring = time.Unix(0, archived).UTC(), retired == nil
	var err error
	a.Labels, err = DecodeMap("labels", labels)
	return a, err
}

// ScanAttempt reads a row of attemptColumns, usage and GPUs included.
func ScanAttempt(r Row) (store.Attempt, error) {
	var (
		a                 store.Attempt
		state             string
		started, finished *int64
		gpus              []byte
	)
	u := &a.Usage
	if err := r.Scan(&a.JobID, &a.TaskIndex, &a.Number, &a.Tier, &a.WorkerID, &state, &a.ExitCode, &a.Signal,
		&a.Reason, &a.Message, &started, &finished,
		&a.Enforcement, &u.CPUUserSeconds, &u.CPUSystemSeconds, &u.PeakRSSBytes, &u.AvgRSSBytes, &gpus, &u.GPUNote); err != nil {
		return a, err
	}
	return a, FinishAttempt(&a, state, started, finished, gpus)
}
