// Package token makes and checks job-scoped tokens: a running task finds one
// in HAUL_TOKEN and uses it to add tasks to its own job (and only that job).
// A token is an HMAC-SHA256 of the job ID under a deployment secret, so the
// runner (which hands tokens to tasks) and the gateway (which checks them)
// need only share the secret, not a table. It imports the standard library.
package token

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// prefix marks haul job tokens, so that one pasted in the wrong place is
// recognisable.
const prefix = "hjt1."

// Secret signs tokens.
type Secret []byte

// New returns a fresh random secret.
func New() (Secret, error) {
	s := make([]byte, 32)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	return s, nil
}

// LoadOrCreate reads the secret kept in path, creating it (mode 0600) when
// missing, so that tokens stay valid across a server restart.
func LoadOrCreate(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(s) < 16 {
			return nil, fmt.Errorf("token secret %s: not a base64 secret of at least 16 bytes", path)
		}
		return s, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	s, err := New()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(s)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	return s, nil
}

// ForJob returns the token for a job.
func (s Secret) ForJob(jobID string) string {
	m := hmac.New(sha256.New, s)
	m.Write([]byte("job:" + jobID))
	return prefix + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// ErrInvalid is returned by Check for a token that is not the job's.
var ErrInvalid = errors.New("the token is not valid for this job")

// Check reports whether tok is the token of jobID.
func (s Secret) Check(jobID, tok string) error {
	if len(s) == 0 || !hmac.Equal([]byte(tok), []byte(s.ForJob(jobID))) {
		return ErrInvalid
	}
	return nil
}
