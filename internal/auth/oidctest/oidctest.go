// Package oidctest runs a real OIDC issuer for tests: an HTTP server that
// serves /.well-known/openid-configuration and its JSON Web Key Set, signs
// ID tokens with an RSA key the test makes, and runs the authorization-code
// flow with PKCE for browsers (LogInAs). Nothing is faked: the
// verifier under test discovers the issuer and fetches its keys over HTTP as
// it would from any provider.
package oidctest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
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

	// The authorization-code flow (a browser logging in): the claims of
	// whoever logs in next, and the codes handed out.
	mu    sync.Mutex
	login map[string]any
	codes map[string]grant
}

// grant is an authorization code's request.
type grant struct {
	clientID, redirect, challenge, nonce string
	claims                               map[string]any
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
	mux.HandleFunc("/authorize", iss.authorize)
	mux.HandleFunc("/token", iss.token)
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
	s, err := sign(key, kid, claims)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	return s
}

func sign(key *rsa.PrivateKey, kid string, claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return "", fmt.Errorf("signer: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("claims: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return obj.CompactSerialize()
}

// LogInAs sets who the issuer's login page logs in: its /authorize
// endpoint approves at once, as a provider whose user is already signed in
// does, with these claims (iss, aud, iat, exp and nonce are filled in);
// nil: /authorize refuses with access_denied.
func (iss *Issuer) LogInAs(claims map[string]any) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.login = claims
}

// authorize is the authorization endpoint of the code flow with PKCE
// (S256 only): it redirects back with a one-time code.
func (iss *Issuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, state := q.Get("redirect_uri"), q.Get("state")
	back, err := url.Parse(redirect)
	if err != nil || redirect == "" {
		http.Error(w, "oidctest: bad redirect_uri", http.StatusBadRequest)
		return
	}
	reply := back.Query()
	reply.Set("state", state)
	iss.mu.Lock()
	claims := iss.login
	iss.mu.Unlock()
	switch {
	case q.Get("response_type") != "code":
		reply.Set("error", "unsupported_response_type")
	case q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		reply.Set("error", "invalid_request")
		reply.Set("error_description", "PKCE with S256 is required")
	case claims == nil:
		reply.Set("error", "access_denied")
	default:
		var cb [16]byte
		rand.Read(cb[:])
		code := hex.EncodeToString(cb[:])
		iss.mu.Lock()
		if iss.codes == nil {
			iss.codes = map[string]grant{}
		}
		iss.codes[code] = grant{clientID: q.Get("client_id"), redirect: redirect, challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), claims: claims}
		iss.mu.Unlock()
		reply.Set("code", code)
	}
	back.RawQuery = reply.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

// token is the token endpoint: it redeems a code once, checking the PKCE
// verifier, the client and the redirect URI, and returns a signed ID token.
func (iss *Issuer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	iss.mu.Lock()
	g, ok := iss.codes[r.PostForm.Get("code")]
	delete(iss.codes, r.PostForm.Get("code"))
	iss.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if !ok || r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("client_id") != g.clientID ||
		r.PostForm.Get("redirect_uri") != g.redirect || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_grant"}`))
		return
	}
	now := time.Now()
	claims := map[string]any{"iss": iss.URL, "aud": g.clientID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	for k, v := range g.claims {
		claims[k] = v
	}
	idToken, err := sign(iss.key, iss.kid, claims)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]any{"access_token": "unused", "token_type": "Bearer", "expires_in": 3600, "id_token": idToken})
}

// KeyID is the id of the issuer's signing key.
func (iss *Issuer) KeyID() string { return iss.kid }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
