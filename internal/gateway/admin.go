package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/store"
)

// Issued tokens' lifetimes: a token without a ttl works for
// DefaultTokenTTL; none works longer than MaxTokenTTL, for people and
// service accounts alike (a CI pipeline's token is renewed once a year at
// the latest).
const (
	DefaultTokenTTL = 90 * 24 * time.Hour
	MaxTokenTTL     = 366 * 24 * time.Hour
)

// AdminReadMaxBytes bounds one AdminService request: its strings are
// short, its team map at most maxTokenTeams entries.
const AdminReadMaxBytes = 1 << 20

// Bounds on what a token request may carry.
const (
	maxSubjectLen     = 256
	maxDescriptionLen = 1024
	maxTokenTeams     = 100
	defaultAdminPage  = 100
	maxAdminPage      = 1000
)

// Admin implements apiv1connect.AdminServiceHandler: issued tokens and the
// audit log. Every handler authorizes the identity the authentication
// interceptor put in the call's context (auth.FromContext):
//
//   - a team admin may create, list and revoke tokens whose teams are all
//     teams they admin, with roles no higher than their own, and never a
//     platform admin's token;
//   - a platform admin may do anything, and alone lists the audit log.
//
// CreateToken and RevokeToken append an audit entry, allowed or denied.
type Admin struct {
	st     store.AuthStore
	clock  func() time.Time
	log    *slog.Logger
	forget func(id string)
	// webhookKey derives a team's webhook signing key (nil: none).
	webhookKey func(team string) []byte
}

var _ apiv1connect.AdminServiceHandler = (*Admin)(nil)

// NewAdmin returns the AdminService over st; clock (default time.Now)
// stamps creations, revocations and audit entries.
func NewAdmin(st store.AuthStore, clock func() time.Time) *Admin {
	if clock == nil {
		clock = time.Now
	}
	return &Admin{st: st, clock: clock, log: slog.New(slog.DiscardHandler), forget: func(string) {}}
}

// WithLogger sets the logger (default: discard).
func (a *Admin) WithLogger(l *slog.Logger) *Admin {
	if l != nil {
		a.log = l
	}
	return a
}

// WithForget sets what RevokeToken calls with the revoked token's ID, such
// as (*auth.Authn).Forget, so that this server stops accepting it at once
// rather than when its cached record expires.
func (a *Admin) WithForget(f func(id string)) *Admin {
	if f != nil {
		a.forget = f
	}
	return a
}

// CreateToken issues a token.
func (a *Admin) CreateToken(ctx context.Context, req *connect.Request[apiv1.CreateTokenRequest]) (*connect.Response[apiv1.CreateTokenResponse], error) {
	id := auth.FromContext(ctx)
	m := req.Msg
	teams := slices.Sorted(maps.Keys(m.Teams))
	audit := func(object, outcome, detail string) error {
		return a.audit(ctx, req.Peer().Addr, id, "CreateToken", teams, object, outcome, detail)
	}
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, auth.ErrUnauthenticated)
	}
	t, err := a.checkCreate(m)
	if err != nil {
		_ = audit("", "invalid_argument", err.Error())
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if err := mayManage(id, t); err != nil {
		_ = audit("", "denied", err.Error())
		return nil, connect.NewError(connect.CodePermissionDenied, err)
	}
	tok, tid, hash, err := auth.NewToken()
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	now := a.clock().UTC().Truncate(time.Millisecond)
	t.ID, t.Hash, t.CreatedBy, t.CreatedAt = tid, hash, id.Subject, now
	ttl := time.Duration(m.TtlSeconds) * time.Second
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	t.ExpiresAt = now.Add(ttl)
	if err := a.st.CreateToken(ctx, t); err != nil {
		err = storeErrorCode(err, "token", tid, connect.CodeInvalidArgument)
		_ = audit(tid, connect.CodeOf(err).String(), err.Error())
		return nil, err
	}
	// The token is issued only if its issue is on record: without the
	// audit entry the caller never sees the secret, and the record is
	// useless to anyone.
	if err := audit(tid, "ok", fmt.Sprintf("subject %s, %s", t.Subject, describeGrant(t))); err != nil {
		return nil, err
	}
	a.log.Info("token issued", "token", tid, "subject", t.Subject, "by", id.Subject, "expires", t.ExpiresAt)
	return connect.NewResponse(&apiv1.CreateTokenResponse{Token: tok, Record: tokenProto(t)}), nil
}

