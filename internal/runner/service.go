package runner

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	runnerv1 "github.com/haul-dev/haul/internal/gen/haul/runner/v1"
	"github.com/haul-dev/haul/internal/gen/haul/runner/v1/runnerv1connect"
	"github.com/haul-dev/haul/internal/store"
)

// GatewayCredential is what gateways send runners as "Authorization:
// Bearer": derived from the runner group's key, so that every gateway and
// runner of a store agree on it without another secret to distribute.
func GatewayCredential(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("haul gateway to runner\x00"))
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(m.Sum(nil))
}

// Service serves RunnerService (the gateways' calls) on a runner.
type Service struct {
	Runner *Runner
}

var _ runnerv1connect.RunnerServiceHandler = Service{}

// checkGateway accepts a call that carries the gateway credential.
func (s Service) checkGateway(h http.Header) error {
	got, _ := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(got), []byte(GatewayCredential(s.Runner.workerKey))) != 1 {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("runner service: the gateway credential was not accepted"))
	}
	return nil
}

// AddTasks implements RunnerService.AddTasks with Runner.AddTasks.
func (s Service) AddTasks(ctx context.Context, req *connect.Request[runnerv1.AddTasksRequest]) (*connect.Response[runnerv1.AddTasksResponse], error) {
	if err := s.checkGateway(req.Header()); err != nil {
		return nil, err
	}
	m := req.Msg
	tasks := make([]store.Task, len(m.Tasks))
	for i, t := range m.Tasks {
		tasks[i] = store.Task{Key: t.Key, Argv: t.Argv, Env: t.Env, Cwd: t.Cwd, After: t.After,
			Tier: t.Tier, RunTier: t.Tier, Retries: t.Retries, TimeoutMS: t.TimeoutMs}
	}
	n, err := s.Runner.AddTasks(ctx, m.JobId, m.Adder, m.Attempt, tasks)
	switch {
	case err == nil:
		return connect.NewResponse(&runnerv1.AddTasksResponse{TaskCount: n}), nil
	case errors.Is(err, ErrAppend):
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, ErrNotOwner), errors.Is(err, store.ErrFenced):
		return nil, connect.NewError(connect.CodeUnavailable, err)
	}
	return nil, connect.NewError(connect.CodeInternal, err)
}

// RemoteAppender adds tasks through the runner that owns the job's shard:
// what a gateway running apart from the runners uses (gateway.Appender).
type RemoteAppender struct {
	Store  store.Store
	Key    []byte
	Client *http.Client
	// Wait bounds how long a call looks for the shard's owner through a
	// failover (default 15s).
	Wait time.Duration
}

// AddTasks implements gateway.Appender.
func (a *RemoteAppender) AddTasks(ctx context.Context, jobID, adder string, attempt int32, tasks []store.Task) (int64, error) {
	req := &runnerv1.AddTasksRequest{JobId: jobID, Adder: adder, Attempt: attempt}
	for _, t := range tasks {
		req.Tasks = append(req.Tasks, &runnerv1.CompiledTask{Key: t.Key, Argv: t.Argv, Env: t.Env, Cwd: t.Cwd, After: t.After,
			Tier: t.Tier, Retries: t.Retries, TimeoutMs: t.TimeoutMS})
	}
	var n int64
	err := a.call(ctx, jobID, "add tasks to", func(c runnerv1connect.RunnerServiceClient) error {
		r := connect.NewRequest(req)
		r.Header().Set("Authorization", "Bearer "+GatewayCredential(a.Key))
		resp, err := c.AddTasks(ctx, r)
		if err != nil {
			if ce := new(connect.Error); errors.As(err, &ce) && ce.Code() == connect.CodeFailedPrecondition {
				return final{refused{msg: ce.Message()}} // the runner's words, without the code's prefix
			}
			return err
		}
		n = resp.Msg.TaskCount
		return nil
	})
	return n, err
}

// Why implements gateway.Explainer: it asks the runner that owns the job's
// shard.
func (a *RemoteAppender) Why(ctx context.Context, jobID, key string) (*apiv1.WhyResponse, error) {
	var out *apiv1.WhyResponse
	err := a.call(ctx, jobID, "explain", func(c runnerv1connect.RunnerServiceClient) error {
		r := connect.NewRequest(&apiv1.WhyRequest{JobId: jobID, TaskKey: key})
		r.Header().Set("Authorization", "Bearer "+GatewayCredential(a.Key))
		resp, err := c.Why(ctx, r)
		if err != nil {
			if ce := new(connect.Error); errors.As(err, &ce) && ce.Code() == connect.CodeNotFound {
				return final{fmt.Errorf("%s: %w", ce.Message(), store.ErrNotFound)}
			}
			return err
		}
		out = resp.Msg
		return nil
	})
	return out, err
}

// final wraps an error that retrying cannot mend.
type final struct{ err error }

func (f final) Error() string { return f.err.Error() }

// call runs fn against the runner that owns the job's shard, looking the
// owner up again (through a failover) until a.Wait passes; an error fn
// wraps in final ends it at once.
func (a *RemoteAppender) call(ctx context.Context, jobID, what string, fn func(runnerv1connect.RunnerServiceClient) error) error {
	wait := a.Wait
	if wait <= 0 {
		wait = 15 * time.Second
	}
	deadline := time.Now().Add(wait)
	client := a.Client
	if client == nil {
		client = http.DefaultClient
	}
	for delay := 100 * time.Millisecond; ; delay = min(delay*2, 2*time.Second) {
		addr, err := ShardOwner(ctx, a.Store, store.ShardOf(jobID), time.Now())
		if err == nil {
			err = fn(runnerv1connect.NewRunnerServiceClient(client, addr))
			if err == nil {
				return nil
			}
			if f, ok := err.(final); ok {
				return f.err
			}
		}
		if time.Now().Add(delay).After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s job %s: no runner of its shard answered: %w", what, jobID, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// refused is a runner's refusal of added tasks, as the gateway reports it.
type refused struct{ msg string }

func (e refused) Error() string  { return e.msg }
func (e refused) Rejected() bool { return true }
