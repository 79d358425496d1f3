package auth_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/auth/oidctest"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// countingStore counts the token lookups that reach the real store.
type countingStore struct {
	*sqlite.Store
	gets atomic.Int64
}

func (s *countingStore) GetToken(ctx context.Context, id string) (*store.Token, error) {
	s.gets.Add(1)
	return s.Store.GetToken(ctx, id)
}

func openStore(t *testing.T) *countingStore {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "haul.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &countingStore{Store: st}
}

// issue stores a fresh token and returns it.
func issue(t *testing.T, st store.AuthStore, now time.Time, mod func(*store.Token)) (tok string, rec *store.Token) {
	t.Helper()
	tok, id, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	rec = &store.Token{ID: id, Hash: hash, Subject: "ci-nightly", Kind: "service-account", Teams: map[string]string{"perception": "member", "infra": "viewer"},
		CreatedBy: "root", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if mod != nil {
		mod(rec)
	}
	if err := st.CreateToken(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	return tok, rec
}

func TestAuthenticateIssuedTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	clk := &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	a := auth.NewAuthenticator(auth.AuthnConfig{Tokens: st, Clock: clk.Now})

	tok, rec := issue(t, st, clk.Now(), nil)
	id, err := a.Authenticate(ctx, tok)
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	want := map[string]auth.Role{"perception": auth.RoleMember, "infra": auth.RoleViewer}
	if id.Subject != "ci-nightly" || id.Kind != auth.KindServiceAccount || id.TokenID != rec.ID || id.Via != "token" || id.PlatformAdmin || !maps.Equal(id.Teams, want) {
		t.Errorf("identity %s, token %s via %s, teams %v, platform %v; want ci-nightly (service-account), %s via token, %v", id, id.TokenID, id.Via, id.Teams, id.PlatformAdmin, rec.ID, want)
	}

	_, secret, _ := auth.ParseToken(tok)
	otherTok, _, _, _ := auth.NewToken()
	_, otherSecret, _ := auth.ParseToken(otherTok)
	for name, bad := range map[string]string{
		"empty":        "",
		"wrong secret": strings.Replace(tok, secret, otherSecret, 1),
		"unknown id":   otherTok,
		"malformed":    "haul_nothex_x",
		"random text":  "hunter2",
		"jwt, no oidc": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
	} {
		id, err := a.Authenticate(ctx, bad)
		if !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: Authenticate = %v, %v; want unauthenticated", name, id, err)
		} else if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), otherSecret) {
			t.Errorf("%s: the error repeats a secret: %v", name, err)
		}
	}

	// Expiry bites on the clock, cache or not.
	clk.Add(time.Hour)
	if _, err := a.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v; want unauthenticated, expired", err)
	}
}

func TestAuthenticateRevocationBitesWithinTheCacheTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openStore(t)
	clk := &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	a := auth.NewAuthenticator(auth.AuthnConfig{Tokens: st, Clock: clk.Now, CacheTTL: 3 * time.Second})
	tok, rec := issue(t, st, clk.Now(), nil)
	for range 5 {
		if _, err := a.Authenticate(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.gets.Load(); n != 1 {
		t.Errorf("5 calls within the cache TTL read the store %d times, want 1", n)
	}
	if err := st.RevokeToken(ctx, rec.ID, clk.Now()); err != nil {
		t.Fatal(err)
	}
	// Within the TTL another server's revocation is not seen yet...
	clk.Add(2 * time.Second)
	if _, err := a.Authenticate(ctx, tok); err != nil {
		t.Fatalf("within the cache TTL: %v", err)
	}
	// ...past it, it is.
	clk.Add(time.Second)
	if _, err := a.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked token after the cache TTL: %v; want unauthenticated, revoked", err)
	}

	// Forget makes this server's own revocation immediate.
	tok2, rec2 := issue(t, st, clk.Now(), nil)
	if _, err := a.Authenticate(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeToken(ctx, rec2.ID, clk.Now()); err != nil {
		t.Fatal(err)
	}
	a.Forget(rec2.ID)
	if _, err := a.Authenticate(ctx, tok2); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("revoked and forgotten token: %v; want unauthenticated", err)
	}

	// The cache TTL is capped: a configured hour is 10 seconds.
	capped := auth.NewAuthenticator(auth.AuthnConfig{Tokens: st, Clock: clk.Now, CacheTTL: time.Hour})
	tok3, rec3 := issue(t, st, clk.Now(), nil)
	if _, err := capped.Authenticate(ctx, tok3); err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeToken(ctx, rec3.ID, clk.Now()); err != nil {
		t.Fatal(err)
	}
	clk.Add(auth.MaxTokenCacheTTL)
	if _, err := capped.Authenticate(ctx, tok3); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("revoked token %v after the longest cache TTL: %v; want unauthenticated", auth.MaxTokenCacheTTL, err)
	}
}

func TestAuthenticateStoreAwayIsNotUnauthenticated(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	a := auth.NewAuthenticator(auth.AuthnConfig{Tokens: st, CacheTTL: -1})
	tok, _ := issue(t, st, time.Now(), nil)
	st.Close()
	_, err := a.Authenticate(context.Background(), tok)
	if err == nil || errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("closed store: Authenticate = %v; want an error that is not unauthenticated", err)
	}
}

type taskTokens struct{}

func (taskTokens) Identify(_ context.Context, tok string) (*auth.Identity, error) {
	if tok == "hjt1.good" {
		return &auth.Identity{Subject: "task:j/k#1", Kind: auth.KindTask, Job: "j", Task: "k", Attempt: 1, Via: "task"}, nil
	}
	return nil, auth.ErrUnauthenticated
}

func TestAuthenticateOIDCAndTaskTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	iss := oidctest.New(t)
	o, err := auth.NewOIDC(auth.OIDCConfig{Issuer: iss.URL, Audience: audience}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	a := auth.NewAuthenticator(auth.AuthnConfig{Tokens: st, OIDC: o, TaskTokens: taskTokens{}})
	c := iss.Claims("u1", audience)
	c["email"], c["groups"] = "carol@example.com", []any{"ml:admin"}
	id, err := a.Authenticate(ctx, iss.Issue(t, c))
	if err != nil || id.Subject != "carol@example.com" || id.Role("ml") != auth.RoleAdmin {
		t.Errorf("OIDC token: %v, %v; want carol@example.com, admin of ml", id, err)
	}
	if _, err := a.Authenticate(ctx, iss.Issue(t, iss.Claims("u1", "other-client"))); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("OIDC token for another audience: %v; want unauthenticated", err)
	}
	if id, err := a.Authenticate(ctx, "hjt1.good"); err != nil || id.Kind != auth.KindTask || id.Job != "j" {
		t.Errorf("task token: %v, %v; want the task of job j", id, err)
	}
	if _, err := a.Authenticate(ctx, "hjt1.bad"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("bad task token: %v; want unauthenticated", err)
	}
	// Without TaskTokens a task token is refused, not a crash.
	none := auth.NewAuthenticator(auth.AuthnConfig{})
	if _, err := none.Authenticate(ctx, "hjt1.good"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("no TaskTokens: %v; want unauthenticated", err)
	}
	tok, _ := issue(t, st, time.Now(), nil)
	if _, err := none.Authenticate(ctx, tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("no token store: %v; want unauthenticated", err)
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]string{
		"Bearer abc":    "abc",
		"bearer  abc ":  "abc",
		"Basic dXNlcg=": "",
		"abc":           "",
		"":              "",
	} {
		if got := auth.BearerToken(h); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", h, got, want)
		}
	}
}
