package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/gateway"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/server"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

func TestFindCredentialOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, server.AdminTokenFile), []byte("haul_file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	task := map[string]string{"HAUL_TOKEN": "hjt1.task"}
	for _, tc := range []struct {
		name            string
		flag            string
		env             map[string]string
		dir, server     string
		want, wantWhere string
	}{
		{"flag first", "haul_flag", task, dir, "http://127.0.0.1:7070", "haul_flag", "--token"},
		{"then a task's token", "", task, dir, "http://127.0.0.1:7070", "hjt1.task", "HAUL_TOKEN"},
		{"then the admin token file", "", nil, dir, "http://127.0.0.1:7070", "haul_file", server.AdminTokenFile},
		{"localhost is loopback", "", nil, dir, "https://localhost:7070", "haul_file", server.AdminTokenFile},
		{"IPv6 loopback", "", nil, dir, "http://[::1]:7070", "haul_file", server.AdminTokenFile},
		{"never the file to another machine", "", nil, dir, "https://haul.example.com", "", ""},
		{"nor to a routable address", "", nil, dir, "http://10.1.2.3:7070", "", ""},
		{"no file", "", nil, empty, "http://127.0.0.1:7070", "", ""},
		{"blank flag is no flag", "  ", task, dir, "http://127.0.0.1:7070", "hjt1.task", "HAUL_TOKEN"},
	} {
		got := findCredential(tc.flag, env(tc.env), tc.dir, tc.server)
		if got.token != tc.want || !strings.Contains(got.source, tc.wantWhere) {
			t.Errorf("%s: token %q from %q; want %q from %q", tc.name, got.token, got.source, tc.want, tc.wantWhere)
		}
	}
}

// TestTokenCommands runs the token and audit commands against the real
// AdminService on SQLite, finding the platform admin's token the way the
// CLI of the server's own user does: in the data directory's admin-token.
// It sets the environment, so it does not run in parallel.
func TestTokenCommands(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(data, "haul.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	authn := auth.NewAuthenticator(auth.AuthnConfig{Tokens: st})
	mux := http.NewServeMux()
	mux.Handle(gateway.Bounded(gateway.AdminReadMaxBytes, apiv1connect.NewAdminServiceHandler)(gateway.NewAdmin(st, nil).WithForget(authn.Forget),
		connect.WithInterceptors(gateway.NewInterceptor(authn, nil))))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	root, id, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := st.CreateToken(ctx, &store.Token{ID: id, Hash: hash, Subject: "root", Kind: "user", PlatformAdmin: true, CreatedBy: "test", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, server.AdminTokenFile), []byte(root+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HAUL_DATA", data)
	t.Setenv("HAUL_API_TOKEN", "")
	t.Setenv("HAUL_TOKEN", "")
	t.Setenv("HAUL_SERVER", srv.URL)

	haul := func(args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		code := Main(args, strings.NewReader(""), &stdout, &stderr)
		return stdout.String(), stderr.String(), code
	}
	out, errOut, code := haul("token", "create", "--subject", "ci-nightly", "--kind", "service-account", "--team", "perception=admin", "--team", "infra", "--ttl", "30d", "--description", "nightly")
	if code != 0 {
		t.Fatalf("token create: exit %d: %s", code, errOut)
	}
	ci := strings.TrimSpace(out)
	if !strings.HasPrefix(ci, auth.TokenPrefix) || strings.Count(out, "\n") != 1 {
		t.Fatalf("token create printed %q; want the token alone on stdout", out)
	}
	if !strings.Contains(errOut, "infra=member,perception=admin") || !strings.Contains(errOut, "shown only now") {
		t.Errorf("token create's notice %q: want the grants and that it is shown once", errOut)
	}
	ciID, _, _ := auth.ParseToken(ci)

	// The new token, by --token, is a team admin: it lists its teams' tokens.
	out, errOut, code = haul("token", "list", "--token", ci, "--team", "perception", "-o", "json")
	if code != 0 {
		t.Fatalf("token list --token: exit %d: %s", code, errOut)
	}
	var listed []struct {
		ID    string            `json:"id"`
		Teams map[string]string `json:"teams"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("token list -o json: %v: %s", err, out)
	}
	// The ci token has infra too, which it does not admin: not listed.
	if len(listed) != 0 {
		t.Errorf("team admin of perception (member of infra) lists %v; want none it cannot manage", listed)
	}
	// $HAUL_TOKEN comes before the admin token file: a bad one is refused.
	t.Setenv("HAUL_TOKEN", "hjt1.not-a-task")
	_, errOut, code = haul("token", "list")
	if code != 1 || !strings.Contains(errOut, "unauthenticated") {
		t.Errorf("token list with a bad HAUL_TOKEN: exit %d, %q; want 1, unauthenticated", code, errOut)
	}
	t.Setenv("HAUL_TOKEN", "")
	// $HAUL_API_TOKEN comes before the file too.
	t.Setenv("HAUL_API_TOKEN", ci)
	_, errOut, code = haul("audit")
	if code != 1 || !strings.Contains(errOut, "permission_denied") {
		t.Errorf("audit as a team admin: exit %d, %q; want 1, permission_denied", code, errOut)
	}
	t.Setenv("HAUL_API_TOKEN", "")

	out, errOut, code = haul("token", "list", "--all")
	if code != 0 || !strings.Contains(out, ciID) || !strings.Contains(out, "ci-nightly") || strings.Contains(out, ci) {
		t.Errorf("token list --all: exit %d, %q, %q; want both tokens listed, never a secret", code, out, errOut)
	}
	out, errOut, code = haul("token", "revoke", ciID)
	if code != 0 || !strings.Contains(out, "revoked token "+ciID) {
		t.Fatalf("token revoke: exit %d, %q, %q", code, out, errOut)
	}
	_, errOut, code = haul("token", "list", "--token", ci, "--team", "perception")
	if code != 1 || !strings.Contains(errOut, "revoked") {
		t.Errorf("revoked token: exit %d, %q; want 1, unauthenticated naming the revocation", code, errOut)
	}
	out, errOut, code = haul("audit", "--subject", "root", "-o", "json")
	if code != 0 {
		t.Fatalf("audit: exit %d: %s", code, errOut)
	}
	var entries []struct {
		Action, Outcome, Object, Subject string
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("audit -o json: %v: %s", err, out)
	}
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.Action+" "+e.Outcome+" "+e.Object)
	}
	for _, want := range []string{"CreateToken ok " + ciID, "RevokeToken ok " + ciID} {
		found := false
		for _, a := range actions {
			found = found || a == want
		}
		if !found {
			t.Errorf("audit lacks %q: %q", want, actions)
		}
	}
	// Usage mistakes are usage errors.
	for _, args := range [][]string{
		{"token", "create", "--subject", "x", "--team", "perception=owner"},
		{"token", "create", "--subject", "x", "--team", "perception", "--ttl", "soon"},
		{"token", "create", "--team", "perception"},
		{"token", "revoke"},
	} {
		if _, errOut, code := haul(args...); code != 2 {
			t.Errorf("haul %s: exit %d, %q; want 2", strings.Join(args, " "), code, errOut)
		}
	}
}
