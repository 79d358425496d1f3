package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

func ended(j *apiv1.Job) bool {
	return j.State == "succeeded" || j.State == "failed" || j.State == "cancelled"
}

// TestRetryFailedElement: element 7 of a foreach of 20 fails on its first
// run only; the merge after all of them is upstream_failed and says of
// which task. `haul job retry` runs only sim-7 and merge again, sim-7 with
// its first attempt kept, and the job succeeds. A running job's retry is
// refused.
func TestRetryFailedElement(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	c := s.client()
	ctx := context.Background()
	marker := t.TempDir()
	spec := writeSpec(t, fmt.Sprintf(`name: retry-sweep
tasks:
  - key: sim-{i}
    foreach: {range: [0, 20]}
    command: [sh, -c, "if [ {i} = 7 ] && [ ! -e %s/once ]; then touch %s/once; echo first run fails >&2; exit 3; fi; echo ok {i}"]
  - key: merge
    command: [echo, merged]
    after: ["sim-*"]
`, marker, marker))
	r := haul(t, env, "job", "submit", spec)
	if r.code != 0 {
		t.Fatalf("submit: exit %d: %s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	j := waitJob(t, c, id, 2*time.Minute, ended)
	if j.State != "failed" || j.Counts.Succeeded != 19 || j.Counts.Failed != 1 || j.Counts.UpstreamFailed != 1 {
		t.Fatalf("first run: job %s with counts %v, want failed with 19 succeeded, 1 failed, 1 upstream_failed", j.State, j.Counts)
	}

	// The merge names the task that failed.
	r = haul(t, env, "task", "get", id, "merge")
	if r.code != 0 || !strings.Contains(r.stdout, "upstream_failed") || !strings.Contains(r.stdout, "sim-7 failed") {
		t.Fatalf("task get merge: exit %d, want it to say sim-7 failed:\n%s%s", r.code, r.stdout, r.stderr)
	}

	// The reason filter "upstream" finds it.
	lt, err := c.ListTasks(ctx, connect.NewRequest(&apiv1.ListTasksRequest{JobId: id, Reason: "upstream"}))
	if err != nil || len(lt.Msg.Tasks) != 1 || lt.Msg.Tasks[0].Key != "merge" || lt.Msg.Tasks[0].Reason != "upstream: sim-7 failed" {
		t.Errorf("ListTasks(reason upstream): %v, %v; want merge with reason \"upstream: sim-7 failed\"", lt, err)
	}

	// A running job cannot be retried.
	long := writeSpec(t, "name: long\ntasks:\n  - key: wait\n    command: [sleep, '60']\n")
	r = haul(t, env, "job", "submit", long)
	if r.code != 0 {
		t.Fatalf("submit long: %s", r.stderr)
	}
	longID := strings.TrimSpace(r.stdout)
	waitJob(t, c, longID, time.Minute, func(j *apiv1.Job) bool { return j.State == "running" })
	r = haul(t, env, "job", "retry", longID)
	if r.code != 1 || !strings.Contains(r.stderr, "running") || !strings.Contains(r.stderr, "ended") {
		t.Errorf("retry of a running job: exit %d, want 1 and a message that it is running:\n%s%s", r.code, r.stdout, r.stderr)
	}
	haul(t, env, "job", "cancel", longID)
	// A bad --state is a usage error.
	if r = haul(t, env, "job", "retry", id, "--state", "done"); r.code != 2 {
		t.Errorf("retry --state done: exit %d, want 2: %s", r.code, r.stderr)
	}
	// A glob that matches nothing changes nothing.
	if r = haul(t, env, "job", "retry", id, "--tasks", "nope-*"); r.code != 1 || !strings.Contains(r.stderr, "no task matches") {
		t.Errorf("retry --tasks nope-*: exit %d, want 1 and no task matches: %s", r.code, r.stderr)
	}

	r = haul(t, env, "job", "retry", id)
	if r.code != 0 {
		t.Fatalf("job retry: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "2 tasks will run again") || !strings.Contains(r.stdout, "sim-7") {
		t.Errorf("job retry printed %q, want 2 tasks, sim-7 named", r.stdout)
	}
	j = waitJob(t, c, id, 2*time.Minute, ended)
	if j.State != "succeeded" || j.Counts.Succeeded != 21 {
		t.Fatalf("after retry: job %s counts %v, want succeeded, 21 succeeded", j.State, j.Counts)
	}

	r = haul(t, env, "task", "list", id, "-o", "json")
	var tasks []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &tasks); err != nil {
		t.Fatalf("task list -o json: %v\n%s", err, r.stdout)
	}
	if len(tasks) != 21 {
		t.Fatalf("task list: %d tasks, want 21", len(tasks))
	}
	for _, tk := range tasks {
		want := 1.0
		if tk["key"] == "sim-7" {
			want = 2
		}
		if tk["attempts"] != want || tk["state"] != "succeeded" {
			t.Errorf("task %v: attempts %v state %v, want %v attempts, succeeded", tk["key"], tk["attempts"], tk["state"], want)
		}
	}
	resp, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: id, Key: "sim-7"}))
	if err != nil {
		t.Fatal(err)
	}
	var hist []string
	for _, a := range resp.Msg.Attempts {
		hist = append(hist, fmt.Sprintf("%d:%s", a.Number, a.State))
	}
	if got := strings.Join(hist, " "); got != "1:failed 2:succeeded" {
		t.Errorf("sim-7's attempts: %s, want 1:failed 2:succeeded", got)
	}

	r = haul(t, env, "job", "get", id, "-o", "json")
	var got map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("job get -o json: %v\n%s", err, r.stdout)
	}
	if got["retries"] != 1.0 {
		t.Errorf("job get: retries %v, want 1", got["retries"])
	}
	if r = haul(t, env, "job", "get", id); !strings.Contains(r.stdout, "retries:") || !strings.Contains(r.stdout, "1 (haul job retry)") {
		t.Errorf("job get does not show the retry:\n%s", r.stdout)
	}
	// Ended again: a retry of the succeeded job's failed tasks finds none.
	if r = haul(t, env, "job", "retry", id); r.code != 1 || !strings.Contains(r.stderr, "no task matches") {
		t.Errorf("retry of a job with nothing failed: exit %d: %s", r.code, r.stderr)
	}
}

