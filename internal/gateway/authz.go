package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/store"
)

// DefaultTeam is the team (namespace) of a job whose spec names none: the
// spec compiler records it as "default", and a job stored without a
// namespace is authorized as the default team's.
const DefaultTeam = "default"

// Default mutation rate limits per identity subject.
const (
	DefaultMutationsPerSecond = 20
	DefaultMutationBurst      = 100
)

// howToAuthenticate is what an unauthenticated caller is told.
const howToAuthenticate = "send `Authorization: Bearer <token>`: on the server's machine, the haul CLI of the user that runs `haul up` finds the admin token in <data dir>/admin-token by itself; elsewhere set --token or HAUL_API_TOKEN to a token from `haul token create` (ask an admin), or an ID token of the configured OIDC issuer"

// Interceptor returns the Connect interceptor that authenticates every
// call of a handler it is installed on (the JobService, the AdminService):
// it reads `Authorization: Bearer <token>`, asks the gateway's
// Authenticator who the token proves, and puts that identity in the
// call's context (auth.WithIdentity) for the handler to authorize. A call
// without a valid token is answered unauthenticated, saying how to get
// one; when the authenticator cannot tell now (its store is away),
// unavailable. With no Authenticator configured every call is refused.
// Works for unary calls and server streams (GetLogs).
//
// With Config.Metrics set, the API metrics interceptor wraps it, so that
// every call is counted under the code it was answered with, a refused
// credential (unauthenticated) or a store away (unavailable) included.
func (g *Gateway) Interceptor() connect.Interceptor {
	authn := &authInterceptor{authn: g.cfg.Auth, log: g.cfg.Logger}
	if g.cfg.Metrics == nil {
		return authn
	}
	return chain{outer: g.cfg.Metrics.Interceptor(apiv1.File_haul_api_v1_api_proto, apiv1.File_haul_api_v1_admin_proto), inner: authn}
}

// chain applies outer around inner: outer sees each call first and its
// result last.
type chain struct{ outer, inner connect.Interceptor }

func (c chain) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return c.outer.WrapUnary(c.inner.WrapUnary(next))
}

func (c chain) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return c.outer.WrapStreamingClient(c.inner.WrapStreamingClient(next))
}

func (c chain) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return c.outer.WrapStreamingHandler(c.inner.WrapStreamingHandler(next))
}

// NewInterceptor is Interceptor for handlers built without a Gateway.
func NewInterceptor(a auth.Authenticator, log *slog.Logger) connect.Interceptor {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &authInterceptor{authn: a, log: log}
}

type authInterceptor struct {
	authn auth.Authenticator
	log   *slog.Logger
}

func (a *authInterceptor) authenticate(ctx context.Context, procedure, peer string, h interface{ Get(string) string }) (context.Context, error) {
	if a.authn == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("this server has no authenticator configured and refuses every call"))
	}
	bearer, ok := bearerToken(h.Get("Authorization"))
	if !ok {
		a.log.Info("call without credential refused", "procedure", procedure, "remote", peer)
		return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("no credential: %s", howToAuthenticate))
	}
	id, err := a.authn.Authenticate(ctx, bearer)
	if err != nil {
		if errors.Is(err, auth.ErrUnauthenticated) {
			// The authenticator's error names what is wrong with the
			// token (expired, revoked, unknown), never the token.
			a.log.Info("call with invalid credential refused", "procedure", procedure, "remote", peer, "err", err)
			return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("%w; %s", err, howToAuthenticate))
		}
		if errors.Is(err, context.Canceled) {
			return nil, connect.NewError(connect.CodeCanceled, err)
		}
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("cannot check the credential now: %w; retry", err))
	}
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("the credential proves no identity; %s", howToAuthenticate))
	}
	return auth.WithIdentity(ctx, id), nil
}

// bearerToken reads "Bearer <token>" (the scheme case-insensitively).
func bearerToken(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "bearer") || tok == "" {
		return "", false
	}
	return tok, true
}

