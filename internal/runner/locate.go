package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/store"
)

// Locator answers a worker's Locate: the address of the runner that owns
// its job's shard now, read from the shard's lease. Gateways and runners
// both serve it, so that a worker whose runner died asks the gateways'
// address and finds the next owner.
type Locator struct {
	Store store.Store
	// Key is the runner group's worker key (Config.WorkerKey): only a
	// worker's own credential is answered.
	Key   []byte
	Clock func() time.Time
}

// Locate implements TaskHostService.Locate.
func (l *Locator) Locate(ctx context.Context, req *connect.Request[taskhostv1.LocateRequest]) (*connect.Response[taskhostv1.LocateResponse], error) {
	m := req.Msg
	if !provesWorker(l.Key, m.JobId, m.Tier, m.WorkerId, req.Header().Get("Authorization")) {
		return nil, connect.NewError(connect.CodeUnauthenticated, errWorkerCredential)
	}
	now := time.Now()
	if l.Clock != nil {
		now = l.Clock()
	}
	addr, err := ShardOwner(ctx, l.Store, store.ShardOf(m.JobId), now)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&taskhostv1.LocateResponse{RunnerUrl: addr}), nil
}

// ShardOwner returns the address of the runner holding shard's lease at
// now, or a connect Unavailable error while nobody holds it (a failover
// under way).
func ShardOwner(ctx context.Context, st store.Store, shard int, now time.Time) (string, error) {
	name := store.ShardLease(shard)
	ls, err := st.ListLeases(ctx, name)
	if err != nil {
		return "", connect.NewError(connect.CodeUnavailable, fmt.Errorf("read the lease of shard %d: %w", shard, err))
	}
	for _, l := range ls {
		if l.Name == name && l.ExpiresAt.After(now) && l.Address != "" {
			return l.Address, nil
		}
	}
	return "", connect.NewError(connect.CodeUnavailable, fmt.Errorf("no runner owns shard %d now (a failover is under way); retry", shard))
}

// Locate implements TaskHostService.Locate on a runner, as Locator does.
func (r *Runner) Locate(ctx context.Context, req *connect.Request[taskhostv1.LocateRequest]) (*connect.Response[taskhostv1.LocateResponse], error) {
	l := Locator{Store: r.cfg.Store, Key: r.workerKey, Clock: r.now}
	return l.Locate(ctx, req)
}

// errNotGateway is what a gateway's TaskHostService answers to Poll.
var errNotGateway = errors.New("this is a gateway: poll the runner that Locate names")

// LocatorService serves TaskHostService on a gateway: Locate only.
type LocatorService struct{ Locator }

// Poll refuses: gateways do not run jobs. Unavailable, so that a worker
// pointed here asks Locate and goes to its runner.
func (LocatorService) Poll(context.Context, *connect.Request[taskhostv1.PollRequest]) (*connect.Response[taskhostv1.PollResponse], error) {
	return nil, connect.NewError(connect.CodeUnavailable, errNotGateway)
}
