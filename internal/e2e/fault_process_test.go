package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/pgtest"
)

// eachStore runs f on SQLite and on PostgreSQL, in parallel.
func eachStore(t *testing.T, f func(t *testing.T, dbURL string)) {
	for _, st := range []string{"sqlite", "postgres"} {
		t.Run(st, func(t *testing.T) {
			t.Parallel()
			dbURL := ""
			if st == "postgres" {
				dbURL = pgtest.Start(t)
			}
			f(t, dbURL)
		})
	}
}

// procAlive reports whether pid is a live process (not gone, not a
// zombie) that still carries the environment entry marker (a PID reused
// by an unrelated process does not count).
func procAlive(pid int, marker string) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(st)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X') {
		return false
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	return err == nil && strings.Contains("\x00"+string(env), "\x00"+marker)
}

func submit(t *testing.T, s *upServer, spec string) string {
	t.Helper()
	r := haul(t, []string{"HAUL_SERVER=" + s.url()}, "job", "submit", writeSpec(t, spec))
	if r.code != 0 {
		t.Fatalf("submit: %s", r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// TestFaultSetsidChildEndsWithTask: a task that starts a setsid'd daemon
// and exits; once the task has ended, the daemon is gone.
func TestFaultSetsidChildEndsWithTask(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, dbURL string) {
		s := startUp(t, freePort(t), t.TempDir(), dbURL)
		f := filepath.Join(t.TempDir(), "daemon")
		id := submit(t, s, fmt.Sprintf(`
name: setsid
tasks:
  - key: daemon
    command: [sh, -c, "setsid sh -c 'echo $$ $HAUL_ATTEMPT_ID > %[1]s.tmp; mv %[1]s.tmp %[1]s; exec sleep 300' > /dev/null 2>&1 & while [ ! -s %[1]s ]; do sleep 0.01; done"]
  - key: after
    command: [sh, -c, "echo next"]
    after: [daemon]
`, f))
		j := waitJob(t, s.client(), id, 2*time.Minute, jobEnded)
		if j.State != "succeeded" {
			t.Fatalf("job %s: %v", j.State, j.Counts)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(string(b))
		if len(fields) != 2 || !strings.Contains(fields[1], "/") {
			t.Fatalf("daemon file %q: want its PID and HAUL_ATTEMPT_ID", b)
		}
		pid, _ := strconv.Atoi(fields[0])
		if procAlive(pid, "HAUL_ATTEMPT_ID="+fields[1]) {
			t.Fatalf("the task's setsid'd daemon %d outlived its task", pid)
		}
	})
}

// TestFaultWorkerKill9: the worker (taskhost) running a task is killed
// with kill -9. The task has a setsid'd child writing heartbeats; the
// task's retry starts only once the old copy's processes are all dead
// (each start checks the previous attempt's PIDs), the job succeeds and
// the task is recorded once, with one lost attempt. It logs the overlap
// (the last heartbeat of the old copy after the retry started: 0) and how
// long the retry took to start after the kill. It runs with the workers
// in cgroups and without (HAUL_NO_CGROUPS: markers only).
func TestFaultWorkerKill9(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, dbURL string) {
		for _, cg := range []string{"cgroups", "nocgroups"} {
			t.Run(cg, func(t *testing.T) {
				t.Parallel()
				var env []string
				if cg == "nocgroups" {
					env = []string{"HAUL_NO_CGROUPS=1"}
				}
				db := dbURL
				if db != "" {
					db = pgtest.NewDatabase(t, dbURL) // one server per store
				}
				killWorker(t, startUpEnv(t, env, freePort(t), t.TempDir(), db), syscall.SIGKILL)
			})
		}
	})
}

// TestFaultWorkerFrozen: the worker running a task is frozen (SIGSTOP)
// while the task's own processes go on. After --worker-timeout the runner
// stops the worker, and its processes are dead before the retry starts.
func TestFaultWorkerFrozen(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, dbURL string) {
		killWorker(t, startUp(t, freePort(t), t.TempDir(), dbURL, "--worker-timeout", "3s"), syscall.SIGSTOP)
	})
}

