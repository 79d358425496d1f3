package token

import (
	"path/filepath"
	"testing"
)

func TestTokens(t *testing.T) {
	t.Parallel()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	tok := s.ForJob("job-a")
	if err := s.Check("job-a", tok); err != nil {
		t.Errorf("own token refused: %v", err)
	}
	if err := s.Check("job-b", tok); err == nil {
		t.Error("a job's token was accepted for another job")
	}
	other, _ := New()
	if err := other.Check("job-a", tok); err == nil {
		t.Error("a token was accepted under another secret")
	}
	if err := Secret(nil).Check("job-a", Secret(nil).ForJob("job-a")); err == nil {
		t.Error("an empty secret accepted a token")
	}
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
	if a.ForJob("j") != b.ForJob("j") {
		t.Error("the secret changed between loads")
	}
}
