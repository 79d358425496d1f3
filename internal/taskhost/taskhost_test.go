package taskhost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/haul-dev/haul/internal/blob"
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/gen/haul/taskhost/v1/taskhostv1connect"
	"github.com/haul-dev/haul/internal/logs"
)

const waitLimit = 15 * time.Second

// fakeRunner is a fake TaskHostService (no real runner can be started from
// this package's tests): tests queue assignments and cancels, and watch the
// polls and results that arrive.
type fakeRunner struct {
	mu      sync.Mutex
	queue   []*taskhostv1.Assignment
	cancels []*taskhostv1.AttemptRef
	exit    bool
	seen    map[[2]int32]bool // results received
	// fail, when set, may fail a call (after it was seen on reqs).
	fail func(*taskhostv1.PollRequest) error
	// locate, when set, answers Locate (Unimplemented when nil); the
	// calls are seen on locates.
	locate  func(*connect.Request[taskhostv1.LocateRequest]) (*taskhostv1.LocateResponse, error)
	locates chan *connect.Request[taskhostv1.LocateRequest]

	kick    chan struct{}
	reqs    chan *taskhostv1.PollRequest
	results chan *taskhostv1.AttemptResult
	// entries are the log entries received; live the live output, by
	// task index (attempt 1), appended as the runner would.
	entries map[[2]int32]*taskhostv1.LogEntry
	live    map[int32][]byte
}

// entry returns the log entry received for a task's first attempt.
func (f *fakeRunner) entry(index int32) *taskhostv1.LogEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.entries[[2]int32{index, 1}]
}

var _ taskhostv1connect.TaskHostServiceHandler = (*fakeRunner)(nil)

func newFakeRunner() *fakeRunner {
	return &fakeRunner{
		kick:    make(chan struct{}, 1),
		reqs:    make(chan *taskhostv1.PollRequest, 4096),
		results: make(chan *taskhostv1.AttemptResult, 64),
		locates: make(chan *connect.Request[taskhostv1.LocateRequest], 4096),
	}
}

func (f *fakeRunner) Locate(_ context.Context, req *connect.Request[taskhostv1.LocateRequest]) (*connect.Response[taskhostv1.LocateResponse], error) {
	select {
	case f.locates <- req:
	default:
	}
	f.mu.Lock()
	locate := f.locate
	f.mu.Unlock()
	if locate == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("this fake does not locate"))
	}
	resp, err := locate(req)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

func (f *fakeRunner) Poll(ctx context.Context, req *connect.Request[taskhostv1.PollRequest]) (*connect.Response[taskhostv1.PollResponse], error) {
	m := req.Msg
	select {
	case f.reqs <- m:
	default:
	}
	f.mu.Lock()
	fail := f.fail
	f.mu.Unlock()
	if fail != nil {
		if err := fail(m); err != nil {
			return nil, err
		}
	}
	f.mu.Lock()
	if f.seen == nil {
		f.seen = map[[2]int32]bool{}
		f.entries = map[[2]int32]*taskhostv1.LogEntry{}
		f.live = map[int32][]byte{}
	}
	for _, e := range m.GetLogEntries() {
		f.entries[[2]int32{e.TaskIndex, e.Attempt}] = e
	}
	for _, c := range m.GetLive() {
		if c.Attempt == 1 && c.Offset == int64(len(f.live[c.TaskIndex])) {
			f.live[c.TaskIndex] = append(f.live[c.TaskIndex], c.Frames...)
		}
	}
	var fresh []*taskhostv1.AttemptResult
	for _, r := range m.GetResults() {
		// Results are sent again until a reply arrives; like the runner,
		// count each once.
		k := [2]int32{r.TaskIndex, r.Attempt}
		if !f.seen[k] {
			f.seen[k] = true
			fresh = append(fresh, r)
		}
	}
	f.mu.Unlock()
	for _, r := range fresh {
		f.results <- r
	}
	if m.GetReportOnly() {
		return connect.NewResponse(&taskhostv1.PollResponse{}), nil
	}
	timer := time.NewTimer(time.Duration(m.GetWaitMs()) * time.Millisecond)
	defer timer.Stop()
	for {
		f.mu.Lock()
		n := min(int(m.GetCapacity()), len(f.queue))
		resp := &taskhostv1.PollResponse{Assignments: f.queue[:n], Cancel: f.cancels, Exit: f.exit}
		f.queue, f.cancels = f.queue[n:], nil
		f.mu.Unlock()
		if n > 0 || len(resp.Cancel) > 0 || resp.Exit || m.GetWaitMs() == 0 {
			return connect.NewResponse(resp), nil
		}
		select {
		case <-f.kick:
		case <-timer.C:
			return connect.NewResponse(resp), nil
		case <-ctx.Done():
			return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
		}
	}
}

