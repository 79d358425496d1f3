package runner_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	"github.com/haul-dev/haul/internal/bearer"
	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/gateway"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/gen/haul/taskhost/v1/taskhostv1connect"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
	"github.com/haul-dev/haul/internal/taskhost"
)

// inProcBackend runs each worker's taskhost in a goroutine of the test.
type inProcBackend struct {
	t       *testing.T
	dir     string
	r       *runner.Runner
	mu      sync.Mutex
	cancels map[string]context.CancelFunc
	started int
	// failFirst workers exit at once without polling, like a taskhost that
	// cannot start.
	failFirst int
	wg        sync.WaitGroup
}

func (b *inProcBackend) StartWorker(_ context.Context, s runner.WorkerSpec) error {
	b.mu.Lock()
	fail := b.started < b.failFirst
	b.mu.Unlock()
	if fail {
		// The failure is reported before the start is counted, so a test
		// that sees the count knows the runner has recorded the failure
		// (and its backoff) at the clock's current time.
		b.r.WorkerGone(s.ID, "exited with status 1")
		b.mu.Lock()
		b.started++
		b.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.mu.Lock()
	b.cancels[s.ID] = cancel
	b.started++
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		err := taskhost.Run(ctx, taskhost.Config{
			RunnerURL: s.RunnerURL, WorkerID: s.ID, JobID: s.JobID, Tier: s.TierIndex, BlobURL: s.BlobURL, Secret: s.Secret,
			Locators: locators(s.LocatorURL),
			SpoolDir: filepath.Join(b.dir, s.ID), Capacity: 1, KillGrace: 200 * time.Millisecond,
			ReconnectTimeout: 5 * time.Second,
			// In-process workers cannot have a cgroup of their own (joining
			// one would move the test binary): the tier's limit is enforced
			// by sampling.
			MemoryLimit: s.Tier.MemoryBytes, SampleInterval: 20 * time.Millisecond, NvidiaSMI: "-",
		})
		why := "exited"
		if err != nil {
			why = err.Error()
		}
		b.mu.Lock()
		delete(b.cancels, s.ID)
		b.mu.Unlock()
		cancel()
		b.r.WorkerGone(s.ID, why)
	}()
	return nil
}

// locators is the worker's locator list: url, if any.
func locators(url string) []string {
	if url == "" {
		return nil
	}
	return []string{url}
}

func (b *inProcBackend) StopWorker(_ context.Context, id string) error {
	b.mu.Lock()
	c := b.cancels[id]
	b.mu.Unlock()
	if c != nil {
		c()
	}
	return nil
}

// killAll stops every worker, as if their machines vanished.
func (b *inProcBackend) killAll() {
	b.mu.Lock()
	for _, c := range b.cancels {
		c()
	}
	b.mu.Unlock()
}

type bundle struct {
	st      store.Store
	run     *runner.Runner
	backend *inProcBackend
	api     apiv1connect.JobServiceClient
	dir     string
}

func setup(t *testing.T) *bundle { return setupWith(t, func(*runner.Config) {}) }

// setupWith is setup with the runner's config adjusted by tune.
func setupWith(t *testing.T, tune func(*runner.Config)) *bundle {
	t.Helper()
	b, _ := setupServe(t, t.TempDir(), tune)
	return b
}

// serve starts a runner with backend on a fresh SQLite store in dir, with
// the gateway and the taskhost protocol on one test server: cfg, adjusted
// by tune, gets the store, backend and URLs; made sees the runner before it
// starts; polls, when set, counts the calls of the taskhost protocol.
func serve(t *testing.T, dir string, backend runner.Backend, cfg runner.Config, tune func(*runner.Config), made func(*runner.Runner), polls *atomic.Int64) (*bundle, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "haul.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	blobDir := filepath.Join(dir, "blobs")
	os.MkdirAll(blobDir, 0o755)
	bs, err := blob.Open("file://" + blobDir)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	cfg.Store, cfg.Backend, cfg.RunnerURL, cfg.BlobURL = st, backend, srv.URL, "file://"+blobDir
	tune(&cfg)
	r := runner.New(cfg)
	if made != nil {
		made(r)
	}
	mux.Handle(jobService(gateway.Config{Store: st, Blob: bs, Notify: r.Wake, Explainer: r, Live: r}))
	path, h := taskhostv1connect.NewTaskHostServiceHandler(r)
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if polls != nil {
			polls.Add(1)
		}
		h.ServeHTTP(w, req)
	}))
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		srv.Close()
		st.Close()
	})
	return &bundle{st: st, run: r, api: apiClient(srv), dir: dir}, srv
}

