package storesql

import (
	"fmt"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// LogEntryColumns and WorkerColumns are the column lists, in the order of
// LogEntryArgs/ScanLogEntry and WorkerArgs/ScanWorker.
const (
	LogEntryColumns = `job_id, task_idx, attempt, object, off, length, stdout_bytes, stderr_bytes, first_at, last_at, truncated, note, destination, archive_error`
	WorkerColumns   = `id, job_id, tier, cluster, team, started_at, ended_at, end_reason, attempts`
)

// CheckLogEntry refuses an entry the store cannot keep or that cannot be
// right: no job, a negative index, attempt or range, stream parts longer
// than the range.
func CheckLogEntry(e store.LogEntry) error {
	where := fmt.Sprintf("log entry of job %q task %d attempt %d", e.JobID, e.TaskIndex, e.Attempt)
	switch {
	case e.JobID == "":
		return Reject(fmt.Errorf("%s: no job ID", where))
	case e.TaskIndex < 0 || e.Attempt < 1:
		return Reject(fmt.Errorf("%s: want task index >= 0 and attempt >= 1", where))
	case e.Object == "":
		return Reject(fmt.Errorf("%s: no object", where))
	case e.Offset < 0 || e.Length < 0 || e.StdoutBytes < 0 || e.StderrBytes < 0:
		return Reject(fmt.Errorf("%s: negative offset, length or stream size", where))
	case e.StdoutBytes+e.StderrBytes > e.Length:
		return Reject(fmt.Errorf("%s: stream parts of %d+%d bytes exceed the range of %d", where, e.StdoutBytes, e.StderrBytes, e.Length))
	}
	for _, f := range []struct{ name, v string }{{"job ID", e.JobID}, {"object", e.Object}, {"note", e.Note}, {"destination", e.Destination}, {"archive error", e.ArchiveError}} {
		if err := CheckText(f.name, f.v); err != nil {
			return Reject(fmt.Errorf("%s: %w", where, err))
		}
	}
	if err := checkTime("first_at", e.FirstAt); err != nil {
		return Reject(fmt.Errorf("%s: %w", where, err))
	}
	if err := checkTime("last_at", e.LastAt); err != nil {
		return Reject(fmt.Errorf("%s: %w", where, err))
	}
	return nil
}

// LogEntryArgs are e's column values in LogEntryColumns order.
func LogEntryArgs(e store.LogEntry) []any {
	return []any{e.JobID, e.TaskIndex, e.Attempt, e.Object, e.Offset, e.Length, e.StdoutBytes, e.StderrBytes,
		Nanos(e.FirstAt), Nanos(e.LastAt), e.Truncated, e.Note, e.Destination, e.ArchiveError}
}

// ScanLogEntry reads a row of LogEntryColumns.
func ScanLogEntry(r Row) (store.LogEntry, error) {
	var e store.LogEntry
	var first, last *int64
	err := r.Scan(&e.JobID, &e.TaskIndex, &e.Attempt, &e.Object, &e.Offset, &e.Length, &e.StdoutBytes, &e.StderrBytes,
		&first, &last, &e.Truncated, &e.Note, &e.Destination, &e.ArchiveError)
	e.FirstAt, e.LastAt = FromNanos(first), FromNanos(last)
	return e, err
}

// LogEntryPage normalises a filter: its limit, and the keyset arguments
// (task, attempt to start after; task -1 for all tasks).
func LogEntryPage(f store.LogEntryFilter) (store.LogEntryFilter, error) {
	if f.JobID == "" {
		return f, Reject(fmt.Errorf("list log entries: no job ID"))
	}
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	if f.Limit > 100000 {
		f.Limit = 100000
	}
	if f.TaskIndex < 0 {
		f.TaskIndex = -1
	}
	if f.AfterTask < 0 {
		f.AfterTask, f.AfterAttempt = -1, 0
	}
	return f, nil
}

// CheckWorker refuses a record the store cannot keep.
func CheckWorker(w store.WorkerRecord) error {
	if err := CheckName("worker ID", w.ID); err != nil {
		return Reject(err)
	}
	where := fmt.Sprintf("worker %q", w.ID)
	for _, f := range []struct{ name, v string }{{"job ID", w.JobID}, {"cluster", w.Cluster}, {"team", w.Team}, {"end reason", w.EndReason}} {
		if err := CheckText(f.name, f.v); err != nil {
			return Reject(fmt.Errorf("%s: %w", where, err))
		}
	}
	if w.Attempts < 0 || w.Tier < 0 {
		return Reject(fmt.Errorf("%s: negative tier or attempt count", where))
	}
	if err := checkTime("started_at", w.StartedAt); err != nil {
		return Reject(fmt.Errorf("%s: %w", where, err))
	}
	if err := checkTime("ended_at", w.EndedAt); err != nil {
		return Reject(fmt.Errorf("%s: %w", where, err))
	}
	return nil
}

// WorkerArgs are w's column values in WorkerColumns order.
func WorkerArgs(w store.WorkerRecord) []any {
	return []any{w.ID, w.JobID, w.Tier, w.Cluster, w.Team, Nanos(w.StartedAt), Nanos(w.EndedAt), w.EndReason, w.Attempts}
}

// ScanWorker reads a row of WorkerColumns.
func ScanWorker(r Row) (store.WorkerRecord, error) {
	var w store.WorkerRecord
	var started, ended *int64
	err := r.Scan(&w.ID, &w.JobID, &w.Tier, &w.Cluster, &w.Team, &started, &ended, &w.EndReason, &w.Attempts)
	w.StartedAt, w.EndedAt = FromNanos(started), FromNanos(ended)
	return w, err
}

// Log destination and archive columns, in the order of the Args and Scan
// functions below.
const (
	LogDestinationColumns = `team, url, access_key_id, secret_access_key, session_token, updated_at`
	LogArchiveColumns     = `job_id, destination, state, tries, error, objects, next_at, updated_at`
)

// CheckLogDestination refuses a destination the store cannot keep.
func CheckLogDestination(d store.LogDestination) error {
	if err := CheckName("team", d.Team); err != nil {
		return Reject(err)
	}
	for _, f := range []struct{ name, v string }{{"URL", d.URL}, {"access key ID", d.AccessKeyID}, {"secret access key", d.SecretAccessKey}, {"session token", d.SessionToken}} {
		if err := CheckText(f.name, f.v); err != nil {
			// Never quote a secret back.
			return Reject(fmt.Errorf("log destination of team %q: %s is not storable text", d.Team, f.name))
		}
	}
	if d.URL == "" {
		return Reject(fmt.Errorf("log destination of team %q: empty URL", d.Team))
	}
	return nil
}

// LogDestinationArgs are d's column values.
func LogDestinationArgs(d store.LogDestination) []any {
	return []any{d.Team, d.URL, d.AccessKeyID, d.SecretAccessKey, d.SessionToken, d.UpdatedAt.UnixNano()}
}

// ScanLogDestination reads a row of LogDestinationColumns.
func ScanLogDestination(r Row) (store.LogDestination, error) {
	var d store.LogDestination
	var at int64
	err := r.Scan(&d.Team, &d.URL, &d.AccessKeyID, &d.SecretAccessKey, &d.SessionToken, &at)
	d.UpdatedAt = time.Unix(0, at).UTC()
	return d, err
}

// CheckLogArchive refuses a copy state the store cannot keep.
func CheckLogArchive(a store.LogArchive) error {
	switch {
	case a.JobID == "":
		return Reject(fmt.Errorf("log archive: no job ID"))
	case a.State != store.ArchivePending && a.State != store.ArchiveDone && a.State != store.ArchiveFailed:
		return Reject(fmt.Errorf("log archive of job %s: state %q: want pending, done or failed", a.JobID, a.State))
	case a.Tries < 0 || a.Objects < 0:
		return Reject(fmt.Errorf("log archive of job %s: negative tries or objects", a.JobID))
	}
	for _, f := range []struct{ name, v string }{{"job ID", a.JobID}, {"destination", a.Destination}, {"error", a.Error}} {
		if err := CheckText(f.name, f.v); err != nil {
			return Reject(fmt.Errorf("log archive of job %s: %w", a.JobID, err))
		}
	}
	return nil
}

// LogArchiveArgs are a's column values.
func LogArchiveArgs(a store.LogArchive) []any {
	return []any{a.JobID, a.Destination, a.State, a.Tries, a.Error, a.Objects, Nanos(a.NextAt), a.UpdatedAt.UnixNano()}
}

// ScanLogArchive reads a row of LogArchiveColumns.
func ScanLogArchive(r Row) (store.LogArchive, error) {
	var a store.LogArchive
	var next *int64
	var at int64
	err := r.Scan(&a.JobID, &a.Destination, &a.State, &a.Tries, &a.Error, &a.Objects, &next, &at)
	a.NextAt, a.UpdatedAt = FromNanos(next), time.Unix(0, at).UTC()
	return a, err
}

// ScanArchiveCandidate reads a row of JobsToArchive: the job's ID,
// namespace, destination and end, then its copy's columns (NULL when
// there is no copy yet).
func ScanArchiveCandidate(r Row) (store.LogArchive, error) {
	var a store.LogArchive
	var finished, next, at, tries, objects *int64
	var state, errText *string
	err := r.Scan(&a.JobID, &a.Namespace, &a.Destination, &finished, &state, &tries, &errText, &objects, &next, &at)
	a.FinishedAt, a.NextAt = FromNanos(finished), FromNanos(next)
	a.State = store.ArchivePending
	if state != nil {
		a.State = *state
	}
	if tries != nil {
		a.Tries = *tries
	}
	if errText != nil {
		a.Error = *errText
	}
	if objects != nil {
		a.Objects = *objects
	}
	if at != nil {
		a.UpdatedAt = time.Unix(0, *at).UTC()
	}
	return a, err
}
