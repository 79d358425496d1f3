package taskhost

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
)

// TestExecHook runs attempts through Config.Exec: no process, no log, the
// results reported like processes that exited with the returned codes.
func TestExecHook(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Capacity = 2
	release := make(chan struct{})
	var calls atomic.Int32
	b.cfg.Exec = func(ctx context.Context, a *taskhostv1.Assignment) (int32, error) {
		calls.Add(1)
		switch a.GetArgv()[0] {
		case "ok":
			return 0, nil
		case "three":
			return 3, nil
		case "broken":
			return 0, errors.New("cannot interpret this")
		case "wait":
			select {
			case <-ctx.Done():
			case <-release:
			}
			return 0, nil
		}
		return 1, nil
	}
	done := b.run(t)
	defer close(release)

	b.fake.assign(assignment(0, "ok"), assignment(1, "three"))
	got := map[int32]*taskhostv1.AttemptResult{}
	for range 2 {
		r := b.fake.result(t)
		got[r.GetTaskIndex()] = r
	}
	if r := got[0]; r.GetReason() != ReasonExit || r.GetExitCode() != 0 || r.GetUsage() != nil || r.GetLogBytes() != 0 {
		t.Errorf("exit 0: got %v", r)
	}
	if r := got[1]; r.GetReason() != ReasonExit || r.GetExitCode() != 3 {
		t.Errorf("exit 3: got %v", r)
	}
	for _, r := range got {
		if r.GetStartedUnixNanos() == 0 || r.GetFinishedUnixNanos() < r.GetStartedUnixNanos() {
			t.Errorf("task %d: times %d..%d", r.GetTaskIndex(), r.GetStartedUnixNanos(), r.GetFinishedUnixNanos())
		}
		if r.GetEnforcement() != EnforcementNone {
			t.Errorf("task %d: enforcement %q, want %q", r.GetTaskIndex(), r.GetEnforcement(), EnforcementNone)
		}
	}

	b.fake.assign(assignment(2, "broken"))
	if r := b.fake.result(t); r.GetReason() != ReasonStartError || r.GetExitCode() != ExitCannotExecute || r.GetMessage() != "cannot interpret this" {
		t.Errorf("error: got %v", r)
	}

	// A cancelled attempt ends with its context.
	b.fake.assign(assignment(3, "wait"))
	b.fake.waitPoll(t, "task 3 running", isRunning(3))
	b.fake.cancel(3, 1)
	if r := b.fake.result(t); r.GetTaskIndex() != 3 || r.GetReason() != ReasonCancelled {
		t.Errorf("cancelled: got %v", r)
	}

	// A timeout likewise.
	a := assignment(4, "wait")
	a.TimeoutMs = 10
	b.fake.assign(a)
	if r := b.fake.result(t); r.GetTaskIndex() != 4 || r.GetReason() != ReasonTimeout {
		t.Errorf("timeout: got %v", r)
	}

	if n := calls.Load(); n != 5 {
		t.Errorf("Exec called %d times, want 5", n)
	}
	if keys, err := b.store.List(context.Background(), "logs/"); err != nil || len(keys) > 0 {
		t.Errorf("log objects %q (err %v), want none", keys, err)
	}
	b.fake.update(func(f *fakeRunner) { f.exit = true })
	if err := waitRun(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
}
