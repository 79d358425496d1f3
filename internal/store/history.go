package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// ExportState is the state of an export batch.
type ExportState string

const (
	// ExportWriting is a batch whose files are being written (or whose
	// writer went away before it finished: the next claim redoes it).
	ExportWriting ExportState = "writing"
	// ExportDone is a batch whose files are all written.
	ExportDone ExportState = "done"
)

// ExportBatch is one batch of the history export (package history): a set
// of finished jobs whose rows are written together, to files named after
// the batch. A job belongs to at most one batch, for good.
type ExportBatch struct {
	// ID is the batch's number: batches created later have greater IDs.
	ID        int64
	State     ExportState
	CreatedAt time.Time
	// FinishedAt is when the batch was marked done (zero while writing).
	FinishedAt time.Time
	// JobCount is how many jobs the batch holds; Jobs their IDs in export
	// order (finish time, then ID), set by ClaimExportBatch only.
	JobCount int64
	Jobs     []string
	// Rows is how many rows of each table the batch's files hold, as
	// FinishExportBatch recorded it (nil while writing).
	Rows map[string]int64
}

// HistoryStore keeps the bookkeeping of the history export: which finished
// jobs were exported in which batch, and the bulk readers the export pages
// a job's rows with.
type HistoryStore interface {
	// ClaimExportBatch returns the batch to export next, in one
	// transaction: the oldest batch still writing if there is one (its
	// writer crashed, or is still at work: a batch is redone whole, to the
	// same files, so writing it twice is harmless), else a new batch of up
	// to maxJobs finished jobs (succeeded, failed or cancelled) that no
	// batch holds and that finished before finishedBefore (a terminal job
	// with no finish time counts as finished at the zero time), taken in
	// order of finish time then ID (a zero finishedBefore takes jobs
	// whenever they finished). ok is false when there is no batch
	// writing and no such job: nothing to export. Claims never put a job
	// in two batches, however many run at once. maxJobs < 1 takes 1.
	ClaimExportBatch(ctx context.Context, maxJobs int, finishedBefore time.Time) (b ExportBatch, ok bool, err error)
	// JobsOfBatch returns the IDs of a batch's jobs in export order
	// (finish time, then ID); none for an unknown batch.
	JobsOfBatch(ctx context.Context, batch int64) ([]string, error)
	// FinishExportBatch marks a batch done with the rows its files hold
	// per table. Finishing a done batch again replaces its counts; an
	// unknown batch is ErrNotFound.
	FinishExportBatch(ctx context.Context, batch int64, rows map[string]int64) error
	// ListExportBatches returns up to limit batches (<= 0: 100), newest
	// first, without their job IDs.
	ListExportBatches(ctx context.Context, limit int) ([]ExportBatch, error)
	// JobExported reports which batch holds a job (0: none yet) and
	// whether that batch is done: a job may be dropped from the live store
	// once done is true. An unknown job is ErrNotFound.
	JobExported(ctx context.Context, jobID string) (batch int64, done bool, err error)
	// ListJobAttempts returns a page of a job's attempts of every task in
	// (task index, number) order, starting after attempt afterAttempt of
	// task afterTask (afterTask -1 starts at the beginning). limit <= 0
	// takes 1000; it is capped at 100,000. An unknown job has no attempts.
	// A job's tasks are paged with ListTasks (TaskFilter.After, Limit).
	ListJobAttempts(ctx context.Context, jobID string, afterTask, afterAttempt int32, limit int) ([]Attempt, error)
}

// ExportPageLimit normalises the limit of ListJobAttempts: <= 0 takes
// 1000, and no page holds more than 100,000 rows.
func ExportPageLimit(limit int) int {
	switch {
	case limit <= 0:
		return 1000
	case limit > 100_000:
		return 100_000
	}
	return limit
}

// ExportCutoff is finishedBefore of ClaimExportBatch in Unix nanoseconds,
// as both drivers store times; the zero time is no bound.
func ExportCutoff(finishedBefore time.Time) int64 {
	if finishedBefore.IsZero() {
		return math.MaxInt64
	}
	return finishedBefore.UnixNano()
}

// EncodeExportRows encodes a batch's row counts for the store (a JSON
// object; nil is "{}").
func EncodeExportRows(rows map[string]int64) (string, error) {
	if rows == nil {
		return "{}", nil
	}
	b, err := json.Marshal(rows)
	if err != nil {
		return "", fmt.Errorf("encode export row counts: %w", err)
	}
	return string(b), nil
}

// DecodeExportRows is the inverse of EncodeExportRows; a batch still
// writing (state) reads as nil.
func DecodeExportRows(state ExportState, b []byte) (map[string]int64, error) {
	if state != ExportDone {
		return nil, nil
	}
	rows := map[string]int64{}
	if len(b) == 0 {
		return rows, nil
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		return nil, fmt.Errorf("decode export row counts: %w", err)
	}
	return rows, nil
}
