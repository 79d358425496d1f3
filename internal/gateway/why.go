package gateway

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/store"
)

// Explainer says what keeps a job's tasks, or one task, from running:
// the runner that owns the job (*runner.Runner in one process,
// *runner.RemoteAppender from a gateway).
type Explainer interface {
	Why(ctx context.Context, jobID, key string) (*apiv1.WhyResponse, error)
}

// Why implements JobService.Why: the job's viewers may ask. An ended job,
// or a task that runs or ended, has no blocker; otherwise the runner that
// owns the job answers from its state.
func (g *Gateway) Why(ctx context.Context, req *connect.Request[apiv1.WhyRequest]) (*connect.Response[apiv1.WhyResponse], error) {
	m := req.Msg
	var j *store.Job
	var err error
	state := ""
	if m.TaskKey != "" {
		var t *store.Task
		j, t, err = g.task(ctx, m.JobId, m.TaskKey, auth.ReadJob, nil)
		if err != nil {
			return nil, err
		}
		state = string(t.State)
		if t.State.Terminal() || t.State == store.TaskRunning {
			return connect.NewResponse(&apiv1.WhyResponse{JobId: j.ID, TaskKey: t.Key, State: state}), nil
		}
	} else {
		if j, err = g.job(ctx, m.JobId); err != nil {
			return nil, err
		}
		if err := g.authorizeJob(ctx, auth.ReadJob, j); err != nil {
			return nil, err
		}
		state = string(j.State)
	}
	if j.State.Terminal() {
		return connect.NewResponse(&apiv1.WhyResponse{JobId: j.ID, TaskKey: m.TaskKey, State: state}), nil
	}
	if g.cfg.Explainer == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("this server cannot reach the runners to explain a job"))
	}
	resp, err := g.cfg.Explainer.Why(ctx, j.ID, m.TaskKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("task %q of job %s: not found", m.TaskKey, j.ID))
	case err != nil:
		// No runner owns the job's shard now: that is the answer.
		return connect.NewResponse(&apiv1.WhyResponse{JobId: j.ID, TaskKey: m.TaskKey, State: state, Blockers: []*apiv1.Blocker{{
			Kind: "runner", Tier: -1, Detail: "no runner answers for the job's shard now (a failover, or no runner is up): " + err.Error()}}}), nil
	}
	return connect.NewResponse(resp), nil
}