func (f *fakeRunner) update(fn func(f *fakeRunner)) {
	f.mu.Lock()
	fn(f)
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *fakeRunner) assign(a ...*taskhostv1.Assignment) {
	f.update(func(f *fakeRunner) { f.queue = append(f.queue, a...) })
}

func (f *fakeRunner) cancel(index, attempt int32) {
	f.update(func(f *fakeRunner) {
		f.cancels = append(f.cancels, &taskhostv1.AttemptRef{TaskIndex: index, Attempt: attempt})
	})
}

// result waits for the next result, which must say how the attempt ended.
func (f *fakeRunner) result(t *testing.T) *taskhostv1.AttemptResult {
	t.Helper()
	select {
	case r := <-f.results:
		if r.GetOutcome() == taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_UNSPECIFIED {
			t.Errorf("result without an outcome: %v", r)
		}
		return r
	case <-time.After(waitLimit):
		t.Fatalf("no result within %v", waitLimit)
		return nil
	}
}

// waitPoll waits for a poll that satisfies ok.
func (f *fakeRunner) waitPoll(t *testing.T, what string, ok func(*taskhostv1.PollRequest) bool) *taskhostv1.PollRequest {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case r := <-f.reqs:
			if ok(r) {
				return r
			}
		case <-deadline:
			t.Fatalf("no poll with %s within %v", what, waitLimit)
			return nil
		}
	}
}

func isRunning(index int32) func(*taskhostv1.PollRequest) bool {
	return func(r *taskhostv1.PollRequest) bool {
		return slices.ContainsFunc(r.GetRunning(), func(a *taskhostv1.AttemptRef) bool { return a.GetTaskIndex() == index })
	}
}

// failTransport reports failed round trips, so a test can tell that the
// taskhost noticed the runner was gone.
type failTransport struct {
	rt     http.RoundTripper
	failed chan struct{}
}

func (f *failTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := f.rt.RoundTrip(r)
	if err != nil {
		select {
		case f.failed <- struct{}{}:
		default:
		}
	}
	return resp, err
}

type bundle struct {
	fake   *fakeRunner
	store  *blob.FS
	srv    *httptest.Server
	cfg    Config
	failed chan struct{}
}

func serve(t *testing.T, f *fakeRunner, addr string) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(taskhostv1connect.NewTaskHostServiceHandler(f))
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() { stopServer(srv) })
	return srv
}

func stopServer(srv *httptest.Server) {
	srv.CloseClientConnections()
	srv.Close()
}

func setup(t *testing.T) *bundle {
	t.Helper()
	store, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fake := newFakeRunner()
	srv := serve(t, fake, "127.0.0.1:0")
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	failed := make(chan struct{}, 1)
	return &bundle{
		fake:   fake,
		store:  store,
		srv:    srv,
		failed: failed,
		cfg: Config{
			RunnerURL:        srv.URL,
			WorkerID:         "w1",
			JobID:            "j1",
			Store:            store,
			SpoolDir:         t.TempDir(),
			HTTPClient:       &http.Client{Transport: &failTransport{rt: tr, failed: failed}},
			Logger:           slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Heartbeat:        20 * time.Millisecond,
			IdleWait:         5 * time.Second,
			KillGrace:        5 * time.Second,
			PipeGrace:        200 * time.Millisecond,
			ReconnectTimeout: time.Minute,
			PackAge:          50 * time.Millisecond,
			LiveInterval:     50 * time.Millisecond,
		},
	}
}

