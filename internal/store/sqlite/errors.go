package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// classify marks err as store.ErrRejected when SQLite refused the data
// itself: a broken constraint (a unique key, a foreign key, NOT NULL), a
// value larger than it stores, a value of the wrong type. Other errors (the
// file unreadable, the disk full, the database busy) stay as they are:
// retrying them may succeed.
func classify(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH:
		return storesql.Reject(err)
	}
	return err
}

// checkFence checks f in the write transaction tx: SQLite's write lock,
// which the transaction holds from its start (IMMEDIATE), serialises it
// with AcquireLease in this and any other process.
func (s *Store) checkFence(ctx context.Context, tx *sql.Tx, f store.Fence) error {
	if !f.Set() {
		return nil
	}
	var holder string
	var epoch int64
	err := tx.StmtContext(ctx, s.hot.leaseHolder).QueryRowContext(ctx, f.Lease).Scan(&holder, &epoch)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	return storesql.CheckFence(f, err == nil, holder, epoch)
}
