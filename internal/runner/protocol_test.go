package runner_test

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/gen/haul/taskhost/v1/taskhostv1connect"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
)

// scriptedBackend starts no process: the test plays the worker, calling
// Poll itself, so that it can lose and repeat messages at will.
type scriptedBackend struct {
	mu      sync.Mutex
	started []runner.WorkerSpec
	stopped map[string]bool
}

func (b *scriptedBackend) StartWorker(_ context.Context, s runner.WorkerSpec) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.started = append(b.started, s)
	return nil
}

func (b *scriptedBackend) StopWorker(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopped[id] = true
	return nil
}

// secret returns the credential the runner gave worker id ("" if none).
func (b *scriptedBackend) secret(id string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.started {
		if s.ID == id {
			return s.Secret
		}
	}
	return ""
}

// worker waits for the runner to start a worker for job and returns its ID.
func (b *scriptedBackend) worker(t *testing.T, job string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		for _, s := range b.started {
			if s.JobID == job {
				b.mu.Unlock()
				return s.ID
			}
		}
		b.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no worker started for job %s", job)
	return ""
}

type protoBundle struct {
	*bundle
	scripted *scriptedBackend
	th       taskhostv1connect.TaskHostServiceClient
	polls    *atomic.Int64
}

func setupScripted(t *testing.T) *protoBundle {
	t.Helper()
	return setupScriptedWith(t, func(*runner.Config) {})
}

// setupScriptedWith is setupScripted with tune applied to the runner's
// config.
func setupScriptedWith(t *testing.T, tune func(*runner.Config)) *protoBundle {
	t.Helper()
	backend := &scriptedBackend{stopped: map[string]bool{}}
	polls := &atomic.Int64{}
	b, srv := serve(t, t.TempDir(), backend, runner.Config{
		MaxWorkers: 1, ScanInterval: 50 * time.Millisecond, IdleTimeout: time.Minute,
		Sched: sched.Config{BackoffBase: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond},
	}, tune, nil, polls)
	return &protoBundle{
		bundle:   b,
		scripted: backend,
		th:       taskhostv1connect.NewTaskHostServiceClient(srv.Client(), srv.URL),
		polls:    polls,
	}
}

// poll polls as the worker req names, with its credential.
func (b *protoBundle) poll(t *testing.T, req *taskhostv1.PollRequest) *taskhostv1.PollResponse {
	t.Helper()
	resp, err := b.pollAs(b.scripted.secret(req.WorkerId), req)
	if err != nil {
		t.Fatalf("poll: %v", err)
	}
	return resp
}

// pollAs polls with the bearer secret ("": no Authorization header).
func (b *protoBundle) pollAs(secret string, req *taskhostv1.PollRequest) (*taskhostv1.PollResponse, error) {
	r := connect.NewRequest(req)
	if secret != "" {
		r.Header().Set("Authorization", "Bearer "+secret)
	}
	resp, err := b.th.Poll(context.Background(), r)
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

func exited(a *taskhostv1.Assignment, code int32) *taskhostv1.AttemptResult {
	now := time.Now().UnixNano()
	return &taskhostv1.AttemptResult{TaskIndex: a.TaskIndex, Attempt: a.Attempt, ExitCode: code, Reason: "exit",
		StartedUnixNanos: now - 1e6, FinishedUnixNanos: now}
}

// A reply whose assignment never reaches the worker: the next poll, which
// does not list the attempt, makes the runner declare it lost and hand the
// task out again, without using a retry. A result sent twice counts once.
func TestLostReplyIsDeclaredLostAndRetried(t *testing.T) {
	t.Parallel()
	b := setupScripted(t)
	job := b.submit(t, "name: lost\nretries: 0\ntasks:\n  - key: only\n    command: [\"true\"]\n")
	w := b.scripted.worker(t, job)

	first := b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Capacity: 1, WaitMs: 5000})
	if len(first.Assignments) != 1 {
		t.Fatalf("first poll: %d assignments, want 1", len(first.Assignments))
	}
	// That reply is "lost": the worker polls again, running nothing.
	var second *taskhostv1.Assignment
	for range 20 {
		resp := b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Capacity: 1, WaitMs: 1000})
		if len(resp.Assignments) > 0 {
			second = resp.Assignments[0]
			break
		}
	}
	if second == nil || second.Attempt != first.Assignments[0].Attempt+1 {
		t.Fatalf("after the lost reply: assignment %v, want attempt %d", second, first.Assignments[0].Attempt+1)
	}
	res := exited(second, 0)
	b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Results: []*taskhostv1.AttemptResult{res}, ReportOnly: true})
	b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Results: []*taskhostv1.AttemptResult{res}, ReportOnly: true}) // repeated
	j := b.waitDone(t, job)
	if j.State != store.JobSucceeded {
		t.Fatalf("job %s, want succeeded", j.State)
	}
	task, atts := b.task(t, job, "only")
	if len(atts) != 2 || atts[0].State != store.AttemptLost || atts[1].State != store.AttemptSucceeded || task.Attempts != 2 {
		t.Fatalf("attempts %+v (task attempts %d), want lost then succeeded", atts, task.Attempts)
	}
}

