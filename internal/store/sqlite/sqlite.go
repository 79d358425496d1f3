// Package sqlite is the SQLite driver of haul's store (store.Store), for
// the embedded single-machine deployment. It uses modernc.org/sqlite (pure
// Go, no cgo) and imports only the standard library, the store package and
// that driver.
//
// Durability and concurrency:
//
//   - WAL journal with synchronous=FULL: every commit fsyncs the WAL before
//     Apply or CreateJob returns. A committed batch survives a kill -9 of
//     the process (the WAL alone ensures that) and also an OS crash or
//     power loss, which synchronous=NORMAL would not ensure (in WAL mode it
//     may lose the last commits): the runner tells workers and users about
//     a state change only after Apply returns, so a commit must be final.
//   - One write connection (database/sql pool of size 1, transactions begun
//     IMMEDIATE) serialises this process's writers in Go, not in SQLite's
//     busy handler; readers use a separate pool of read-only connections,
//     which WAL lets run alongside the writer. busy_timeout covers other
//     processes opening the same file.
//   - Foreign keys are enforced (tasks belong to jobs, attempts to tasks).
//
// The schema is created and upgraded by the numbered migrations in
// migrations/, applied by Open.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"runtime"
	"strings"
	"sync"

	"modernc.org/sqlite"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// pathMatchFunc is the SQL function that matches a key against a glob with
// path.Match, registered with the driver by Open.
const pathMatchFunc = "haul_path_match"

var registerOnce = sync.OnceValue(func() error {
	return sqlite.RegisterDeterministicScalarFunction(pathMatchFunc, 2, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		pattern, ok1 := args[0].(string)
		name, ok2 := args[1].(string)
		if !ok1 || !ok2 {
			return nil, nil
		}
		ok, err := path.Match(pattern, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pathMatchFunc, err)
		}
		if ok {
			return int64(1), nil
		}
		return int64(0), nil
	})
})

// Store is a store.Store on one SQLite database file.
type Store struct {
	path  string
	write *sql.DB // one connection
	read  *sql.DB // read-only connections
	log   *slog.Logger
	// hot are the statements of every batch, prepared once on the write
	// connection: parsing them again for each group commit cost a fifth
	// of the runner's CPU with real processes (issue 18).
	hot hotStmts

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path and brings
// its schema up to date. It fails if the database was migrated by a newer
// haul than this one.
func Open(ctx context.Context, path string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, errors.New("open sqlite store: path is empty")
	}
	if strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") || path == ":memory:" {
		return nil, fmt.Errorf("open sqlite store %q: want a plain file path (no '?', '#', file: URI or :memory:)", path)
	}
	if err := registerOnce(); err != nil {
		return nil, fmt.Errorf("open sqlite store %s: register %s: %w", path, pathMatchFunc, err)
	}

	const common = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	write, err := sql.Open("sqlite", path+"?"+common+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)

	s := &Store{path: path, write: write, log: logger}
	if err := s.migrate(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	if err := s.hot.prepare(ctx, write); err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}

	// Opened after the migrations: they set WAL mode in the file, which
	// every later connection then uses.
	read, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)
	s.read = read
	if err := read.PingContext(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database. It is idempotent; other methods fail after it.
// LocalFile reports that this store is a file on this machine that one
// process writes at a time: the runner keeps its shards through lease
// renewals that time out behind its own long writes.
func (s *Store) LocalFile() bool { return true }

func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.read != nil {
			errs = append(errs, s.read.Close())
		}
		errs = append(errs, s.hot.close(), s.write.Close())
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("close sqlite store %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// migrate applies the migrations the database lacks, in one transaction.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := storesql.Migrations(migrationFS)
	if err != nil {
		return err
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, qCreateMigrations); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var have int
	if err := tx.QueryRowContext(ctx, qMaxMigration).Scan(&have); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if have > len(ms) {
		return fmt.Errorf("migrate: the database has schema version %d, newer than this binary knows (%d): use a newer haul", have, len(ms))
	}
	for _, m := range ms[have:] {
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, qRecordMigration, m.Version, m.Name); err != nil {
			return fmt.Errorf("migrate: record %s: %w", m.Name, err)
		}
		s.log.InfoContext(ctx, "applied store migration", "driver", "sqlite", "path", s.path, "migration", m.Name)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// hotStmts are prepared on the write database once, at Open, while no
// transaction holds its one connection (DB.Prepare waits for a free
// connection). A transaction uses them through Tx.StmtContext, which
// reuses the statement already prepared on its connection.
type hotStmts struct {
	updateTask, upsertAttempt, updateJob, leaseHolder, queueRange *sql.Stmt
}

// hotStmt is one of hotStmts with its name (for errors) and text.
type hotStmt struct {
	dst        **sql.Stmt
	name, text string
}

func (h *hotStmts) all() []hotStmt {
	return []hotStmt{{&h.updateTask, "task update", qUpdateTask}, {&h.upsertAttempt, "attempt upsert", qUpsertAttempt},
		{&h.updateJob, "job update", qUpdateJob}, {&h.leaseHolder, "lease fence", qLeaseHolder}, {&h.queueRange, "queued range", qQueueRange}}
}

func (h *hotStmts) prepare(ctx context.Context, db *sql.DB) error {
	for _, x := range h.all() {
		st, err := db.PrepareContext(ctx, x.text)
		if err != nil {
			h.close()
			return fmt.Errorf("prepare the %s statement: %w", x.name, err)
		}
		*x.dst = st
	}
	return nil
}

func (h *hotStmts) close() error {
	var errs []error
	for _, x := range h.all() {
		if *x.dst != nil {
			errs = append(errs, (*x.dst).Close())
			*x.dst = nil
		}
	}
	return errors.Join(errs...)
}
