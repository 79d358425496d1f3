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

func scanTask(rows *sql.Rows) (store.Task, error) {
	var (
		t                 store.Task
		argv, env, after  sql.RawBytes
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

func (s *Store) queryTasks(ctx context.Context, query string, args ...any) ([]store.Task, error) {
	rows, err := s.read.QueryContext(ctx, query, args...)
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
	tasks, err := s.queryTasks(ctx, qLoadTasks, jobID)
	if err != nil {
		return nil, fmt.Errorf("load tasks of job %s: %w", jobID, err)
	}
	if len(tasks) == 0 {
		if err := s.jobExists(ctx, s.read, "load tasks of job", jobID); err != nil {
			return nil, err
		}
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
	var states any // NULL: any state
	if len(f.States) > 0 {
		for _, st := range f.States {
			if err := storesql.CheckTaskState("state", st); err != nil {
				return nil, fmt.Errorf("list tasks of job %s: %w", f.JobID, err)
			}
		}
		b, err := json.Marshal(f.States)
		if err != nil {
			return nil, fmt.Errorf("list tasks of job %s: %w", f.JobID, err)
		}
		states = string(b)
	}
	var glob, match any // NULL: any key
	if f.KeyGlob != "" {
		toks, err := storesql.ParseGlob(f.KeyGlob)
		if err != nil {
			return nil, fmt.Errorf("list tasks of job %s: %w", f.JobID, err)
		}
		pattern, exact := sqliteGlob(toks)
		glob = pattern
		if !exact {
			match = f.KeyGlob
		}
	}
	if err := storesql.CheckTaskReason(f.Reason); err != nil {
		return nil, fmt.Errorf("list tasks of job %s: %w", f.JobID, err)
	}
	var exitCode, runTier any // NULL: any
	if f.ExitCode != nil {
		exitCode = *f.ExitCode
	}
	if f.RunTier != nil {
		runTier = *f.RunTier
	}
	first, end := storesql.IndexBounds(&f, q.Column == "")
	args := []any{f.JobID, first, end, states, glob, match, exitCode, runTier, f.Reason, limit}
	if q.After {
		args = append(args, f.AfterValue, f.After)
	}
	tasks, err := s.queryTasks(ctx, listTasksQueries[q], args...)
	if err != nil {
		return nil, fmt.Errorf("list tasks of job %s: %w", f.JobID, err)
	}
	if len(tasks) == 0 {
		if err := s.jobExists(ctx, s.read, "list tasks of job", f.JobID); err != nil {
			return nil, err
		}
	}
	return tasks, nil
}

// JobGroups returns the graph by group stored with a job; nil for a job
// stored without one, store.ErrNotFound for an unknown job.
func (s *Store) JobGroups(ctx context.Context, jobID string) ([]store.TaskGroup, error) {
	var b []byte
	err := s.read.QueryRowContext(ctx, qJobGroups, jobID).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
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
// their earliest start and latest end: one query per range, each reading
// the range's rows through the primary key, all in one read transaction
// (one snapshot). store.ErrNotFound for an unknown job.
func (s *Store) TaskRangeStats(ctx context.Context, jobID string, ranges []store.IndexRange) ([]store.RangeStats, error) {
	if err := storesql.CheckRanges(jobID, ranges); err != nil {
		return nil, err
	}
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("task range stats of job %s: %w", jobID, err)
	}
	defer tx.Rollback()
	if err := s.jobExists(ctx, tx, "task range stats of job", jobID); err != nil {
		return nil, err
	}
	out := make([]store.RangeStats, len(ranges))
	if len(ranges) == 0 {
		return out, nil
	}
	stmt, err := tx.PrepareContext(ctx, qTaskRangeStats)
	if err != nil {
		return nil, fmt.Errorf("task range stats of job %s: %w", jobID, err)
	}
	defer stmt.Close()
	for i, r := range ranges {
		if r.First == r.End {
			continue
		}
		if err := rangeStats(ctx, stmt, jobID, r, &out[i]); err != nil {
			return nil, fmt.Errorf("task range stats of job %s: range %d..%d: %w", jobID, r.First, r.End, err)
		}
	}
	return out, nil
}

func rangeStats(ctx context.Context, stmt *sql.Stmt, jobID string, r store.IndexRange, rs *store.RangeStats) error {
	rows, err := stmt.QueryContext(ctx, jobID, r.First, r.End)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			state             string
			n                 int64
			started, finished *int64
		)
		if err := rows.Scan(&state, &n, &started, &finished); err != nil {
			return err
		}
		storesql.AddRangeRow(rs, state, n, started, finished)
	}
	return rows.Err()
}

// GetTask returns the task of a job with the given key; store.ErrNotFound
// if there is none.
func (s *Store) GetTask(ctx context.Context, jobID, key string) (*store.Task, error) {
	tasks, err := s.queryTasks(ctx, qGetTask, jobID, key)
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
	attempts, err := s.queryAttempts(ctx, jobID, taskIndex)
	if err != nil {
		return nil, fmt.Errorf("list attempts of task %d of job %s: %w", taskIndex, jobID, err)
	}
	if len(attempts) == 0 {
		var one int
		err := s.read.QueryRowContext(ctx, qTaskExists, jobID, taskIndex).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("list attempts of task %d of job %s: %w", taskIndex, jobID, store.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("list attempts of task %d of job %s: %w", taskIndex, jobID, err)
		}
	}
	return attempts, nil
}

func (s *Store) queryAttempts(ctx context.Context, jobID string, taskIndex int32) ([]store.Attempt, error) {
	return queryList(ctx, s.read, storesql.ScanAttempt, qListAttempts, jobID, taskIndex)
}