// run starts Run; the test's cleanup stops it and waits for it.
func (b *bundle) run(t *testing.T) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, b.cfg) }()
	out := make(chan error, 1)
	var once sync.Once
	var runErr error
	wait := func() error {
		once.Do(func() {
			select {
			case runErr = <-done:
			case <-time.After(waitLimit):
				runErr = errors.New("Run did not return")
			}
		})
		return runErr
	}
	go func() { out <- wait() }()
	t.Cleanup(func() {
		cancel()
		_ = wait()
	})
	return out
}

// runSleeper starts Run with task 1 sleeping and returns once the runner
// has seen it running; proc reports whether the task's process ended.
func (b *bundle) runSleeper(t *testing.T) (done <-chan error, proc func() bool) {
	t.Helper()
	path, f := fifo(t)
	a := assignment(1, "sh", "-c", `echo $$ > "$F"; exec sleep 100`)
	a.Env = map[string]string{"F": path}
	b.fake.assign(a)
	done = b.run(t)
	proc = watchProcess(t, readPID(t, f))
	b.fake.waitPoll(t, "task 1 running", isRunning(1))
	return done, proc
}

func waitRun(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitLimit):
		t.Fatal("Run did not return")
		return nil
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func assignment(index int32, argv ...string) *taskhostv1.Assignment {
	return &taskhostv1.Assignment{
		TaskIndex: index,
		Attempt:   1,
		Key:       fmt.Sprintf("t%d", index),
		Argv:      argv,
		LogPrefix: fmt.Sprintf("logs/j1/t%d/1", index),
	}
}

// output reads an attempt's log back, stdout and stderr, from the entry
// the worker sent for it (waiting for its pack to be uploaded); a log
// without an entry after a few seconds is empty (nothing printed).
func (b *bundle) output(t *testing.T, index int32) (string, string) {
	t.Helper()
	return b.outputFrom(t, b.fake, index)
}

// outputFrom is output, with the entry sent to runner f.
func (b *bundle) outputFrom(t *testing.T, f *fakeRunner, index int32) (string, string) {
	t.Helper()
	var e *taskhostv1.LogEntry
	for deadline := time.Now().Add(3 * time.Second); e == nil && time.Now().Before(deadline); {
		if e = f.entry(index); e == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if e == nil {
		return "", ""
	}
	var out, errOut strings.Builder
	err := logs.ReadEntry(context.Background(), b.store, logs.Entry{Object: e.Object, Offset: e.Offset, Length: e.Length, StdoutBytes: e.StdoutBytes, StderrBytes: e.StderrBytes}, 0, nil,
		func(s byte, _ int64, d []byte) error {
			if s == logs.Stdout {
				out.Write(d)
			} else {
				errOut.Write(d)
			}
			return nil
		})
	if err != nil {
		t.Fatalf("read log of task %d: %v", index, err)
	}
	return out.String(), errOut.String()
}

// fifo makes a named pipe that the test holds open for reading and
// writing, so that a task's open of it never blocks.
func fifo(t *testing.T) (string, *os.File) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return p, f
}

// readPID reads a process ID that a task wrote to the fifo.
func readPID(t *testing.T, f *os.File) int {
	t.Helper()
	if err := f.SetReadDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		t.Fatalf("read pid from fifo: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("bad pid %q", line)
	}
	return pid
}

// watchProcess returns a function that waits for the process to end and
// reports whether it did. The process is killed at the end of the test in
// any case.
func watchProcess(t *testing.T, pid int) func() bool {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return func() bool { return true } // already gone
	}
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	t.Cleanup(func() {
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		unix.Close(fd)
	})
	return func() bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, int(waitLimit.Milliseconds()))
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err == nil && n > 0
		}
	}
}

