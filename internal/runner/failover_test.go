package runner_test

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/gen/haul/taskhost/v1/taskhostv1connect"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/sched"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// TestFailoverAdoptsWorkers: runner a dies while its workers run a job's
// attempts; runner b, on the same store, takes a's shards when their
// leases expire, and a's workers find b through the locator and are
// adopted with the attempts they run. The job ends with every task
// succeeded exactly once, and no attempt was lost: nothing ran twice.
func TestFailoverAdoptsWorkers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := []byte(rand.Text())
	ctx := context.Background()
	lst, err := sqlite.Open(ctx, filepath.Join(dir, "haul.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lst.Close() })
	loc := httptest.NewServer(nil)
	mux := http.NewServeMux()
	mux.Handle(taskhostv1connect.NewTaskHostServiceHandler(&runner.LocatorService{Locator: runner.Locator{Store: lst, Key: key}}))
	loc.Config.Handler = mux
	t.Cleanup(loc.Close)

	tune := func(name string) func(*runner.Config) {
		return func(c *runner.Config) {
			c.Holder, c.LeaseTTL, c.WorkerKey, c.LocatorURL, c.AdoptGrace = name, 2*time.Second, key, loc.URL, 30*time.Second
		}
	}
	a, asrv := setupServe(t, dir, tune("a"))
	var spec = "name: failover\nretries: 0\ntasks:\n  - key: \"t-{i}\"\n    foreach: {range: [0, 40]}\n    command: [sleep, \"0.4\"]\n"
	id := a.submit(t, spec)
	a.wait(t, id, func(j *store.Job) bool { return j.Counts.Succeeded >= 4 && j.Counts.Running > 0 })

	// a dies: no renewal, no release; its address stops answering. Its
	// workers (goroutines of this test) keep running their attempts.
	a.run.Crash()
	asrv.Close()

	b, _ := setupServe(t, dir, tune("b"))
	j := b.waitDone(t, id)
	if j.State != store.JobSucceeded {
		t.Fatalf("job %s, counts %+v: want succeeded", j.State, j.Counts)
	}
	lost := 0
	for i := range int32(40) {
		atts, err := b.st.ListAttempts(ctx, id, i)
		if err != nil {
			t.Fatal(err)
		}
		ok := 0
		for _, at := range atts {
			switch at.State {
			case store.AttemptSucceeded:
				ok++
			case store.AttemptLost:
				if strings.Contains(at.Message, "never received this assignment") {
					// a crashed between storing an assignment and its
					// reply reaching the worker: nothing ran, and the
					// retry uses no retry. Not work lost.
					t.Logf("task %d: an assignment a stored but never delivered: %s", i, at.Message)
					continue
				}
				lost++
			}
		}
		if ok != 1 {
			t.Errorf("task %d: %d succeeded attempts, want exactly 1: %+v", i, ok, atts)
		}
	}
	if lost != 0 {
		t.Errorf("%d attempts lost in the failover; want 0: a's workers were adopted with their attempts", lost)
	}
}

// setupServe is setupWith on the store in dir (several runners may share
// it), returning the runner's test server too.
func setupServe(t *testing.T, dir string, tune func(*runner.Config)) (*bundle, *httptest.Server) {
	t.Helper()
	backend := &inProcBackend{t: t, dir: dir, cancels: map[string]context.CancelFunc{}}
	// Registered before serve's, so it runs after the runner has stopped:
	// no worker can start (wg.Add) while it waits.
	t.Cleanup(func() {
		backend.killAll()
		backend.wg.Wait()
	})
	b, srv := serve(t, dir, backend, runner.Config{
		MaxWorkers: 4, ScanInterval: 50 * time.Millisecond, IdleTimeout: 200 * time.Millisecond,
		Sched: sched.Config{BackoffBase: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond},
	}, tune, func(r *runner.Runner) { backend.r = r }, nil)
	b.backend = backend
	return b, srv
}
