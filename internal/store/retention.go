package store

import (
	"context"
	"time"
)

// ArchivedJob is what stays of a job after retention retired it from the
// live tables (RetentionStore.RetireJobs): its summary as it ended, the
// export batch that holds its rows in the history export, when it was
// archived and where that history is.
type ArchivedJob struct {
	ID        string
	Name      string
	Namespace string
	Labels    map[string]string
	State     JobState
	TaskCount int64
	Counts    TaskCounts
	// CostUSD and WorkerSeconds are the job's accounting as it ended.
	CostUSD       float64
	WorkerSeconds float64
	CreatedAt     time.Time
	StartedAt     time.Time
	FinishedAt    time.Time
	SubmittedBy   string
	// ExportBatch is the history export batch that holds the job's rows.
	ExportBatch int64
	// ArchivedAt is when retirement began (the archive row was written).
	ArchivedAt time.Time
	// Retiring is true while the job's live rows are still being deleted
	// (a retirement pass stopped midway; the next one finishes it).
	Retiring bool
	// History is the location text the retainer was given: where the
	// history export lives (a prefix URL such as s3://bucket/history), as
	// `haul query --from` takes it. Empty when the retainer was given none.
	History string
}

// DefaultRetireBatchRows is how many rows of one child table RetireJobs
// deletes per statement (each statement its own transaction) unless the
// context says otherwise (WithRetireBatchRows).
const DefaultRetireBatchRows = 10_000

// RetentionStore drops finished, exported jobs from the live tables and
// keeps a summary row of each in job_archive.
//
// Retiring a job is a sequence of short transactions, so that a job of a
// million tasks never holds a long write transaction:
//
//  1. one transaction inserts the job's archive row (copied from the jobs
//     row) if the job is still terminal and exported; from then on the job
//     is "retiring": it has both a jobs row and an archive row;
//  2. the rows that reference the job (attempts, log_entries, workers,
//     task_cancels, tasks) are deleted a bounded batch per statement;
//  3. one transaction deletes the jobs row.
//
// A crash or cancellation at any point leaves either a live job that is
// marked retiring (its archive row exists; some of its child rows may be
// gone) or a retired one (archive row only). The next RetireJobs resumes
// every retiring job before it picks new ones, so retirement converges.
// Reservations and placement claims (placement tables) are not touched:
// they expire on their own.
type RetentionStore interface {
	// RetireJobs retires up to limit jobs (< 1 takes 1): first the jobs
	// already retiring (a previous call stopped midway), then jobs that
	// are terminal, finished before finishedBefore (a terminal job with no
	// finish time counts as finished at the zero time; a zero
	// finishedBefore is no bound), and whose export batch is done
	// (HistoryStore.JobExported), oldest finish first. A running,
	// pending or unexported job is never touched. history is stored in
	// each new archive row (a resumed job keeps the text it was marked
	// with). It returns the IDs of the jobs it retired completely, in the
	// order retired; on error, those retired before the error.
	RetireJobs(ctx context.Context, finishedBefore time.Time, limit int, history string) (retired []string, err error)
	// GetArchivedJob returns a job's archive row, or an error wrapping
	// ErrNotFound when there is none. A job still retiring has both an
	// archive row and a live row; readers should prefer the live one.
	GetArchivedJob(ctx context.Context, id string) (*ArchivedJob, error)
	// ListArchivedJobs returns up to limit (<= 0: 100) archived jobs of
	// namespace ("" : all), newest (greatest ID) first, only those whose
	// ID sorts before before when it is set (keyset paging).
	ListArchivedJobs(ctx context.Context, namespace, before string, limit int) ([]ArchivedJob, error)
}

// RetireProgress is told of every bounded delete of RetireJobs: the job,
// the table and how many rows the statement deleted. The drivers call it
// between transactions, never inside one.
type RetireProgress func(jobID, table string, rows int64)

type retireCtxKey int

const (
	retireProgressKey retireCtxKey = iota
	retireBatchKey
)

// WithRetireProgress returns a context that makes RetireJobs report each
// bounded delete to fn (for logs, metrics and tests).
func WithRetireProgress(ctx context.Context, fn RetireProgress) context.Context {
	return context.WithValue(ctx, retireProgressKey, fn)
}

// WithRetireBatchRows returns a context that makes RetireJobs delete up to
// n rows per statement (n < 1: DefaultRetireBatchRows).
func WithRetireBatchRows(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, retireBatchKey, n)
}

// RetireOptions returns the batch size and progress callback ctx carries
// for RetireJobs (a no-op callback when none); for the drivers.
func RetireOptions(ctx context.Context) (batchRows int, progress RetireProgress) {
	batchRows = DefaultRetireBatchRows
	if n, ok := ctx.Value(retireBatchKey).(int); ok && n > 0 {
		batchRows = n
	}
	progress, _ = ctx.Value(retireProgressKey).(RetireProgress)
	if progress == nil {
		progress = func(string, string, int64) {}
	}
	return batchRows, progress
}

// RetireTables are the tables whose rows reference a job, in the order
// RetireJobs deletes them: attempts before tasks (their foreign key), and
// task_cancels before the jobs row (its foreign key has no cascade).
var RetireTables = []string{"attempts", "log_entries", "workers", "task_cancels", "tasks"}