func TestRunsArgvEnvCwd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cwd, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cwd, "script"), []byte("#!/bin/sh\necho script \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	envTask := assignment(1, "env")
	envTask.Env = map[string]string{"FOO": "bar baz", "HAUL_TASK": "t1"}
	shTask := assignment(2, "/bin/sh", "-c", `pwd; echo "to stderr" >&2; printf 'x=%s' "$X"; exit 3`)
	shTask.Env = map[string]string{"X": "1"}
	shTask.Cwd = cwd
	relTask := assignment(3, "./script", "a b")
	relTask.Cwd = cwd
	b.fake.assign(envTask, shTask, relTask)
	b.cfg.Capacity = 2
	done := b.run(t)

	first := b.fake.waitPoll(t, "capacity", func(r *taskhostv1.PollRequest) bool { return true })
	if first.GetCapacity() != 2 || first.GetWorkerId() != "w1" || first.GetJobId() != "j1" {
		t.Fatalf("first poll: %v", first)
	}
	got := map[int32]*taskhostv1.AttemptResult{}
	for range 3 {
		r := b.fake.result(t)
		got[r.GetTaskIndex()] = r
	}

	r := got[1]
	if r.GetReason() != ReasonExit || r.GetExitCode() != 0 || r.GetLogBytes() == 0 || r.GetOutcome() != taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_SUCCEEDED {
		t.Fatalf("env task: %v", r)
	}
	if r.GetStartedUnixNanos() == 0 || r.GetFinishedUnixNanos() < r.GetStartedUnixNanos() {
		t.Fatalf("env task times: %v", r)
	}
	out, _ := b.output(t, 1)
	// The marker has a "#n" suffix while a parallel test runs an attempt
	// of the same worker ID, task and number.
	out = regexp.MustCompile(`(?m)^(HAUL_ATTEMPT_ID=w1/1/1)#[0-9]+$`).ReplaceAllString(out, "$1")
	want := fmt.Sprintf("FOO=bar baz\nHAUL_ATTEMPT_ID=w1/1/1\nHAUL_TASK=t1\nPATH=%s\n", os.Getenv("PATH"))
	if out != want {
		t.Fatalf("env output %q, want %q (the assignment's env, plus the attempt marker and PATH)", out, want)
	}

	r = got[2]
	if r.GetReason() != ReasonExit || r.GetExitCode() != 3 || r.GetSignal() != 0 || r.GetOutcome() != taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_FAILED {
		t.Fatalf("sh task: %v", r)
	}
	out, errOut := b.output(t, 2)
	if out != cwd+"\nx=1" || errOut != "to stderr\n" {
		t.Fatalf("sh task: stdout %q, stderr %q", out, errOut)
	}

	r = got[3]
	if r.GetReason() != ReasonExit || r.GetExitCode() != 0 {
		t.Fatalf("relative path task: %v", r)
	}
	if out, _ := b.output(t, 3); out != "script a b\n" {
		t.Fatalf("relative path task: %q", out)
	}

	b.fake.update(func(f *fakeRunner) { f.exit = true })
	if err := waitRun(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestKilledBySignal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.assign(assignment(1, "sh", "-c", "echo before; kill -9 $$"))
	b.run(t)
	r := b.fake.result(t)
	if r.GetReason() != ReasonSignal || r.GetSignal() != 9 || r.GetExitCode() != 128+9 || r.GetOutcome() != taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_FAILED {
		t.Fatalf("result %v", r)
	}
	if out, _ := b.output(t, 1); out != "before\n" {
		t.Fatalf("stdout %q", out)
	}
}

// A timeout kills the whole process group, the background grandchild that
// holds the output pipe included.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path, f := fifo(t)
	a := assignment(1, "sh", "-c", `sleep 100 & echo $! > "$F"; exec sleep 100`)
	a.Env = map[string]string{"F": path}
	a.TimeoutMs = 1000
	b.fake.assign(a)
	b.run(t)
	grandchild := watchProcess(t, readPID(t, f))
	r := b.fake.result(t)
	if r.GetReason() != ReasonTimeout || r.GetSignal() != 15 || r.GetOutcome() != taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_TIMED_OUT {
		t.Fatalf("result %v", r)
	}
	if !grandchild() {
		t.Fatal("the background grandchild survived the timeout")
	}
}

