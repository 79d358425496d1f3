package store

import (
	"context"
	"time"
)

// LogEntry says where one attempt's archived log is: a byte range of an
// object in the platform's object store (a pack shared with other attempts
// of the same worker, or an object of the attempt's own). The range holds
// the attempt's stdout bytes, then its stderr bytes, then its timeline (see
// package logs, "Packed archives"), so one ranged read fetches the whole
// attempt and a plain ranged read of a stream's part is plain text.
type LogEntry struct {
	JobID     string
	TaskIndex int32
	Attempt   int32
	// Object is the key of the object in the platform store; Offset and
	// Length its range.
	Object         string
	Offset, Length int64
	// StdoutBytes and StderrBytes are the sizes of the two stream parts;
	// the timeline takes the rest of Length.
	StdoutBytes, StderrBytes int64
	// FirstAt and LastAt are the times of the first and last output (zero
	// when there was none).
	FirstAt, LastAt time.Time
	// Truncated says the log is not the task's whole output (the worker
	// went away and this is what the runner held, or output was dropped);
	// Note says why, in plain words.
	Truncated bool
	Note      string
	// Destination is where the log was copied for its team ("" while it
	// has not been, or when the job has no destination of its own);
	// ArchiveError is the last failure to copy it there.
	Destination  string
	ArchiveError string
}

// LogEntryFilter selects log entries of one job, in (task, attempt) order,
// a page at a time.
type LogEntryFilter struct {
	JobID string
	// TaskIndex, when >= 0, selects one task (Attempt > 0 one attempt).
	TaskIndex int32
	Attempt   int32
	// AfterTask and AfterAttempt continue a listing after that entry
	// (keyset paging); AfterTask < 0 starts at the beginning.
	AfterTask, AfterAttempt int32
	// Limit is the page size; <= 0 takes 1000.
	Limit int
}

// WorkerRecord is a worker's history: what it was started for, where, and
// how it ended.
type WorkerRecord struct {
	ID      string
	JobID   string
	Tier    int32
	Cluster string
	// Team is the job's namespace, kept so the record reads alone.
	Team      string
	StartedAt time.Time
	EndedAt   time.Time // zero while it runs
	// EndReason says why it ended ("exit", "lost", "stopped", ...).
	EndReason string
	// Attempts counts the attempts it ran.
	Attempts int64
}

// LogStore keeps the index of archived logs and the workers' history.
type LogStore interface {
	// PutLogEntries stores entries, replacing any of the same attempt: a
	// worker that sends an entry again (its poll's reply was lost) changes
	// nothing.
	PutLogEntries(ctx context.Context, entries []LogEntry) error
	// ListLogEntries returns a page of a job's entries.
	ListLogEntries(ctx context.Context, f LogEntryFilter) ([]LogEntry, error)
	// PutWorkers stores worker records, replacing any of the same ID.
	PutWorkers(ctx context.Context, ws []WorkerRecord) error
	// ListWorkers returns a job's workers, by ID.
	ListWorkers(ctx context.Context, jobID string) ([]WorkerRecord, error)
	// ListWorkerRecords returns a page of worker records across jobs,
	// filtered, by ID descending (worker IDs start with their job's ID,
	// so the newest jobs' workers come first); Before continues after a
	// page (keyset paging).
	ListWorkerRecords(ctx context.Context, f WorkerFilter) ([]WorkerRecord, error)
	// ListAttemptsByWorker returns up to limit attempts the worker ran
	// (attempts of its job jobID), in the order they started, each with
	// its task's key.
	ListAttemptsByWorker(ctx context.Context, jobID, workerID string, limit int) ([]WorkerAttempt, error)
}

// WorkerFilter selects worker records for ListWorkerRecords.
type WorkerFilter struct {
	JobID string // empty: all
	// Tier, when set, selects workers of this tier index.
	Tier    *int32
	Cluster string // empty: all
	// Running, when set, selects running (true: no end yet) or ended
	// workers.
	Running *bool
	// Namespaces, when non-nil, selects only workers of jobs of these
	// teams; an empty, non-nil slice selects none.
	Namespaces []string
	// JobLabels selects workers of jobs that have every one of these
	// labels with these values.
	JobLabels map[string]string
	// Before pages: only workers whose ID sorts before this.
	Before string
	// Limit is the page size; <= 0 takes 100, at most 10,000.
	Limit int
}

// WorkerAttempt is an attempt with its task's key.
type WorkerAttempt struct {
	TaskKey string
	Attempt Attempt
}

// WorkerPageLimit normalises a WorkerFilter's limit.
func WorkerPageLimit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > 10000:
		return 10000
	}
	return n
}

// LogDestination is a team's log destination: where its jobs' logs are
// copied when they end, and the credentials to write there, which an
// admin configures and nobody is shown again.
type LogDestination struct {
	Team string
	// URL is an s3:// URL (bucket, prefix, and region/endpoint parameters).
	URL                                        string
	AccessKeyID, SecretAccessKey, SessionToken string
	UpdatedAt                                  time.Time
}

// LogArchive is the state of copying one job's logs to its destination.
type LogArchive struct {
	JobID       string
	Namespace   string // of the job (filled by JobsToArchive)
	Destination string
	// State is "pending" (not yet done: see Tries and NextAt), "done" or
	// "failed" (given up; Error says why).
	State   string
	Tries   int64
	Error   string
	Objects int64 // objects copied
	// FinishedAt is the job's end (filled by JobsToArchive).
	FinishedAt time.Time
	NextAt     time.Time // not before: the backoff after a failure
	UpdatedAt  time.Time
}

// Log archive states.
const (
	ArchivePending = "pending"
	ArchiveDone    = "done"
	ArchiveFailed  = "failed"
)

// LogDestinationStore keeps teams' log destinations and the copies of
// jobs' logs to them.
type LogDestinationStore interface {
	// PutLogDestination sets a team's destination, replacing any.
	PutLogDestination(ctx context.Context, d LogDestination) error
	// GetLogDestination returns a team's destination (ErrNotFound: none).
	GetLogDestination(ctx context.Context, team string) (*LogDestination, error)
	// DeleteLogDestination removes a team's destination (ErrNotFound: none).
	DeleteLogDestination(ctx context.Context, team string) error
	// ListLogDestinations returns every team's destination, by team.
	ListLogDestinations(ctx context.Context) ([]LogDestination, error)
	// JobsToArchive returns up to limit ended jobs with a destination,
	// finished before the cutoff, whose copy is neither done nor failed
	// and not waiting (NextAt after now), oldest first, with the copy's
	// state so far.
	JobsToArchive(ctx context.Context, finishedBefore, now time.Time, limit int) ([]LogArchive, error)
	// PutLogArchive records a copy's state.
	PutLogArchive(ctx context.Context, a LogArchive) error
	// GetLogArchive returns a job's copy state (ErrNotFound: none yet).
	GetLogArchive(ctx context.Context, jobID string) (*LogArchive, error)
}
