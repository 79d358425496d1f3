package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// CreateJob stores a job and its tasks in one transaction, with multi-row
// INSERTs of taskInsertRows tasks each. The job starts pending with all its
// tasks blocked, whatever the mutable fields of job and tasks say (state,
// counts, accounting and usage, attempts, start and finish times, cancel
// request). Each task's run tier starts as the greater of its RunTier and
// Tier (a caller may leave RunTier 0). An empty Spec reads back as nil:
// SQLite does not tell a zero-length blob from NULL.
func (s *Store) CreateJob(ctx context.Context, job *store.Job, tasks []store.Task) error {
	if err := storesql.CheckNewJob(job, tasks); err != nil {
		return err
	}
	labels, env, tiers, worker, err := storesql.JobColumns(job)
	if err != nil {
		return err
	}
	secretEnv, err := storesql.SecretEnvColumn(job)
	if err != nil {
		return err
	}
	groups, err := storesql.GroupsColumn(job)
	if err != nil {
		return err
	}
	var groupsText any // NULL: no groups
	if groups != nil {
		groupsText = string(groups)
	}
	params, notify, notifyState, err := retryColumns(job)
	if err != nil {
		return err
	}

	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create job %s: %w", job.ID, err)
	}
	defer tx.Rollback()

	n := int64(len(tasks))
	c := storesql.StartCounts(tasks)
	_, err = tx.ExecContext(ctx, qInsertJob,
		job.ID, job.Name, job.Namespace, string(labels), string(env), string(tiers), job.MaxWorkers,
		string(store.JobPending), n, false,
		c.Blocked, c.Queued, 0, 0, 0, 0, 0,
		storesql.Nanos(job.CreatedAt), nil, nil, job.Spec, string(worker), job.SubmittedBy, string(secretEnv), job.Priority, job.LogDestination, groupsText,
		params, notify, notifyState)
	if err != nil {
		var one int
		if tx.QueryRowContext(ctx, qJobExists, job.ID).Scan(&one) == nil {
			return storesql.Reject(fmt.Errorf("create job %s: a job with this ID already exists", job.ID))
		}
		return fmt.Errorf("create job %s: %w", job.ID, classify(err))
	}
	if err := insertTasks(ctx, tx, job.ID, tasks); err != nil {
		return fmt.Errorf("create job %s: %w", job.ID, classify(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create job %s: commit: %w", job.ID, err)
	}
	return nil
}

func insertTasks(ctx context.Context, tx *sql.Tx, jobID string, tasks []store.Task) error {
	var full *sql.Stmt
	if len(tasks) >= taskInsertRows {
		var err error
		if full, err = tx.PrepareContext(ctx, insertTasksSQL(taskInsertRows)); err != nil {
			return fmt.Errorf("insert tasks: %w", err)
		}
		defer full.Close()
	}
	args := make([]any, 0, taskInsertRows*taskInsertParams)
	for start := 0; start < len(tasks); start += taskInsertRows {
		chunk := tasks[start:min(start+taskInsertRows, len(tasks))]
		args = args[:0]
		for i := range chunk {
			t := &chunk[i]
			argv, err := json.Marshal(t.Argv)
			if err != nil {
				return fmt.Errorf("task %q: encode argv: %w", t.Key, err)
			}
			env, err := json.Marshal(t.Env)
			if err != nil {
				return fmt.Errorf("task %q: encode env: %w", t.Key, err)
			}
			after, err := json.Marshal(t.After)
			if err != nil {
				return fmt.Errorf("task %q: encode after: %w", t.Key, err)
			}
			args = append(args, jobID, t.Index, t.Key, string(argv), string(env), t.Cwd, string(after),
				t.Tier, storesql.StartTier(t), t.Retries, t.TimeoutMS, string(storesql.StartState(t)))
		}
		var err error
		if len(chunk) == taskInsertRows {
			_, err = full.ExecContext(ctx, args...)
		} else {
			_, err = tx.ExecContext(ctx, insertTasksSQL(len(chunk)), args...)
		}
		if err != nil {
			return fmt.Errorf("insert tasks %d..%d: %w", chunk[0].Index, chunk[len(chunk)-1].Index, err)
		}
	}
	return nil
}

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

// scanJob scans a row of jobColumns, or with secret of activeJobColumns.
func scanJob(r rowScanner, secret bool) (store.Job, error) {
	var (
		j                                     store.Job
		labels, env, tiers, worker, secretEnv []byte
		state                                 string
		created, started, finished            *int64
	)
	dest := []any{&j.ID, &j.Name, &j.Namespace, &labels, &env, &tiers, &j.MaxWorkers, &state, &j.TaskCount, &j.CancelRequested,
		&j.Counts.Blocked, &j.Counts.Queued, &j.Counts.Running, &j.Counts.Succeeded, &j.Counts.Failed, &j.Counts.UpstreamFailed, &j.Counts.Cancelled,
		&created, &started, &finished, &j.Spec, &worker, &j.WorkerSeconds, &j.CostUSD,
		&j.Usage.MemoryRequestedByteSeconds, &j.Usage.MemoryUsedByteSeconds, &j.Usage.CPURequestedSeconds, &j.Usage.CPUUsedSeconds,
		&j.Usage.PeakRSSBytes, &j.Usage.OOMAttempts, &j.SubmittedBy, &j.Priority, &j.LogDestination}
	var rc storesql.RetryScan
	dest = append(dest, rc.Dest(&j)...)
	if secret {
		dest = append(dest, &secretEnv)
	}
	if err := r.Scan(dest...); err != nil {
		return j, err
	}
	if err := storesql.FinishJob(&j, state, created, started, finished, labels, env, tiers, worker); err != nil {
		return j, err
	}
	if err := rc.Finish(&j); err != nil {
		return j, err
	}
	if secret {
		return j, storesql.DecodeSecretEnv(&j, secretEnv)
	}
	return j, nil
}

// GetJob returns a job; store.ErrNotFound if there is none with that ID.
func (s *Store) GetJob(ctx context.Context, id string) (*store.Job, error) {
	j, err := scanJob(s.read.QueryRowContext(ctx, qGetJob, id), false)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return &j, nil
}

// ListJobs returns jobs newest (greatest ID) first.
func (s *Store) ListJobs(ctx context.Context, f store.JobFilter) ([]store.Job, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var states any // NULL: any state
	if len(f.States) > 0 {
		for _, st := range f.States {
			if err := storesql.CheckJobState("list jobs: state", st); err != nil {
				return nil, err
			}
		}
		b, err := json.Marshal(f.States)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		states = string(b)
	}
	if err := storesql.CheckJobFilter(f); err != nil {
		return nil, err
	}
	var namespaces any // NULL: any namespace
	if f.Namespaces != nil {
		b, err := json.Marshal(f.Namespaces)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		namespaces = string(b)
	}
	var glob, match any // NULL: any name
	if f.NameGlob != "" {
		toks, err := storesql.ParseGlob(f.NameGlob)
		if err != nil {
			return nil, fmt.Errorf("list jobs: name glob: %w", err)
		}
		pattern, exact := sqliteGlob(toks)
		glob = pattern
		if !exact {
			match = f.NameGlob
		}
	}
	var labels any // NULL: any labels
	if len(f.Labels) > 0 {
		b, err := json.Marshal(f.Labels)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		labels = string(b)
	}
	return s.queryJobs(ctx, "list jobs", false, qListJobs, f.Namespace, states, f.Before, limit, namespaces, f.SubmittedBy,
		glob, match, labels, storesql.Nanos(f.CreatedAfter), storesql.Nanos(f.CreatedBefore), f.IDPrefix)
}

// ListActiveJobs returns the pending and running jobs, oldest (least ID)
// first, with their secret env.
func (s *Store) ListActiveJobs(ctx context.Context) ([]store.Job, error) {
	return s.queryJobs(ctx, "list active jobs", true, qListActiveJobs)
}

// queryJobs runs a query of jobs; secret says it reads activeJobColumns.
func (s *Store) queryJobs(ctx context.Context, what string, secret bool, query string, args ...any) ([]store.Job, error) {
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var jobs []store.Job
	for rows.Next() {
		j, err := scanJob(rows, secret)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		jobs = append(jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return jobs, nil
}

// RequestCancel marks a job for cancellation unless it is terminal.
func (s *Store) RequestCancel(ctx context.Context, id string) error {
	res, err := s.write.ExecContext(ctx, qRequestCancel, id)
	if err != nil {
		return fmt.Errorf("request cancel of job %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("request cancel of job %s: %w", id, err)
	} else if n > 0 {
		return nil
	}
	return s.jobExists(ctx, s.read, "request cancel of job", id)
}

// jobExists returns nil if the job exists and an error wrapping
// store.ErrNotFound if not.
func (s *Store) jobExists(ctx context.Context, db interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, what, id string) error {
	var one int
	err := db.QueryRowContext(ctx, qJobExists, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s %s: %w", what, id, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, id, err)
	}
	return nil
}