// A process that ignores SIGTERM gets SIGKILL after KillGrace.
func TestCancelEscalatesToSIGKILL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.KillGrace = 100 * time.Millisecond
	path, f := fifo(t)
	a := assignment(4, "sh", "-c", `trap "" TERM; echo $$ > "$F"; while :; do sleep 1; done`)
	a.Env = map[string]string{"F": path}
	b.fake.assign(a)
	b.run(t)
	proc := watchProcess(t, readPID(t, f))
	b.fake.waitPoll(t, "task 4 running", isRunning(4))
	b.fake.cancel(4, 1)
	r := b.fake.result(t)
	if r.GetReason() != ReasonCancelled || r.GetSignal() != 9 {
		t.Fatalf("result %v", r)
	}
	if !proc() {
		t.Fatal("process survived")
	}
}

func TestCancelFromRunner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path, f := fifo(t)
	a := assignment(7, "sh", "-c", `echo started; echo $$ > "$F"; exec sleep 100`)
	a.Env = map[string]string{"F": path}
	b.fake.assign(a)
	b.run(t)
	proc := watchProcess(t, readPID(t, f))
	b.fake.waitPoll(t, "task 7 running", isRunning(7))
	b.fake.cancel(7, 1)
	r := b.fake.result(t)
	if r.GetReason() != ReasonCancelled || r.GetSignal() != 15 || r.GetTaskIndex() != 7 || r.GetAttempt() != 1 ||
		r.GetOutcome() != taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_CANCELLED {
		t.Fatalf("result %v", r)
	}
	if !proc() {
		t.Fatal("task survived")
	}
	if out, _ := b.output(t, 7); out != "started\n" {
		t.Fatalf("stdout %q", out)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bad := assignment(3, "sh")
	bad.Cwd = "/nonexistent-haul-dir"
	b.fake.assign(
		assignment(1, "haul-no-such-command-xyz", "arg"),
		assignment(2, "/nonexistent/haul-binary"),
		bad,
		assignment(4),
	)
	b.cfg.Capacity = 4
	b.run(t)
	got := map[int32]*taskhostv1.AttemptResult{}
	for range 4 {
		r := b.fake.result(t)
		got[r.GetTaskIndex()] = r
	}
	for i, want := range map[int32]struct {
		code int32
		msg  string
	}{
		1: {127, `executable "haul-no-such-command-xyz" not found`},
		2: {127, "no such file"},
		3: {126, "cwd"},
		4: {127, "empty argv"},
	} {
		r := got[i]
		if r.GetReason() != ReasonStartError || r.GetExitCode() != want.code || !strings.Contains(r.GetMessage(), want.msg) ||
			r.GetOutcome() != taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_FAILED {
			t.Errorf("task %d: %v, want start_error %d with %q", i, r, want.code, want.msg)
		}
	}
	// The reason is in the attempt's log too.
	if _, errOut := b.output(t, 1); !strings.Contains(errOut, "not found") {
		t.Fatalf("stderr %q", errOut)
	}
}

// A result is kept and sent again until a poll succeeds.
func TestResultsResentAfterFailedPoll(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var mu sync.Mutex
	var calls, failedWithResults int
	b.fake.update(func(f *fakeRunner) {
		f.fail = func(r *taskhostv1.PollRequest) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 1 {
				return connect.NewError(connect.CodeUnavailable, errors.New("first call fails"))
			}
			if len(r.GetResults()) > 0 && failedWithResults == 0 {
				failedWithResults++
				return connect.NewError(connect.CodeInternal, errors.New("lost the results"))
			}
			return nil
		}
	})
	b.fake.assign(assignment(1, "echo", "hi"))
	b.run(t)
	r := b.fake.result(t)
	if r.GetTaskIndex() != 1 || r.GetReason() != ReasonExit {
		t.Fatalf("result %v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if failedWithResults != 1 {
		t.Fatalf("the call carrying the result failed %d times, want 1", failedWithResults)
	}
	select {
	case extra := <-b.fake.results:
		t.Fatalf("result delivered twice: %v", extra)
	default:
	}
}

