package gateway_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/haul-dev/haul/internal/gateway"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/store"
)

const (
	secretValue = "pw-7f3a9c1e-never-shown"
	secretSpec  = `# the database password is a secret
name: with-secret
namespace: team-a
env: {PLAIN: visible}
secret_env:
  DB_PASSWORD: ` + secretValue + `
  CERT: |
    cert-line-one-` + secretValue + `
    cert-line-two
tasks:
  - key: work
    command: [sh, -c, 'echo "$DB_PASSWORD" > out']
    env: {OWN: mine}
`
)

// leaks reports whether a response, in its wire form or as JSON, holds the
// secret value.
func leaks(t *testing.T, what string, m proto.Message) {
	t.Helper()
	wire, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	js, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wire, []byte(secretValue)) || bytes.Contains(js, []byte(secretValue)) {
		t.Errorf("%s returns the secret value: %s", what, js)
	}
}

// TestSecretEnvNeverRead submits a job with secret_env and reads it back
// through every RPC that returns a job or a task: none returns a secret
// value, each job and task names the secrets, the stored spec holds only
// placeholders, and the store hands the values to the runner alone.
func TestSecretEnvNeverRead(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, gateway.Config{})
	ctx := context.Background()
	member := e.client("member-a")
	id := e.submitRunning(t, member, secretSpec, "work")
	wantNames := []string{"CERT", "DB_PASSWORD"}

	for _, role := range []string{"member-a", "viewer-a", "platform-admin"} {
		c := e.client(role)
		gj, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
		if err != nil {
			t.Fatalf("GetJob as %s: %v", role, err)
		}
		leaks(t, "GetJob as "+role, gj.Msg)
		if !slices.Equal(gj.Msg.Job.SecretEnvNames, wantNames) {
			t.Errorf("GetJob as %s: secret_env_names = %v, want %v", role, gj.Msg.Job.SecretEnvNames, wantNames)
		}
		lj, err := c.ListJobs(ctx, connect.NewRequest(&apiv1.ListJobsRequest{Namespace: "team-a"}))
		if err != nil {
			t.Fatalf("ListJobs as %s: %v", role, err)
		}
		leaks(t, "ListJobs as "+role, lj.Msg)
		found := false
		for _, j := range lj.Msg.Jobs {
			if j.Id == id {
				found = true
				if !slices.Equal(j.SecretEnvNames, wantNames) {
					t.Errorf("ListJobs as %s: secret_env_names = %v, want %v", role, j.SecretEnvNames, wantNames)
				}
			} else if len(j.SecretEnvNames) != 0 {
				t.Errorf("ListJobs as %s: job %s without secrets lists %v", role, j.Id, j.SecretEnvNames)
			}
		}
		if !found {
			t.Errorf("ListJobs as %s does not list %s", role, id)
		}
		lt, err := c.ListTasks(ctx, connect.NewRequest(&apiv1.ListTasksRequest{JobId: id}))
		if err != nil {
			t.Fatalf("ListTasks as %s: %v", role, err)
		}
		leaks(t, "ListTasks as "+role, lt.Msg)
		gt, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: id, Key: "work"}))
		if err != nil {
			t.Fatalf("GetTask as %s: %v", role, err)
		}
		leaks(t, "GetTask as "+role, gt.Msg)
		task := gt.Msg.Task
		if !slices.Equal(task.SecretEnvNames, wantNames) {
			t.Errorf("GetTask as %s: secret_env_names = %v, want %v", role, task.SecretEnvNames, wantNames)
		}
		if task.Env["OWN"] != "mine" || gt.Msg.JobEnv["PLAIN"] != "visible" {
			t.Errorf("GetTask as %s: env %v, job env %v: plain env must still show", role, task.Env, gt.Msg.JobEnv)
		}
		for _, n := range wantNames {
			if _, ok := task.Env[n]; ok {
				t.Errorf("GetTask as %s: the task's env holds %s", role, n)
			}
			if _, ok := gt.Msg.JobEnv[n]; ok {
				t.Errorf("GetTask as %s: the job env holds %s", role, n)
			}
		}
	}

	// A task of the job adds tasks: it may not reuse a secret's name in
	// plain env, and what it adds shows no value either.
	task := apiv1connect.NewJobServiceClient(&http.Client{Transport: bearer{token: e.secret.ForAttempt(id, "work", 1), next: http.DefaultTransport}}, e.url)
	_, err := task.AddTasks(ctx, connect.NewRequest(&apiv1.AddTasksRequest{JobId: id, Task: "work",
		Spec: []byte("tasks: [{key: more, command: [x], env: {DB_PASSWORD: plain}}]\n")}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "secret_env") {
		t.Errorf("AddTasks reusing a secret name in env: %v, want invalid_argument naming secret_env", err)
	}
	if _, err := task.AddTasks(ctx, connect.NewRequest(&apiv1.AddTasksRequest{JobId: id, Task: "work",
		Spec: []byte("tasks: [{key: more, command: [x]}]\n")})); err != nil {
		t.Errorf("AddTasks: %v", err)
	}

	// A cancel answers with the job and the task: no value there either.
	ct, err := member.CancelTask(ctx, connect.NewRequest(&apiv1.CancelTaskRequest{JobId: id, Key: "work"}))
	if err != nil {
		t.Fatalf("CancelTask: %v", err)
	}
	leaks(t, "CancelTask", ct.Msg)
	cj, err := member.CancelJob(ctx, connect.NewRequest(&apiv1.CancelJobRequest{JobId: id}))
	if err != nil {
		t.Fatalf("CancelJob: %v", err)
	}
	leaks(t, "CancelJob", cj.Msg)

	// What the store gives readers: no value in the spec text, no values.
	j, err := e.st.GetJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(j.Spec, []byte(secretValue)) || !bytes.Contains(j.Spec, []byte("DB_PASSWORD: <secret>")) {
		t.Errorf("the stored spec is not redacted:\n%s", j.Spec)
	}
	if !bytes.Contains(j.Spec, []byte("echo \"$DB_PASSWORD\"")) {
		t.Errorf("the stored spec lost its tasks:\n%s", j.Spec)
	}
	if j.SecretEnv != nil {
		t.Errorf("GetJob from the store returns the secret values")
	}
	if !strings.Contains(string(j.Spec), "# the database password is a secret") {
		t.Errorf("the stored spec lost its comments:\n%s", j.Spec)
	}
	tasks, err := e.st.ListTasks(ctx, store.TaskFilter{JobID: id, After: -1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		for n, v := range tk.Env {
			if strings.Contains(v, secretValue) {
				t.Errorf("the stored task %s holds the secret in env %s", tk.Key, n)
			}
		}
	}
	// The runner's read, and only it, gets the values.
	active, err := e.st.ListActiveJobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range active {
		if a.ID == id {
			if a.SecretEnv["DB_PASSWORD"] != secretValue || !strings.HasPrefix(a.SecretEnv["CERT"], "cert-line-one-") {
				t.Errorf("ListActiveJobs: secret env %d values, want the submitted ones", len(a.SecretEnv))
			}
		}
	}
}

// TestSecretEnvRefusals checks that a spec putting a secret name in plain
// env is refused naming the field, without the value in the answer.
func TestSecretEnvRefusals(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, gateway.Config{})
	c := e.client("member-a")
	for _, src := range []string{
		"name: s\nnamespace: team-a\nenv: {A: x}\nsecret_env: {A: " + secretValue + "}\ntasks: [{key: a, command: [x]}]\n",
		"name: s\nnamespace: team-a\nsecret_env: {A: " + secretValue + "}\ntasks: [{key: a, command: [x], env: {A: y}}]\n",
		"name: s\nnamespace: team-a\nsecret_env: {HAUL_TOKEN: " + secretValue + "}\ntasks: [{key: a, command: [x]}]\n",
	} {
		_, err := c.SubmitJob(context.Background(), connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(src)}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("SubmitJob(%q) = %v, want invalid_argument", src, err)
			continue
		}
		if strings.Contains(err.Error(), secretValue) {
			t.Errorf("the refusal shows the value: %v", err)
		}
		if !strings.Contains(err.Error(), "secret_env") && !strings.Contains(err.Error(), "HAUL_") {
			t.Errorf("the refusal %v does not name the field", err)
		}
	}
}
