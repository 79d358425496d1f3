package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/bearer"
	"github.com/haul-dev/haul/internal/store"
)

// AdminTokenFile is the file in the data directory that holds the token of
// the local platform admin (mode 0600): the CLI of the unix user that runs
// the server reads it when no other credential is given.
const AdminTokenFile = "admin-token"

// AdminSubject is the subject of the admin token the server makes itself.
const AdminSubject = "local-admin"

// adminTokenTTL is how long the server's own admin token lasts; a server
// started when less than adminTokenRenew of it is left makes a new one.
const (
	adminTokenTTL   = 10 * 365 * 24 * time.Hour
	adminTokenRenew = 30 * 24 * time.Hour
)

// EnsureAdminToken makes sure <dataDir>/admin-token holds a valid
// platform admin token of this store: the one already there if the store
// knows it, has not revoked it and it has more than a month left;
// otherwise a new one (subject "local-admin", 10 years), issued through
// the store and written 0600. It returns the token.
func EnsureAdminToken(ctx context.Context, st store.AuthStore, dataDir string, now time.Time) (string, error) {
	path := filepath.Join(dataDir, AdminTokenFile)
	if b, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(b))
		ok, err := adminTokenValid(ctx, st, tok, now)
		if err != nil {
			return "", err
		}
		if ok {
			// The file may have been made by an older haul, or copied:
			// keep it the user's own.
			if err := os.Chmod(path, 0o600); err != nil {
				return "", fmt.Errorf("admin token %s: %w", path, err)
			}
			return tok, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("admin token %s: %w", path, err)
	}
	tok, id, hash, err := auth.NewToken()
	if err != nil {
		return "", err
	}
	t := &store.Token{
		ID: id, Hash: hash, Subject: AdminSubject, Kind: string(auth.KindUser), PlatformAdmin: true,
		Description: "the local admin token the server made at its first start (" + path + ")",
		CreatedBy:   "haul server", CreatedAt: now, ExpiresAt: now.Add(adminTokenTTL),
	}
	if err := st.CreateToken(ctx, t); err != nil {
		return "", fmt.Errorf("create the admin token: %w", err)
	}
	if err := writePrivate(path, []byte(tok+"\n")); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return tok, nil
}

// adminTokenValid reports whether tok is a platform admin token the store
// knows, unrevoked, with more than adminTokenRenew left.
func adminTokenValid(ctx context.Context, st store.AuthStore, tok string, now time.Time) (bool, error) {
	id, secret, err := auth.ParseToken(tok)
	if err != nil {
		return false, nil
	}
	t, err := st.GetToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil // a data directory reused with another database
	}
	if err != nil {
		return false, fmt.Errorf("check the admin token: %w", err)
	}
	return auth.SecretMatches(secret, t.Hash) && t.PlatformAdmin && t.RevokedAt.IsZero() && t.ExpiresAt.Sub(now) > adminTokenRenew, nil
}

// writePrivate writes a file readable by its owner only, through a
// temporary file renamed into place: a reader sees the old content or the
// new, never half.
func writePrivate(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// privateDir makes dir (and its parents) and makes sure that dir itself
// is its owner's only (0700), also when it existed before.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != 0o700 {
		return os.Chmod(dir, 0o700)
	}
	return nil
}

// privateFile makes path, if it does not exist, empty with mode 0600, and
// makes an existing one 0600: SQLite then creates its -wal and -shm files
// with the same mode.
func privateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	f.Close()
	return os.Chmod(path, 0o600)
}

// IsLoopback reports whether a listen address (host:port) only accepts
// connections from this machine: a loopback IP or "localhost". An empty
// host (all interfaces) is not.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrInsecureListen refuses a listen address beyond loopback without TLS.
var ErrInsecureListen = errors.New("refusing to serve beyond loopback without TLS")

func insecureListen(listen string) error {
	return fmt.Errorf("%w: --listen %s accepts connections from other machines, and without TLS the API and the workers' protocol, bearer tokens included, would cross the network in clear text. Give a certificate and its key: --tls-cert FILE --tls-key FILE (clients then pass --ca FILE or HAUL_CA unless a public CA signed it). Every call needs a token: the admin token the server writes to <data dir>/%s, tokens from `haul token create`, or OIDC (docs/security.md). Or listen on 127.0.0.1 only",
		ErrInsecureListen, listen, AdminTokenFile)
}

// loadTLS reads the server's certificate and key and returns the TLS
// configuration that serves HTTP/2 and HTTP/1.1.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("TLS needs both --tls-cert and --tls-key (got cert %q, key %q)", certFile, keyFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}, nil
}

// WithBearer returns a copy of c (nil: http.DefaultClient) that sends
// token as `Authorization: Bearer` on every request: in-process clients of
// a server (haul bench, tests) call its API with AdminToken this way.
func WithBearer(c *http.Client, token string) *http.Client { return bearer.Client(c, token) }
