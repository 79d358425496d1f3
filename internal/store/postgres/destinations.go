package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

const (
	qPutLogDestination = `INSERT INTO log_destinations (` + storesql.LogDestinationColumns + `) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (team) DO UPDATE SET url = excluded.url, access_key_id = excluded.access_key_id,
	secret_access_key = excluded.secret_access_key, session_token = excluded.session_token, updated_at = excluded.updated_at`
	qGetLogDestination    = `SELECT ` + storesql.LogDestinationColumns + ` FROM log_destinations WHERE team = $1`
	qDeleteLogDestination = `DELETE FROM log_destinations WHERE team = $1`
	qListLogDestinations  = `SELECT ` + storesql.LogDestinationColumns + ` FROM log_destinations ORDER BY team`
	// $1 finished before, $2 now, $3 limit.
	qJobsToArchive = `SELECT j.id, j.namespace, j.log_destination, j.finished_at,
	a.state, a.tries, a.error, a.objects, a.next_at, a.updated_at
FROM jobs j LEFT JOIN log_archives a ON a.job_id = j.id
WHERE j.log_destination <> '' AND j.finished_at IS NOT NULL AND j.finished_at < $1
	AND j.state IN ('succeeded', 'failed', 'cancelled')
	AND (a.job_id IS NULL OR (a.state = 'pending' AND (a.next_at IS NULL OR a.next_at <= $2)))
ORDER BY j.finished_at, j.id LIMIT $3`
	qPutLogArchive = `INSERT INTO log_archives (` + storesql.LogArchiveColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (job_id) DO UPDATE SET destination = excluded.destination, state = excluded.state, tries = excluded.tries,
	error = excluded.error, objects = excluded.objects, next_at = excluded.next_at, updated_at = excluded.updated_at`
	qGetLogArchive = `SELECT ` + storesql.LogArchiveColumns + ` FROM log_archives WHERE job_id = $1`
)

// PutLogDestination sets a team's destination, replacing any.
func (s *Store) PutLogDestination(ctx context.Context, d store.LogDestination) error {
	if err := storesql.CheckLogDestination(d); err != nil {
		return fmt.Errorf("put log destination: %w", err)
	}
	if err := s.exec(ctx, qPutLogDestination, storesql.LogDestinationArgs(d)...); err != nil {
		return fmt.Errorf("put log destination of team %q: %w", d.Team, classify(err))
	}
	return nil
}

// GetLogDestination returns a team's destination.
func (s *Store) GetLogDestination(ctx context.Context, team string) (*store.LogDestination, error) {
	d, err := queryOne(ctx, s, storesql.ScanLogDestination, qGetLogDestination, team)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("log destination of team %q: %w", team, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get log destination of team %q: %w", team, classify(err))
	}
	return &d, nil
}

// DeleteLogDestination removes a team's destination.
func (s *Store) DeleteLogDestination(ctx context.Context, team string) error {
	if err := s.deleteOne(ctx, qDeleteLogDestination, team); err != nil {
		return fmt.Errorf("delete log destination of team %q: %w", team, err)
	}
	return nil
}

// ListLogDestinations returns every team's destination.
func (s *Store) ListLogDestinations(ctx context.Context) ([]store.LogDestination, error) {
	ds, err := queryAll(ctx, s, storesql.ScanLogDestination, qListLogDestinations)
	if err != nil {
		return nil, fmt.Errorf("list log destinations: %w", classify(err))
	}
	return ds, nil
}

// JobsToArchive returns ended jobs whose logs are due to be copied.
func (s *Store) JobsToArchive(ctx context.Context, finishedBefore, now time.Time, limit int) ([]store.LogArchive, error) {
	if limit <= 0 {
		limit = 100
	}
	as, err := queryAll(ctx, s, storesql.ScanArchiveCandidate, qJobsToArchive, finishedBefore.UnixNano(), now.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("jobs to archive: %w", classify(err))
	}
	return as, nil
}

// PutLogArchive records a copy's state.
func (s *Store) PutLogArchive(ctx context.Context, a store.LogArchive) error {
	if err := storesql.CheckLogArchive(a); err != nil {
		return fmt.Errorf("put log archive: %w", err)
	}
	if err := s.exec(ctx, qPutLogArchive, storesql.LogArchiveArgs(a)...); err != nil {
		return fmt.Errorf("put log archive of job %s: %w", a.JobID, classify(err))
	}
	return nil
}

// GetLogArchive returns a job's copy state.
func (s *Store) GetLogArchive(ctx context.Context, jobID string) (*store.LogArchive, error) {
	a, err := queryOne(ctx, s, storesql.ScanLogArchive, qGetLogArchive, jobID)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("log archive of job %s: %w", jobID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get log archive of job %s: %w", jobID, classify(err))
	}
	return &a, nil
}

// exec runs one statement.
func (s *Store) exec(ctx context.Context, q string, args ...any) error {
	return s.pool.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, q, args...)
		return err
	})
}

// queryOne scans the one row q returns (pgx.ErrNoRows: none).
func queryOne[T any](ctx context.Context, s *Store, scan func(storesql.Row) (T, error), q string, args ...any) (T, error) {
	var v T
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		v, err = scan(c.QueryRow(ctx, q, args...))
		return err
	})
	return v, err
}

// queryAll scans every row q returns.
func queryAll[T any](ctx context.Context, s *Store, scan func(storesql.Row) (T, error), q string, args ...any) ([]T, error) {
	var out []T
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		out, err = scanRows(rows, scan)
		return err
	})
	return out, err
}
