package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// WithWebhookKey sets how a team's webhook signing key is derived
// (GetWebhookKey); unset, GetWebhookKey is unimplemented.
func (a *Admin) WithWebhookKey(key func(team string) []byte) *Admin {
	a.webhookKey = key
	return a
}

// GetWebhookKey returns the key a team's webhook events are signed with,
// to the team's admins and platform admins. It is a read of a secret:
// every call, allowed or denied, is audited (never the key itself).
func (a *Admin) GetWebhookKey(ctx context.Context, req *connect.Request[apiv1.GetWebhookKeyRequest]) (*connect.Response[apiv1.GetWebhookKeyResponse], error) {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, auth.ErrUnauthenticated)
	}
	team := req.Msg.Team
	var teams []string
	object := ""
	if auth.CheckTeamName(team) == nil {
		teams, object = []string{team}, "webhook-key/"+team
	}
	audit := func(outcome, detail string) error {
		return a.audit(ctx, req.Peer().Addr, id, "GetWebhookKey", teams, object, outcome, detail)
	}
	if err := auth.CheckTeamName(team); err != nil {
		_ = audit("invalid_argument", err.Error())
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("team: %w", err))
	}
	// The team's admins manage its tokens; the same role reads its key.
	if err := auth.Allow(id, auth.ManageTokens, auth.Object{Team: team}); err != nil {
		_ = audit("denied", err.Error())
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("the webhook key of team %q is for its admins and platform admins: %w", team, err))
	}
	if a.webhookKey == nil {
		_ = audit("unimplemented", "this server signs no webhooks")
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("this server signs no webhooks (no webhook key)"))
	}
	// The entry is written before the key is returned: a key nobody
	// could audit is never shown.
	if err := audit("ok", "read of the team's webhook signing key"); err != nil {
		return nil, err
	}
	a.log.Info("webhook key read", "team", team, "by", id.Subject)
	return connect.NewResponse(&apiv1.GetWebhookKeyResponse{KeyHex: hex.EncodeToString(a.webhookKey(team))}), nil
}