// checkCreate validates a CreateToken request into a token record.
func (a *Admin) checkCreate(m *apiv1.CreateTokenRequest) (*store.Token, error) {
	subject := strings.TrimSpace(m.Subject)
	if err := checkAdminText("subject", subject, maxSubjectLen); err != nil {
		return nil, err
	}
	if subject == "" {
		return nil, errors.New("subject: required (whom the token speaks for: alice@example.com, ci-nightly)")
	}
	kind := m.Kind
	if kind == "" {
		kind = string(auth.KindUser)
	}
	if kind != string(auth.KindUser) && kind != string(auth.KindServiceAccount) {
		return nil, fmt.Errorf("kind %q: want user or service-account", m.Kind)
	}
	if err := checkAdminText("description", m.Description, maxDescriptionLen); err != nil {
		return nil, err
	}
	if len(m.Teams) > maxTokenTeams {
		return nil, fmt.Errorf("teams: %d, at most %d", len(m.Teams), maxTokenTeams)
	}
	teams := make(map[string]string, len(m.Teams))
	for team, role := range m.Teams {
		if err := auth.CheckTeamName(team); err != nil {
			return nil, fmt.Errorf("teams: %w", err)
		}
		r, err := auth.ParseRole(role)
		if err != nil {
			return nil, fmt.Errorf("teams: team %q: %w", team, err)
		}
		teams[team] = r.String()
	}
	if len(teams) == 0 && !m.PlatformAdmin {
		return nil, errors.New("teams: a token needs a role in at least one team (team=viewer|member|admin), or platform_admin")
	}
	if m.TtlSeconds < 0 {
		return nil, fmt.Errorf("ttl_seconds: %d is negative", m.TtlSeconds)
	}
	if m.TtlSeconds > int64(MaxTokenTTL/time.Second) {
		return nil, fmt.Errorf("ttl_seconds: %d is over the maximum of %d (366 days)", m.TtlSeconds, int64(MaxTokenTTL/time.Second))
	}
	return &store.Token{Subject: subject, Kind: kind, Teams: teams, PlatformAdmin: m.PlatformAdmin, Description: m.Description}, nil
}

// mayManage says whether id may create or revoke t: a platform admin any
// token; a team admin one whose teams it all admins, with roles no higher
// than its own, not a platform admin's.
func mayManage(id *auth.Identity, t *store.Token) error {
	if t.PlatformAdmin || len(t.Teams) == 0 {
		if err := auth.Allow(id, auth.AdminAll, auth.Object{}); err != nil {
			return fmt.Errorf("a platform admin's token: %w", err)
		}
		return nil
	}
	for _, team := range slices.Sorted(maps.Keys(t.Teams)) {
		if err := auth.Allow(id, auth.ManageTokens, auth.Object{Team: team}); err != nil {
			return err
		}
		want, err := auth.ParseRole(t.Teams[team])
		if err != nil {
			return fmt.Errorf("%w: team %q: %v", auth.ErrDenied, team, err)
		}
		if have := id.Role(team); want > have {
			return fmt.Errorf("%w: %s is %s of team %q and cannot grant %s", auth.ErrDenied, id, have, team, want)
		}
	}
	return nil
}