// TestRetryBudget: a retried task gets its full retries again while its
// attempt numbers continue.
func TestRetryBudget(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	c := s.client()
	marker := t.TempDir()
	// Fails its first two attempts of each run (retries: 1 uses them
	// up); with the retry budget fresh, the second run's attempt 4
	// succeeds after attempt 3 fails.
	spec := writeSpec(t, fmt.Sprintf(`name: budget
retries: 1
tasks:
  - key: flaky
    command: [sh, -c, "n=$(cat %[1]s/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s/n; [ $n -ge 4 ]"]
`, marker))
	r := haul(t, env, "job", "submit", spec)
	if r.code != 0 {
		t.Fatalf("submit: %s", r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if j := waitJob(t, c, id, 2*time.Minute, ended); j.State != "failed" {
		t.Fatalf("first run: %s, want failed", j.State)
	}
	if r = haul(t, env, "job", "retry", id); r.code != 0 {
		t.Fatalf("retry: %s", r.stderr)
	}
	if j := waitJob(t, c, id, 2*time.Minute, ended); j.State != "succeeded" {
		t.Fatalf("after retry: %s, want succeeded (a fresh retry budget)", j.State)
	}
	resp, err := c.GetTask(context.Background(), connect.NewRequest(&apiv1.GetTaskRequest{JobId: id, Key: "flaky"}))
	if err != nil {
		t.Fatal(err)
	}
	if n := resp.Msg.Task.Attempts; n != 4 {
		t.Errorf("flaky: %d attempts, want 4 (2 per run)", n)
	}
}

// TestRerunParams: a spec's parameters from --set, their errors, and a
// rerun with a new value.
func TestRerunParams(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	c := s.client()
	ctx := context.Background()
	spec := writeSpec(t, `name: sweep-{params.tag}
params:
  count: "3"
  tag:
labels: {tag: "{params.tag}"}
tasks:
  - key: show-{params.tag}
    command: [echo, "n={params.count}"]
`)
	r := haul(t, env, "job", "submit", spec)
	if r.code != 1 || !strings.Contains(r.stderr, "parameter tag is required") || !strings.Contains(r.stderr, "job.yaml:4") {
		t.Errorf("submit without the required parameter: exit %d, want 1 and the parameter named with its line:\n%s", r.code, r.stderr)
	}
	r = haul(t, env, "job", "submit", spec, "--set", "tag=a", "--set", "cout=4")
	if r.code != 1 || !strings.Contains(r.stderr, `unknown parameter "cout" given with --set (did you mean "count"?)`) {
		t.Errorf("submit with an unknown --set name: exit %d, want 1 and a suggestion:\n%s", r.code, r.stderr)
	}
	if r = haul(t, env, "job", "submit", spec, "--set", "tag"); r.code != 2 || !strings.Contains(r.stderr, "NAME=VALUE") {
		t.Errorf("submit --set without '=': exit %d, want 2:\n%s", r.code, r.stderr)
	}
	r = haul(t, env, "job", "submit", spec, "--set", "tag=a")
	if r.code != 0 {
		t.Fatalf("submit --set tag=a: exit %d: %s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	j := waitJob(t, c, id, 2*time.Minute, ended)
	if j.State != "succeeded" || j.Name != "sweep-a" || j.Labels["tag"] != "a" || j.Params["count"] != "3" || j.Params["tag"] != "a" {
		t.Fatalf("job: %s %q labels %v params %v", j.State, j.Name, j.Labels, j.Params)
	}

	if r = haul(t, env, "job", "get", id); !strings.Contains(r.stdout, "count=3 tag=a") {
		t.Errorf("job get does not show the parameters:\n%s", r.stdout)
	}
	r = haul(t, env, "job", "rerun", id, "--set", "count=5")
	if r.code != 0 {
		t.Fatalf("rerun --set count=5: exit %d: %s", r.code, r.stderr)
	}
	id2 := strings.TrimSpace(r.stdout)
	if id2 == id || strings.ContainsAny(id2, " \n") {
		t.Fatalf("rerun printed %q, want a new job ID", r.stdout)
	}
	j2 := waitJob(t, c, id2, 2*time.Minute, ended)
	if j2.State != "succeeded" || j2.Params["count"] != "5" || j2.Params["tag"] != "a" {
		t.Fatalf("rerun job: %s params %v, want succeeded with count=5 tag=a", j2.State, j2.Params)
	}
	tr, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: id2, Key: "show-a"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tr.Msg.Task.Command, " "); got != "echo n=5" {
		t.Errorf("rerun task command %q, want echo n=5", got)
	}
	if r = haul(t, env, "job", "rerun", id, "--set", "bogus=1"); r.code != 1 || !strings.Contains(r.stderr, `unknown parameter "bogus"`) {
		t.Errorf("rerun with an unknown parameter: exit %d: %s", r.code, r.stderr)
	}
	// haul run takes --set too.
	r = haul(t, env, "run", "--detach", spec, "--set", "tag=b")
	if r.code != 0 {
		t.Fatalf("run --set tag=b: exit %d: %s", r.code, r.stderr)
	}
	if j3 := waitJob(t, c, strings.TrimSpace(r.stdout), 2*time.Minute, ended); j3.Name != "sweep-b" || j3.Params["tag"] != "b" {
		t.Errorf("haul run --set tag=b: job %q params %v", j3.Name, j3.Params)
	}
	// A spec with secret_env cannot be rerun: its values are not stored.
	sec := writeSpec(t, "name: sec\nsecret_env: {TOKEN: hunter2}\ntasks:\n  - key: a\n    command: [true]\n")
	r = haul(t, env, "job", "submit", sec)
	if r.code != 0 {
		t.Fatalf("submit secret spec: %s", r.stderr)
	}
	r = haul(t, env, "job", "rerun", strings.TrimSpace(r.stdout))
	if r.code != 1 || !strings.Contains(r.stderr, "secret_env") || !strings.Contains(r.stderr, "haul job submit") {
		t.Errorf("rerun of a secret spec: exit %d, want 1 and to submit the file again:\n%s", r.code, r.stderr)
	}
}

// TestParamsAndGroupedErrors: a dependency typo in every element of a
// foreach is reported once, with the count of the other elements.
func TestParamsAndGroupedErrors(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	spec := writeSpec(t, `name: typo
tasks:
  - key: prep
    command: [echo]
  - key: sim-{i}
    foreach: {range: [0, 100]}
    command: [echo, "{i}"]
    after: [prepp]
`)
	r := haul(t, env, "job", "submit", spec)
	if r.code != 1 {
		t.Fatalf("submit with a typo: exit %d, want 1: %s", r.code, r.stderr)
	}
	if n := strings.Count(r.stderr, `unknown dependency "prepp"`); n != 1 || !strings.Contains(r.stderr, "(and 99 more elements)") {
		t.Errorf("the typo is reported %d times, want once with (and 99 more elements):\n%s", n, r.stderr)
	}
}
