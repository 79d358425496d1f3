package auth

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestNewTokenShapeAndParse(t *testing.T) {
	t.Parallel()
	shape := regexp.MustCompile(`^haul_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$`)
	seen := map[string]bool{}
	for range 50 {
		tok, id, hash, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if !shape.MatchString(tok) {
			t.Fatalf("token %q does not look like haul_<12 hex>_<43 base64url>", tok)
		}
		if seen[id] {
			t.Fatalf("id %s made twice", id)
		}
		seen[id] = true
		gotID, secret, err := ParseToken(tok)
		if err != nil {
			t.Fatalf("ParseToken(new token): %v", err)
		}
		if gotID != id {
			t.Errorf("ParseToken id = %s, want %s", gotID, id)
		}
		if strings.Contains(hash, secret) || len(hash) != 64 {
			t.Errorf("hash %q: want 64 hex digits, not the secret", hash)
		}
		if !SecretMatches(secret, hash) {
			t.Error("the secret does not match its own hash")
		}
		if SecretMatches(secret[:42]+"A", hash) && secret[42] != 'A' {
			t.Error("a different secret matched")
		}
		if err := CheckTokenID(id); err != nil {
			t.Error(err)
		}
	}
}

func TestHashSecretKnownValue(t *testing.T) {
	t.Parallel()
	// sha256("abc")
	if got := HashSecret("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("HashSecret(abc) = %s", got)
	}
	if !SecretMatches("abc", strings.ToUpper(HashSecret("abc"))) {
		t.Error("an uppercase stored hash did not match")
	}
}

func TestParseTokenRefusesMalformed(t *testing.T) {
	t.Parallel()
	good, _, _, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	_, secret, _ := ParseToken(good)
	for name, tok := range map[string]string{
		"empty":          "",
		"no prefix":      strings.TrimPrefix(good, "haul_"),
		"short id":       "haul_abc_" + secret,
		"uppercase id":   "haul_ABCDEF012345_" + secret,
		"no secret":      "haul_abcdef012345",
		"short secret":   "haul_abcdef012345_" + secret[:20],
		"bad base64":     "haul_abcdef012345_" + strings.Repeat("*", 43),
		"jwt":            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln",
		"trailing parts": good + "_x",
	} {
		_, _, err := ParseToken(tok)
		if !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s: ParseToken(%q) = %v, want unauthenticated", name, tok, err)
			continue
		}
		if len(secret) > 0 && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error repeats the secret: %v", name, err)
		}
	}
}

func TestParseGroup(t *testing.T) {
	t.Parallel()
	for g, want := range map[string]struct {
		team string
		role Role
		ok   bool
	}{
		"infra":         {"infra", RoleMember, true},
		"infra:viewer":  {"infra", RoleViewer, true},
		"infra:member":  {"infra", RoleMember, true},
		"infra:admin":   {"infra", RoleAdmin, true},
		"infra:owner":   {ok: false},
		"Infra":         {ok: false},
		"":              {ok: false},
		":admin":        {ok: false},
		"org/infra":     {ok: false},
		"infra:admin:x": {ok: false},
		"9lives:viewer": {ok: false},
		"team-2:viewer": {"team-2", RoleViewer, true},
	} {
		team, role, err := ParseGroup(g)
		if want.ok != (err == nil) || want.ok && (team != want.team || role != want.role) {
			t.Errorf("ParseGroup(%q) = %q, %v, %v; want %q, %v, ok=%v", g, team, role, err, want.team, want.role, want.ok)
		}
	}
}
