package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/spec"
	"github.com/haul-dev/haul/internal/store"
)

// retryStateNames are the task states RetryJob accepts.
var retryStateNames = []store.TaskState{store.TaskFailed, store.TaskUpstreamFailed, store.TaskCancelled, store.TaskSucceeded}

// RetryJob runs some of an ended job's tasks again inside the job (see
// store.Store.RetryTasks); the runner that owns the job's shard loads it
// as a pending job.
func (g *Gateway) RetryJob(ctx context.Context, req *connect.Request[apiv1.RetryJobRequest]) (*connect.Response[apiv1.RetryJobResponse], error) {
	m, err := g.mutate(ctx, "RetryJob", req.Peer().Addr)
	if err != nil {
		return nil, err
	}
	m.object = req.Msg.JobId
	resp, err := g.retryJob(ctx, m, req.Msg)
	return resp, m.end(ctx, err)
}

func (g *Gateway) retryJob(ctx context.Context, m *mutation, req *apiv1.RetryJobRequest) (*connect.Response[apiv1.RetryJobResponse], error) {
	f := store.RetryFilter{KeyGlob: req.KeyGlob}
	for _, s := range req.States {
		st := store.TaskState(s)
		found := false
		for _, ok := range retryStateNames {
			found = found || ok == st
		}
		if !found {
			names := make([]string, len(retryStateNames))
			for i, s := range retryStateNames {
				names[i] = string(s)
			}
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("state %q: tasks can be retried from the states %s", s, strings.Join(names, ", ")))
		}
		f.States = append(f.States, st)
	}
	j, err := g.job(ctx, req.JobId)
	if err != nil {
		return nil, err
	}
	if err := m.authorizeJob(ctx, auth.RetryJob, j); err != nil {
		return nil, err
	}
	res, err := g.cfg.Store.RetryTasks(ctx, j.ID, f)
	if errors.Is(err, store.ErrRejected) {
		m.detail = "refused"
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	if err != nil {
		return nil, storeError(err, "job", j.ID)
	}
	m.detail = fmt.Sprintf("%d tasks to run again", res.Retried)
	g.cfg.Logger.Info("job retried", "job", j.ID, "tasks", res.Retried, "by", m.id.Subject)
	g.cfg.Notify()
	if j, err = g.job(ctx, j.ID); err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.RetryJobResponse{Job: JobProto(j), Retried: res.Retried, Keys: res.Matched}), nil
}

// RerunJob submits a new job from a job's stored spec, with the job's
// parameters overlaid by the request's, as a submit by the caller.
func (g *Gateway) RerunJob(ctx context.Context, req *connect.Request[apiv1.RerunJobRequest]) (*connect.Response[apiv1.SubmitJobResponse], error) {
	m, err := g.mutate(ctx, "RerunJob", req.Peer().Addr)
	if err != nil {
		return nil, err
	}
	m.object = req.Msg.JobId
	resp, err := g.rerunJob(ctx, m, req.Msg)
	return resp, m.end(ctx, err)
}

func (g *Gateway) rerunJob(ctx context.Context, m *mutation, req *apiv1.RerunJobRequest) (*connect.Response[apiv1.SubmitJobResponse], error) {
	j, err := g.job(ctx, req.JobId)
	if err != nil {
		return nil, err
	}
	if err := m.authorizeJob(ctx, auth.ReadJob, j); err != nil {
		return nil, err
	}
	if names := spec.SecretNames(j.Spec); len(names) > 0 {
		m.detail = "the spec has secret_env"
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf(
			"job %s cannot be rerun: its spec has secret_env (%s), whose values are not stored; submit the spec file again with `haul job submit FILE`",
			j.ID, strings.Join(names, ", ")))
	}
	if len(j.Spec) == 0 {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("job %s cannot be rerun: its spec is not stored; submit the spec file again with `haul job submit FILE`", j.ID))
	}
	params := maps.Clone(j.Params)
	if params == nil && len(req.Params) > 0 {
		params = map[string]string{}
	}
	maps.Copy(params, req.Params)
	// The submit authorizes the caller on the spec's team and audits the
	// new job in this call's record.
	sub := connect.NewRequest(&apiv1.SubmitJobRequest{Spec: j.Spec, Filename: "job " + j.ID, Params: params})
	return g.submitJob(ctx, m, sub)
}

// notificationProto converts a job's webhook and its delivery (nil: none).
func notificationProto(n *store.JobNotify) *apiv1.Notification {
	if n == nil {
		return nil
	}
	return &apiv1.Notification{Webhook: n.Webhook, On: n.On, State: n.State, Attempts: n.Attempts,
		LastError: n.LastError, DeliveredAt: ts(n.DeliveredAt), Event: n.Event}
}
