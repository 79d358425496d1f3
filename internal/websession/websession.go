// Package websession logs people into the web UI and lets the page call the
// API with its login, without a script ever holding the credential.
//
// A login (a pasted token, or OIDC with PKCE) sets two cookies:
//
//   - haul_session holds the credential itself (the issued token, or the
//     ID token from the OIDC issuer): HttpOnly, so no script reads it;
//     SameSite=Strict, so no other site's request carries it; Secure when
//     the gateway serves TLS. It expires with the credential, and after
//     SessionTTL for an issued token.
//   - haul_csrf holds a random value the page reads and sends back in the
//     X-Haul-CSRF header (double submit).
//
// API wraps the gateway's handlers: a request with no Authorization header
// but a session cookie gets "Authorization: Bearer <cookie>", so the API
// authenticates and authorizes it exactly as it does the CLI: there is no
// second path to get wrong. A request that is not a GET or HEAD must carry
// X-Haul-CSRF equal to the haul_csrf cookie, so a cookie alone never
// changes anything. Revoking the token ends every session made with it
// within the authenticator's cache time.
//
// Keeping the credential in the cookie, rather than a server-side session
// table, keeps the gateways stateless; see docs/design/012-web-ui.md.
package websession

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"github.com/haul-dev/haul/internal/auth"
)

// Cookie and header names.
const (
	SessionCookie = "haul_session"
	CSRFCookie    = "haul_csrf"
	CSRFHeader    = "X-Haul-CSRF"
)

// SessionTTL bounds a session made with an issued token.
const SessionTTL = 12 * time.Hour

// maxLoginBytes bounds a login request's body.
const maxLoginBytes = 16 << 10

// Config configures Sessions.
type Config struct {
	// Auth checks the credential at login and for /ui/session.
	Auth auth.Authenticator
	// OIDC, when set, offers "log in with SSO" (authorization code with
	// PKCE).
	OIDC *OIDCLogin
	// Secure marks the cookies Secure (the gateway serves TLS).
	Secure bool
	Logger *slog.Logger
	Clock  func() time.Time
}

// Sessions serves the login endpoints and wraps the API.
type Sessions struct {
	cfg Config
}

// New returns Sessions for cfg.
func New(cfg Config) *Sessions {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Sessions{cfg: cfg}
}

// Mount registers the session endpoints on mux:
//
//	GET  /ui/config           {"oidc": bool, "issuer": URL, "client_id": ID}
//	GET  /ui/session          who the cookie's credential proves (401: none)
//	POST /ui/login            {"token": "haul_..."} -> 204 and cookies
//	POST /ui/logout           cookies cleared (needs X-Haul-CSRF)
//	GET  /ui/oidc/login       redirect to the issuer (with OIDC)
//	GET  /ui/oidc/callback    the issuer's redirect back (with OIDC)
func (s *Sessions) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /ui/config", s.config)
	mux.HandleFunc("GET /ui/session", s.session)
	mux.HandleFunc("POST /ui/login", s.login)
	mux.HandleFunc("POST /ui/logout", s.API(http.HandlerFunc(s.logout)).ServeHTTP)
	if s.cfg.OIDC != nil {
		mux.HandleFunc("GET /ui/oidc/login", s.oidcLogin)
		mux.HandleFunc("GET /ui/oidc/callback", s.oidcCallback)
	}
}

// API wraps an API handler: a request with a session cookie and no
// Authorization header is authenticated by the cookie, after the CSRF check
// for anything but GET and HEAD.
func (s *Sessions) API(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(SessionCookie)
		if r.Header.Get("Authorization") != "" || err != nil || c.Value == "" {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !csrfOK(r) {
			writeConnectError(w, http.StatusForbidden, "permission_denied",
				"this request carries the web session's cookie but not its "+CSRFHeader+" header: the page sends it; other sites cannot")
			return
		}
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+c.Value)
		next.ServeHTTP(w, r)
	})
}

