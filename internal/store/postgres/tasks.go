package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

func scanTask(rows pgx.Rows) (store.Task, error) {
	var (
		t                 store.Task
		argv, env, after  []byte
		state             string
		started, finished *int64
	)
	err := rows.Scan(&t.JobID, &t.Index, &t.Key, &argv, &env, &t.Cwd, &after, &t.Tier, &t.RunTier, &t.Retries, &t.TimeoutMS,
		&state, &t.Attempts, &t.ExitCode, &t.Reason, &started, &finished, &t.DurationMS, &t.PeakRSSBytes, &t.RetryBase)
	if err != nil {
		return t, err
	}
	return t, storesql.FinishTask(&t, state, started, finished, argv, env, after)
}

func queryTasks(ctx context.Context, c *pgx.Conn, query string, args ...any) ([]store.Task, error) {
	rows, err := c.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var tasks []store.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		tasks = append(tasks, t)
	}
	return tasks, rows.Err()
}

// LoadTasks returns every task of a job in index order; store.ErrNotFound
// if the job does not exist.
func (s *Store) LoadTasks(ctx context.Context, jobID string) ([]store.Task, error) {
	var tasks []store.Task
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		if tasks, err = queryTasks(ctx, c, qLoadTasks, jobID); err != nil || len(tasks) > 0 {
			return err
		}
		return jobExists(ctx, c, jobID)
	})
	if err != nil {
		return nil, fmt.Errorf("load tasks of job %s: %w", jobID, err)
	}
	return tasks, nil
}

// ListTasks returns a page of a job's tasks in index order, or sorted by
// duration or peak memory (ended tasks only); store.ErrNotFound if the job
// does not exist. Every page is read from where the last one ended (by
// index, or by sort value and index), never with an offset.
func (s *Store) ListTasks(ctx context.Context, f store.TaskFilter) ([]store.Task, error) {
	if f.JobID == "" {
		return nil, errors.New("list tasks: job ID is empty")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	q, err := storesql.CheckTaskSort(&f)
	if err != nil {
		return nil, fmt.Errorf("list tasks of job %s: %w", f.JobID, err)
	}
	var states []string // nil (NULL): any state
	for _, st := range f.States {
		if err := storesql.CheckTaskState("state", st); err != nil {
			return nil, fmt.Errorf("list tasks of job %s: %w", f.JobID, err)
		}
		states = append(states, string(st))
	}
	var re *string // nil (NULL): any key
	if f.KeyGlob != "" {
		toks, err := storesql.ParseGlob(f.KeyGlob)
		if err != nil {
			return nil, fmt.Errorf("list tasks of job %s: %w", f.JobID, err)
		}
		r := globRegexp(toks)
		re = &r
	}
	if err := storesql.CheckTaskReason(f.Reason); err != nil {
		return nil, fmt.Errorf("list tasks of job %s: %w", f.JobID, err)
	}
	first, end := storesql.IndexBounds(&f, q.Column == "")
	args := []any{f.JobID, first, end, states, re, f.ExitCode, f.RunTier, f.Reason, limit}
	if q.After {
		args = append(args, f.AfterValue, f.After)
	}
	var tasks []store.Task
	err = s.pool.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		if tasks, err = queryTasks(ctx, c, listTasksQueries[q], args...); err != nil || len(tasks) > 0 {
			return err
		}
		return jobExists(ctx, c, f.JobID)
	})
	if err != nil {
		return nil, fmt.Errorf("list tasks of job %s: %w", f.JobID, err)
	}
	return tasks, nil
}

// JobGroups returns the graph by group stored with a job; nil for a job
// stored without one, store.ErrNotFound for an unknown job.
func (s *Store) JobGroups(ctx context.Context, jobID string) ([]store.TaskGroup, error) {
	var b []byte
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, qJobGroups, jobID).Scan(&b)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("job groups of job %s: %w", jobID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("job groups of job %s: %w", jobID, err)
	}
	gs, err := storesql.DecodeGroups(b)
	if err != nil {
		return nil, fmt.Errorf("job groups of job %s: %w", jobID, err)
	}
	return gs, nil
}

// TaskRangeStats counts a job's tasks by state in each index range, with
// their earliest start and latest end, in one statement that reads each
// range's rows through the primary key. store.ErrNotFound for an unknown
// job.
func (s *Store) TaskRangeStats(ctx context.Context, jobID string, ranges []store.IndexRange) ([]store.RangeStats, error) {
	if err := storesql.CheckRanges(jobID, ranges); err != nil {
		return nil, err
	}
	out := make([]store.RangeStats, len(ranges))
	firsts, ends := make([]int32, len(ranges)), make([]int32, len(ranges))
	for i, r := range ranges {
		firsts[i], ends[i] = r.First, r.End
	}
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		if err := jobExists(ctx, c, jobID); err != nil || len(ranges) == 0 {
			return err
		}
		rows, err := c.Query(ctx, qTaskRangeStats, jobID, firsts, ends)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				i                 int64
				state             string
				n                 int64
				started, finished *int64
			)
			if err := rows.Scan(&i, &state, &n, &started, &finished); err != nil {
				return err
			}
			if i < 1 || i > int64(len(out)) {
				return fmt.Errorf("range number %d out of 1..%d", i, len(out))
			}
			storesql.AddRangeRow(&out[i-1], state, n, started, finished)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("task range stats of job %s: %w", jobID, err)
	}
	return out, nil
}

// GetTask returns the task of a job with the given key; store.ErrNotFound
// if there is none.
func (s *Store) GetTask(ctx context.Context, jobID, key string) (*store.Task, error) {
	var tasks []store.Task
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		tasks, err = queryTasks(ctx, c, qGetTask, jobID, key)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get task %q of job %s: %w", key, jobID, err)
	}
	if len(tasks) == 0 {
		return nil, fmt.Errorf("get task %q of job %s: %w", key, jobID, store.ErrNotFound)
	}
	return &tasks[0], nil
}

// ListAttempts returns the attempts of a task by number; store.ErrNotFound
// if the task does not exist.
func (s *Store) ListAttempts(ctx context.Context, jobID string, taskIndex int32) ([]store.Attempt, error) {
	var attempts []store.Attempt
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListAttempts, jobID, taskIndex)
		if err != nil {
			return err
		}
		for rows.Next() {
			a, err := storesql.ScanAttempt(rows)
			if err != nil {
				rows.Close()
				return err
			}
			attempts = append(attempts, a)
		}
		rows.Close()
		if err := rows.Err(); err != nil || len(attempts) > 0 {
			return err
		}
		var ok bool
		if err := c.QueryRow(ctx, qTaskExists, jobID, taskIndex).Scan(&ok); err != nil {
			return err
		}
		if !ok {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list attempts of task %d of job %s: %w", taskIndex, jobID, err)
	}
	return attempts, nil
}
