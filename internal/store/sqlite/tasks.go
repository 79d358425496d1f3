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
		&state, &t.Attempts, &t.ExitCode, &t.Reason, &started, &finished)
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

// ListTasks returns a page of a job's tasks in index order; store.ErrNotFound
// if the job does not exist.
func (s *Store) ListTasks(ctx context.Context, f store.TaskFilter) ([]store.Task, error) {
	if f.JobID == "" {
		return nil, errors.New("list tasks: job ID is empty")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
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
	tasks, err := s.queryTasks(ctx, qListTasks, f.JobID, f.After, states, glob, match, limit)
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
