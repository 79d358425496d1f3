// Package oidctest runs a real OIDC issuer for tests: an HTTP server that
// serves /.well-known/openid-configuration and its JSON Web Key Set, signs
// ID tokens with an RSA key the test makes, and runs the authorization-code
// flow with PKCE for browsers (LogInAs) and the device authorization flow
// of RFC 8628 for command lines (Approve, AutoApprove). Nothing is faked: the
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

	// The device flow: pending device authorizations by device code,
	// whether new ones are approved by themselves, and whether the next
	// poll is told to slow down.
	devices     map[string]*device
	autoApprove bool
	slowDown    bool
	// DeviceInterval is the polling interval handed out with new device
	// codes (default 1s; RFC 8628's default is 5s); DeviceTTL their
	// lifetime (default 1 minute). Set them before the flow starts.
	DeviceInterval time.Duration
	DeviceTTL      time.Duration
}

// device is one device authorization (RFC 8628 section 3.2).
type device struct {
	clientID, userCode string
	interval           time.Duration
	expires, lastPoll  time.Time
	polls              int
	// claims, once approved (nil: pending); denied: refused.
	claims map[string]any
	denied bool
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
			"device_authorization_endpoint":         iss.URL + "/device",
			"grant_types_supported":                 []string{"authorization_code", deviceGrant},
			"jwks_uri":                              iss.URL + "/keys",
			"response_types_supported":              []string{"code", "id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/authorize", iss.authorize)
	mux.HandleFunc("/token", iss.token)
	mux.HandleFunc("/device", iss.deviceAuthorization)
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
	if r.PostForm.Get("grant_type") == deviceGrant {
		iss.deviceToken(w, r)
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

// deviceGrant is the grant type of the device flow's token requests.
const deviceGrant = "urn:ietf:params:oauth:grant-type:device_code"

// AutoApprove makes the issuer approve every new device authorization by
// itself, as whoever LogInAs names (as a user who opens the verification
// page while signed in would): the first poll still answers
// authorization_pending, later ones the token.
func (iss *Issuer) AutoApprove(on bool) {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.autoApprove = on
}

// Approve approves the pending device authorization whose user code is
// userCode as whoever LogInAs names; false if there is none, or LogInAs
// names nobody.
func (iss *Issuer) Approve(userCode string) bool {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	for _, d := range iss.devices {
		if d.userCode == userCode && iss.login != nil {
			d.claims = iss.login
			return true
		}
	}
	return false
}

// Deny refuses the pending device authorization of userCode (the user
// pressed "deny"): its next poll answers access_denied.
func (iss *Issuer) Deny(userCode string) bool {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	for _, d := range iss.devices {
		if d.userCode == userCode {
			d.denied = true
			return true
		}
	}
	return false
}

// UserCodes lists the user codes of the pending device authorizations.
func (iss *Issuer) UserCodes() []string {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	var out []string
	for _, d := range iss.devices {
		if d.claims == nil && !d.denied {
			out = append(out, d.userCode)
		}
	}
	return out
}

// SlowDownOnce makes the next device-flow poll answer slow_down (and that
// authorization's interval grow by 5 seconds, as RFC 8628 section 3.5
// has the client do).
func (iss *Issuer) SlowDownOnce() {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	iss.slowDown = true
}

// deviceAuthorization is the device authorization endpoint (RFC 8628
// section 3.1): it hands out a device code, a user code and where to enter
// it.
func (iss *Issuer) deviceAuthorization(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost || r.PostForm.Get("client_id") == "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_request"}`))
		return
	}
	var db [16]byte
	rand.Read(db[:])
	var ub [4]byte
	rand.Read(ub[:])
	const letters = "BCDFGHJKLMNPQRSTVWXZ"
	uc := make([]byte, 0, 9)
	for i, b := range append(ub[:], ub[0]^ub[3], ub[1]^ub[2], ub[0]^ub[1], ub[2]^ub[3]) {
		if i == 4 {
			uc = append(uc, '-')
		}
		uc = append(uc, letters[int(b)%len(letters)])
	}
	iss.mu.Lock()
	interval := iss.DeviceInterval
	if interval <= 0 {
		interval = time.Second
	}
	ttl := iss.DeviceTTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	d := &device{clientID: r.PostForm.Get("client_id"), userCode: string(uc), interval: interval, expires: time.Now().Add(ttl)}
	if iss.autoApprove && iss.login != nil {
		d.claims = iss.login
	}
	if iss.devices == nil {
		iss.devices = map[string]*device{}
	}
	code := hex.EncodeToString(db[:])
	iss.devices[code] = d
	iss.mu.Unlock()
	writeJSON(w, map[string]any{
		"device_code":               code,
		"user_code":                 d.userCode,
		"verification_uri":          iss.URL + "/device/verify",
		"verification_uri_complete": iss.URL + "/device/verify?user_code=" + d.userCode,
		"expires_in":                int(ttl.Seconds()),
		"interval":                  max(1, int(interval.Seconds())),
	})
}

// deviceToken answers a device-flow poll of the token endpoint (RFC 8628
// section 3.5): authorization_pending until approved, slow_down when
// polled faster than the interval, expired_token after the code's
// lifetime, access_denied when denied, else the ID token (once).
func (iss *Issuer) deviceToken(w http.ResponseWriter, r *http.Request) {
	fail := func(code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	iss.mu.Lock()
	dc := r.PostForm.Get("device_code")
	d, ok := iss.devices[dc]
	if !ok || r.PostForm.Get("client_id") != d.clientID {
		iss.mu.Unlock()
		fail("invalid_grant")
		return
	}
	now := time.Now()
	switch {
	case now.After(d.expires):
		delete(iss.devices, dc)
		iss.mu.Unlock()
		fail("expired_token")
		return
	case d.denied:
		delete(iss.devices, dc)
		iss.mu.Unlock()
		fail("access_denied")
		return
	case iss.slowDown || !d.lastPoll.IsZero() && now.Sub(d.lastPoll) < d.interval-d.interval/10:
		// Polled too soon (a tenth of slack for timers): the client must
		// wait 5 seconds more from now on.
		iss.slowDown = false
		d.interval += 5 * time.Second
		d.lastPoll = now
		iss.mu.Unlock()
		fail("slow_down")
		return
	}
	d.lastPoll = now
	d.polls++
	if d.claims == nil || d.polls == 1 {
		iss.mu.Unlock()
		fail("authorization_pending")
		return
	}
	delete(iss.devices, dc)
	claims := map[string]any{"iss": iss.URL, "aud": d.clientID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range d.claims {
		claims[k] = v
	}
	iss.mu.Unlock()
	idToken, err := sign(iss.key, iss.kid, claims)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]any{"access_token": "unused", "token_type": "Bearer", "expires_in": 3600, "id_token": idToken})
}
