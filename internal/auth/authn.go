package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// TokenStore is what the Authenticator needs of the store: the issued
// token with an ID (store.ErrNotFound when there is none). store.AuthStore
// implements it.
type TokenStore interface {
	GetToken(ctx context.Context, id string) (*store.Token, error)
}

// TaskTokens identifies the attempt-scoped tokens tasks carry in
// HAUL_TOKEN. Identify returns an error wrapping ErrUnauthenticated for a
// token it refuses (unknown, malformed, its attempt ended).
type TaskTokens interface {
	Identify(ctx context.Context, tok string) (*Identity, error)
}

// DefaultTokenCacheTTL is how long an issued token's record is reused
// without reading the store again; a revocation takes effect on every
// server within it.
const DefaultTokenCacheTTL = 5 * time.Second

// MaxTokenCacheTTL bounds AuthnConfig.CacheTTL, so that revocation always
// bites within seconds.
const MaxTokenCacheTTL = 10 * time.Second

// maxCached bounds the token cache's entries.
const maxCached = 10000

// AuthnConfig configures an Authenticator.
type AuthnConfig struct {
	// Tokens finds issued tokens (nil: issued tokens are refused).
	Tokens TokenStore
	// OIDC verifies ID tokens (nil: OIDC is not configured and JWTs are
	// refused).
	OIDC *OIDC
	// TaskTokens identifies tasks' tokens (nil: they are refused).
	TaskTokens TaskTokens
	// Clock is checked against expiries (default time.Now).
	Clock func() time.Time
	// CacheTTL is how long a token's record is reused (default
	// DefaultTokenCacheTTL, at most MaxTokenCacheTTL; negative: no cache).
	CacheTTL time.Duration
	Logger   *slog.Logger
}

// Authn is the server's Authenticator: it accepts, by their shape,
//
//   - issued tokens (haul_<id>_<secret>): the store's record by id, its
//     hash compared in constant time, its expiry and revocation checked;
//     records are cached for CacheTTL (a few seconds), so a revoked token
//     stops working on every server within that time;
//   - OIDC ID tokens (a JWT: three dot-separated parts), when OIDC is
//     configured;
//   - anything else is handed to TaskTokens, when set.
type Authn struct {
	cfg AuthnConfig

	mu    sync.Mutex
	cache map[string]cachedToken
}

type cachedToken struct {
	tok     *store.Token
	fetched time.Time
}

var _ Authenticator = (*Authn)(nil)

// NewAuthenticator returns an Authenticator for cfg.
func NewAuthenticator(cfg AuthnConfig) *Authn {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultTokenCacheTTL
	}
	cfg.CacheTTL = min(cfg.CacheTTL, MaxTokenCacheTTL)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Authn{cfg: cfg, cache: map[string]cachedToken{}}
}

// BearerToken returns the token of an Authorization header value
// ("Bearer <token>"); "" when there is none.
func BearerToken(header string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// Authenticate returns the identity bearer proves.
func (a *Authn) Authenticate(ctx context.Context, bearer string) (*Identity, error) {
	bearer = strings.TrimSpace(bearer)
	switch {
	case bearer == "":
		return nil, fmt.Errorf("%w: no token (send Authorization: Bearer <token>; see `haul token create`)", ErrUnauthenticated)
	case LooksIssued(bearer):
		return a.issued(ctx, bearer)
	case looksJWT(bearer):
		if a.cfg.OIDC == nil {
			return nil, fmt.Errorf("%w: an OIDC token, but this server has no OIDC issuer configured", ErrUnauthenticated)
		}
		return a.cfg.OIDC.Verify(ctx, bearer)
	case a.cfg.TaskTokens != nil:
		return a.cfg.TaskTokens.Identify(ctx, bearer)
	}
	return nil, fmt.Errorf("%w: not a token this server knows (want %s<id>_<secret>%s)", ErrUnauthenticated, TokenPrefix, map[bool]string{true: " or an OIDC ID token", false: ""}[a.cfg.OIDC != nil])
}

// looksJWT reports whether s has a JWS compact serialization's shape:
// three dot-separated parts, the first a base64url JSON object.
func looksJWT(s string) bool {
	return strings.Count(s, ".") == 2 && strings.HasPrefix(s, "eyJ")
}

func (a *Authn) issued(ctx context.Context, bearer string) (*Identity, error) {
	id, secret, err := ParseToken(bearer)
	if err != nil {
		return nil, err
	}
	if a.cfg.Tokens == nil {
		return nil, fmt.Errorf("%w: token %s: this server accepts no issued tokens", ErrUnauthenticated, id)
	}
	now := a.cfg.Clock()
	t, err := a.lookup(ctx, id, now)
	if err != nil {
		return nil, err
	}
	if !SecretMatches(secret, t.Hash) {
		return nil, fmt.Errorf("%w: token %s: wrong secret", ErrUnauthenticated, id)
	}
	if !t.RevokedAt.IsZero() {
		return nil, fmt.Errorf("%w: token %s was revoked at %s", ErrUnauthenticated, id, t.RevokedAt.UTC().Format(time.RFC3339))
	}
	if !now.Before(t.ExpiresAt) {
		return nil, fmt.Errorf("%w: token %s expired at %s", ErrUnauthenticated, id, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return a.identity(t), nil
}

// lookup returns the token's record, from the cache when it is fresh.
func (a *Authn) lookup(ctx context.Context, id string, now time.Time) (*store.Token, error) {
	if a.cfg.CacheTTL > 0 {
		a.mu.Lock()
		c, ok := a.cache[id]
		a.mu.Unlock()
		if ok && now.Sub(c.fetched) < a.cfg.CacheTTL && !now.Before(c.fetched) {
			return c.tok, nil
		}
	}
	t, err := a.cfg.Tokens.GetToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: unknown token %s", ErrUnauthenticated, id)
	}
	if err != nil {
		return nil, fmt.Errorf("look up token %s: %w", id, err)
	}
	if a.cfg.CacheTTL > 0 {
		a.mu.Lock()
		if len(a.cache) >= maxCached {
			for k, c := range a.cache {
				if now.Sub(c.fetched) >= a.cfg.CacheTTL || now.Before(c.fetched) {
					delete(a.cache, k)
				}
			}
			if len(a.cache) >= maxCached {
				clear(a.cache)
			}
		}
		a.cache[id] = cachedToken{tok: t, fetched: now}
		a.mu.Unlock()
	}
	return t, nil
}

// Forget drops a token from the cache, so that a revocation through this
// server takes effect here at once.
func (a *Authn) Forget(id string) {
	a.mu.Lock()
	delete(a.cache, id)
	a.mu.Unlock()
}

func (a *Authn) identity(t *store.Token) *Identity {
	id := &Identity{
		Subject:       t.Subject,
		Kind:          Kind(t.Kind),
		Teams:         make(map[string]Role, len(t.Teams)),
		PlatformAdmin: t.PlatformAdmin,
		TokenID:       t.ID,
		Via:           "token",
	}
	if id.Kind != KindServiceAccount {
		id.Kind = KindUser
	}
	for team, r := range t.Teams {
		role, err := ParseRole(r)
		if err != nil {
			a.cfg.Logger.Warn("ignoring a stored token's team with an unknown role", "token", t.ID, "team", team, "err", err)
			continue
		}
		id.Teams[team] = role
	}
	return id
}
