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

// CreateToken stores an issued token (its hash, never its secret).
func (s *Store) CreateToken(ctx context.Context, t *store.Token) error {
	if err := storesql.CheckToken(t); err != nil {
		return err
	}
	teams, err := storesql.EncodeTeams(t)
	if err != nil {
		return err
	}
	err = s.pool.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, qInsertToken, t.ID, t.Hash, t.Subject, t.Kind, teams, t.PlatformAdmin,
			t.Description, t.CreatedBy, storesql.Nanos(t.CreatedAt), storesql.Nanos(t.ExpiresAt), storesql.Nanos(t.RevokedAt))
		return err
	})
	if pgCode(err) == uniqueViolation {
		return storesql.Reject(fmt.Errorf("create token %s: a token with this ID already exists", t.ID))
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, classify(err))
	}
	return nil
}

// GetToken returns a token, revoked or not; store.ErrNotFound if there is
// none with that ID.
func (s *Store) GetToken(ctx context.Context, id string) (*store.Token, error) {
	if err := storesql.CheckTokenID("get token", id); err != nil {
		return nil, err
	}
	var t store.Token
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		var err error
		t, err = storesql.ScanToken(c.QueryRow(ctx, qGetToken, id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("get token %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get token %s: %w", id, err)
	}
	return &t, nil
}

// ListTokens returns tokens newest (greatest ID) first.
func (s *Store) ListTokens(ctx context.Context, f store.TokenFilter) ([]store.Token, error) {
	if err := storesql.CheckTokenFilter(f); err != nil {
		return nil, err
	}
	var out []store.Token
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListTokens, f.Team, f.Subject, f.IncludeRevoked, f.Before, storesql.ListLimit(f.Limit))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			t, err := storesql.ScanToken(rows)
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// RevokeToken marks a token revoked at at; a token revoked before keeps
// its first time.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	if err := storesql.CheckTokenID("revoke token", id); err != nil {
		return err
	}
	if err := storesql.CheckRevoke(id, at); err != nil {
		return err
	}
	var n int64
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		tag, err := c.Exec(ctx, qRevokeToken, storesql.Nanos(at), id)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("revoke token %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// AppendAudit stores entries with one statement, each column an array.
func (s *Store) AppendAudit(ctx context.Context, entries []store.AuditEntry) error {
	if err := storesql.CheckAudit(entries); err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	n := len(entries)
	at := make([]int64, n)
	cols := make([][]string, 8)
	for i := range cols {
		cols[i] = make([]string, n)
	}
	for i := range entries {
		e := &entries[i]
		at[i] = e.At.UnixNano()
		for j, v := range []string{e.Subject, e.TokenID, e.Action, e.Team, e.Object, e.Remote, e.Outcome, e.Detail} {
			cols[j][i] = v
		}
	}
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, qInsertAudit, at, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7])
		return err
	})
	if err != nil {
		return fmt.Errorf("append audit: %w", classify(err))
	}
	return nil
}

// ListAudit returns audit entries newest (greatest Seq) first.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	if err := storesql.CheckAuditFilter(f); err != nil {
		return nil, err
	}
	var out []store.AuditEntry
	err := s.pool.withConn(ctx, func(c *pgx.Conn) error {
		rows, err := c.Query(ctx, qListAudit, f.Subject, f.Team, f.Before, storesql.ListLimit(f.Limit))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				e  store.AuditEntry
				at int64
			)
			if err := rows.Scan(&e.Seq, &at, &e.Subject, &e.TokenID, &e.Action, &e.Team, &e.Object, &e.Remote, &e.Outcome, &e.Detail); err != nil {
				return err
			}
			e.At = storesql.FromNanos(&at)
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}
