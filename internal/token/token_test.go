package token

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestAttemptTokens(t *testing.T) {
	t.Parallel()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Claims{
		{Job: "job-a", Task: "split", Attempt: 1},
		{Job: "job-a", Task: "sim/with/slashes", Attempt: 7},
		{Job: "j", Task: "ünïcode key", Attempt: 2147483647},
	} {
		tok := s.ForAttempt(c.Job, c.Task, c.Attempt)
		if !strings.HasPrefix(tok, Prefix) {
			t.Errorf("token %q lacks the prefix %q", tok, Prefix)
		}
		got, err := s.Verify(tok)
		if err != nil || got != c {
			t.Errorf("Verify(ForAttempt(%+v)) = %+v, %v", c, got, err)
		}
	}

	tok := s.ForAttempt("job-a", "split", 1)
	other, _ := New()
	bad := map[string]string{
		"another secret":  other.ForAttempt("job-a", "split", 1),
		"empty":           "",
		"no prefix":       strings.TrimPrefix(tok, Prefix),
		"no signature":    tok[:strings.LastIndexByte(tok, '.')],
		"bad base64":      tok + "!",
		"huge":            Prefix + strings.Repeat("A", 1<<20),
		"swapped scope":   swapScope(tok, s.ForAttempt("job-a", "split", 2)),
		"truncated mac":   tok[:len(tok)-4],
		"other attempt's": swapScope(s.ForAttempt("job-b", "split", 1), tok),
	}
	for what, b := range bad {
		if c, err := s.Verify(b); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Verify = %+v, %v; want ErrInvalid", what, c, err)
		}
	}
	if _, err := Secret(nil).Verify(Secret(nil).ForAttempt("job-a", "split", 1)); err == nil {
		t.Error("an empty secret accepted a token")
	}
	// A token says nothing of the secret: the MAC is not the secret.
	if strings.Contains(tok, string(s)) {
		t.Error("the token contains the secret")
	}
}

// swapScope returns a's scope with b's signature.
func swapScope(a, b string) string {
	return a[:strings.LastIndexByte(a, '.')] + b[strings.LastIndexByte(b, '.'):]
}

func TestLoadOrCreateKeepsTheSecret(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "sub", "token-secret")
	a, err := LoadOrCreate(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(p)
	if err != nil {
		t.Fatal(err)
	}
	if a.ForAttempt("j", "k", 1) != b.ForAttempt("j", "k", 1) {
		t.Error("the secret changed between loads")
	}
}
