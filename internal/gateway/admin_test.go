package gateway_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/gateway"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// adminEnv serves the AdminService on a real SQLite store behind the
// authentication interceptor, as the server does, and holds a platform
// admin's token made the way the server makes its own.
type adminEnv struct {
	st    *sqlite.Store
	url   string
	admin *gateway.Admin
	root  string // a platform admin's token
}

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "haul.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	authn := auth.NewAuthenticator(auth.AuthnConfig{Tokens: st})
	admin := gateway.NewAdmin(st, nil).WithForget(authn.Forget)
	mux := http.NewServeMux()
	mux.Handle(gateway.Bounded(gateway.AdminReadMaxBytes, apiv1connect.NewAdminServiceHandler)(admin, connect.WithInterceptors(gateway.NewInterceptor(authn, nil))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	tok, id, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := st.CreateToken(ctx, &store.Token{ID: id, Hash: hash, Subject: "root", Kind: "user", PlatformAdmin: true, CreatedBy: "test", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return &adminEnv{st: st, url: srv.URL, admin: admin, root: tok}
}

type adminBearer string

func (b adminBearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if b != "" {
			req.Header().Set("Authorization", "Bearer "+string(b))
		}
		return next(ctx, req)
	}
}
func (b adminBearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}
func (b adminBearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func (e *adminEnv) client(tok string) apiv1connect.AdminServiceClient {
	return apiv1connect.NewAdminServiceClient(http.DefaultClient, e.url, connect.WithInterceptors(adminBearer(tok)))
}

// create issues a token as caller and fails the test if that fails.
func (e *adminEnv) create(t *testing.T, caller string, req *apiv1.CreateTokenRequest) *apiv1.CreateTokenResponse {
	t.Helper()
	resp, err := e.client(caller).CreateToken(context.Background(), connect.NewRequest(req))
	if err != nil {
		t.Fatalf("CreateToken(%v): %v", req, err)
	}
	return resp.Msg
}

func wantCode(t *testing.T, what string, err error, code connect.Code) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Errorf("%s: %v; want %s", what, err, code)
	}
}

func TestAdminTokensByRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newAdminEnv(t)

	// The platform admin makes a team admin of perception and a member.
	padm := e.create(t, e.root, &apiv1.CreateTokenRequest{Subject: "pat@example.com", Teams: map[string]string{"perception": "admin"}})
	if !strings.HasPrefix(padm.Token, auth.TokenPrefix) || padm.Record.Id == "" || strings.Contains(padm.Record.String(), padm.Token) {
		t.Fatalf("CreateToken response: token %q, record %v", padm.Token, padm.Record)
	}
	if got := padm.Record.ExpiresAt.AsTime().Sub(padm.Record.CreatedAt.AsTime()); got != gateway.DefaultTokenTTL {
		t.Errorf("default lifetime %v, want %v", got, gateway.DefaultTokenTTL)
	}
	if padm.Record.CreatedBy != "root" || padm.Record.Kind != "user" {
		t.Errorf("record created_by %q kind %q; want root, user", padm.Record.CreatedBy, padm.Record.Kind)
	}
	member := e.create(t, e.root, &apiv1.CreateTokenRequest{Subject: "mo@example.com", Teams: map[string]string{"perception": "member"}})
	infra := e.create(t, e.root, &apiv1.CreateTokenRequest{Subject: "ci-infra", Kind: "service-account", Teams: map[string]string{"infra": "member"}, TtlSeconds: 3600})
	both := e.create(t, e.root, &apiv1.CreateTokenRequest{Subject: "two-teams", Teams: map[string]string{"perception": "viewer", "infra": "viewer"}})

	// The team admin issues its own team's tokens, and nothing else.
	ci := e.create(t, padm.Token, &apiv1.CreateTokenRequest{Subject: "ci-perception", Kind: "service-account", Teams: map[string]string{"perception": "member"}, Description: "nightly"})
	if ci.Record.CreatedBy != "pat@example.com" {
		t.Errorf("created_by %q, want pat@example.com", ci.Record.CreatedBy)
	}
	pc := e.client(padm.Token)
	for name, req := range map[string]*apiv1.CreateTokenRequest{
		"another team":      {Subject: "x", Teams: map[string]string{"infra": "viewer"}},
		"one team too many": {Subject: "x", Teams: map[string]string{"perception": "viewer", "infra": "viewer"}},
		"platform admin":    {Subject: "x", PlatformAdmin: true},
		"platform + team":   {Subject: "x", Teams: map[string]string{"perception": "viewer"}, PlatformAdmin: true},
	} {
		_, err := pc.CreateToken(ctx, connect.NewRequest(req))
		wantCode(t, "team admin creates a token for "+name, err, connect.CodePermissionDenied)
	}
	// A member and a viewer issue nothing.
	_, err := e.client(member.Token).CreateToken(ctx, connect.NewRequest(&apiv1.CreateTokenRequest{Subject: "x", Teams: map[string]string{"perception": "viewer"}}))
	wantCode(t, "member creates a token", err, connect.CodePermissionDenied)
	_, err = e.client(both.Token).ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{Team: "perception"}))
	wantCode(t, "viewer lists tokens", err, connect.CodePermissionDenied)
	// No token, a made-up token: unauthenticated.
	_, err = e.client("").ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{}))
	wantCode(t, "no token", err, connect.CodeUnauthenticated)
	fake, _, _, _ := auth.NewToken()
	_, err = e.client(fake).ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{}))
	wantCode(t, "unknown token", err, connect.CodeUnauthenticated)

	// Listing: the team admin sees the tokens it could manage (named
	// team or its one admin team), not the two-team one nor infra's.
	ids := func(ts []*apiv1.Token) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Id)
		}
		slices.Sort(out)
		return out
	}
	wantPerception := []string{padm.Record.Id, member.Record.Id, ci.Record.Id}
	slices.Sort(wantPerception)
	for _, team := range []string{"perception", ""} {
		resp, err := pc.ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{Team: team}))
		if err != nil {
			t.Fatalf("team admin lists team %q: %v", team, err)
		}
		if got := ids(resp.Msg.Tokens); !slices.Equal(got, wantPerception) {
			t.Errorf("team admin lists team %q: %v, want %v", team, got, wantPerception)
		}
	}
	_, err = pc.ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{Team: "infra"}))
	wantCode(t, "team admin lists another team", err, connect.CodePermissionDenied)
	all, err := e.client(e.root).ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(all.Msg.Tokens); n != 6 {
		t.Errorf("platform admin lists %d tokens, want 6 (root and five issued)", n)
	}
	// Pages of two cover the same tokens once each.
	var paged []*apiv1.Token
	for page := ""; ; {
		resp, err := e.client(e.root).ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{PageSize: 2, PageToken: page}))
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, resp.Msg.Tokens...)
		if page = resp.Msg.NextPageToken; page == "" {
			break
		}
		if len(paged) > 10 {
			t.Fatal("paging does not end")
		}
	}
	if got, want := ids(paged), ids(all.Msg.Tokens); !slices.Equal(got, want) {
		t.Errorf("paged %v, want %v", got, want)
	}

	// Revoking: the team admin its team's token, which stops working at
	// once on this server; not infra's, not the two-team one.
	if _, err := e.client(member.Token).ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{Team: "perception"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("member token before revocation: %v; want permission_denied (authenticated)", err)
	}
	rv, err := pc.RevokeToken(ctx, connect.NewRequest(&apiv1.RevokeTokenRequest{Id: member.Record.Id}))
	if err != nil {
		t.Fatalf("team admin revokes its member's token: %v", err)
	}
	if rv.Msg.Record.RevokedAt == nil {
		t.Error("revoked record has no revoked_at")
	}
	_, err = e.client(member.Token).ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{Team: "perception"}))
	wantCode(t, "revoked token", err, connect.CodeUnauthenticated)
	for name, id := range map[string]string{"infra's": infra.Record.Id, "the two-team": both.Record.Id} {
		_, err = pc.RevokeToken(ctx, connect.NewRequest(&apiv1.RevokeTokenRequest{Id: id}))
		wantCode(t, "team admin revokes "+name+" token", err, connect.CodePermissionDenied)
	}
	_, err = pc.RevokeToken(ctx, connect.NewRequest(&apiv1.RevokeTokenRequest{Id: "0123456789ab"}))
	wantCode(t, "revoke an unknown token", err, connect.CodeNotFound)
	_, err = pc.RevokeToken(ctx, connect.NewRequest(&apiv1.RevokeTokenRequest{Id: "nope"}))
	wantCode(t, "revoke a malformed id", err, connect.CodeInvalidArgument)
	// Revoked tokens are listed only on request.
	resp, err := pc.ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{Team: "perception"}))
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ids(resp.Msg.Tokens), member.Record.Id) {
		t.Error("a revoked token is listed without include_revoked")
	}
	resp, err = pc.ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{Team: "perception", IncludeRevoked: true}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ids(resp.Msg.Tokens), member.Record.Id) {
		t.Error("include_revoked does not list the revoked token")
	}

	// The audit: platform admins only; it holds what happened, allowed
	// or denied, with the caller's address.
	_, err = pc.ListAudit(ctx, connect.NewRequest(&apiv1.ListAuditRequest{}))
	wantCode(t, "team admin lists the audit", err, connect.CodePermissionDenied)
	au, err := e.client(e.root).ListAudit(ctx, connect.NewRequest(&apiv1.ListAuditRequest{Subject: "pat@example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range au.Msg.Entries {
		if a.Subject != "pat@example.com" || a.TokenId != padm.Record.Id || a.Remote == "" || a.At == nil {
			t.Errorf("audit entry %v: want subject pat@example.com, token %s, a remote address and a time", a, padm.Record.Id)
		}
		got = append(got, a.Action+" "+a.Outcome+" "+a.Object)
	}
	for _, want := range []string{"CreateToken ok " + ci.Record.Id, "CreateToken denied ", "RevokeToken ok " + member.Record.Id, "RevokeToken denied " + infra.Record.Id, "RevokeToken not_found 0123456789ab"} {
		if !slices.Contains(got, want) {
			t.Errorf("audit of pat@example.com lacks %q: %q", want, got)
		}
	}
	// By team: infra's entries include the denied revocation of its token.
	au, err = e.client(e.root).ListAudit(ctx, connect.NewRequest(&apiv1.ListAuditRequest{Team: "infra"}))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range au.Msg.Entries {
		found = found || a.Action == "RevokeToken" && a.Object == infra.Record.Id && a.Outcome == "denied"
	}
	if !found {
		t.Errorf("team infra's audit lacks the denied revocation of %s: %v", infra.Record.Id, au.Msg.Entries)
	}
}

func TestAdminCreateTokenValidation(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	c := e.client(e.root)
	for name, req := range map[string]*apiv1.CreateTokenRequest{
		"no subject":      {Teams: map[string]string{"a": "member"}},
		"control chars":   {Subject: "a\nb", Teams: map[string]string{"a": "member"}},
		"bad kind":        {Subject: "s", Kind: "robot", Teams: map[string]string{"a": "member"}},
		"bad role":        {Subject: "s", Teams: map[string]string{"a": "owner"}},
		"bad team":        {Subject: "s", Teams: map[string]string{"A B": "member"}},
		"no teams":        {Subject: "s"},
		"negative ttl":    {Subject: "s", Teams: map[string]string{"a": "member"}, TtlSeconds: -1},
		"ttl over a year": {Subject: "s", Teams: map[string]string{"a": "member"}, TtlSeconds: int64(gateway.MaxTokenTTL/time.Second) + 1},
	} {
		_, err := c.CreateToken(context.Background(), connect.NewRequest(req))
		wantCode(t, name, err, connect.CodeInvalidArgument)
	}
	r := e.create(t, e.root, &apiv1.CreateTokenRequest{Subject: "s", Teams: map[string]string{"a": "member"}, TtlSeconds: int64(gateway.MaxTokenTTL / time.Second)})
	if got := r.Record.ExpiresAt.AsTime().Sub(r.Record.CreatedAt.AsTime()); got != gateway.MaxTokenTTL {
		t.Errorf("lifetime %v, want %v", got, gateway.MaxTokenTTL)
	}
}

func TestAdminRefusesTasks(t *testing.T) {
	t.Parallel()
	e := newAdminEnv(t)
	// A task's identity, as the interceptor would set it: even a task of
	// a team's job manages no tokens and reads no audit.
	ctx := auth.WithIdentity(context.Background(), &auth.Identity{Subject: "task:j/k#1", Kind: auth.KindTask, Job: "j", Task: "k", Attempt: 1,
		Teams: map[string]auth.Role{"perception": auth.RoleAdmin}, Via: "task"})
	_, err := e.admin.CreateToken(ctx, connect.NewRequest(&apiv1.CreateTokenRequest{Subject: "x", Teams: map[string]string{"perception": "viewer"}}))
	wantCode(t, "task creates a token", err, connect.CodePermissionDenied)
	_, err = e.admin.ListTokens(ctx, connect.NewRequest(&apiv1.ListTokensRequest{Team: "perception"}))
	wantCode(t, "task lists tokens", err, connect.CodePermissionDenied)
	_, err = e.admin.ListAudit(ctx, connect.NewRequest(&apiv1.ListAuditRequest{}))
	wantCode(t, "task lists the audit", err, connect.CodePermissionDenied)
	// No identity at all (no interceptor): unauthenticated, not a panic.
	_, err = e.admin.RevokeToken(context.Background(), connect.NewRequest(&apiv1.RevokeTokenRequest{Id: "0123456789ab"}))
	wantCode(t, "no identity", err, connect.CodeUnauthenticated)
	if !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("no identity: %v does not wrap auth.ErrUnauthenticated", err)
	}
}
