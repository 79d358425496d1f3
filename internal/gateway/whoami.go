package gateway

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// WhoAmI returns the caller's identity, as the server sees it.
func (g *Gateway) WhoAmI(ctx context.Context, _ *connect.Request[apiv1.WhoAmIRequest]) (*connect.Response[apiv1.WhoAmIResponse], error) {
	id := auth.FromContext(ctx)
	if id == nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, fmt.Errorf("no identity: %s", howToAuthenticate))
	}
	resp := &apiv1.WhoAmIResponse{Subject: id.Subject, Kind: string(id.Kind), PlatformAdmin: id.PlatformAdmin, Via: id.Via, Teams: map[string]string{}}
	for team, role := range id.Teams {
		resp.Teams[team] = role.String()
	}
	return connect.NewResponse(resp), nil
}
