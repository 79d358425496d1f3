package runner

import (
	"context"
	"errors"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// Why implements RunnerService.Why (in progress: issue 14).
func (s Service) Why(ctx context.Context, req *connect.Request[apiv1.WhyRequest]) (*connect.Response[apiv1.WhyResponse], error) {
	return nil, connect.NewError(connect.CodeUnimplemented, errors.New("why: not yet"))
}
