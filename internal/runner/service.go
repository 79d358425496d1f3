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

// AddTasks implements RunnerService.AddTasks with Runner.AddTasks.
func (s Service) AddTasks(ctx context.Context, req *connect.Request[runnerv1.AddTasksRequest]) (*connect.Response[runnerv1.AddTasksResponse], error) {
	got, _ := strings.CutPrefix(req.Header().Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(got), []byte(GatewayCredential(s.Runner.workerKey))) != 1 {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("runner service: the gateway credential was not accepted"))
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
			c := runnerv1connect.NewRunnerServiceClient(client, addr)
			r := connect.NewRequest(req)
			r.Header().Set("Authorization", "Bearer "+GatewayCredential(a.Key))
			var resp *connect.Response[runnerv1.AddTasksResponse]
			resp, err = c.AddTasks(ctx, r)
			if err == nil {
				return resp.Msg.TaskCount, nil
			}
			if ce := new(connect.Error); errors.As(err, &ce) && ce.Code() == connect.CodeFailedPrecondition {
				return 0, refused{msg: ce.Message()} // the runner's words, without the code's prefix
			}
		}
		if time.Now().Add(delay).After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("add tasks to job %s: no runner of its shard answered: %w", jobID, err)
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