// testAdmin is these tests' authenticator: any bearer is a platform
// admin. The runner's tests are about the runner; the gateway's own tests
// check authentication and authorization.
type testAdmin struct{}

func (testAdmin) Authenticate(context.Context, string) (*auth.Identity, error) {
	return &auth.Identity{Subject: "test-admin", Kind: auth.KindUser, PlatformAdmin: true, Via: "token"}, nil
}

// jobService returns the gateway's handler, authenticating with testAdmin.
func jobService(cfg gateway.Config) (string, http.Handler) {
	cfg.Auth = testAdmin{}
	gw := gateway.New(cfg)
	return apiv1connect.NewJobServiceHandler(gw, connect.WithInterceptors(gw.Interceptor()))
}

// apiClient returns a JobService client of srv that sends a bearer.
func apiClient(srv *httptest.Server) apiv1connect.JobServiceClient {
	return apiv1connect.NewJobServiceClient(bearer.Client(srv.Client(), "test"), srv.URL)
}

func (b *bundle) submit(t *testing.T, spec string) string {
	t.Helper()
	resp, err := b.api.SubmitJob(context.Background(), connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(spec), Filename: "test.yaml"}))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return resp.Msg.JobId
}

func (b *bundle) wait(t *testing.T, id string, cond func(*store.Job) bool) *store.Job {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		j, err := b.st.GetJob(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: condition not met; state %s counts %+v", id, j.State, j.Counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bundle) waitDone(t *testing.T, id string) *store.Job {
	return b.wait(t, id, func(j *store.Job) bool { return j.State.Terminal() })
}

func (b *bundle) task(t *testing.T, job, key string) (*store.Task, []store.Attempt) {
	t.Helper()
	task, err := b.st.GetTask(context.Background(), job, key)
	if err != nil {
		t.Fatalf("task %s: %v", key, err)
	}
	atts, err := b.st.ListAttempts(context.Background(), job, task.Index)
	if err != nil {
		t.Fatal(err)
	}
	return task, atts
}

func TestDependenciesRunInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	order := filepath.Join(b.dir, "order")
	id := b.submit(t, `
name: diamond
env: {OUT: `+order+`}
tasks:
  - {key: a, command: [sh, -c, 'echo $HAUL_TASK >> $OUT']}
  - {key: b, command: [sh, -c, 'echo $HAUL_TASK >> $OUT'], after: [a]}
  - {key: c, command: [sh, -c, 'echo $HAUL_TASK >> $OUT'], after: [a]}
  - key: "m-{i}"
    foreach: {range: [0, 5]}
    command: [sh, -c, 'echo $HAUL_TASK >> $OUT']
    after: [b, c]
  - {key: d, command: [sh, -c, 'echo $HAUL_TASK >> $OUT'], after: ["m-*"]}
`)
	j := b.waitDone(t, id)
	if j.State != store.JobSucceeded || j.Counts.Succeeded != 9 {
		t.Fatalf("job %s counts %+v, want succeeded with 9", j.State, j.Counts)
	}
	data, err := os.ReadFile(order)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, k := range strings.Fields(string(data)) {
		if _, dup := pos[k]; dup {
			t.Fatalf("task %s ran twice: %s", k, data)
		}
		pos[k] = i
	}
	if len(pos) != 9 {
		t.Fatalf("want 9 tasks run, got %q", data)
	}
	for _, e := range [][2]string{{"a", "b"}, {"a", "c"}, {"b", "m-0"}, {"c", "m-4"}, {"m-0", "d"}, {"m-3", "d"}} {
		if pos[e[0]] > pos[e[1]] {
			t.Errorf("%s ran after %s: %q", e[0], e[1], data)
		}
	}
	if j.StartedAt.IsZero() || j.FinishedAt.Before(j.StartedAt) {
		t.Errorf("job times: started %v finished %v", j.StartedAt, j.FinishedAt)
	}
}