// A cancel whose reply is lost is sent again on the next reply, until the
// attempt's result arrives; an attempt the worker runs that is not its own
// is cancelled too.
func TestCancelIsRepeatedUntilTheResultArrives(t *testing.T) {
	t.Parallel()
	b := setupScripted(t)
	job := b.submit(t, "name: cancel\ntasks:\n  - key: long\n    command: [sleep, \"300\"]\n")
	w := b.scripted.worker(t, job)
	a := b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Capacity: 1, WaitMs: 5000}).Assignments[0]
	running := []*taskhostv1.AttemptRef{{TaskIndex: a.TaskIndex, Attempt: a.Attempt}, {TaskIndex: 77, Attempt: 3}}
	if _, err := b.api.CancelJob(context.Background(), connect.NewRequest(&apiv1.CancelJobRequest{JobId: job})); err != nil {
		t.Fatal(err)
	}
	has := func(resp *taskhostv1.PollResponse, task, attempt int32) bool {
		for _, c := range resp.Cancel {
			if c.TaskIndex == task && c.Attempt == attempt {
				return true
			}
		}
		return false
	}
	var got *taskhostv1.PollResponse
	for range 50 {
		got = b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Running: running, WaitMs: 200})
		if has(got, a.TaskIndex, a.Attempt) {
			break
		}
	}
	if !has(got, a.TaskIndex, a.Attempt) || !has(got, 77, 3) {
		t.Fatalf("cancels %v: want the job's attempt and the stranger 77/3", got.Cancel)
	}
	// That reply is lost too: the next one says it again.
	again := b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Running: running[:1]})
	if !has(again, a.TaskIndex, a.Attempt) {
		t.Fatalf("second reply cancels %v: want the attempt again", again.Cancel)
	}
	res := exited(a, -1)
	res.Reason = "cancelled"
	b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Results: []*taskhostv1.AttemptResult{res}})
	if j := b.waitDone(t, job); j.State != store.JobCancelled {
		t.Fatalf("job %s, want cancelled", j.State)
	}
}

// A worker that runs something and has room for more, with nothing to hand
// out, is held until its wait ends: it does not spin.
func TestBusyWorkerWithFreeSlotsDoesNotSpin(t *testing.T) {
	t.Parallel()
	b := setupScripted(t)
	job := b.submit(t, "name: hold\ntasks:\n  - key: long\n    command: [sleep, \"300\"]\n")
	w := b.scripted.worker(t, job)
	a := b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Capacity: 4, WaitMs: 5000}).Assignments[0]
	running := []*taskhostv1.AttemptRef{{TaskIndex: a.TaskIndex, Attempt: a.Attempt}}
	before := b.polls.Load()
	// Poll as fast as the replies come for a while: each is held for its
	// wait, so few polls fit.
	end := time.Now().Add(time.Second)
	for time.Now().Before(end) {
		resp := b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Running: running, Capacity: 3, WaitMs: 300})
		if len(resp.Assignments)+len(resp.Cancel) > 0 || resp.Exit {
			t.Fatalf("unexpected reply %v", resp)
		}
	}
	if n := b.polls.Load() - before; n > 10 {
		t.Fatalf("%d polls in a second with nothing to do, want a few held ones", n)
	}
}

// Absurd figures from a worker are bounded where they enter: the job
// succeeds and its sums stay finite, and other jobs are unaffected.
func TestPoisonedUsageIsBounded(t *testing.T) {
	t.Parallel()
	b := setupScripted(t)
	job := b.submit(t, "name: poison\ntasks:\n  - key: \"t-{i}\"\n    foreach: {range: [0, 2]}\n    command: [\"true\"]\n")
	w := b.scripted.worker(t, job)
	for range 2 {
		var a *taskhostv1.Assignment
		for a == nil {
			resp := b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Capacity: 1, WaitMs: 2000})
			if len(resp.Assignments) > 0 {
				a = resp.Assignments[0]
			}
		}
		res := exited(a, 0)
		res.Usage = &taskhostv1.Usage{CpuUserSeconds: 1.7e308, CpuSystemSeconds: math.Inf(1), PeakRssBytes: math.MaxInt64,
			Gpus: []*taskhostv1.GPUUsage{{Name: "bad\x00name", AvgUtilizationPercent: math.NaN()}}}
		res.Message = string(make([]byte, 1<<20))
		b.poll(t, &taskhostv1.PollRequest{WorkerId: w, JobId: job, Results: []*taskhostv1.AttemptResult{res}, ReportOnly: true})
	}
	j := b.waitDone(t, job)
	if j.State != store.JobSucceeded {
		t.Fatalf("job %s, want succeeded", j.State)
	}
	if u := j.Usage.CPUUsedSeconds; math.IsInf(u, 0) || math.IsNaN(u) || u > 1e12 {
		t.Fatalf("job CPU used %v: want a bounded figure", u)
	}
	_, atts := b.task(t, job, "t-0")
	if len(atts) != 1 || len(atts[0].Message) > 8<<10 {
		t.Fatalf("attempt message of %d bytes, want it cut", len(atts[0].Message))
	}
	if err := b.run.Health(); err != nil {
		t.Fatalf("health: %v", err)
	}
}
