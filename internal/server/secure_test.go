package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// TestEnsureAdminToken: the first start makes a platform admin token and
// writes it 0600; later starts reuse it while the store knows it as
// valid, and replace it when it was revoked, is near its expiry, or the
// file holds something else.
func TestEnsureAdminToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "haul.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	path := filepath.Join(dir, AdminTokenFile)

	first, err := EnsureAdminToken(ctx, st, dir, now)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	id, _, err := auth.ParseToken(first)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := st.GetToken(ctx, id)
	if err != nil || !tok.PlatformAdmin || tok.Subject != AdminSubject || tok.ExpiresAt.Sub(now) < 365*24*time.Hour {
		t.Fatalf("stored admin token: %+v, %v; want a platform admin %q lasting years", tok, err, AdminSubject)
	}
	// The authenticator accepts it.
	ident, err := auth.NewAuthenticator(auth.AuthnConfig{Tokens: st}).Authenticate(ctx, first)
	if err != nil || !ident.PlatformAdmin {
		t.Fatalf("authenticate the admin token: %+v, %v", ident, err)
	}

	// Reused, and made private again if someone loosened the file.
	os.Chmod(path, 0o644)
	again, err := EnsureAdminToken(ctx, st, dir, now.Add(time.Hour))
	if err != nil || again != first {
		t.Fatalf("second start: %v, same token %v; want the valid token reused", err, again == first)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("reused admin token file: mode %o, want 0600", fi.Mode().Perm())
	}

	// Near its expiry: a new one.
	late, err := EnsureAdminToken(ctx, st, dir, tok.ExpiresAt.Add(-time.Hour))
	if err != nil || late == first {
		t.Fatalf("a start a hour before expiry: %v, new token %v; want a new token", err, late != first)
	}
	// Revoked: a new one.
	lateID, _, _ := auth.ParseToken(late)
	if err := st.RevokeToken(ctx, lateID, now); err != nil {
		t.Fatal(err)
	}
	fresh, err := EnsureAdminToken(ctx, st, dir, now)
	if err != nil || fresh == late {
		t.Fatalf("after revocation: %v, new token %v; want a new token", err, fresh != late)
	}
	// Garbage in the file: a new one.
	if err := os.WriteFile(path, []byte("not a token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fixed, err := EnsureAdminToken(ctx, st, dir, now)
	if err != nil || fixed == fresh {
		t.Fatalf("after a corrupt file: %v, new token %v", err, fixed != fresh)
	}
	if b, _ := os.ReadFile(path); string(b) != fixed+"\n" {
		t.Errorf("file holds %q, want the new token", b)
	}
}

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	for listen, want := range map[string]bool{
		"127.0.0.1:7070": true, "127.0.0.2:0": true, "localhost:7070": true, "[::1]:7070": true,
		"0.0.0.0:7070": false, ":7070": false, "[::]:7070": false, "10.1.2.3:7070": false, "example.com:7070": false, "garbage": false,
	} {
		if got := IsLoopback(listen); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", listen, got, want)
		}
	}
}

// TestOpenRefusesInsecureListen: a server listening beyond loopback
// without TLS does not start, and says how to configure TLS.
func TestOpenRefusesInsecureListen(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	_, err := Open(context.Background(), Options{Listen: "0.0.0.0:0", DataDir: dir, TaskhostCommand: []string{"/bin/false"}})
	if !errors.Is(err, ErrInsecureListen) {
		t.Fatalf("Open on 0.0.0.0 without TLS: %v, want ErrInsecureListen", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused server made its data directory (%v)", err)
	}
	_, err = Open(context.Background(), Options{Listen: "127.0.0.1:0", DataDir: dir, TLSCert: "only-a-cert.pem", TaskhostCommand: []string{"/bin/false"}})
	if err == nil {
		t.Fatal("Open with a certificate and no key: started")
	}
}