// ListTokens lists tokens, newest first: a platform admin's all of them, a
// team admin's those of the team it names (or of its one team).
func (a *Admin) ListTokens(ctx context.Context, req *connect.Request[apiv1.ListTokensRequest]) (*connect.Response[apiv1.ListTokensResponse], error) {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, auth.ErrUnauthenticated)
	}
	m := req.Msg
	team := m.Team
	if team != "" {
		if err := auth.CheckTeamName(team); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
	}
	if !id.PlatformAdmin && team == "" {
		if admins := adminTeams(id); len(admins) == 1 && id.Kind != auth.KindTask {
			team = admins[0]
		} else {
			return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%w: %s may list only the tokens of a team it admins: name one (--team)", auth.ErrDenied, id))
		}
	}
	if team != "" {
		if err := auth.Allow(id, auth.ManageTokens, auth.Object{Team: team}); err != nil {
			return nil, connect.NewError(connect.CodePermissionDenied, err)
		}
	}
	size, err := adminPageSize(m.PageSize)
	if err != nil {
		return nil, err
	}
	if m.PageToken != "" {
		if err := auth.CheckTokenID(m.PageToken); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("page_token: %w", err))
		}
	}
	rows, err := a.st.ListTokens(ctx, store.TokenFilter{Team: team, Subject: m.Subject, IncludeRevoked: m.IncludeRevoked, Limit: size, Before: m.PageToken})
	if err != nil {
		return nil, storeErrorCode(err, "tokens of team", team, connect.CodeInvalidArgument)
	}
	resp := &apiv1.ListTokensResponse{}
	for i := range rows {
		// A team admin sees the tokens it could manage: those whose
		// every team it admins.
		if mayManage(id, &rows[i]) == nil {
			resp.Tokens = append(resp.Tokens, tokenProto(&rows[i]))
		}
	}
	if len(rows) == size {
		resp.NextPageToken = rows[len(rows)-1].ID
	}
	return connect.NewResponse(resp), nil
}

// RevokeToken revokes a token the caller may manage.
func (a *Admin) RevokeToken(ctx context.Context, req *connect.Request[apiv1.RevokeTokenRequest]) (*connect.Response[apiv1.RevokeTokenResponse], error) {
	id := auth.FromContext(ctx)
	tid := req.Msg.Id
	var teams []string
	audit := func(outcome, detail string) error {
		return a.audit(ctx, req.Peer().Addr, id, "RevokeToken", teams, tid, outcome, detail)
	}
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, auth.ErrUnauthenticated)
	}
	if err := auth.CheckTokenID(tid); err != nil {
		tid = "" // not a token ID: not worth recording as the object
		_ = audit("invalid_argument", err.Error())
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	t, err := a.st.GetToken(ctx, tid)
	if err != nil {
		err = storeError(err, "token", tid)
		_ = audit(connect.CodeOf(err).String(), err.Error())
		return nil, err
	}
	teams = slices.Sorted(maps.Keys(t.Teams))
	if err := mayManage(id, t); err != nil {
		_ = audit("denied", err.Error())
		return nil, connect.NewError(connect.CodePermissionDenied, err)
	}
	if err := a.st.RevokeToken(ctx, tid, a.clock().UTC().Truncate(time.Millisecond)); err != nil {
		err = storeError(err, "token", tid)
		_ = audit(connect.CodeOf(err).String(), err.Error())
		return nil, err
	}
	a.forget(tid)
	if t, err = a.st.GetToken(ctx, tid); err != nil {
		return nil, storeError(err, "token", tid)
	}
	if err := audit("ok", "subject "+t.Subject); err != nil {
		return nil, err
	}
	a.log.Info("token revoked", "token", tid, "subject", t.Subject, "by", id.Subject)
	return connect.NewResponse(&apiv1.RevokeTokenResponse{Record: tokenProto(t)}), nil
}

