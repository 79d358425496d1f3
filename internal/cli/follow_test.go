package cli

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
)

// followBuffer is a bytes.Buffer safe for a command's goroutines and the
// test reading it.
type followBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *followBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *followBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// followFake is a JobService whose answers the test scripts.
type followFake struct {
	apiv1connect.UnimplementedJobServiceHandler
	mu sync.Mutex
	// job state; tasks by key; logs(key, attempt) streams an attempt.
	state string
	tasks map[string]*apiv1.Task
	logs  func(ctx context.Context, key string, attempt int32, send func(*apiv1.GetLogsResponse) error) error
	calls map[string]int
}

func (f *followFake) GetJob(_ context.Context, req *connect.Request[apiv1.GetJobRequest]) (*connect.Response[apiv1.GetJobResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return connect.NewResponse(&apiv1.GetJobResponse{Job: &apiv1.Job{Id: req.Msg.JobId, State: f.state, Counts: &apiv1.TaskCounts{}}}), nil
}

func (f *followFake) ListTasks(_ context.Context, req *connect.Request[apiv1.ListTasksRequest]) (*connect.Response[apiv1.ListTasksResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*apiv1.Task
	for _, k := range []string{"a", "b", "c", "t"} {
		if t := f.tasks[k]; t != nil && (len(req.Msg.States) == 0 || req.Msg.States[0] == t.State) {
			out = append(out, t)
		}
	}
	return connect.NewResponse(&apiv1.ListTasksResponse{Tasks: out}), nil
}

func (f *followFake) GetTask(_ context.Context, req *connect.Request[apiv1.GetTaskRequest]) (*connect.Response[apiv1.GetTaskResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.tasks[req.Msg.Key]
	resp := &apiv1.GetTaskResponse{Task: t}
	for n := int32(1); n <= t.Attempts; n++ {
		resp.Attempts = append(resp.Attempts, &apiv1.Attempt{Number: n, Tier: "big"})
	}
	return connect.NewResponse(resp), nil
}

func (f *followFake) GetLogs(ctx context.Context, req *connect.Request[apiv1.GetLogsRequest], stream *connect.ServerStream[apiv1.GetLogsResponse]) error {
	f.mu.Lock()
	f.calls[req.Msg.Key]++
	f.mu.Unlock()
	return f.logs(ctx, req.Msg.Key, req.Msg.Attempt, stream.Send)
}

func (f *followFake) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func chunk(attempt int32, s string) *apiv1.GetLogsResponse {
	return &apiv1.GetLogsResponse{Attempt: attempt, Chunks: []*apiv1.LogChunk{{Stream: apiv1.LogStream_LOG_STREAM_STDOUT, Data: []byte(s)}}}
}

func serveFake(t *testing.T, f *followFake) (*app, *followBuffer, *followBuffer, *httptest.Server) {
	t.Helper()
	f.calls = map[string]int{}
	mux := http.NewServeMux()
	mux.Handle(apiv1connect.NewJobServiceHandler(f))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	out, errb := &followBuffer{}, &followBuffer{}
	return &app{server: ts.URL, serverChosen: true, stdout: out, stderr: errb, token: "test"}, out, errb, ts
}

// TestFollowTaskAttempts: -f prints attempt 1, then attempt 2 after a
// separator naming its tier, a broken stream is resumed without printing
// anything twice, and the end says how the task ended (exit 1: failed).
func TestFollowTaskAttempts(t *testing.T) {
	f := &followFake{state: "running", tasks: map[string]*apiv1.Task{"t": {Key: "t", State: "running", Attempts: 1}}}
	broke := false
	f.logs = func(_ context.Context, key string, attempt int32, send func(*apiv1.GetLogsResponse) error) error {
		switch attempt {
		case 0, 1:
			if err := send(chunk(1, "one\n")); err != nil {
				return err
			}
			f.set(func() { f.tasks["t"] = &apiv1.Task{Key: "t", State: "queued", Attempts: 2} })
			return nil
		case 2:
			if !broke {
				broke = true
				send(chunk(2, "tw"))
				return connect.NewError(connect.CodeUnavailable, errors.New("connection reset"))
			}
			send(chunk(2, "two\n"))
			send(chunk(0, "three\n"))
			f.set(func() {
				f.tasks["t"] = &apiv1.Task{Key: "t", State: "failed", Attempts: 2, ExitCode: 3, Reason: "exit"}
			})
			return nil
		}
		return connect.NewError(connect.CodeInvalidArgument, errors.New("no such attempt"))
	}
	a, out, errb, _ := serveFake(t, f)
	err := a.followTask(context.Background(), "J", "t", nil, false)
	if ee, ok := err.(exitError); !ok || ee.code != 1 {
		t.Fatalf("followTask: %v; want exit status 1", err)
	}
	if out.String() != "one\ntwo\nthree\n" {
		t.Fatalf("stdout %q", out.String())
	}
	if e := errb.String(); !strings.Contains(e, "--- attempt 2 (tier big) ---\n") || !strings.Contains(e, "task t failed after 2 attempts (exit code 3)\n") {
		t.Fatalf("stderr %q", e)
	}
}

// TestFollowTaskLostServer: a server that went away is retried for
// lostServerAfter, then the follower ends with "lost the server".
func TestFollowTaskLostServer(t *testing.T) {
	old := lostServerAfter
	lostServerAfter = time.Second
	t.Cleanup(func() { lostServerAfter = old })
	f := &followFake{state: "running", tasks: map[string]*apiv1.Task{"t": {Key: "t", State: "running", Attempts: 1}}}
	a, out, _, ts := serveFake(t, f)
	f.logs = func(_ context.Context, _ string, _ int32, send func(*apiv1.GetLogsResponse) error) error {
		send(chunk(1, "before\n"))
		go ts.Close()
		return connect.NewError(connect.CodeUnavailable, errors.New("going away"))
	}
	start := time.Now()
	err := a.followTask(context.Background(), "J", "t", nil, false)
	if err == nil || !strings.Contains(err.Error(), "lost the server") || time.Since(start) < time.Second {
		t.Fatalf("followTask after the server left: %v after %s", err, time.Since(start))
	}
	if out.String() != "before\n" {
		t.Fatalf("stdout %q", out.String())
	}
}

// TestJobLogsMax: with more running tasks than --max, it says how many it
// does not follow, and follows them once the first ones end.
func TestJobLogsMax(t *testing.T) {
	f := &followFake{state: "running", tasks: map[string]*apiv1.Task{}}
	for _, k := range []string{"a", "b", "c"} {
		f.tasks[k] = &apiv1.Task{Key: k, State: "running", Attempts: 1}
	}
	release := make(chan struct{})
	f.logs = func(ctx context.Context, key string, _ int32, send func(*apiv1.GetLogsResponse) error) error {
		if err := send(chunk(1, key+" line\npartial")); err != nil {
			return err
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	a, out, errb, _ := serveFake(t, f)
	done := make(chan error, 1)
	go func() {
		done <- a.jobLogs(context.Background(), "J", map[string]bool{"running": true, "failed": true}, 20, 1)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errb.String(), "(2 more tasks not followed: at most 1 at once; --max to change)") {
		if time.Now().After(deadline) {
			t.Fatalf("no message about the tasks not followed: %q", errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.set(func() { f.state = "succeeded" })
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("jobLogs: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("jobLogs did not end")
	}
	for _, k := range []string{"a", "b", "c"} {
		if want := k + " | " + k + " line\n" + k + " | partial\n"; !strings.Contains(out.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errb.String(), "job J succeeded") {
		t.Errorf("stderr %q", errb.String())
	}
}
