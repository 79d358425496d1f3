package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

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
	_, err = s.write.ExecContext(ctx, qInsertToken, t.ID, t.Hash, t.Subject, t.Kind, string(teams), t.PlatformAdmin,
		t.Description, t.CreatedBy, storesql.Nanos(t.CreatedAt), storesql.Nanos(t.ExpiresAt), storesql.Nanos(t.RevokedAt))
	if err != nil {
		var one int
		if s.write.QueryRowContext(ctx, qTokenExists, t.ID).Scan(&one) == nil {
			return storesql.Reject(fmt.Errorf("create token %s: a token with this ID already exists", t.ID))
		}
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
	t, err := storesql.ScanToken(s.read.QueryRowContext(ctx, qGetToken, id))
	if errors.Is(err, sql.ErrNoRows) {
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
	rows, err := s.read.QueryContext(ctx, qListTokens, f.Team, f.Subject, f.IncludeRevoked, f.Before, storesql.ListLimit(f.Limit))
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		t, err := storesql.ScanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
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
	res, err := s.write.ExecContext(ctx, qRevokeToken, storesql.Nanos(at), id)
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("revoke token %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// AppendAudit stores entries in one transaction, auditInsertRows to an
// INSERT.
func (s *Store) AppendAudit(ctx context.Context, entries []store.AuditEntry) error {
	if err := storesql.CheckAudit(entries); err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	defer tx.Rollback()
	args := make([]any, 0, min(len(entries), auditInsertRows)*auditInsertParams)
	for start := 0; start < len(entries); start += auditInsertRows {
		chunk := entries[start:min(start+auditInsertRows, len(entries))]
		args = args[:0]
		for i := range chunk {
			e := &chunk[i]
			args = append(args, e.At.UnixNano(), e.Subject, e.TokenID, e.Action, e.Team, e.Object, e.Remote, e.Outcome, e.Detail)
		}
		if _, err := tx.ExecContext(ctx, insertAuditSQL(len(chunk)), args...); err != nil {
			return fmt.Errorf("append audit: entries %d..%d: %w", start, start+len(chunk)-1, classify(err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("append audit: commit: %w", err)
	}
	return nil
}

// ListAudit returns audit entries newest (greatest Seq) first.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	if err := storesql.CheckAuditFilter(f); err != nil {
		return nil, err
	}
	rows, err := s.read.QueryContext(ctx, qListAudit, f.Subject, f.Team, f.Before, storesql.ListLimit(f.Limit))
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var (
			e  store.AuditEntry
			at int64
		)
		if err := rows.Scan(&e.Seq, &at, &e.Subject, &e.TokenID, &e.Action, &e.Team, &e.Object, &e.Remote, &e.Outcome, &e.Detail); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		e.At = storesql.FromNanos(&at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}