// ListAudit lists audit entries, newest first; platform admins only.
func (a *Admin) ListAudit(ctx context.Context, req *connect.Request[apiv1.ListAuditRequest]) (*connect.Response[apiv1.ListAuditResponse], error) {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, auth.ErrUnauthenticated)
	}
	if err := auth.Allow(id, auth.ReadAudit, auth.Object{}); err != nil {
		return nil, connect.NewError(connect.CodePermissionDenied, err)
	}
	m := req.Msg
	size, err := adminPageSize(m.PageSize)
	if err != nil {
		return nil, err
	}
	var before int64
	if m.PageToken != "" {
		before, err = strconv.ParseInt(m.PageToken, 10, 64)
		if err != nil || before <= 0 {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("page_token %q: want the next_page_token of a previous ListAudit", m.PageToken))
		}
	}
	rows, err := a.st.ListAudit(ctx, store.AuditFilter{Subject: m.Subject, Team: m.Team, Limit: size, Before: before})
	if err != nil {
		return nil, storeErrorCode(err, "audit of", m.Subject+m.Team, connect.CodeInvalidArgument)
	}
	resp := &apiv1.ListAuditResponse{Entries: make([]*apiv1.AuditEntry, 0, len(rows))}
	for _, e := range rows {
		resp.Entries = append(resp.Entries, &apiv1.AuditEntry{
			Seq: e.Seq, At: timestamppb.New(e.At), Subject: e.Subject, TokenId: e.TokenID, Action: e.Action,
			Team: e.Team, Object: e.Object, Remote: e.Remote, Outcome: e.Outcome, Detail: e.Detail,
		})
	}
	if len(rows) == size {
		resp.NextPageToken = strconv.FormatInt(rows[len(rows)-1].Seq, 10)
	}
	return connect.NewResponse(resp), nil
}

// audit appends one entry per team the call concerns (one with no team
// when it concerns none), so that listing a team's audit finds it.
func (a *Admin) audit(ctx context.Context, remote string, id *auth.Identity, action string, teams []string, object, outcome, detail string) error {
	var subject, tokenID string
	if id != nil {
		subject, tokenID = id.Subject, id.TokenID
	}
	if len(detail) > maxDescriptionLen {
		detail = detail[:maxDescriptionLen]
		for !utf8.ValidString(detail) {
			detail = detail[:len(detail)-1]
		}
	}
	at := a.clock().UTC()
	if len(teams) == 0 {
		teams = []string{""}
	}
	entries := make([]store.AuditEntry, 0, len(teams))
	for _, team := range teams {
		entries = append(entries, store.AuditEntry{At: at, Subject: subject, TokenID: tokenID, Action: action, Team: team, Object: object, Remote: remote, Outcome: outcome, Detail: detail})
	}
	// A denied or failed call is refused whether or not its record is
	// written; a successful one fails with it.
	if err := a.st.AppendAudit(context.WithoutCancel(ctx), entries); err != nil {
		a.log.Error("audit entry not written", "action", action, "object", object, "outcome", outcome, "err", err)
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("store unavailable: the audit entry of %s %s was not written: %v; retry", action, object, err))
	}
	return nil
}

func adminPageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("page_size %d is negative", n))
	case n == 0:
		return defaultAdminPage, nil
	case n > maxAdminPage:
		return maxAdminPage, nil
	}
	return int(n), nil
}

// adminTeams lists the teams id admins.
func adminTeams(id *auth.Identity) []string {
	var out []string
	for _, team := range id.TeamNames() {
		if id.Teams[team] >= auth.RoleAdmin {
			out = append(out, team)
		}
	}
	return out
}

func describeGrant(t *store.Token) string {
	parts := make([]string, 0, len(t.Teams)+1)
	for _, team := range slices.Sorted(maps.Keys(t.Teams)) {
		parts = append(parts, team+"="+t.Teams[team])
	}
	if t.PlatformAdmin {
		parts = append(parts, "platform admin")
	}
	return fmt.Sprintf("%s, %s until %s", t.Kind, strings.Join(parts, ","), t.ExpiresAt.Format(time.RFC3339))
}

func checkAdminText(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s: %d bytes, at most %d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s: not valid UTF-8", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s: contains control character %U", field, r)
		}
	}
	return nil
}

func tokenProto(t *store.Token) *apiv1.Token {
	p := &apiv1.Token{
		Id: t.ID, Subject: t.Subject, Kind: t.Kind, Teams: t.Teams, PlatformAdmin: t.PlatformAdmin,
		Description: t.Description, CreatedBy: t.CreatedBy,
		CreatedAt: timestamppb.New(t.CreatedAt), ExpiresAt: timestamppb.New(t.ExpiresAt),
	}
	if !t.RevokedAt.IsZero() {
		p.RevokedAt = timestamppb.New(t.RevokedAt)
	}
	return p
}
