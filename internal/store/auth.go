package store

import (
	"context"
	"time"
)

// Token is an API token the server issued, kept by the hash of its secret
// only: the token itself is shown once, at creation.
type Token struct {
	ID string
	// Hash is the hex SHA-256 of the token's secret part.
	Hash string
	// Subject is whom the token speaks for ("alice@example.com",
	// "ci-nightly"); Kind is "user" or "service-account".
	Subject string
	Kind    string
	// Teams maps team to role name (viewer, member, admin).
	Teams         map[string]string
	PlatformAdmin bool
	Description   string
	CreatedBy     string
	CreatedAt     time.Time
	ExpiresAt     time.Time
	// RevokedAt is zero unless the token was revoked.
	RevokedAt time.Time
}

// TokenFilter selects tokens for ListTokens, newest first.
type TokenFilter struct {
	// Team, when set, selects tokens with a role in that team.
	Team string
	// Subject, when set, selects one subject's tokens.
	Subject        string
	IncludeRevoked bool
	Limit          int // <= 0: a default of 100
	// Before pages: only tokens whose ID sorts before this.
	Before string
}

// AuditEntry records one mutating call: who, what, when, from where, and
// how it ended.
type AuditEntry struct {
	// Seq is assigned by the store, increasing.
	Seq     int64
	At      time.Time
	Subject string
	TokenID string
	// Action is the call ("SubmitJob", "CancelJob", "CreateToken"...).
	Action string
	Team   string
	// Object names what was acted on: a job ID, "job/key", a token ID.
	Object string
	// Remote is the caller's address.
	Remote string
	// Outcome is "ok", "denied" or the error's code.
	Outcome string
	Detail  string
}

// AuditFilter selects audit entries for ListAudit, newest first.
type AuditFilter struct {
	Subject string
	Team    string
	Limit   int   // <= 0: a default of 100
	Before  int64 // pages: only entries with Seq below this (0: from the newest)
}

// AuthStore keeps issued tokens and the audit log; Store embeds it.
//
// Texts must be valid UTF-8 without NUL bytes, times within the storable
// range (as for jobs); a token's Hash must be 64 lowercase hexadecimal
// digits (so that no secret is ever stored by mistake in its place), its
// ID, Subject and Kind set, and its roles viewer, member or admin; an audit
// entry's At and Action must be set. Refused input fails with an error
// wrapping ErrRejected that names the field, and never quotes a hash.
type AuthStore interface {
	// CreateToken stores a token; its ID must be new.
	CreateToken(ctx context.Context, t *Token) error
	// GetToken returns a token by ID, revoked or not (ErrNotFound).
	GetToken(ctx context.Context, id string) (*Token, error)
	ListTokens(ctx context.Context, f TokenFilter) ([]Token, error)
	// RevokeToken marks a token revoked at at (ErrNotFound; revoking twice
	// keeps the first time).
	RevokeToken(ctx context.Context, id string, at time.Time) error
	// AppendAudit stores entries in one write.
	AppendAudit(ctx context.Context, entries []AuditEntry) error
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
}
