package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// OIDCConfig configures the OIDC issuer whose ID tokens the server accepts.
type OIDCConfig struct {
	// Issuer is the issuer URL; its /.well-known/openid-configuration
	// names the signing keys.
	Issuer string
	// Audience is the client ID the tokens must be issued to (their aud).
	Audience string
	// UserClaim names the claim that becomes the identity's subject
	// (default "email"; when the token lacks it, or says
	// email_verified: false for "email", the subject is "sub").
	UserClaim string
	// TeamsClaim names the claim listing the user's groups (default
	// "groups"): a string or a list of strings. A group "team" makes the
	// user a member of team; "team:viewer", "team:member" or "team:admin"
	// sets the role. Values that are neither are ignored (logged at debug).
	TeamsClaim string
	// AdminGroup is a group value that makes the user a platform admin
	// ("" : none does).
	AdminGroup string
	// HTTPClient fetches the discovery document and keys (default
	// http.DefaultClient).
	HTTPClient *http.Client
	// Now is the clock expiry is checked against (default time.Now).
	Now func() time.Time
}

// OIDC verifies ID tokens from one issuer and maps their claims to an
// Identity. It discovers the issuer's keys on first use and again after a
// failed discovery, so a server starts while its issuer is away.
type OIDC struct {
	cfg OIDCConfig
	log *slog.Logger

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
}

// NewOIDC returns a verifier for cfg; it checks the configuration but
// contacts the issuer only when the first token arrives.
func NewOIDC(cfg OIDCConfig, log *slog.Logger) (*OIDC, error) {
	if cfg.Issuer == "" {
		return nil, errors.New("oidc: no issuer URL")
	}
	if !strings.HasPrefix(cfg.Issuer, "https://") && !strings.HasPrefix(cfg.Issuer, "http://") {
		return nil, fmt.Errorf("oidc issuer %q: want an http(s):// URL", cfg.Issuer)
	}
	if cfg.Audience == "" {
		return nil, errors.New("oidc: no audience (the client ID tokens are issued to)")
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = "email"
	}
	if cfg.TeamsClaim == "" {
		cfg.TeamsClaim = "groups"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &OIDC{cfg: cfg, log: log}, nil
}

// ErrIssuerUnavailable is wrapped when the issuer's discovery document or
// keys cannot be fetched: the token may be fine, the server cannot tell now.
var ErrIssuerUnavailable = errors.New("oidc issuer unavailable")

func (o *OIDC) getVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.verifier != nil {
		return o.verifier, nil
	}
	// The provider keeps this context for fetching keys later: it must
	// outlive the request that happens to come first.
	base := oidc.ClientContext(context.WithoutCancel(ctx), o.cfg.HTTPClient)
	dctx, cancel := context.WithTimeout(base, 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(dctx, o.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery at %s: %v", ErrIssuerUnavailable, o.cfg.Issuer, err)
	}
	o.verifier = p.VerifierContext(base, &oidc.Config{ClientID: o.cfg.Audience, Now: o.cfg.Now})
	return o.verifier, nil
}

// Verify checks raw (signature, issuer, audience, expiry) and returns the
// identity its claims name. A token it refuses gives an error wrapping
// ErrUnauthenticated; an issuer it cannot reach, ErrIssuerUnavailable.
func (o *OIDC) Verify(ctx context.Context, raw string) (*Identity, error) {
	v, err := o.getVerifier(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		var exp *oidc.TokenExpiredError
		switch {
		case errors.As(err, &exp):
			return nil, fmt.Errorf("%w: the OIDC token expired at %s", ErrUnauthenticated, exp.Expiry.UTC().Format(time.RFC3339))
		case strings.Contains(err.Error(), "fetching keys"):
			return nil, fmt.Errorf("%w: keys of %s: %v", ErrIssuerUnavailable, o.cfg.Issuer, err)
		}
		return nil, fmt.Errorf("%w: OIDC token refused: %v", ErrUnauthenticated, err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: OIDC token claims: %v", ErrUnauthenticated, err)
	}
	return o.identity(tok.Subject, claims)
}

// identity maps verified claims to an Identity.
func (o *OIDC) identity(sub string, claims map[string]any) (*Identity, error) {
	subject := ""
	if s, ok := claims[o.cfg.UserClaim].(string); ok {
		subject = s
		if o.cfg.UserClaim == "email" {
			if v, ok := claims["email_verified"].(bool); ok && !v {
				subject = ""
			}
		}
	}
	if subject == "" {
		subject = sub
	}
	if subject == "" {
		return nil, fmt.Errorf("%w: the OIDC token names no user (neither %q nor sub)", ErrUnauthenticated, o.cfg.UserClaim)
	}
	id := &Identity{Subject: subject, Kind: KindUser, Teams: map[string]Role{}, Via: "oidc"}
	var groups []string
	switch g := claims[o.cfg.TeamsClaim].(type) {
	case string:
		groups = []string{g}
	case []any:
		for _, v := range g {
			if s, ok := v.(string); ok {
				groups = append(groups, s)
			} else {
				o.log.Debug("oidc: ignoring a non-string group", "subject", subject, "claim", o.cfg.TeamsClaim)
			}
		}
	case nil:
	default:
		o.log.Debug("oidc: ignoring a teams claim that is neither a string nor a list", "subject", subject, "claim", o.cfg.TeamsClaim)
	}
	for _, g := range groups {
		if o.cfg.AdminGroup != "" && g == o.cfg.AdminGroup {
			id.PlatformAdmin = true
			continue
		}
		team, role, err := ParseGroup(g)
		if err != nil {
			o.log.Debug("oidc: ignoring a group", "subject", subject, "group", g, "why", err)
			continue
		}
		if role > id.Teams[team] {
			id.Teams[team] = role
		}
	}
	return id, nil
}

// ParseGroup reads an OIDC group value: "team" (member) or
// "team:viewer|member|admin".
func ParseGroup(g string) (team string, role Role, err error) {
	team, r, hasRole := strings.Cut(g, ":")
	role = RoleMember
	if hasRole {
		if role, err = ParseRole(r); err != nil {
			return "", RoleNone, fmt.Errorf("group %q: %w", g, err)
		}
	}
	if err := CheckTeamName(team); err != nil {
		return "", RoleNone, fmt.Errorf("group %q: %w", g, err)
	}
	return team, role, nil
}