func (a *authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		ctx, err := a.authenticate(ctx, req.Spec().Procedure, req.Peer().Addr, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a *authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.authenticate(ctx, conn.Spec().Procedure, conn.Peer().Addr, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// teamOf is the team a job belongs to.
func teamOf(j *store.Job) string {
	if j.Namespace == "" {
		return DefaultTeam
	}
	return j.Namespace
}

// authorizeJob decides whether the caller may take action on job j: nil,
// or the error to answer. A caller who may not see the job's team at all
// is told the job does not exist, in the very words a missing job gets,
// so that no one learns which job IDs exist in other teams; a caller who
// sees it but lacks the role is told what is missing (permission_denied).
func (g *Gateway) authorizeJob(ctx context.Context, action auth.Action, j *store.Job) error {
	id := auth.FromContext(ctx)
	if id == nil {
		return connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("no identity: %s", howToAuthenticate))
	}
	err := auth.Allow(id, action, auth.Object{Team: teamOf(j), Job: j.ID})
	if err == nil {
		return nil
	}
	if !auth.Visible(id, teamOf(j)) && !(id.Kind == auth.KindTask && id.Job == j.ID) {
		return notFoundJob(j.ID)
	}
	return connect.NewError(connect.CodePermissionDenied, err)
}

// notFoundJob is the answer for a job that does not exist, or that the
// caller may not know exists: storeError's words for store.ErrNotFound.
func notFoundJob(id string) error {
	return storeError(store.ErrNotFound, "job", id)
}

// mutation is one mutating call on its way: rate limited on entry, and
// recorded in the audit log when it ends.
type mutation struct {
	g      *Gateway
	id     *auth.Identity
	action string
	remote string
	team   string
	object string
	detail string
	// denied is set when authorization refused the call, whatever code
	// the caller was answered (not_found hides another team's job).
	denied bool
}

// mutate starts a mutating call: it charges the caller's rate limit and
// returns the record that end completes. A call over the limit is
// answered resource_exhausted (and audited as such).
func (g *Gateway) mutate(ctx context.Context, action, remote string) (*mutation, error) {
	m := &mutation{g: g, id: auth.FromContext(ctx), action: action, remote: remote}
	if m.id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("no identity: %s", howToAuthenticate))
	}
	if err := g.limits.allow(m.id.Subject, g.cfg.Clock()); err != nil {
		m.end(ctx, err)
		return nil, err
	}
	return m, nil
}

// end records the call's outcome in the audit log and returns err as it
// is. A failure to write the audit entry is logged; the call's answer
// stands (the change, if any, is already made).
func (m *mutation) end(ctx context.Context, err error) error {
	if m.g.audit == nil {
		return err
	}
	e := store.AuditEntry{
		At: m.g.cfg.Clock(), Subject: m.id.Subject, TokenID: m.id.TokenID, Action: m.action,
		Team: m.team, Object: m.object, Remote: m.remote, Outcome: outcome(err), Detail: m.detail,
	}
	if m.denied {
		e.Outcome = "denied"
	}
	if e.Subject == "" {
		e.Subject = m.id.String()
	}
	// The entry is written even when the caller went away.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if aerr := m.g.audit.AppendAudit(actx, []store.AuditEntry{e}); aerr != nil {
		m.g.cfg.Logger.Error("audit entry not stored", "action", e.Action, "subject", e.Subject, "team", e.Team, "object", e.Object, "outcome", e.Outcome, "err", aerr)
	}
	return err
}

// outcome names how a call ended for the audit log: "ok", "denied" (also
// for a job hidden behind not_found: it was authorization that refused)
// or the error's code.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		if ce.Code() == connect.CodePermissionDenied {
			return "denied"
		}
		return ce.Code().String()
	}
	return connect.CodeUnknown.String()
}

// authorizeMutation is authorizeJob for a mutating call: the decision
// names the job in the audit record either way, and a refusal is
// recorded as denied.
func (m *mutation) authorizeJob(ctx context.Context, action auth.Action, j *store.Job) error {
	m.team, m.object = teamOf(j), j.ID
	err := m.g.authorizeJob(ctx, action, j)
	if err != nil {
		m.denied = true
		m.detail = "the caller may not see the team (answered not_found)"
		if ce := new(connect.Error); errors.As(err, &ce) && ce.Code() != connect.CodeNotFound {
			m.detail = ce.Message()
		}
	}
	return err
}

// limiters keeps one token bucket of mutating calls per identity subject.
type limiters struct {
	mu    sync.Mutex
	every rate.Limit
	burst int
	m     map[string]*rate.Limiter
}

// maxLimiters bounds the buckets kept: past it, the buckets that are full
// again (their subjects idle) are dropped.
const maxLimiters = 10000

func newLimiters(perSecond float64, burst int) *limiters {
	if perSecond <= 0 {
		perSecond = DefaultMutationsPerSecond
	}
	if burst <= 0 {
		burst = DefaultMutationBurst
	}
	return &limiters{every: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}}
}

// allow takes one mutation from subject's bucket, or answers
// resource_exhausted saying when to retry (also as a Retry-After header,
// in whole seconds).
func (l *limiters) allow(subject string, now time.Time) error {
	l.mu.Lock()
	lim, ok := l.m[subject]
	if !ok {
		if len(l.m) >= maxLimiters {
			for k, v := range l.m {
				if v.TokensAt(now) >= float64(l.burst) {
					delete(l.m, k)
				}
			}
			if len(l.m) >= maxLimiters {
				// Every bucket is in use: start over rather than grow.
				clear(l.m)
			}
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.m[subject] = lim
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if r.OK() && delay == 0 {
		return nil
	}
	r.CancelAt(now)
	// Rounded up to a tenth of a second: never "retry in 0s".
	wait := (delay + 99*time.Millisecond).Truncate(100 * time.Millisecond)
	err := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("%s has made more than %d changes at once (%g a second allowed on average): retry in %s", subject, l.burst, float64(l.every), wait))
	err.Meta().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(delay.Seconds())))))
	return err
}
