package taskhost

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
)

// authRecorder records the Authorization header of every request.
type authRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (a *authRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	a.mu.Lock()
	a.seen = append(a.seen, r.Header.Get("Authorization"))
	a.mu.Unlock()
	return a.next.RoundTrip(r)
}

// TestWorkerSecret: every poll carries the worker's secret as a bearer,
// and an attempt's environment never holds it, even when its assignment
// names the variable.
func TestWorkerSecret(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := &authRecorder{next: b.cfg.HTTPClient.Transport}
	b.cfg.HTTPClient = &http.Client{Transport: rec}
	b.cfg.Secret = "the-worker-secret"
	a := assignment(1, "env")
	a.Env = map[string]string{"FOO": "1", WorkerSecretEnv: "planted"}
	b.fake.assign(a)
	done := b.run(t)
	if r := b.fake.result(t); r.GetExitCode() != 0 {
		t.Fatalf("env task: %v", r)
	}
	out, _ := b.output(t, 1)
	if strings.Contains(out, WorkerSecretEnv) || strings.Contains(out, "the-worker-secret") || !strings.Contains(out, "FOO=1") {
		t.Errorf("attempt env %q: want FOO and no %s", out, WorkerSecretEnv)
	}
	b.fake.update(func(f *fakeRunner) { f.exit = true })
	if err := waitRun(t, done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.seen) == 0 {
		t.Fatal("no poll was sent")
	}
	for i, h := range rec.seen {
		if h != "Bearer the-worker-secret" {
			t.Errorf("poll %d: Authorization %q, want the worker's secret as a bearer", i, h)
		}
	}
}

// TestUnauthenticatedIsRejected: a runner that does not accept the
// worker's credential makes it stop, as one that does not know it does.
func TestUnauthenticatedIsRejected(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.fake.update(func(f *fakeRunner) {
		f.fail = func(*taskhostv1.PollRequest) error {
			return connect.NewError(connect.CodeUnauthenticated, errors.New("credential not accepted"))
		}
	})
	if err := waitRun(t, b.run(t)); !errors.Is(err, ErrRejected) {
		t.Fatalf("Run: %v, want ErrRejected", err)
	}
}
