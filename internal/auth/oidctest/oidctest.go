// Package oidctest runs a real OIDC issuer for tests: an HTTP server that
// serves /.well-known/openid-configuration and its JSON Web Key Set, and
// signs ID tokens with an RSA key the test makes. Nothing is faked: the
// verifier under test discovers the issuer and fetches its keys over HTTP as
// it would from any provider.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Issuer is a running OIDC issuer.
type Issuer struct {
	// URL is the issuer URL (the iss of its tokens).
	URL string
	key *rsa.PrivateKey
	kid string
	srv *httptest.Server
	// down, when set, makes every request fail with 503.
	down atomic.Bool
}

// New starts an issuer with a fresh 2048-bit RSA key; it stops when the
// test ends.
func New(t testing.TB) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("oidctest: rsa key: %v", err)
	}
	var kb [8]byte
	if _, err := rand.Read(kb[:]); err != nil {
		t.Fatalf("oidctest: key id: %v", err)
	}
	iss := &Issuer{key: key, kid: hex.EncodeToString(kb[:])}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                iss.URL,
			"authorization_endpoint":                iss.URL + "/authorize",
			"token_endpoint":                        iss.URL + "/token",
			"jwks_uri":                              iss.URL + "/keys",
			"response_types_supported":              []string{"code", "id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: iss.kid, Algorithm: "RS256", Use: "sig"}}})
	})
	iss.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if iss.down.Load() {
			http.Error(w, "issuer down (oidctest)", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	iss.URL = iss.srv.URL
	t.Cleanup(iss.srv.Close)
	return iss
}

// SetDown makes the issuer answer every request with 503 (true) or serve
// again (false).
func (iss *Issuer) SetDown(down bool) { iss.down.Store(down) }

// Claims returns the standard claims of a token for subject to audience,
// issued now and valid for an hour; add or change claims before Issue.
func (iss *Issuer) Claims(subject, audience string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss.URL,
		"sub": subject,
		"aud": audience,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

// Issue signs claims as an ID token with the issuer's key.
func (iss *Issuer) Issue(t testing.TB, claims map[string]any) string {
	t.Helper()
	return Sign(t, iss.key, iss.kid, claims)
}

// Sign signs claims with key under key id kid (RS256): with another key
// than the issuer's it makes a token the issuer never signed.
func Sign(t testing.TB, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatalf("oidctest: signer: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("oidctest: claims: %v", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("oidctest: sign: %v", err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatalf("oidctest: serialize: %v", err)
	}
	return s
}

// KeyID is the id of the issuer's signing key.
func (iss *Issuer) KeyID() string { return iss.kid }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
