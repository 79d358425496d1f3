package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/pgtest"
)

// retriedAdder is a job whose task adder adds the fragment
// DIR/frag-$HAUL_ATTEMPT.yaml with `haul task add`, and on its first
// attempt waits until the added task `now` has run and then fails, so
// that it is retried and adds again, as a task retried after a crash does.
const retriedAdder = `
name: retried-adder
tasks:
  - key: adder
    retries: 1
    command:
      - sh
      - -c
      - |
        set -e
        haul task add -f %[1]s/frag-$HAUL_ATTEMPT.yaml
        if [ "$HAUL_ATTEMPT" = 1 ]; then
          for i in $(seq 300); do
            haul task get "$HAUL_JOB" now -o json | grep -q '"state": *"succeeded"' && break
            sleep 0.1
          done
          exit 1
        fi
`

// fragment adds `now` (ready at once) and `later` (after the adder); each
// appends its name and the given tag to DIR/ran when it runs.
func fragment(dir, nowTag string) string {
	return fmt.Sprintf(`tasks:
  - key: now
    command: [sh, -c, "echo now %[2]s >> %[1]s/ran"]
  - key: later
    command: [sh, -c, "echo later >> %[1]s/ran"]
    after: [adder]
`, dir, nowTag)
}

// TestFaultAddRetried: a task that adds tasks and is retried adds them
// again. The same tasks again is no change: the job succeeds and each
// added task ran once. Different content for a key already added is
// refused naming the key and what differs, and the job fails.
func TestFaultAddRetried(t *testing.T) {
	t.Parallel()
	for _, st := range []string{"sqlite", "postgres"} {
		t.Run(st, func(t *testing.T) {
			t.Parallel()
			dbURL := ""
			if st == "postgres" {
				dbURL = pgtest.Start(t)
			}
			s := startUp(t, freePort(t), t.TempDir(), dbURL)
			env := []string{"HAUL_SERVER=" + s.url()}
			run := func(t *testing.T, frag2 func(dir string) string) (id, dir string) {
				t.Helper()
				dir = t.TempDir()
				for name, body := range map[string]string{"frag-1.yaml": fragment(dir, "v1"), "frag-2.yaml": frag2(dir)} {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				r := haul(t, env, "job", "submit", writeSpec(t, fmt.Sprintf(retriedAdder, dir)))
				if r.code != 0 {
					t.Fatalf("submit: exit %d: %s", r.code, r.stderr)
				}
				id = strings.TrimSpace(r.stdout)
				waitJob(t, s.client(), id, 2*time.Minute, jobEnded)
				return id, dir
			}
			ran := func(t *testing.T, dir string) string {
				t.Helper()
				b, err := os.ReadFile(filepath.Join(dir, "ran"))
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}

			t.Run("same", func(t *testing.T) {
				id, dir := run(t, func(dir string) string { return fragment(dir, "v1") })
				j := waitJob(t, s.client(), id, time.Second, func(*apiv1.Job) bool { return true })
				if j.State != "succeeded" || j.TaskCount != 3 || j.Counts.GetSucceeded() != 3 {
					t.Fatalf("job %s with %d tasks, counts %v; want succeeded with adder, now and later\nserver: %s", j.State, j.TaskCount, j.Counts, s.log)
				}
				if a := getTask(t, s, id, "adder"); a.Attempts != 2 {
					t.Errorf("adder: %d attempts, want 2 (the first failed after adding)", a.Attempts)
				}
				for _, k := range []string{"now", "later"} {
					if tk := getTask(t, s, id, k); tk.Attempts != 1 {
						t.Errorf("%s: %d attempts, want 1", k, tk.Attempts)
					}
				}
				if got, want := ran(t, dir), "now v1\nlater\n"; got != want {
					t.Errorf("the added tasks ran: %q, want %q (each once)", got, want)
				}
				r := haul(t, env, "task", "logs", id, "adder", "--attempt", "2")
				if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "added 2 tasks") {
					t.Errorf("adder's second attempt: exit %d, log %q %q; want the add to succeed", r.code, r.stdout, r.stderr)
				}
			})

			t.Run("different", func(t *testing.T) {
				id, dir := run(t, func(dir string) string { return fragment(dir, "v2") })
				j := waitJob(t, s.client(), id, time.Second, func(*apiv1.Job) bool { return true })
				if j.State != "failed" || j.TaskCount != 3 {
					t.Fatalf("job %s with %d tasks, counts %v; want failed with 3 tasks", j.State, j.TaskCount, j.Counts)
				}
				a := getTask(t, s, id, "adder")
				if a.State != "failed" || a.Attempts != 2 {
					t.Errorf("adder: %s after %d attempts, want failed after 2", a.State, a.Attempts)
				}
				r := haul(t, env, "task", "logs", id, "adder", "--attempt", "2")
				log := r.stdout + r.stderr
				for _, want := range []string{`task "now" already exists`, `different command`, `"echo now v1 >> `, `"echo now v2 >> `} {
					if !strings.Contains(log, want) {
						t.Errorf("adder's second attempt's log %q does not contain %q", log, want)
					}
				}
				if got, want := ran(t, dir), "now v1\n"; got != want {
					t.Errorf("the added tasks ran: %q, want %q (now once, as first added; later never)", got, want)
				}
				if l := getTask(t, s, id, "later"); l.State != "upstream_failed" || l.Attempts != 0 {
					t.Errorf("later: %s after %d attempts, want upstream_failed without running", l.State, l.Attempts)
				}
			})
		})
	}
}
