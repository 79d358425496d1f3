package websession_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/auth/oidctest"
	"github.com/haul-dev/haul/internal/websession"
)

// tokens is an authenticator of fixed tokens (the real one reads the store;
// what is tested here is what the session does with its answers).
type tokens map[string]*auth.Identity

func (ts tokens) Authenticate(_ context.Context, bearer string) (*auth.Identity, error) {
	if id, ok := ts[bearer]; ok {
		return id, nil
	}
	return nil, fmt.Errorf("%w: unknown token", auth.ErrUnauthenticated)
}

// server serves the session endpoints and an "API" that echoes the
// Authorization header it got.
func server(t *testing.T, cfg websession.Config) *httptest.Server {
	mux := http.NewServeMux()
	s := websession.New(cfg)
	s.Mount(mux)
	mux.Handle("/api", s.API(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("Authorization"))
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

func do(t *testing.T, c *http.Client, method, url, body string, header map[string]string) (int, string, *http.Response) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

func cookie(c *http.Client, base, name string) *http.Cookie {
	u, _ := url.Parse(base)
	for _, k := range c.Jar.Cookies(u) {
		if k.Name == name {
			return k
		}
	}
	return nil
}

func TestTokenLogin(t *testing.T) {
	alice := &auth.Identity{Subject: "alice", Kind: auth.KindUser, Via: "token", Teams: map[string]auth.Role{"a": auth.RoleMember}}
	task := &auth.Identity{Subject: "task:j/k#1", Kind: auth.KindTask, Via: "task"}
	srv := server(t, websession.Config{Auth: tokens{"haul_alice": alice, "task-token": task}})
	c := client(t)
	json := map[string]string{"Content-Type": "application/json"}

	if code, _, _ := do(t, c, "GET", srv.URL+"/ui/session", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("session before login: %d, want 401", code)
	}
	if code, body, _ := do(t, c, "POST", srv.URL+"/ui/login", `{"token":"haul_nobody"}`, json); code != http.StatusUnauthorized || !strings.Contains(body, "unknown token") {
		t.Fatalf("login with an unknown token: %d %s", code, body)
	}
	if code, body, _ := do(t, c, "POST", srv.URL+"/ui/login", `{"token":"task-token"}`, json); code != http.StatusUnauthorized || !strings.Contains(body, "task") {
		t.Fatalf("login with a task's token: %d %s", code, body)
	}
	// A form post (what another site can send without a preflight).
	if code, _, _ := do(t, c, "POST", srv.URL+"/ui/login", `token=haul_alice`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}); code != http.StatusUnsupportedMediaType {
		t.Fatalf("form login: %d, want 415", code)
	}
	if code, body, _ := do(t, c, "POST", srv.URL+"/ui/login", `{"token":"haul_alice"}`, json); code != http.StatusNoContent {
		t.Fatalf("login: %d %s", code, body)
	}
	_, _, resp := do(t, client(t), "POST", srv.URL+"/ui/login", `{"token":"haul_alice"}`, json)
	for _, k := range resp.Cookies() {
		switch k.Name {
		case websession.SessionCookie:
			if !k.HttpOnly || k.SameSite != http.SameSiteStrictMode || k.Value != "haul_alice" || k.MaxAge <= 0 {
				t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, the token, an expiry", k)
			}
		case websession.CSRFCookie:
			if k.HttpOnly || k.SameSite != http.SameSiteStrictMode || len(k.Value) < 32 {
				t.Errorf("csrf cookie %+v: want readable by the page, SameSite=Strict, random", k)
			}
		}
	}
	code, body, _ := do(t, c, "GET", srv.URL+"/ui/session", "", nil)
	if code != http.StatusOK || !strings.Contains(body, `"subject":"alice"`) || !strings.Contains(body, `"a":"member"`) {
		t.Fatalf("session: %d %s", code, body)
	}
	// Reads go through with the cookie alone; anything else needs the
	// CSRF header, equal to the cookie.
	if code, body, _ := do(t, c, "GET", srv.URL+"/api", "", nil); code != http.StatusOK || body != "Bearer haul_alice" {
		t.Fatalf("GET with the cookie: %d %q", code, body)
	}
	if code, body, _ := do(t, c, "POST", srv.URL+"/api", "", nil); code != http.StatusForbidden || !strings.Contains(body, websession.CSRFHeader) {
		t.Fatalf("POST without the CSRF header: %d %q", code, body)
	}
	if code, _, _ := do(t, c, "POST", srv.URL+"/api", "", map[string]string{websession.CSRFHeader: "guess"}); code != http.StatusForbidden {
		t.Fatalf("POST with a wrong CSRF header: %d", code)
	}
	csrf := cookie(c, srv.URL, websession.CSRFCookie).Value
	if code, body, _ := do(t, c, "POST", srv.URL+"/api", "", map[string]string{websession.CSRFHeader: csrf}); code != http.StatusOK || body != "Bearer haul_alice" {
		t.Fatalf("POST with the CSRF header: %d %q", code, body)
	}
	// An explicit Authorization header wins over the cookie (the CLI).
	if _, body, _ := do(t, c, "POST", srv.URL+"/api", "", map[string]string{"Authorization": "Bearer other"}); body != "Bearer other" {
		t.Fatalf("explicit Authorization replaced: %q", body)
	}
	if code, _, _ := do(t, c, "POST", srv.URL+"/ui/logout", "", nil); code != http.StatusForbidden {
		t.Fatalf("logout without the CSRF header: %d, want 403", code)
	}
	if code, _, _ := do(t, c, "POST", srv.URL+"/ui/logout", "", map[string]string{websession.CSRFHeader: csrf}); code != http.StatusNoContent {
		t.Fatalf("logout: %d", code)
	}
	if code, _, _ := do(t, c, "GET", srv.URL+"/ui/session", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("session after logout: %d, want 401", code)
	}
	if _, body, _ := do(t, c, "GET", srv.URL+"/api", "", nil); body != "" {
		t.Fatalf("API after logout still authenticated: %q", body)
	}
}

// The SSO login runs the authorization-code flow with PKCE against a real
// issuer, and the session's credential is the ID token the real verifier
// accepts.
func TestOIDCLogin(t *testing.T) {
	iss := oidctest.New(t)
	verifier, err := auth.NewOIDC(auth.OIDCConfig{Issuer: iss.URL, Audience: "haul-ui"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	authn := auth.NewAuthenticator(auth.AuthnConfig{OIDC: verifier})
	srv := server(t, websession.Config{Auth: authn, OIDC: &websession.OIDCLogin{Issuer: iss.URL, ClientID: "haul-ui"}})
	c := client(t)
	if _, body, _ := do(t, c, "GET", srv.URL+"/ui/config", "", nil); !strings.Contains(body, `"oidc":true`) ||
		!strings.Contains(body, `"issuer":"`+iss.URL+`"`) || !strings.Contains(body, `"client_id":"haul-ui"`) || strings.Contains(body, "secret") {
		t.Fatalf("config: %s", body)
	}
	// Nobody logged in at the issuer: it refuses, and the page says so.
	code, body, _ := do(t, c, "GET", srv.URL+"/ui/oidc/login?next=/jobs", "", nil)
	if code != http.StatusUnauthorized || !strings.Contains(body, "access_denied") {
		t.Fatalf("refused login: %d %s", code, body)
	}
	iss.LogInAs(map[string]any{"sub": "u1", "email": "bob@example.com", "email_verified": true, "groups": []string{"b:viewer"}})
	var landed string
	c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		landed = req.URL.String()
		return nil
	}
	do(t, c, "GET", srv.URL+"/ui/oidc/login?next=/jobs/x", "", nil)
	if landed != srv.URL+"/jobs/x" {
		t.Fatalf("after login landed on %q, want the next page", landed)
	}
	code, body, _ = do(t, c, "GET", srv.URL+"/ui/session", "", nil)
	if code != http.StatusOK || !strings.Contains(body, `"subject":"bob@example.com"`) || !strings.Contains(body, `"via":"oidc"`) || !strings.Contains(body, `"b":"viewer"`) {
		t.Fatalf("session after SSO: %d %s", code, body)
	}
	// A callback that is not this browser's login is refused, and so is
	// a next page on another site.
	if code, _, _ := do(t, client(t), "GET", srv.URL+"/ui/oidc/callback?code=x&state=y", "", nil); code != http.StatusBadRequest {
		t.Fatalf("foreign callback: %d, want 400", code)
	}
	c2 := client(t)
	c2.CheckRedirect = c.CheckRedirect
	do(t, c2, "GET", srv.URL+"/ui/oidc/login?next=//evil.example/x", "", nil)
	if landed != srv.URL+"/" {
		t.Fatalf("an off-site next landed on %q, want /", landed)
	}
}
