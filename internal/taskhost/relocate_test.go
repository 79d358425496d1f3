package taskhost

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
)

// seen returns what ch holds now: the calls a fake has seen so far.
func seen[T any](ch <-chan T) []T {
	var out []T
	for {
		select {
		case v := <-ch:
			out = append(out, v)
		default:
			return out
		}
	}
}

// checkLocates: every Locate names the worker and its tier and carries its
// credential.
func checkLocates(t *testing.T, calls []*connect.Request[taskhostv1.LocateRequest]) {
	t.Helper()
	if len(calls) == 0 {
		t.Fatal("no Locate call was made")
	}
	for i, c := range calls {
		m := c.Msg
		if m.GetWorkerId() != "w1" || m.GetJobId() != "j1" || m.GetTier() != 2 {
			t.Errorf("Locate %d: %v, want worker w1, job j1, tier 2", i, m)
		}
		if got := c.Header().Get("Authorization"); got != "Bearer the-worker-secret" {
			t.Errorf("Locate %d: Authorization %q, want the worker's credential", i, got)
		}
	}
}

// TestRelocatesToTheJobsNewRunner: the runner starts answering Unavailable
// (its shard moved) while a result is unacknowledged; the locator first
// knows no owner, then names a second runner. The worker switches to it
// without restarting: the result and every later poll arrive there, each
// poll and Locate carrying the worker's tier and credential.
func TestRelocatesToTheJobsNewRunner(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Secret = "the-worker-secret"
	b.cfg.Tier = 2
	b.cfg.IdleWait = 100 * time.Millisecond
	moved := newFakeRunner()
	movedSrv := serve(t, moved, "127.0.0.1:0")
	loc := newFakeRunner()
	b.cfg.Locators = []string{serve(t, loc, "127.0.0.1:0").URL}

	var resultRefused atomic.Bool // the old runner refused a poll carrying the result
	loc.update(func(f *fakeRunner) {
		f.locate = func(*connect.Request[taskhostv1.LocateRequest]) (*taskhostv1.LocateResponse, error) {
			if !resultRefused.Load() {
				return nil, connect.NewError(connect.CodeUnavailable, errors.New("the shard has no owner yet"))
			}
			return &taskhostv1.LocateResponse{RunnerUrl: movedSrv.URL}, nil
		}
	})

	_, goF := fifo(t)
	a := assignment(5, "sh", "-c", `read line < "$G"; echo "got $line"`)
	a.Env = map[string]string{"G": goF.Name()}
	b.fake.assign(a)
	done := b.run(t)
	b.fake.waitPoll(t, "task 5 running", isRunning(5))

	b.fake.update(func(f *fakeRunner) {
		f.fail = func(r *taskhostv1.PollRequest) error {
			if len(r.GetResults()) > 0 {
				resultRefused.Store(true)
			}
			return connect.NewError(connect.CodeUnavailable, errors.New("shard 7 is not mine"))
		}
	})
	if _, err := goF.WriteString("go\n"); err != nil {
		t.Fatal(err)
	}

	r := moved.result(t)
	if r.GetTaskIndex() != 5 || r.GetReason() != ReasonExit || r.GetOutcome() != taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_SUCCEEDED {
		t.Fatalf("result at the new runner: %v", r)
	}
	if !resultRefused.Load() {
		t.Fatal("the result reached the new runner without the old one refusing it first")
	}
	// Later polls go to the new runner too: it can tell the worker to exit.
	moved.waitPoll(t, "a poll after the result", func(r *taskhostv1.PollRequest) bool { return len(r.GetResults()) == 0 })
	moved.update(func(f *fakeRunner) { f.exit = true })
	if err := waitRun(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case extra := <-b.fake.results:
		t.Fatalf("the old runner accepted a result: %v", extra)
	default:
	}

	for _, f := range []*fakeRunner{b.fake, moved} {
		for i, p := range seen(f.reqs) {
			if p.GetTier() != 2 {
				t.Errorf("poll %d: tier %d, want 2 on every poll", i, p.GetTier())
			}
		}
	}
	checkLocates(t, seen(loc.locates))
}

