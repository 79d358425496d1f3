// Package token makes and checks attempt-scoped task tokens: a running task
// finds one in HAUL_TOKEN and uses it to read its own job and add tasks to
// it, and the token stops working when the attempt ends.
//
// A token carries, in clear, the job, task key and attempt it is scoped to,
// and an HMAC-SHA256 of them under a deployment secret, so that the runner
// (which hands tokens to tasks) and the gateway (which checks them) need
// only share the secret, not a table: the gateway checks the MAC, then asks
// the store whether that attempt still runs (see Identifier).
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
	"strconv"
	"strings"
)

// Prefix marks haul task tokens, so that one pasted in the wrong place is
// recognisable, and an authenticator can tell them from other bearers.
const Prefix = "hat1."

// maxLen bounds a token Parse reads: a job ID, a task key of the spec's
// bounded length, an attempt number and a MAC, base64-encoded, fit well.
const maxLen = 4 << 10

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

// Claims is what a task token is scoped to: one attempt of one task.
type Claims struct {
	Job     string
	Task    string // the task's key
	Attempt int32
}

// ForAttempt returns the token of one attempt of a task.
func (s Secret) ForAttempt(job, task string, attempt int32) string {
	scope := job + "/" + task + "/" + strconv.Itoa(int(attempt))
	return Prefix + base64.RawURLEncoding.EncodeToString([]byte(scope)) + "." + base64.RawURLEncoding.EncodeToString(s.mac(scope))
}

func (s Secret) mac(scope string) []byte {
	m := hmac.New(sha256.New, s)
	m.Write([]byte("attempt:" + scope))
	return m.Sum(nil)
}

// ErrInvalid is wrapped by Verify's errors: the token is malformed or not
// signed by this deployment's secret.
var ErrInvalid = errors.New("not a valid task token")

// Verify checks tok's signature and returns what it is scoped to. It says
// nothing about whether the attempt still runs (Identifier checks that).
func (s Secret) Verify(tok string) (Claims, error) {
	if len(s) == 0 {
		return Claims{}, fmt.Errorf("%w: this server has no task token secret", ErrInvalid)
	}
	if len(tok) > maxLen || !strings.HasPrefix(tok, Prefix) {
		return Claims{}, fmt.Errorf("%w: want %s<scope>.<signature>", ErrInvalid, Prefix)
	}
	enc, sig, ok := strings.Cut(tok[len(Prefix):], ".")
	if !ok {
		return Claims{}, fmt.Errorf("%w: no signature", ErrInvalid)
	}
	scope, err1 := base64.RawURLEncoding.DecodeString(enc)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil {
		return Claims{}, fmt.Errorf("%w: bad encoding", ErrInvalid)
	}
	if !hmac.Equal(mac, s.mac(string(scope))) {
		return Claims{}, fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	// Signed by us, so well formed: job IDs hold no "/", the attempt is
	// the last part, and the key is what lies between.
	job, rest, ok1 := strings.Cut(string(scope), "/")
	i := strings.LastIndexByte(rest, '/')
	if !ok1 || i < 0 {
		return Claims{}, fmt.Errorf("%w: bad scope", ErrInvalid)
	}
	n, err := strconv.ParseInt(rest[i+1:], 10, 32)
	if err != nil || n < 1 || job == "" || i == 0 {
		return Claims{}, fmt.Errorf("%w: bad scope", ErrInvalid)
	}
	return Claims{Job: job, Task: rest[:i], Attempt: int32(n)}, nil
}