// csrfOK reports whether the request's X-Haul-CSRF header equals its
// haul_csrf cookie.
func csrfOK(r *http.Request) bool {
	c, err := r.Cookie(CSRFCookie)
	h := r.Header.Get(CSRFHeader)
	return err == nil && c.Value != "" && h != "" && subtle.ConstantTimeCompare([]byte(c.Value), []byte(h)) == 1
}

// config tells the page and the CLI how one logs in: with OIDC, the
// issuer and the client ID (public values: `haul login --sso` runs the
// device flow against that issuer as that client; never the secret).
func (s *Sessions) config(w http.ResponseWriter, _ *http.Request) {
	c := map[string]any{"oidc": s.cfg.OIDC != nil}
	if o := s.cfg.OIDC; o != nil {
		c["issuer"], c["client_id"] = o.Issuer, o.ClientID
	}
	writeJSON(w, http.StatusOK, c)
}

// Session is what /ui/session answers.
type Session struct {
	Subject       string            `json:"subject"`
	Via           string            `json:"via"`
	Teams         map[string]string `json:"teams"`
	TeamNames     []string          `json:"teamNames"`
	PlatformAdmin bool              `json:"platformAdmin"`
}

func (s *Sessions) session(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "not logged in"})
		return
	}
	id, status, msg := s.identify(r, c.Value)
	if id == nil {
		if status == http.StatusUnauthorized {
			s.clear(w)
		}
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	out := Session{Subject: id.Subject, Via: id.Via, Teams: map[string]string{}, PlatformAdmin: id.PlatformAdmin}
	for team, role := range id.Teams {
		out.Teams[team] = role.String()
		out.TeamNames = append(out.TeamNames, team)
	}
	sort.Strings(out.TeamNames)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// identify checks a credential: the identity, or the HTTP status and a
// message saying why not.
func (s *Sessions) identify(r *http.Request, cred string) (*auth.Identity, int, string) {
	if s.cfg.Auth == nil {
		return nil, http.StatusUnauthorized, "this server has no authenticator configured"
	}
	id, err := s.cfg.Auth.Authenticate(r.Context(), cred)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return nil, http.StatusUnauthorized, err.Error()
	case err != nil:
		return nil, http.StatusServiceUnavailable, "cannot check the credential now: " + err.Error() + "; retry"
	case id == nil:
		return nil, http.StatusUnauthorized, "the credential proves no identity"
	case id.Kind == auth.KindTask:
		return nil, http.StatusUnauthorized, "a task's token (HAUL_TOKEN) cannot log in to the web UI; use a user or service-account token"
	}
	return id, 0, ""
}

func (s *Sessions) login(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Token string `json:"token"`
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		// A form post from another site cannot send application/json
		// without a preflight this server never answers.
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "login wants Content-Type application/json"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxLoginBytes+1))
	if err != nil || len(body) > maxLoginBytes {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("login body: unreadable or over %d bytes", maxLoginBytes)})
		return
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Token == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": `login wants {"token": "haul_..."}`})
		return
	}
	id, status, msg := s.identify(r, req.Token)
	if id == nil {
		s.cfg.Logger.Info("web login refused", "remote", r.RemoteAddr, "why", msg)
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	s.start(w, req.Token, s.cfg.Clock().Add(SessionTTL))
	s.cfg.Logger.Info("web login", "subject", id.Subject, "via", id.Via, "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

// start sets the session cookies, valid until expires.
func (s *Sessions) start(w http.ResponseWriter, cred string, expires time.Time) {
	maxAge := int(time.Until(expires) / time.Second)
	if maxAge <= 0 {
		maxAge = 60
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: cred, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: CSRFCookie, Value: random(), Path: "/", MaxAge: maxAge,
		Secure: s.cfg.Secure, SameSite: http.SameSiteStrictMode})
}

func (s *Sessions) logout(w http.ResponseWriter, _ *http.Request) {
	s.clear(w)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sessions) clear(w http.ResponseWriter) {
	for _, name := range []string{SessionCookie, CSRFCookie} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: name == SessionCookie, Secure: s.cfg.Secure, SameSite: http.SameSiteStrictMode})
	}
}

func random() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeConnectError answers as a Connect unary error does, so the page
// shows it as any other API error.
func writeConnectError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"code": code, "message": msg})
}
