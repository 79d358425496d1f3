package client_test

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/haul-dev/haul/client"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

func newClient(t *testing.T) *client.Client {
	t.Helper()
	return client.New(server, client.WithToken(adminToken))
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func taskState(t *testing.T, c *client.Client, id, key string) string {
	t.Helper()
	r, err := c.Task(context.Background(), id, key)
	if err != nil {
		t.Fatal(err)
	}
	return r.GetTask().GetState()
}

func TestSubmitWatchWaitLogs(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	c := newClient(t)
	me, err := c.WhoAmI(ctx)
	if err != nil || !me.GetPlatformAdmin() {
		t.Fatalf("WhoAmI = %v, %v; want the platform admin", me, err)
	}
	spec := []byte(`
name: go-client
labels: {suite: go-client}
tasks:
  - key: "w-{i}"
    foreach: {range: [0, 4]}
    command: [sh, -c, 'echo out {i}; echo err {i} >&2']
  - key: last
    command: [echo, done]
    after: ["w-*"]
`)
	id, err := c.Submit(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen []*client.Job
	if err := c.Watch(ctx, id, func(j *client.Job) error { seen = append(seen, j); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) == 0 {
		t.Fatal("Watch called back no time")
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].GetCounts().GetSucceeded() < seen[i-1].GetCounts().GetSucceeded() {
			t.Errorf("succeeded went down: %v then %v", seen[i-1].GetCounts(), seen[i].GetCounts())
		}
	}
	final := seen[len(seen)-1]
	if final.GetState() != "succeeded" || final.GetCounts().GetSucceeded() != 5 || final.GetTaskCount() != 5 {
		t.Fatalf("last watched = %v", final)
	}
	job, err := c.Wait(ctx, id)
	if err != nil || job.GetState() != "succeeded" {
		t.Fatalf("Wait = %v, %v", job, err)
	}
	got, err := c.Job(ctx, id)
	if err != nil || got.GetName() != "go-client" || got.GetLabels()["suite"] != "go-client" {
		t.Fatalf("Job = %v, %v", got, err)
	}

	var out strings.Builder
	if err := c.Logs(ctx, id, "w-2", false, &out); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "out 2\n") || !strings.Contains(s, "err 2\n") {
		t.Errorf("Logs(w-2) = %q", s)
	}
	var stderr strings.Builder
	err = c.LogsStream(ctx, &client.GetLogsRequest{JobId: id, Key: "w-1", Streams: []client.LogStream{client.LogStream_LOG_STREAM_STDERR}}, func(ch *client.LogChunk) error {
		stderr.Write(ch.GetData())
		return nil
	})
	if err != nil || stderr.String() != "err 1\n" {
		t.Errorf("LogsStream(w-1, stderr) = %q, %v", stderr.String(), err)
	}

	var keys []string
	for task, err := range c.ListTasks(ctx, id, &client.ListTasksRequest{PageSize: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, task.GetKey())
	}
	if want := []string{"w-0", "w-1", "w-2", "w-3", "last"}; !slices.Equal(keys, want) {
		t.Errorf("ListTasks = %v, want %v", keys, want)
	}
	found := false
	for j, err := range c.ListJobs(ctx, &client.ListJobsRequest{Labels: map[string]string{"suite": "go-client"}, PageSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		found = found || j.GetId() == id
	}
	if !found {
		t.Errorf("ListJobs by label did not list %s", id)
	}
}

func TestFollowLogs(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	c := newClient(t)
	id, err := c.Submit(ctx, []byte(`{"name": "go-follow", "tasks": [{"key": "talk", "command": ["sh", "-c", "echo one; sleep 2; echo two"]}]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "talk to run", func() bool { return taskState(t, c, id, "talk") == "running" })
	var out strings.Builder
	start := time.Now()
	if err := c.Logs(ctx, id, "talk", true, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\ntwo\n" {
		t.Errorf("followed logs = %q", out.String())
	}
	if time.Since(start) < time.Second {
		t.Errorf("Logs with follow returned after %v, before the task ended", time.Since(start))
	}
}

func TestCancelAddTasksErrors(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	c := newClient(t)

	id, err := c.Submit(ctx, []byte("name: go-dynamic\ntasks:\n  - key: hold\n    command: [sleep, 5]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hold to run", func() bool { return taskState(t, c, id, "hold") == "running" })
	added, err := c.AddTasks(ctx, id, []byte("tasks:\n  - key: \"more-{i}\"\n    foreach: {range: [0, 2]}\n    command: [true]\n    after: [hold]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(added.GetKeys(), []string{"more-0", "more-1"}) || added.GetTaskCount() != 3 {
		t.Errorf("AddTasks = %v", added)
	}
	if job, err := c.Wait(ctx, id); err != nil || job.GetState() != "succeeded" || job.GetCounts().GetSucceeded() != 3 {
		t.Errorf("Wait after AddTasks = %v, %v", job, err)
	}

	id, err = c.Submit(ctx, []byte("name: go-cancel\ntasks:\n  - key: long\n    command: [sleep, 300]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "long to run", func() bool { return taskState(t, c, id, "long") == "running" })
	if _, err := c.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	if job, err := c.Wait(ctx, id); err != nil || job.GetState() != "cancelled" {
		t.Errorf("Wait after Cancel = %v, %v", job, err)
	}

	_, err = c.Job(ctx, "no-such-job")
	if !client.IsNotFound(err) || connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("Job(no-such-job) = %v, want not_found", err)
	}
	if err := c.Watch(ctx, "no-such-job", func(*client.Job) error { return nil }); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("Watch(no-such-job) = %v, want not_found", err)
	}
	if _, err := c.Submit(ctx, []byte("name: bad\ntasks:\n  - key: t\n    command: [true]\n    after: [nowhere]\n"), nil); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("Submit of a bad spec = %v, want invalid_argument naming nowhere", err)
	}
	if _, err := client.New(server, client.WithToken("haul_not-a-token")).Job(ctx, id); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("a bad token = %v, want unauthenticated", err)
	}
	stop := errors.New("stop")
	if err := c.Watch(ctx, id, func(*client.Job) error { return stop }); err != stop {
		t.Errorf("Watch returned %v, want the callback's error", err)
	}
}

func TestRetry(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	c := newClient(t)
	spec := []byte(`
name: go-retry
tasks:
  - key: "f-{i}"
    foreach: {range: [0, 2]}
    command: [sh, -c, 'test {i} = 0 || test "$HAUL_ATTEMPT" -gt 1']
`)
	id, err := c.Submit(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.Wait(ctx, id)
	if err != nil || job.GetState() != "failed" {
		t.Fatalf("Wait = %v, %v; want failed", job, err)
	}
	r, err := c.Retry(ctx, id, "")
	if connect.CodeOf(err) == connect.CodeUnimplemented {
		t.Fatalf("RetryJob is not implemented by this server: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.GetKeys(), []string{"f-1"}) || r.GetRetried() != 1 {
		t.Errorf("Retry = %v", r)
	}
	job, err = c.Wait(ctx, id)
	if err != nil || job.GetState() != "succeeded" || job.GetRetries() != 1 {
		// retries 0 means WatchJob served the run before the retry.
		t.Fatalf("Wait after Retry = %v, %v; want succeeded, retried once", job, err)
	}
}

// TestTypesCoverProto checks that types.go aliases every message and enum
// of proto/haul/api/v1, so that programs outside the module can name them.
func TestTypesCoverProto(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "types.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	aliased := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if ts, ok := n.(*ast.TypeSpec); ok && ts.Assign.IsValid() {
			aliased[ts.Name.Name] = true
		}
		return true
	})
	for _, fd := range []protoreflect.FileDescriptor{apiv1.File_haul_api_v1_api_proto, apiv1.File_haul_api_v1_admin_proto} {
		msgs := fd.Messages()
		for i := range msgs.Len() {
			if name := string(msgs.Get(i).Name()); !aliased[name] {
				t.Errorf("client has no alias of message %s (%s): add `%s = apiv1.%s` to types.go", name, fd.Path(), name, name)
			}
		}
		enums := fd.Enums()
		for i := range enums.Len() {
			if name := string(enums.Get(i).Name()); !aliased[name] {
				t.Errorf("client has no alias of enum %s (%s): add it to types.go", name, fd.Path())
			}
		}
	}
}
