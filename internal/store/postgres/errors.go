package postgres

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// classify marks err as store.ErrRejected when PostgreSQL refused the data
// itself: SQLSTATE class 22 (data exception: a value out of range, text it
// cannot store) or 23 (integrity constraint violation). Other errors (the
// connection lost, a timeout, a serialization failure, the server shutting
// down) stay as they are: retrying them may succeed.
func classify(err error) error {
	code := pgCode(err)
	if strings.HasPrefix(code, "22") || strings.HasPrefix(code, "23") {
		return storesql.Reject(err)
	}
	return err
}

// checkFence checks f in the write transaction tx, locking the lease's row
// until tx ends (see qLeaseHolder).
func checkFence(ctx context.Context, tx pgx.Tx, f store.Fence) error {
	if !f.Set() {
		return nil
	}
	var holder string
	var epoch int64
	err := tx.QueryRow(ctx, qLeaseHolder, f.Lease).Scan(&holder, &epoch)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	return storesql.CheckFence(f, err == nil, holder, epoch)
}