// killWorker sends sig to the worker running a task whose processes go on
// (a setsid'd heartbeat) and checks that the task's retry starts only
// after the old copy is dead.
func killWorker(t *testing.T, s *upServer, sig syscall.Signal) {
	{
		dir := t.TempDir()
		log := filepath.Join(dir, "log")
		// The first attempt records its PIDs and its worker's, starts the
		// heartbeat and waits; a later one checks the earlier PIDs first.
		script := fmt.Sprintf(`L=%[1]s
for p in $(cat %[2]s/pids 2>/dev/null); do
  if [ -e /proc/$p ] && [ "$(cut -d' ' -f3 /proc/$p/stat)" != Z ] && tr '\0' '\n' < /proc/$p/environ | grep -q "^HAUL_ATTEMPT_ID=$(cat %[2]s/marker)$"; then echo "overlap $p $(date +%%s.%%N)" >> $L; fi
done
echo "start $HAUL_ATTEMPT_ID $$ $PPID $(date +%%s.%%N)" >> $L
echo $$ >> %[2]s/pids; echo "$HAUL_ATTEMPT_ID" > %[2]s/marker
setsid sh -c 'echo $$ >> %[2]s/pids; while :; do echo "beat $HAUL_ATTEMPT_ID $$ $(date +%%s.%%N)" >> %[1]s; sleep 0.02; done' > /dev/null 2>&1 &
if [ -e %[2]s/first ]; then sleep 0.3; exit 0; fi
touch %[2]s/first; echo $PPID > %[2]s/worker; exec sleep 300`, log, dir)
		id := submit(t, s, fmt.Sprintf(`
name: kill9
retries: 2
tasks:
  - key: victim
    command: [sh, -c, %q]
`, script))
		workerFile := filepath.Join(dir, "worker")
		deadline := time.Now().Add(2 * time.Minute)
		for {
			if b, err := os.ReadFile(workerFile); err == nil && len(strings.TrimSpace(string(b))) > 0 {
				if b, _ := os.ReadFile(log); strings.Count(string(b), "beat ") >= 3 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("the first attempt did not start")
			}
			time.Sleep(20 * time.Millisecond)
		}
		b, _ := os.ReadFile(workerFile)
		worker, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("worker PID %q", b)
		}
		killed := time.Now()
		if err := syscall.Kill(worker, sig); err != nil {
			t.Fatalf("signal %v to the worker %d: %v", sig, worker, err)
		}
		c := s.client()
		j := waitJob(t, c, id, 3*time.Minute, jobEnded)
		if j.State != "succeeded" || j.Counts.GetSucceeded() != 1 {
			t.Fatalf("job %s with counts %v, want succeeded with 1 task", j.State, j.Counts)
		}
		g, err := c.GetTask(context.Background(), connect.NewRequest(&apiv1.GetTaskRequest{JobId: id, Key: "victim"}))
		if err != nil {
			t.Fatal(err)
		}
		states := map[string]int{}
		for _, a := range g.Msg.Attempts {
			states[a.State]++
		}
		if states["succeeded"] != 1 || states["lost"] != 1 || len(g.Msg.Attempts) != 2 {
			t.Fatalf("attempts %v, want one lost and one succeeded", states)
		}

		out, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		var starts []string // markers, in order
		startAt := map[string]float64{}
		lastBeat := map[string]float64{}
		for line := range strings.Lines(string(out)) {
			f := strings.Fields(line)
			switch {
			case len(f) >= 2 && f[0] == "overlap":
				t.Errorf("the retry started while process %s of the old copy was alive", f[1])
			case len(f) == 5 && f[0] == "start":
				starts = append(starts, f[1])
				startAt[f[1]], _ = strconv.ParseFloat(f[4], 64)
			case len(f) == 4 && f[0] == "beat":
				v, _ := strconv.ParseFloat(f[3], 64)
				lastBeat[f[1]] = max(lastBeat[f[1]], v)
			}
		}
		if len(starts) != 2 {
			t.Fatalf("starts %q, want 2:\n%s", starts, out)
		}
		old, retry := starts[0], starts[1]
		overlap := max(0, lastBeat[old]-startAt[retry])
		if overlap > 0 {
			t.Errorf("the old copy's heartbeat ran %.3fs after the retry started", overlap)
		}
		t.Logf("%s: %v to the worker: retry started %.3fs after it; old copy's last heartbeat %.3fs before the retry started; overlap %.3fs",
			t.Name(), sig, startAt[retry]-float64(killed.UnixNano())/1e9, startAt[retry]-lastBeat[old], overlap)
	}
}
