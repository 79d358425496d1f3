// Package postgres is the PostgreSQL driver of haul's store (store.Store),
// for production deployments with several gateways and runners. It uses
// pgx (binary protocol, statements prepared once per connection), COPY for
// the tasks of a new job, and one array-valued statement per kind of row
// for a batch of state changes, so a group commit of thousands of changes
// costs a few round trips. It imports only the standard library, the store
// package and pgx.
//
// The schema is created and upgraded by the numbered migrations in
// migrations/, applied by Open under an advisory lock, so that processes
// starting together do not race.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Store is a store.Store on a PostgreSQL database.
type Store struct {
	pool *pool
	db   string // database name, for messages
	log  *slog.Logger

	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (a postgres:// URL or a libpq
// keyword/value string; pool_max_conns bounds the connections, by default
// max(4, GOMAXPROCS)) and brings its schema up to date. It fails if the
// database was migrated by a newer haul than this one.
func Open(ctx context.Context, url string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password and all; keep it out.
		return nil, errors.New("open postgres store: cannot parse the connection URL")
	}
	p, err := newPool(cfg, max(4, runtime.GOMAXPROCS(0)))
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	s := &Store{pool: p, db: cfg.Database, log: logger}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open postgres store (database %s): %w", s.db, err)
	}
	return s, nil
}

// Close closes the connections. It is idempotent; other methods fail after
// it.
func (s *Store) Close() error {
	s.closeOnce.Do(s.pool.close)
	return nil
}

// migrate applies the migrations the database lacks, in one transaction.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := storesql.Migrations(migrationFS)
	if err != nil {
		return err
	}
	return s.pool.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, qLockMigrations, migrationLockKey); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if _, err := tx.Exec(ctx, qCreateMigrations); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		var have int
		if err := tx.QueryRow(ctx, qMaxMigration).Scan(&have); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if have > len(ms) {
			return fmt.Errorf("migrate: the database has schema version %d, newer than this binary knows (%d): use a newer haul", have, len(ms))
		}
		for _, m := range ms[have:] {
			if _, err := tx.Exec(ctx, m.SQL); err != nil { // no arguments: simple protocol, several statements
				return fmt.Errorf("migrate: apply %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, qRecordMigration, m.Version, m.Name); err != nil {
				return fmt.Errorf("migrate: record %s: %w", m.Name, err)
			}
			s.log.InfoContext(ctx, "applied store migration", "driver", "postgres", "database", s.db, "migration", m.Name)
		}
		return nil
	})
}