// TestLocateFailingBacksOffAndGivesUp: locators that fail, or name the
// runner that keeps failing, change nothing: the worker retries its
// runner and gives up after ReconnectTimeout as without them.
func TestLocateFailingBacksOffAndGivesUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.Secret = "the-worker-secret"
	b.cfg.Tier = 2
	b.cfg.ReconnectTimeout = 300 * time.Millisecond
	down, same := newFakeRunner(), newFakeRunner()
	down.update(func(f *fakeRunner) {
		f.locate = func(*connect.Request[taskhostv1.LocateRequest]) (*taskhostv1.LocateResponse, error) {
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("the store is away"))
		}
	})
	same.update(func(f *fakeRunner) {
		f.locate = func(*connect.Request[taskhostv1.LocateRequest]) (*taskhostv1.LocateResponse, error) {
			return &taskhostv1.LocateResponse{RunnerUrl: b.srv.URL + "/"}, nil
		}
	})
	b.cfg.Locators = []string{serve(t, down, "127.0.0.1:0").URL, serve(t, same, "127.0.0.1:0").URL}

	done, proc := b.runSleeper(t)
	b.fake.update(func(f *fakeRunner) {
		f.fail = func(*taskhostv1.PollRequest) error {
			return connect.NewError(connect.CodeUnavailable, errors.New("not mine"))
		}
	})
	err := waitRun(t, done)
	if err == nil || errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("Run: %v, want an unreachable-runner error", err)
	}
	if !proc() {
		t.Fatal("task survived")
	}
	downCalls, sameCalls := seen(down.locates), seen(same.locates)
	checkLocates(t, downCalls)
	checkLocates(t, sameCalls)
	// Each failed poll asked both, in order: the first never answers.
	if len(sameCalls) != len(downCalls) {
		t.Errorf("%d calls to the failing locator, %d to the one after it: want the same", len(downCalls), len(sameCalls))
	}
	polls := seen(b.fake.reqs)
	if len(polls) < len(sameCalls) {
		t.Errorf("%d polls for %d relocations: every relocation follows a failed poll", len(polls), len(sameCalls))
	}
}

// TestRejectionDoesNotRelocate: a runner that rejects the worker
// (NotFound, FailedPrecondition, Unauthenticated) ends it; the locators
// are not asked.
func TestRejectionDoesNotRelocate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	loc := newFakeRunner()
	loc.update(func(f *fakeRunner) {
		f.locate = func(*connect.Request[taskhostv1.LocateRequest]) (*taskhostv1.LocateResponse, error) {
			return &taskhostv1.LocateResponse{RunnerUrl: "http://127.0.0.1:1"}, nil
		}
	})
	b.cfg.Locators = []string{serve(t, loc, "127.0.0.1:0").URL}
	b.fake.update(func(f *fakeRunner) {
		f.fail = func(*taskhostv1.PollRequest) error {
			return connect.NewError(connect.CodeUnauthenticated, errors.New("credential not accepted"))
		}
	})
	if err := waitRun(t, b.run(t)); !errors.Is(err, ErrRejected) {
		t.Fatalf("Run: %v, want ErrRejected", err)
	}
	if n := len(seen(loc.locates)); n != 0 {
		t.Fatalf("%d Locate calls after a rejection, want none", n)
	}
}

func TestBadLocatorAndTierConfig(t *testing.T) {
	t.Parallel()
	cfg := Config{RunnerURL: "http://r:1", WorkerID: "w", JobID: "j", BlobURL: "file:///tmp/b",
		Locators: []string{"http://g:1", "g2:2"}, Tier: -1}
	err := cfg.validate()
	if err == nil || !strings.Contains(err.Error(), `locator URL "g2:2"`) || !strings.Contains(err.Error(), "tier -1") {
		t.Fatalf("validate: %v, want the bad locator and the negative tier named", err)
	}
}
