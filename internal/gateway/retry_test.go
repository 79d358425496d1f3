package gateway_test

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/gateway"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// A spec's params (with the request's values) and webhook are stored and
// shown; a rerun overlays new values on the stored ones; a retry of a
// job that has not ended, or with a bad state, is refused.
func TestParamsNotifyRerunRetry(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, gateway.Config{})
	c := e.client("member-a")
	ctx := context.Background()
	spec := `name: p-{params.tag}
namespace: team-a
params: {tag: "", n: "3"}
notify: {webhook: "https://hooks.example/{params.tag}", on: [failed, succeeded]}
tasks:
  - key: t
    command: [echo, "{params.n}"]
`
	_, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(spec), Filename: "p.yaml"}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "p.yaml:3: field params.tag: parameter tag is required") {
		t.Fatalf("submit without tag: %v", err)
	}
	sub, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(spec), Filename: "p.yaml", Params: map[string]string{"tag": "x"}}))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	got, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: sub.Msg.JobId}))
	if err != nil {
		t.Fatal(err)
	}
	j := got.Msg.Job
	n := j.Notification
	if j.Name != "p-x" || j.Params["tag"] != "x" || j.Params["n"] != "3" || j.Retries != 0 ||
		n == nil || n.Webhook != "https://hooks.example/x" || strings.Join(n.On, ",") != "failed,succeeded" || n.State != "pending" {
		t.Fatalf("job: name %q params %v retries %d notification %v", j.Name, j.Params, j.Retries, n)
	}

	// Retry: refused while the job has not ended, and for a bad state.
	_, err = c.RetryJob(ctx, connect.NewRequest(&apiv1.RetryJobRequest{JobId: j.Id}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "the job is pending") {
		t.Errorf("retry of a pending job: %v, want failed_precondition saying it is pending", err)
	}
	_, err = c.RetryJob(ctx, connect.NewRequest(&apiv1.RetryJobRequest{JobId: j.Id, States: []string{"running"}}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), `state "running"`) {
		t.Errorf("retry with state running: %v, want invalid_argument naming it", err)
	}

	// Rerun: the stored values overlaid by the request's.
	re, err := c.RerunJob(ctx, connect.NewRequest(&apiv1.RerunJobRequest{JobId: j.Id, Params: map[string]string{"n": "5"}}))
	if err != nil {
		t.Fatalf("rerun: %v", err)
	}
	task, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: re.Msg.JobId, Key: "t"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(task.Msg.Task.Command, " "); got != "echo 5" {
		t.Errorf("rerun's command %q, want echo 5", got)
	}
	rj, err := e.st.GetJob(ctx, re.Msg.JobId)
	if err != nil {
		t.Fatal(err)
	}
	if rj.Params["tag"] != "x" || rj.Params["n"] != "5" || rj.SubmittedBy != "mona@example.com" || rj.Notify == nil {
		t.Errorf("rerun job: params %v by %q notify %v", rj.Params, rj.SubmittedBy, rj.Notify)
	}
	// A rerun's unknown parameter is the compiler's error.
	_, err = c.RerunJob(ctx, connect.NewRequest(&apiv1.RerunJobRequest{JobId: j.Id, Params: map[string]string{"tagg": "y"}}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), `unknown parameter "tagg" given with --set (did you mean "tag"?)`) {
		t.Errorf("rerun with an unknown parameter: %v", err)
	}
	// A spec with secret_env is refused, saying to submit the file again.
	sec, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte("name: s\nnamespace: team-a\nsecret_env: {K: v}\ntasks:\n  - key: t\n    command: [true]\n")}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.RerunJob(ctx, connect.NewRequest(&apiv1.RerunJobRequest{JobId: sec.Msg.JobId}))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "secret_env (K)") || !strings.Contains(err.Error(), "haul job submit") {
		t.Errorf("rerun of a secret spec: %v", err)
	}
}
