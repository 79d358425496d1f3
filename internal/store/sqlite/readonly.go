package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/haul-dev/haul/internal/store/storesql"
)

// OpenReadOnly opens an existing SQLite database at path for reading only
// (query_only on every connection): it neither creates the file nor
// migrates its schema, so another process (a server) may keep writing it;
// every write fails. It is for commands that read a data directory when
// no server runs. It fails if the database's schema is not the one this
// haul knows (older: a server must migrate it first; newer: use a newer
// haul).
func OpenReadOnly(ctx context.Context, path string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open sqlite store %q read-only: want a plain file path", path)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open sqlite store read-only: %w", err)
	}
	if err := registerOnce(); err != nil {
		return nil, fmt.Errorf("open sqlite store %s: register %s: %w", path, pathMatchFunc, err)
	}
	const dsn = "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=query_only(1)"
	db, err := sql.Open("sqlite", path+dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s read-only: %w", path, err)
	}
	// The "write" pool is query_only too: a write fails at its first
	// statement.
	w, err := sql.Open("sqlite", path+dsn)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite store %s read-only: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	s := &Store{path: path, write: w, read: db, log: logger}
	ms, err := storesql.Migrations(migrationFS)
	if err != nil {
		s.Close()
		return nil, err
	}
	var have int
	if err := db.QueryRowContext(ctx, qMaxMigration).Scan(&have); err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite store %s read-only: %w", path, err)
	}
	switch {
	case have > len(ms):
		s.Close()
		return nil, fmt.Errorf("open sqlite store %s read-only: the database has schema version %d, newer than this binary knows (%d): use a newer haul", path, have, len(ms))
	case have < len(ms):
		s.Close()
		return nil, errors.New("open sqlite store " + path + " read-only: its schema is older than this haul's: start a server on it once (haul up) to upgrade it")
	}
	// Prepared so that a write fails with SQLite's refusal, as any other.
	if err := s.hot.prepare(ctx, w); err != nil {
		s.Close()
		return nil, fmt.Errorf("open sqlite store %s read-only: %w", path, err)
	}
	return s, nil
}
