package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/auth/oidctest"
)

const audience = "haul-test"

func newOIDC(t *testing.T, iss *oidctest.Issuer, mod func(*auth.OIDCConfig)) *auth.OIDC {
	t.Helper()
	cfg := auth.OIDCConfig{Issuer: iss.URL, Audience: audience, AdminGroup: "haul-admins"}
	if mod != nil {
		mod(&cfg)
	}
	o, err := auth.NewOIDC(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOIDCValidTokenMapsClaims(t *testing.T) {
	t.Parallel()
	iss := oidctest.New(t)
	o := newOIDC(t, iss, nil)
	ctx := context.Background()

	c := iss.Claims("u-123", audience)
	c["email"] = "alice@example.com"
	c["groups"] = []any{"perception", "infra:viewer", "sim:admin", "sim:viewer", "Bad Group", "x:owner", 7, "haul-admins:owner"}
	id, err := o.Verify(ctx, iss.Issue(t, c))
	if err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	want := map[string]auth.Role{"perception": auth.RoleMember, "infra": auth.RoleViewer, "sim": auth.RoleAdmin}
	if id.Subject != "alice@example.com" || id.Kind != auth.KindUser || id.Via != "oidc" || id.PlatformAdmin || !maps.Equal(id.Teams, want) {
		t.Errorf("identity = %s via %s, teams %v, platform admin %v; want alice@example.com (user) via oidc, teams %v, not platform admin", id, id.Via, id.Teams, id.PlatformAdmin, want)
	}

	// The admin group makes a platform admin; a single string is a group.
	c = iss.Claims("u-9", audience)
	c["groups"] = "haul-admins"
	id, err = o.Verify(ctx, iss.Issue(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if !id.PlatformAdmin || id.Subject != "u-9" || len(id.Teams) != 0 {
		t.Errorf("identity = %+v; want platform admin u-9 (sub, for want of email) with no teams", id)
	}

	// An unverified email is not a name: the subject is sub.
	c = iss.Claims("u-10", audience)
	c["email"], c["email_verified"] = "mallory@example.com", false
	if id, err = o.Verify(ctx, iss.Issue(t, c)); err != nil || id.Subject != "u-10" {
		t.Errorf("unverified email: identity %+v, %v; want subject u-10", id, err)
	}
}

func TestOIDCCustomClaims(t *testing.T) {
	t.Parallel()
	iss := oidctest.New(t)
	o := newOIDC(t, iss, func(c *auth.OIDCConfig) { c.UserClaim, c.TeamsClaim = "preferred_username", "haul_teams" })
	c := iss.Claims("u-1", audience)
	c["preferred_username"] = "bob"
	c["groups"] = []any{"ignored"}
	c["haul_teams"] = []any{"ml:member"}
	id, err := o.Verify(context.Background(), iss.Issue(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "bob" || !maps.Equal(id.Teams, map[string]auth.Role{"ml": auth.RoleMember}) {
		t.Errorf("identity = %+v; want bob, member of ml only", id)
	}
}

func TestOIDCRefusesBadTokens(t *testing.T) {
	t.Parallel()
	iss := oidctest.New(t)
	other := oidctest.New(t)
	o := newOIDC(t, iss, nil)
	wrongKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{}
	cases["wrong audience"] = iss.Issue(t, iss.Claims("u", "someone-else"))
	c := iss.Claims("u", audience)
	c["exp"] = time.Now().Add(-time.Minute).Unix()
	cases["expired"] = iss.Issue(t, c)
	cases["wrong key, same kid"] = oidctest.Sign(t, wrongKey, iss.KeyID(), iss.Claims("u", audience))
	cases["wrong key, unknown kid"] = oidctest.Sign(t, wrongKey, "nope", iss.Claims("u", audience))
	cases["another issuer"] = other.Issue(t, other.Claims("u", audience))
	c = other.Claims("u", audience)
	c["iss"] = iss.URL // claims to be ours, signed by another
	cases["another issuer's key"] = other.Issue(t, c)
	c = iss.Claims("u", audience)
	c["iss"] = "https://evil.example"
	cases["wrong iss claim"] = iss.Issue(t, c)
	cases["garbage"] = "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln"
	for name, tok := range cases {
		id, err := o.Verify(context.Background(), tok)
		if !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: Verify = %+v, %v; want unauthenticated", name, id, err)
		}
	}
}

func TestOIDCIssuerAway(t *testing.T) {
	t.Parallel()
	iss := oidctest.New(t)
	o := newOIDC(t, iss, nil)
	tok := iss.Issue(t, iss.Claims("u", audience))
	iss.SetDown(true)
	_, err := o.Verify(context.Background(), tok)
	if !errors.Is(err, auth.ErrIssuerUnavailable) || errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("issuer down: Verify = %v; want ErrIssuerUnavailable, not unauthenticated", err)
	}
	iss.SetDown(false)
	if _, err := o.Verify(context.Background(), tok); err != nil {
		t.Fatalf("issuer back: Verify = %v", err)
	}
}

func TestNewOIDCChecksConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]auth.OIDCConfig{
		"no issuer":   {Audience: "a"},
		"not a URL":   {Issuer: "accounts.example.com", Audience: "a"},
		"no audience": {Issuer: "https://accounts.example.com"},
	} {
		if _, err := auth.NewOIDC(cfg, nil); err == nil {
			t.Errorf("%s: NewOIDC accepted %+v", name, cfg)
		}
	}
}
