package runner_test

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/token"
)

// TestForgedPollsAreRefused plays a forger who knows worker and job IDs
// (GetTask shows them): polls naming a real worker without its credential,
// with a made-up one, with another worker's, and naming a worker that does
// not exist, each carrying a success for the worker's running attempt and
// asking for work. Each is refused as unauthenticated, in the same words
// whether the worker exists or not; nothing is recorded and nothing handed
// out. A worker with its own credential that reports attempts it was not
// handed changes nothing either. Then the real result is the one recorded.
func TestForgedPollsAreRefused(t *testing.T) {
	t.Parallel()
	secret, err := token.New()
	if err != nil {
		t.Fatal(err)
	}
	b := setupScriptedWith(t, func(c *runner.Config) { c.MaxWorkers, c.Tokens = 2, secret })
	ctx := context.Background()
	jobA := b.submit(t, "name: a\nretries: 0\nmax_workers: 1\ntasks:\n  - key: x\n    command: [\"true\"]\n  - key: y\n    command: [\"true\"]\n  - key: z\n    command: [\"true\"]\n")
	wA := b.scripted.worker(t, jobA)
	jobB := b.submit(t, "name: b\nretries: 0\ntasks:\n  - key: only\n    command: [\"true\"]\n")
	wB := b.scripted.worker(t, jobB)
	if b.scripted.secret(wA) == "" || b.scripted.secret(wA) == b.scripted.secret(wB) {
		t.Fatalf("workers' secrets %q and %q: want two different ones", b.scripted.secret(wA), b.scripted.secret(wB))
	}

	first := b.poll(t, &taskhostv1.PollRequest{WorkerId: wA, JobId: jobA, Capacity: 1, WaitMs: 5000})
	if len(first.Assignments) != 1 {
		t.Fatalf("first poll: %d assignments, want 1", len(first.Assignments))
	}
	a := first.Assignments[0]
	// The task's token is scoped to this attempt.
	if c, err := secret.Verify(a.Env["HAUL_TOKEN"]); err != nil || c != (token.Claims{Job: jobA, Task: a.Key, Attempt: a.Attempt}) {
		t.Errorf("HAUL_TOKEN %q: %+v, %v; want scoped to attempt %d of %s in %s", a.Env["HAUL_TOKEN"], c, err, a.Attempt, a.Key, jobA)
	}
	b.wait(t, jobA, func(j *store.Job) bool { return j.Counts.Running == 1 })

	success := &taskhostv1.AttemptResult{TaskIndex: a.TaskIndex, Attempt: a.Attempt, ExitCode: 0, Reason: "exit"}
	forged := func(worker, job string) *taskhostv1.PollRequest {
		return &taskhostv1.PollRequest{WorkerId: worker, JobId: job, Results: []*taskhostv1.AttemptResult{success}, Capacity: 3}
	}
	var messages []string
	for _, f := range []struct {
		what, secret string
		req          *taskhostv1.PollRequest
	}{
		{"no credential", "", forged(wA, jobA)},
		{"a made-up credential", "AAAAAAAAAAAAAAAAAAAAAAAAAA", forged(wA, jobA)},
		{"another worker's credential", b.scripted.secret(wB), forged(wA, jobA)},
		{"its own credential for another job", b.scripted.secret(wA), forged(wA, jobB)},
		{"an unknown worker", "AAAAAAAAAAAAAAAAAAAAAAAAAA", forged(jobA+"-0-nosuchworker", jobA)},
		{"an unknown worker, no credential", "", forged(jobA+"-0-nosuchworker", jobA)},
	} {
		resp, err := b.pollAs(f.secret, f.req)
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("forged poll with %s: %v, %v; want unauthenticated", f.what, resp, err)
			continue
		}
		messages = append(messages, connect.NewError(connect.CodeOf(err), err).Message())
		if strings.Contains(err.Error(), wA) || strings.Contains(err.Error(), jobA) {
			t.Errorf("forged poll with %s: %q names the worker or job", f.what, err)
		}
	}
	for _, m := range messages[1:] {
		if m != messages[0] {
			t.Errorf("refusals differ: %q and %q (a forger learns whether a worker exists)", messages[0], m)
		}
	}

	// The worker itself, reporting attempts it was not handed: its
	// job's other tasks and another attempt of its own task.
	b.poll(t, &taskhostv1.PollRequest{WorkerId: wA, JobId: jobA, ReportOnly: true, Results: []*taskhostv1.AttemptResult{
		{TaskIndex: (a.TaskIndex + 1) % 3, Attempt: 1, Reason: "exit"},
		{TaskIndex: (a.TaskIndex + 2) % 3, Attempt: 1, Reason: "exit"},
		{TaskIndex: a.TaskIndex, Attempt: a.Attempt + 1, Reason: "exit"},
	}})
	// Worker B, with its own credential, reporting its job's task that it
	// was never handed.
	b.poll(t, &taskhostv1.PollRequest{WorkerId: wB, JobId: jobB, ReportOnly: true, Results: []*taskhostv1.AttemptResult{{TaskIndex: 0, Attempt: 1, Reason: "exit"}}})

	for _, job := range []string{jobA, jobB} {
		tasks, err := b.st.ListTasks(ctx, store.TaskFilter{JobID: job, After: -1, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range tasks {
			want := store.TaskQueued
			if job == jobA && tk.Index == a.TaskIndex {
				want = store.TaskRunning
			}
			if tk.State != want {
				t.Errorf("job %s task %s after forged polls: %s, want %s", job, tk.Key, tk.State, want)
			}
			atts, err := b.st.ListAttempts(ctx, job, tk.Index)
			if err != nil {
				t.Fatal(err)
			}
			if want == store.TaskQueued && len(atts) != 0 || want == store.TaskRunning && (len(atts) != 1 || atts[0].State != store.AttemptRunning) {
				t.Errorf("job %s task %s after forged polls: attempts %+v", job, tk.Key, atts)
			}
		}
	}

	// The real result: a failure, recorded as it is.
	b.poll(t, &taskhostv1.PollRequest{WorkerId: wA, JobId: jobA, ReportOnly: true, Results: []*taskhostv1.AttemptResult{
		{TaskIndex: a.TaskIndex, Attempt: a.Attempt, ExitCode: 3, Reason: "exit"}}})
	b.wait(t, jobA, func(j *store.Job) bool { return j.Counts.Failed == 1 })
	tk, atts := b.task(t, jobA, a.Key)
	if tk.State != store.TaskFailed || tk.ExitCode != 3 || len(atts) != 1 || atts[0].State != store.AttemptFailed || atts[0].ExitCode != 3 {
		t.Errorf("task %s after its real result: %s exit %d, attempts %+v; want failed with exit 3", a.Key, tk.State, tk.ExitCode, atts)
	}
}
