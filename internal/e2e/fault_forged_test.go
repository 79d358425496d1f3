package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/bearer"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/gen/haul/taskhost/v1/taskhostv1connect"
)

// forgedJob: one worker (max_workers 1, one task at a time). `hold` saves
// its HAUL_TOKEN, waits for DIR/gate1 and fails with exit code 3; the
// three others wait for DIR/gate2 and succeed. While hold runs they are
// queued: what a forger would like to take.
const forgedJob = `
name: forged
max_workers: 1
retries: 0
tasks:
  - key: hold
    command: [sh, -c, 'printf %%s "$HAUL_TOKEN" > %[1]s/token; while [ ! -e %[1]s/gate1 ]; do sleep 0.05; done; exit 3']
  - key: "q-{i}"
    foreach: {range: [1, 4]}
    command: [sh, -c, 'while [ ! -e %[1]s/gate2 ]; do sleep 0.05; done']
`

// TestFaultForgedWorker plays a forger against `haul up` who read a
// running task's worker ID from GetTask: its polls, with no credential or
// a made-up one, reporting the task as succeeded and asking for work, are
// refused as unauthenticated (in the same words for a worker that does not
// exist); nothing is handed out to it and the task's real result is the
// one recorded. The task's attempt-scoped token works while the attempt
// runs and is refused once it ended.
func TestFaultForgedWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := startUp(t, freePort(t), t.TempDir(), "")
	c := s.client()
	dir := t.TempDir()
	sub, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: fmt.Appendf(nil, forgedJob, dir), Filename: "forged.yaml"}))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	job := sub.Msg.JobId
	waitJob(t, c, job, time.Minute, func(j *apiv1.Job) bool { return j.Counts.GetRunning() == 1 })
	held, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: job, Key: "hold"}))
	if err != nil {
		t.Fatal(err)
	}
	if held.Msg.Task.State != "running" || len(held.Msg.Attempts) != 1 || held.Msg.Attempts[0].WorkerId == "" {
		t.Fatalf("hold: %s with attempts %v; want running on a worker", held.Msg.Task.State, held.Msg.Attempts)
	}
	worker, index, attempt := held.Msg.Attempts[0].WorkerId, held.Msg.Task.Index, held.Msg.Attempts[0].Number

	// The forger.
	th := taskhostv1connect.NewTaskHostServiceClient(http.DefaultClient, s.url())
	poll := func(secret, worker string) (*taskhostv1.PollResponse, error) {
		req := connect.NewRequest(&taskhostv1.PollRequest{WorkerId: worker, JobId: job, Capacity: 3,
			Results: []*taskhostv1.AttemptResult{{TaskIndex: index, Attempt: attempt, ExitCode: 0, Reason: "exit"}}})
		if secret != "" {
			req.Header().Set("Authorization", "Bearer "+secret)
		}
		resp, err := th.Poll(ctx, req)
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	}
	var refusals []string
	for _, f := range []struct{ what, secret, worker string }{
		{"no credential", "", worker},
		{"a made-up credential", "KDUJ4XN2WTMQZ7VEX5LBR6PGAY", worker},
		{"the admin's API token", s.token, worker},
		{"a worker that does not exist", "KDUJ4XN2WTMQZ7VEX5LBR6PGAY", worker + "9"},
	} {
		resp, err := poll(f.secret, f.worker)
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("forged poll with %s: %v, %v; want unauthenticated", f.what, resp, err)
			continue
		}
		refusals = append(refusals, err.Error())
	}
	for _, r := range refusals[1:] {
		if r != refusals[0] {
			t.Errorf("refusals differ: %q and %q (a forger learns whether a worker exists)", refusals[0], r)
		}
	}
	for _, key := range []string{"hold", "q-1", "q-2", "q-3"} {
		tk := getTask(t, s, job, key)
		want := "queued"
		if key == "hold" {
			want = "running"
		}
		if tk.State != want || key != "hold" && tk.Attempts != 0 {
			t.Errorf("%s after the forged polls: %s with %d attempts, want %s (nothing handed to the forger)", key, tk.State, tk.Attempts, want)
		}
	}

	// The task's token: good for its own job while its attempt runs.
	tokBytes, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	tok := string(tokBytes)
	if tok == "" || strings.Contains(string(tokBytes), s.token) {
		t.Fatalf("hold's HAUL_TOKEN %q: want a task token of its own", tok)
	}
	asTask := apiv1connect.NewJobServiceClient(bearer.Client(nil, tok), s.url())
	if _, err := asTask.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: job})); err != nil {
		t.Errorf("hold reads its own job with its token: %v", err)
	}
	add := func(job, task string) error {
		_, err := asTask.AddTasks(ctx, connect.NewRequest(&apiv1.AddTasksRequest{JobId: job, Task: task,
			Spec: []byte("tasks:\n  - key: added\n    command: [\"true\"]\n")}))
		return err
	}
	other, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte("name: other\ntasks:\n  - key: t\n    command: [\"true\"]\n"), Filename: "other.yaml"}))
	if err != nil {
		t.Fatalf("submit another job: %v", err)
	}
	if err := add(other.Msg.JobId, ""); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("AddTasks to another job with hold's token: %v; want permission denied", err)
	}
	if err := add(job, "q-1"); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("AddTasks naming task q-1 with hold's token: %v; want permission denied (the adder is the token's)", err)
	}
	if err := add(job, ""); err != nil {
		t.Errorf("AddTasks to its own job with hold's token while it runs: %v", err)
	}

	// The real result: exit code 3.
	if err := os.WriteFile(filepath.Join(dir, "gate1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// (The worker then runs q-1 or the added task; a q task holds the job
	// open until gate2.)
	waitJob(t, c, job, time.Minute, func(j *apiv1.Job) bool { return j.Counts.GetFailed() == 1 && j.Counts.GetRunning() == 1 })
	if tk := getTask(t, s, job, "hold"); tk.State != "failed" || tk.ExitCode != 3 || tk.Attempts != 1 {
		t.Errorf("hold: %s, exit %d, %d attempts; want its real result: failed with exit code 3, once", tk.State, tk.ExitCode, tk.Attempts)
	}
	// Its attempt ended: the token is refused, while the job still runs.
	if _, err := asTask.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: job})); connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "expired with its attempt") {
		t.Errorf("GetJob with hold's token after its attempt ended: %v; want unauthenticated, saying the token expired with its attempt", err)
	}
	if err := add(job, ""); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("AddTasks with hold's token after its attempt ended: %v; want unauthenticated", err)
	}

	if err := os.WriteFile(filepath.Join(dir, "gate2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, c, job, time.Minute, func(j *apiv1.Job) bool { return j.State == "failed" })
	if j.TaskCount != 5 || j.Counts.GetSucceeded() != 4 || j.Counts.GetFailed() != 1 {
		t.Errorf("job ended with %d tasks, counts %v; want hold failed and the three others and the added one succeeded", j.TaskCount, j.Counts)
	}
	if strings.Contains(s.log.String(), tok) {
		t.Error("the server's log holds a task token")
	}
}
