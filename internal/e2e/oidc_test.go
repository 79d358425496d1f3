package e2e

import (
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/auth/oidctest"
)

// TestOIDCLogin: `haul up --oidc-issuer` accepts ID tokens of an issuer
// the test starts with its own keys: a user whose groups claim makes them a
// member of team-a submits to team-a and lists only team-a's jobs, is
// refused on team-b, and a token for another audience is unauthenticated.
func TestOIDCLogin(t *testing.T) {
	t.Parallel()
	iss := oidctest.New(t)
	s := startUp(t, freePort(t), t.TempDir(), "", "--oidc-issuer", iss.URL, "--oidc-client-id", "haul")
	claims := iss.Claims("u-1", "haul")
	claims["email"] = "alice@example.com"
	claims["groups"] = []string{"team-a", "unrelated-group:owner"}
	alice := iss.Issue(t, claims)
	as := func(tok string, args ...string) result {
		return haul(t, []string{"HAUL_SERVER=" + s.url(), "HAUL_API_TOKEN=" + tok}, args...)
	}

	r := as(alice, "job", "submit", writeSpec(t, "name: a\nnamespace: team-a\ntasks:\n  - key: x\n    command: [\"true\"]\n"))
	if r.code != 0 {
		t.Fatalf("alice submits to team-a: %d %s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if r := as(alice, "job", "get", id, "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, `"alice@example.com"`) {
		t.Fatalf("alice reads her job: %d %s %s; want submitted_by alice@example.com", r.code, r.stdout, r.stderr)
	}
	if r := as(alice, "job", "submit", writeSpec(t, "name: b\nnamespace: team-b\ntasks:\n  - key: x\n    command: [\"true\"]\n")); r.code == 0 || !strings.Contains(r.stderr, "team-b") {
		t.Fatalf("alice submits to team-b: %d %s, want refused naming the team", r.code, r.stderr)
	}
	// The admin's job in team-b is not alice's to see.
	other := submit(t, s, "name: b\nnamespace: team-b\ntasks:\n  - key: x\n    command: [\"true\"]\n")
	if r := as(alice, "job", "list", "-o", "json"); r.code != 0 || strings.Contains(r.stdout, other) || !strings.Contains(r.stdout, id) {
		t.Fatalf("alice lists jobs: %d %s %s; want hers only", r.code, r.stdout, r.stderr)
	}
	wrong := iss.Claims("u-1", "another-client")
	wrong["email"] = "alice@example.com"
	if r := as(iss.Issue(t, wrong), "job", "list"); r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "unauthenticated") {
		t.Fatalf("a token for another audience: %d %s, want unauthenticated", r.code, r.stderr)
	}
}