// The runner goes away while a task runs and comes back on the same address;
// the result of the task that ended meanwhile reaches the new runner.
func TestReconnectsToRestartedRunner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pidPath, pidF := fifo(t)
	goPath, goF := fifo(t)
	a := assignment(5, "sh", "-c", `echo $$ > "$P"; read line < "$G"; echo "got $line"`)
	a.Env = map[string]string{"P": pidPath, "G": goPath}
	b.fake.assign(a)
	b.run(t)
	ended := watchProcess(t, readPID(t, pidF))
	b.fake.waitPoll(t, "task 5 running", isRunning(5))

	addr := b.srv.Listener.Addr().String()
	stopServer(b.srv)
	select {
	case <-b.failed:
	case <-time.After(waitLimit):
		t.Fatal("the taskhost never noticed the runner was gone")
	}
	if _, err := goF.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	if !ended() {
		t.Fatal("task did not end")
	}

	fake2 := newFakeRunner()
	serve(t, fake2, addr)
	r := fake2.result(t)
	if r.GetTaskIndex() != 5 || r.GetReason() != ReasonExit || r.GetExitCode() != 0 {
		t.Fatalf("result %v", r)
	}
	if out, _ := b.outputFrom(t, fake2, 5); out != "got go\n" {
		t.Fatalf("stdout %q", out)
	}
}

// A runner that stays away past ReconnectTimeout: the taskhost kills its
// tasks and fails.
func TestGivesUpOnUnreachableRunner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.ReconnectTimeout = 200 * time.Millisecond
	done, proc := b.runSleeper(t)
	stopServer(b.srv)
	err := waitRun(t, done)
	if err == nil || errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("Run: %v, want an unreachable-runner error", err)
	}
	if !proc() {
		t.Fatal("task survived")
	}
}

// A runner that does not know this worker makes it kill its tasks and exit.
func TestRejectedByRunner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	done, proc := b.runSleeper(t)
	b.fake.update(func(f *fakeRunner) {
		f.fail = func(*taskhostv1.PollRequest) error {
			return connect.NewError(connect.CodeNotFound, errors.New("unknown worker w1"))
		}
	})
	if err := waitRun(t, done); !errors.Is(err, ErrRejected) {
		t.Fatalf("Run: %v, want ErrRejected", err)
	}
	if !proc() {
		t.Fatal("task survived")
	}
}

// exit=true: the running task finishes, is reported, then Run returns nil.
func TestExitWhenTold(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, f := fifo(t)
	a := assignment(1, "sh", "-c", `read line < "$F"; echo "$line"`)
	a.Env = map[string]string{"F": f.Name()}
	b.fake.assign(a)
	done := b.run(t)
	b.fake.waitPoll(t, "task 1 running", isRunning(1))
	b.fake.update(func(f *fakeRunner) { f.exit = true })
	b.fake.waitPoll(t, "capacity 0 after exit", func(r *taskhostv1.PollRequest) bool {
		return isRunning(1)(r) && r.GetCapacity() == 0
	})
	b.fake.assign(assignment(2, "echo", "must not run"))
	if _, err := f.WriteString("bye\n"); err != nil {
		t.Fatal(err)
	}
	if err := waitRun(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	r := b.fake.result(t)
	if r.GetTaskIndex() != 1 || r.GetReason() != ReasonExit {
		t.Fatalf("result %v", r)
	}
	if out, _ := b.output(t, 1); out != "bye\n" {
		t.Fatalf("stdout %q", out)
	}
	if _, err := b.store.Get(context.Background(), "logs/j1/t2/1/final"); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("task 2 ran after exit: %v", err)
	}
}

