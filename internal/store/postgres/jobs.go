package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// SQLSTATE codes the driver tells apart.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// CreateJob stores a job and its tasks in one transaction, the tasks with
// COPY. The job starts pending with all its tasks blocked, whatever the
// mutable fields of job and tasks say (state, counts, accounting and usage,
// attempts, start and finish times, cancel request). Each task's run tier
// starts as the greater of its RunTier and Tier (a caller may leave RunTier
// 0). An empty Spec reads back as nil, as in the sqlite driver.
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
	var groupsArg any // NULL: no groups
	if groups != nil {
		groupsArg = groups
	}
	params, notify, err := storesql.RetryColumns(job)
	if err != nil {
		return err
	}
	var paramsArg, notifyArg, notifyState any // NULL: none
	if params != nil {
		paramsArg = params
	}
	if notify != nil {
		notifyArg, notifyState = notify, "pending"
	}
	n := int64(len(tasks))
	c := storesql.StartCounts(tasks)
	err = s.pool.withTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, qInsertJob,
			job.ID, job.Name, job.Namespace, labels, env, tiers, job.MaxWorkers,
			string(store.JobPending), n, false,
			c.Blocked, c.Queued, 0, 0, 0, 0, 0,
			storesql.Nanos(job.CreatedAt), nil, nil, job.Spec, worker, job.SubmittedBy, secretEnv, job.Priority, job.LogDestination, groupsArg,
			paramsArg, notifyArg, notifyState)
		if pgCode(err) == uniqueViolation {
			return storesql.Reject(errors.New("a job with this ID already exists"))
		}
		if err != nil {
			return err
		}
		if len(tasks) == 0 {
			return nil
		}
		src := &taskSource{jobID: job.ID, tasks: tasks, i: -1}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{tasksTable}, taskCopyColumns, src); err != nil {
			return fmt.Errorf("copy tasks: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create job %s: %w", job.ID, classify(err))
	}
	return nil
}

// taskSource feeds tasks to COPY, encoding each row as it goes.
type taskSource struct {
	jobID string
	tasks []store.Task
	i     int
	err   error
}

func (ts *taskSource) Next() bool {
	ts.i++
	return ts.err == nil && ts.i < len(ts.tasks)
}

func (ts *taskSource) Values() ([]any, error) {
	t := &ts.tasks[ts.i]
	argv, err := json.Marshal(t.Argv)
	if err != nil {
		ts.err = fmt.Errorf("task %q: encode argv: %w", t.Key, err)
		return nil, ts.err
	}
	env, err := json.Marshal(t.Env)
	if err != nil {
		ts.err = fmt.Errorf("task %q: encode env: %w", t.Key, err)
		return nil, ts.err
	}
	after, err := json.Marshal(t.After)
	if err != nil {
		ts.err = fmt.Errorf("task %q: encode after: %w", t.Key, err)
		return nil, ts.err
	}
	return []any{ts.jobID, t.Index, t.Key, argv, env, t.Cwd, after, t.Tier, storesql.StartTier(t), t.Retries, t.TimeoutMS, string(storesql.StartState(t))}, nil
}

func (ts *taskSource) Err() error { return ts.err }

// scanJob scans a row of jobColumns, or with secret of activeJobColumns.
func scanJob(r pgx.Row, secret bool) (store.Job, error) {
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
	var j store.Job
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		j, err = scanJob(c.QueryRow(ctx, qGetJob, id), false)
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
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
	var states []string // nil (NULL): any state
	for _, st := range f.States {
		if err := storesql.CheckJobState("list jobs: state", st); err != nil {
			return nil, err
		}
		states = append(states, string(st))
	}
	if err := storesql.CheckJobFilter(f); err != nil {
		return nil, err
	}
	var re *string // nil (NULL): any name
	if f.NameGlob != "" {
		toks, err := storesql.ParseGlob(f.NameGlob)
		if err != nil {
			return nil, fmt.Errorf("list jobs: name glob: %w", err)
		}
		r := globRegexp(toks)
		re = &r
	}
	var labels []byte // nil (NULL): any labels
	if len(f.Labels) > 0 {
		b, err := json.Marshal(f.Labels)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		labels = b
	}
	// A nil slice is NULL (any namespace), an empty one an empty array.
	return s.queryJobs(ctx, "list jobs", false, qListJobs, f.Namespace, states, f.Before, limit, f.Namespaces, f.SubmittedBy,
		re, labels, storesql.Nanos(f.CreatedAfter), storesql.Nanos(f.CreatedBefore), f.IDPrefix)
}

// ListActiveJobs returns the pending and running jobs, oldest (least ID)
// first, with their secret env.
func (s *Store) ListActiveJobs(ctx context.Context) ([]store.Job, error) {
	return s.queryJobs(ctx, "list active jobs", true, qListActiveJobs)
}

// queryJobs runs a query of jobs; secret says it reads activeJobColumns.
func (s *Store) queryJobs(ctx context.Context, what string, secret bool, query string, args ...any) ([]store.Job, error) {
	var jobs []store.Job
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			j, err := scanJob(rows, secret)
			if err != nil {
				return err
			}
			jobs = append(jobs, j)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return jobs, nil
}

// RequestCancel marks a job for cancellation unless it is terminal.
func (s *Store) RequestCancel(ctx context.Context, id string) error {
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, qRequestCancel, id)
		if err != nil || tag.RowsAffected() > 0 {
			return err
		}
		return jobExists(ctx, c, id)
	})
	if err != nil {
		return fmt.Errorf("request cancel of job %s: %w", id, err)
	}
	return nil
}

// jobExists returns nil if the job exists and store.ErrNotFound if not.
func jobExists(ctx context.Context, c *pgx.Conn, id string) error {
	var ok bool
	if err := c.QueryRow(ctx, qJobExists, id).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return store.ErrNotFound
	}
	return nil
}
