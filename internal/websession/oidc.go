package websession

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// OIDCLogin is "log in with SSO": the authorization-code flow with PKCE
// (S256) against an OpenID Connect issuer, as a public client (with
// ClientSecret, a confidential one). The ID token it gets becomes the
// session's credential, which the API verifies as it verifies any ID token
// of that issuer (auth.OIDC), so the session ends when the token expires.
type OIDCLogin struct {
	// Issuer is the issuer URL; ClientID the client registered there (the
	// ID tokens' audience); ClientSecret, when set, is sent to the token
	// endpoint.
	Issuer, ClientID, ClientSecret string
	// Scopes requested besides openid (default email, profile, groups).
	Scopes []string
	// RedirectURL is the callback registered with the issuer; empty: the
	// gateway's own /ui/oidc/callback at the Host the browser used.
	RedirectURL string
	// HTTPClient calls the issuer (default: one with a 10 s timeout).
	HTTPClient *http.Client

	mu        sync.Mutex
	authorize string // discovered endpoints
	token     string
}

// flowCookie carries the state, the PKCE verifier, the nonce and where to
// go after login, between the redirect to the issuer and its callback. It
// is SameSite=Lax: the callback is a top-level navigation from the issuer.
const flowCookie = "haul_oidc_flow"

// flowTTL bounds how long a login at the issuer may take.
const flowTTL = 10 * time.Minute

func (o *OIDCLogin) client() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// endpoints discovers the issuer's authorization and token endpoints, once
// it answers.
func (o *OIDCLogin) endpoints(ctx context.Context) (string, string, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.authorize != "" {
		return o.authorize, o.token, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(o.Issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", "", err
	}
	resp, err := o.client().Do(req)
	if err != nil {
		return "", "", fmt.Errorf("OIDC issuer %s: discovery: %w", o.Issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("OIDC issuer %s: discovery answered %s", o.Issuer, resp.Status)
	}
	var doc struct {
		Authorize string `json:"authorization_endpoint"`
		Token     string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return "", "", fmt.Errorf("OIDC issuer %s: discovery document: %w", o.Issuer, err)
	}
	if doc.Authorize == "" || doc.Token == "" {
		return "", "", fmt.Errorf("OIDC issuer %s: its discovery document names no authorization or token endpoint", o.Issuer)
	}
	o.authorize, o.token = doc.Authorize, doc.Token
	return o.authorize, o.token, nil
}

// redirectURL is the callback for a request.
func (s *Sessions) redirectURL(r *http.Request) string {
	if u := s.cfg.OIDC.RedirectURL; u != "" {
		return u
	}
	scheme := "http"
	if r.TLS != nil || s.cfg.Secure {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/ui/oidc/callback"
}

// localPath returns next when it is a path on this server, else "/".
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") || strings.ContainsAny(next, "\r\n") {
		return "/"
	}
	return next
}

func (s *Sessions) oidcLogin(w http.ResponseWriter, r *http.Request) {
	o := s.cfg.OIDC
	authz, _, err := o.endpoints(r.Context())
	if err != nil {
		s.cfg.Logger.Warn("web login with SSO: the issuer is not reachable", "err", err)
		http.Error(w, "the identity provider is not reachable now; retry, or log in with a token: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	state, verifier, nonce := random(), random(), random()
	next := localPath(r.URL.Query().Get("next"))
	flow := strings.Join([]string{state, verifier, nonce, base64.RawURLEncoding.EncodeToString([]byte(next))}, ".")
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: flow, Path: "/ui/oidc/", MaxAge: int(flowTTL / time.Second),
		HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteLaxMode})
	sum := sha256.Sum256([]byte(verifier))
	scopes := o.Scopes
	if len(scopes) == 0 {
		scopes = []string{"email", "profile", "groups"}
	}
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {o.ClientID},
		"redirect_uri":          {s.redirectURL(r)},
		"scope":                 {"openid " + strings.Join(scopes, " ")},
		"state":                 {state},
		"nonce":                 {nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	sep := "?"
	if strings.Contains(authz, "?") {
		sep = "&"
	}
	http.Redirect(w, r, authz+sep+q.Encode(), http.StatusFound)
}

func (s *Sessions) oidcCallback(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, msg string) {
		s.cfg.Logger.Info("web login with SSO refused", "remote", r.RemoteAddr, "why", msg)
		http.Error(w, "login with SSO failed: "+msg+"; go back to /login and try again", status)
	}
	c, err := r.Cookie(flowCookie)
	if err != nil {
		fail(http.StatusBadRequest, "no login in progress in this browser (or it took over 10 minutes)")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: "", Path: "/ui/oidc/", MaxAge: -1, HttpOnly: true, Secure: s.cfg.Secure, SameSite: http.SameSiteLaxMode})
	parts := strings.Split(c.Value, ".")
	q := r.URL.Query()
	if len(parts) != 4 || q.Get("state") == "" || q.Get("state") != parts[0] {
		fail(http.StatusBadRequest, "the issuer's answer does not belong to the login this browser started")
		return
	}
	if e := q.Get("error"); e != "" {
		fail(http.StatusUnauthorized, "the identity provider said "+e+" "+q.Get("error_description"))
		return
	}
	verifier, nonce := parts[1], parts[2]
	nextBytes, _ := base64.RawURLEncoding.DecodeString(parts[3])
	idToken, err := s.redeem(r, q.Get("code"), verifier)
	if err != nil {
		fail(http.StatusBadGateway, err.Error())
		return
	}
	id, status, msg := s.identify(r, idToken)
	if id == nil {
		fail(status, msg)
		return
	}
	claims, err := unverifiedClaims(idToken)
	if err != nil || claims.Nonce != nonce {
		fail(http.StatusUnauthorized, "the ID token's nonce is not this login's")
		return
	}
	s.start(w, idToken, time.Unix(claims.Exp, 0))
	s.cfg.Logger.Info("web login", "subject", id.Subject, "via", id.Via, "remote", r.RemoteAddr)
	http.Redirect(w, r, localPath(string(nextBytes)), http.StatusFound)
}

// redeem exchanges the code for the ID token.
func (s *Sessions) redeem(r *http.Request, code, verifier string) (string, error) {
	o := s.cfg.OIDC
	if code == "" {
		return "", errors.New("the issuer sent no code")
	}
	_, tokenURL, err := o.endpoints(r.Context())
	if err != nil {
		return "", err
	}
	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {s.redirectURL(r)},
		"client_id":     {o.ClientID},
		"code_verifier": {verifier},
	}
	if o.ClientSecret != "" {
		form.Set("client_secret", o.ClientSecret)
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := o.client().Do(req)
	if err != nil {
		return "", fmt.Errorf("the issuer's token endpoint: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		IDToken string `json:"id_token"`
		Error   string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return "", fmt.Errorf("the issuer's token endpoint answered %s with no JSON", resp.Status)
	}
	if resp.StatusCode != http.StatusOK || out.IDToken == "" {
		return "", fmt.Errorf("the issuer's token endpoint refused the code: %s %s", resp.Status, out.Error)
	}
	return out.IDToken, nil
}

type idClaims struct {
	Exp   int64  `json:"exp"`
	Nonce string `json:"nonce"`
}

// unverifiedClaims reads a JWT's payload; call it only on a token the
// authenticator verified.
func unverifiedClaims(jwt string) (idClaims, error) {
	var c idClaims
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return c, errors.New("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}