// A background process that leaves the group and keeps the output pipe open
// does not keep the attempt from ending.
func TestPipeHeldOutsideGroup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pidPath, pidF := fifo(t)
	goPath, goF := fifo(t)
	a := assignment(1, "sh", "-c", `setsid sh -c 'echo $$ > "$P"; exec sleep 100' & read x < "$G"; echo leader done`)
	a.Env = map[string]string{"P": pidPath, "G": goPath}
	b.fake.assign(a)
	b.run(t)
	watchProcess(t, readPID(t, pidF)) // out of the group now; killed at cleanup
	if _, err := goF.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}
	r := b.fake.result(t)
	if r.GetReason() != ReasonExit || r.GetExitCode() != 0 {
		t.Fatalf("result %v", r)
	}
	if out, _ := b.output(t, 1); out != "leader done\n" {
		t.Fatalf("stdout %q", out)
	}
}

func TestStopOnContextEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path, f := fifo(t)
	a := assignment(1, "sh", "-c", `echo $$ > "$F"; exec sleep 100`)
	a.Env = map[string]string{"F": path}
	b.fake.assign(a)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, b.cfg) }()
	proc := watchProcess(t, readPID(t, f))
	b.fake.waitPoll(t, "task 1 running", isRunning(1))
	cancel()
	if err := waitRun(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if !proc() {
		t.Fatal("task survived")
	}
}

func TestBadConfig(t *testing.T) {
	t.Parallel()
	err := Run(context.Background(), Config{RunnerURL: "ftp://x", Capacity: -1})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"runner URL", "worker ID", "job ID", "object store", "capacity"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	err = Run(context.Background(), Config{RunnerURL: "http://x", WorkerID: "w", JobID: "j", BlobURL: "relative"})
	if err == nil || !strings.Contains(err.Error(), "relative") {
		t.Fatalf("bad blob URL: %v", err)
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"HAUL_RUNNER": "http://env:1", "HAUL_WORKER_ID": "w-env", "HAUL_JOB": "j-env",
		"HAUL_BLOB": "file:///tmp/b", "HAUL_CAPACITY": "3",
		TierEnv: "2", LocatorEnv: " http://gw1:8080, https://gw2:8443 ,",
	}
	getenv := func(k string) string { return env[k] }
	var sb strings.Builder
	cfg, _, err := ParseFlags([]string{"--runner", "http://flag:2", "-capacity=4", "--kill-grace", "3s"}, getenv, &sb)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RunnerURL != "http://flag:2" || cfg.WorkerID != "w-env" || cfg.JobID != "j-env" || cfg.BlobURL != "file:///tmp/b" ||
		cfg.Capacity != 4 || cfg.KillGrace != 3*time.Second || cfg.Tier != 2 ||
		!slices.Equal(cfg.Locators, []string{"http://gw1:8080", "https://gw2:8443"}) {
		t.Fatalf("config %+v", cfg)
	}
	cfg, _, err = ParseFlags(nil, getenv, &sb)
	if err != nil || cfg.Capacity != 3 {
		t.Fatalf("env capacity: %v %+v", err, cfg)
	}
	cfg, _, err = ParseFlags([]string{"--tier", "0", "--locator", "http://only:1"}, getenv, &sb)
	if err != nil || cfg.Tier != 0 || !slices.Equal(cfg.Locators, []string{"http://only:1"}) {
		t.Fatalf("tier and locator flags over the environment: %v %+v", err, cfg)
	}
	for _, args := range [][]string{{"--capacity", "0"}, {"--bogus"}, {"extra"},
		{"--tier", "-1"}, {"--tier", "one"}, {"--tier", "99999999999"}, {"--locator", "gw:8080"}, {"--locator", "http://gw:1,ftp://x"}} {
		if _, _, err := ParseFlags(args, getenv, &sb); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	if code := Main(context.Background(), []string{"--runner", "nope"}, getenv, &sb); code != 2 {
		t.Fatalf("bad usage exit code %d", code)
	}
	if code := Main(context.Background(), []string{"-h"}, getenv, &sb); code != 0 {
		t.Fatalf("-h exit code %d", code)
	}
}