func TestFailureRetriesThenUpstreamFailed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, `
name: failing
tasks:
  - {key: bad, command: [sh, -c, 'echo oops >&2; exit 3'], retries: 2}
  - {key: child, command: ["true"], after: [bad]}
  - {key: grandchild, command: ["true"], after: [child]}
  - {key: independent, command: [sh, -c, 'sleep 0.2']}
`)
	j := b.waitDone(t, id)
	if j.State != store.JobFailed {
		t.Fatalf("job %s, want failed", j.State)
	}
	bad, atts := b.task(t, id, "bad")
	if bad.State != store.TaskFailed || bad.Attempts != 3 || bad.ExitCode != 3 || len(atts) != 3 {
		t.Fatalf("bad: state %s attempts %d exit %d (%d attempt rows), want failed after 3 attempts with exit 3", bad.State, bad.Attempts, bad.ExitCode, len(atts))
	}
	for _, a := range atts {
		if a.State != store.AttemptFailed || a.ExitCode != 3 || a.Reason != "exit" {
			t.Errorf("attempt %d: %+v", a.Number, a)
		}
	}
	for _, k := range []string{"child", "grandchild"} {
		if tk, _ := b.task(t, id, k); tk.State != store.TaskUpstreamFailed || tk.Attempts != 0 {
			t.Errorf("%s: %s after %d attempts, want upstream_failed without running", k, tk.State, tk.Attempts)
		}
	}
	if tk, _ := b.task(t, id, "independent"); tk.State != store.TaskSucceeded {
		t.Errorf("independent branch: %s, want succeeded", tk.State)
	}
}

func TestTimeoutKillsTheProcessGroup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, `
name: slow
tasks:
  - {key: slow, command: [sh, -c, 'sleep 30 & sleep 30'], timeout: 300ms}
`)
	j := b.waitDone(t, id)
	tk, atts := b.task(t, id, "slow")
	if j.State != store.JobFailed || tk.State != store.TaskFailed || tk.Reason != "timeout" {
		t.Fatalf("job %s task %s reason %q, want failed by timeout", j.State, tk.State, tk.Reason)
	}
	if len(atts) != 1 || atts[0].Reason != "timeout" {
		t.Fatalf("attempts: %+v", atts)
	}
	if d := atts[0].FinishedAt.Sub(atts[0].StartedAt); d > 20*time.Second {
		t.Fatalf("attempt ran %s: the timeout did not kill it", d)
	}
}

func TestCancelJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, `
name: cancel-me
tasks:
  - key: "s-{i}"
    foreach: {range: [0, 3]}
    command: [sleep, "60"]
  - {key: after, command: ["true"], after: ["s-*"]}
`)
	b.wait(t, id, func(j *store.Job) bool { return j.Counts.Running > 0 })
	if _, err := b.api.CancelJob(context.Background(), connect.NewRequest(&apiv1.CancelJobRequest{JobId: id})); err != nil {
		t.Fatal(err)
	}
	j := b.waitDone(t, id)
	if j.State != store.JobCancelled || j.Counts.Cancelled != 4 {
		t.Fatalf("job %s counts %+v, want cancelled with 4 cancelled tasks", j.State, j.Counts)
	}
	_, atts := b.task(t, id, "s-0")
	for _, a := range atts {
		if a.State != store.AttemptCancelled {
			t.Errorf("attempt %d of s-0: %s, want cancelled", a.Number, a.State)
		}
	}
}

func TestLostWorkerRetriesWithoutUsingRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	marker := filepath.Join(b.dir, "marker")
	id := b.submit(t, `
name: lost
tasks:
  # The first attempt leaves a marker and hangs; later attempts succeed.
  - {key: flaky, command: [sh, -c, 'if [ -e `+marker+` ]; then echo second; else touch `+marker+`; sleep 60; fi']}
`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			t.Fatalf("first attempt never started: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.backend.killAll()
	j := b.waitDone(t, id)
	tk, atts := b.task(t, id, "flaky")
	if j.State != store.JobSucceeded || tk.State != store.TaskSucceeded || tk.Retries != 0 {
		t.Fatalf("job %s task %s (retries %d), want succeeded with no user retry configured", j.State, tk.State, tk.Retries)
	}
	if len(atts) != 2 || atts[0].State != store.AttemptLost || atts[1].State != store.AttemptSucceeded {
		t.Fatalf("attempts: want lost then succeeded, got %+v", atts)
	}
}

func TestLogsOfAttempts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, `
name: logs
tasks:
  - {key: talk, command: [sh, -c, 'printf "out1\n"; printf "err1\n" >&2; printf "out2"; exit $(( HAUL_ATTEMPT == 1 ))'], retries: 1}
`)
	if j := b.waitDone(t, id); j.State != store.JobSucceeded {
		t.Fatalf("job %s", j.State)
	}
	read := func(attempt int32, streams ...apiv1.LogStream) string {
		s, err := b.api.GetLogs(context.Background(), connect.NewRequest(&apiv1.GetLogsRequest{JobId: id, Key: "talk", Attempt: attempt, Streams: streams}))
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		for s.Receive() {
			for _, c := range s.Msg().Chunks {
				out.Write(c.Data)
			}
		}
		if err := s.Err(); err != nil {
			t.Fatalf("logs of attempt %d: %v", attempt, err)
		}
		return out.String()
	}
	// The two pipes are read concurrently, so only each stream's own order
	// is fixed; the logs package tests interleaving of one writer's frames.
	if got := read(1); len(got) != len("out1\nerr1\nout2") || !strings.Contains(got, "err1\n") {
		t.Errorf("attempt 1 log %q", got)
	}
	if got := read(0, apiv1.LogStream_LOG_STREAM_STDERR); got != "err1\n" {
		t.Errorf("latest attempt, stderr only: %q", got)
	}
	if got := read(2, apiv1.LogStream_LOG_STREAM_STDOUT); got != "out1\nout2" {
		t.Errorf("attempt 2 stdout: %q", got)
	}
}

func TestCancelTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, `
name: cancel-one
tasks:
  - {key: slow, command: [sleep, "60"]}
  - {key: child, command: ["true"], after: [slow]}
  - {key: other, command: [sh, -c, "sleep 0.3"]}
`)
	b.wait(t, id, func(j *store.Job) bool { return j.Counts.Running >= 1 })
	for {
		if tk, _ := b.task(t, id, "slow"); tk.State == store.TaskRunning {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := b.api.CancelTask(context.Background(), connect.NewRequest(&apiv1.CancelTaskRequest{JobId: id, Key: "slow"}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Msg.Task.Key != "slow" {
		t.Fatalf("CancelTask returned %v", resp.Msg.Task)
	}
	if _, err := b.api.CancelTask(context.Background(), connect.NewRequest(&apiv1.CancelTaskRequest{JobId: id, Key: "nope"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("cancel of an unknown key: %v, want NotFound", err)
	}
	j := b.waitDone(t, id)
	states := map[string]store.TaskState{}
	for _, k := range []string{"slow", "child", "other"} {
		tk, _ := b.task(t, id, k)
		states[k] = tk.State
	}
	if j.State != store.JobFailed || states["slow"] != store.TaskCancelled || states["child"] != store.TaskCancelled || states["other"] != store.TaskSucceeded {
		t.Fatalf("job %s, tasks %v: want failed job, slow and child cancelled, other succeeded", j.State, states)
	}
	_, atts := b.task(t, id, "slow")
	if len(atts) != 1 || atts[0].State != store.AttemptCancelled {
		t.Fatalf("slow's attempts: %+v, want one cancelled", atts)
	}
}

// fakeClock is the runner's clock in tests that check timing decisions.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (b *inProcBackend) startedCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.started
}

// TestWorkerThatCannotStartBacksOff runs the runner on a frozen clock with
// workers that always die before polling: after each failure no new worker
// may start until the clock passes the backoff (1s, then 2s, then 4s).
func TestWorkerThatCannotStartBacksOff(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{now: time.Now()}
	b := setupWith(t, func(c *runner.Config) { c.Clock = clock.Now })
	b.backend.mu.Lock()
	b.backend.failFirst = 1 << 30
	b.backend.mu.Unlock()
	b.submit(t, "name: crashloop\ntasks:\n  - {key: a, command: [\"true\"]}\n")

	waitStarted := func(n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for b.backend.startedCount() < n {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d never started", n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// holds checks that no other worker starts while the runner ticks
	// several times (it reconciles every 100ms) on the frozen clock.
	holds := func(n int) {
		t.Helper()
		time.Sleep(400 * time.Millisecond)
		if got := b.backend.startedCount(); got != n {
			t.Fatalf("%d workers started before the backoff passed, want %d", got, n)
		}
	}
	waitStarted(1)
	holds(1)
	clock.Advance(time.Second)
	waitStarted(2)
	clock.Advance(time.Second) // the second failure waits 2s
	holds(2)
	clock.Advance(time.Second)
	waitStarted(3)
	clock.Advance(3 * time.Second) // the third waits 4s
	holds(3)
	clock.Advance(time.Second)
	waitStarted(4)
}

// WorkerNode makes the test backend a runner.NodeInfoer: every worker runs
// on a $3.60/hour node with 2 CPUs and 4 GiB.
func (b *inProcBackend) WorkerNode(string) (runner.NodeInfo, bool) {
	return runner.NodeInfo{PricePerHour: 3.6, CPU: 2, MemoryBytes: 4 << 30}, true
}

func TestJobCostFromWorkerTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, `
name: costly
workers: [{name: half, cpu: 1, memory: 1Gi}]
tasks:
  - key: "t-{i}"
    foreach: {range: [0, 4]}
    command: [sh, -c, "sleep 0.2"]
`)
	// Workers are counted when they end, after the job: wait for their time.
	j := b.wait(t, id, func(j *store.Job) bool {
		return j.State.Terminal() && j.WorkerSeconds >= 0.8 && b.run != nil && noWorkers(b)
	})
	j, _ = b.st.GetJob(context.Background(), id)
	// A 1-CPU, 1 GiB tier takes half of the node (the CPU share is larger):
	// $3.60/h × 0.5 = $0.0005 per worker-second.
	if want := j.WorkerSeconds * 0.0005; j.CostUSD < want*0.999 || j.CostUSD > want*1.001 {
		t.Fatalf("cost $%.6f for %.2f worker-seconds, want $%.6f", j.CostUSD, j.WorkerSeconds, want)
	}
}

func noWorkers(b *bundle) bool {
	b.backend.mu.Lock()
	defer b.backend.mu.Unlock()
	return len(b.backend.cancels) == 0
}

// TestOOMMovesTaskUpATier: an attempt killed for running out of memory on
// the small tier is retried on the big one without using a retry (the job
// has none); the same on the last tier fails the task with reason oom. Usage
// and the job's requested-versus-used summary are recorded.
func TestOOMMovesTaskUpATier(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const alloc = `import time; b = bytearray(200 * 2**20); time.sleep(1)`
	id := b.submit(t, `
name: tiers
retries: 0
workers:
  - {name: small, memory: 64Mi}
  - {name: big, memory: 1Gi}
tasks:
  - key: hungry
    command: [python3, -c, '`+alloc+`']
  - key: modest
    command: [python3, -c, 'print("ok")']
  - key: last
    worker: small
    command: [sh, -c, 'echo after the hungry one']
    after: [hungry]
`)
	j := b.waitDone(t, id)
	if j.State != store.JobSucceeded {
		t.Fatalf("job %s, want succeeded; counts %+v", j.State, j.Counts)
	}
	task, atts := b.task(t, id, "hungry")
	if task.RunTier != 1 || task.Tier != 0 {
		t.Errorf("hungry: tier %d, run tier %d; want 0 and 1", task.Tier, task.RunTier)
	}
	if len(atts) != 2 {
		t.Fatalf("hungry: want 2 attempts, got %+v", atts)
	}
	if a := atts[0]; !a.OOM() || a.Tier != 0 || a.State != store.AttemptFailed || a.Enforcement != "rss-poll" || a.Usage.PeakRSSBytes <= 0 {
		t.Errorf("hungry attempt 1: want an oom failure on tier 0 enforced by rss-poll, got %+v", a)
	}
	if m := atts[0].Message; !strings.HasPrefix(m, `out of memory on tier "small"; retrying on tier "big"`) {
		t.Errorf("attempt message %q: want it to name both tiers", m)
	}
	if a := atts[1]; a.State != store.AttemptSucceeded || a.Tier != 1 || a.Usage.PeakRSSBytes < 200<<20 {
		t.Errorf("hungry attempt 2: want a success on tier 1 with a peak of at least 200 MiB, got %+v", a)
	}
	if _, atts := b.task(t, id, "modest"); len(atts) != 1 || atts[0].Tier != 0 {
		t.Errorf("modest: want one attempt on tier 0, got %+v", atts)
	}
	if j.Usage.OOMAttempts != 1 || j.Usage.PeakRSSBytes < 200<<20 || j.Usage.MemoryRequestedByteSeconds <= j.Usage.MemoryUsedByteSeconds {
		t.Errorf("job usage %+v: want 1 oom attempt, a peak of at least 200 MiB, less used than requested", j.Usage)
	}

	id = b.submit(t, `
name: one-tier
retries: 3
workers: [{name: small, memory: 64Mi}]
tasks:
  - key: hungry
    command: [python3, -c, '`+alloc+`']
  - key: child
    command: [/bin/true]
    after: [hungry]
`)
	j = b.waitDone(t, id)
	task, atts = b.task(t, id, "hungry")
	if j.State != store.JobFailed || task.State != store.TaskFailed || task.Reason != "oom" || len(atts) != 1 {
		t.Fatalf("OOM on the last tier: job %s, task %s (%s), %d attempts; want failed, failed (oom), 1 attempt (retries are not for OOM)", j.State, task.State, task.Reason, len(atts))
	}
	if m := atts[0].Message; !strings.HasPrefix(m, `out of memory on tier "small", the job's last`) {
		t.Errorf("attempt message %q: want it to name the tier and say it was the last", m)
	}
	if child, _ := b.task(t, id, "child"); child.State != store.TaskUpstreamFailed {
		t.Errorf("child: %s, want upstream_failed", child.State)
	}
}
