package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/cgroup"
	"github.com/haul-dev/haul/internal/procstat"
	"github.com/haul-dev/haul/internal/runner"
)

const waitLimit = 30 * time.Second

// fakeTaskhost stands in for `haul taskhost`: it joins the cgroups it is
// given, starts a task the way the taskhost does (its own environment,
// with HAUL_ATTEMPT_ID=<worker>/1/1), and the task starts processes that
// leave its process group: a setsid'd child, a double-forked grandchild, a
// stopped one; with cgroups also one that clears its environment (found
// by its cgroup alone). Each writes its PID to $1. The taskhost ignores
// SIGTERM when $2 is "deaf". It is a real process tree; only the taskhost
// is a script.
const fakeTaskhost = `
pids=$1; mode=$2; shift 2
while [ $# -gt 0 ]; do
	case "$1" in
	--cgroup) CG=1; for d in $(echo "$2" | tr , ' '); do echo $$ > "$d/cgroup.procs" || exit 99; done; shift ;;
	esac
	shift
done
[ "$mode" = deaf ] && trap '' TERM
echo $$ >> "$pids"
env -i PATH="$PATH" F="$pids" CG="$CG" HAUL_ATTEMPT_ID="$HAUL_WORKER_ID/1/1" sh -c '
	setsid sh -c "echo \$\$ >> \"\$F\"; exec sleep 300" &
	(sh -c "echo \$\$ >> \"\$F\"; exec sleep 300" > /dev/null 2>&1 &)
	setsid sh -c "echo \$\$ >> \"\$F\"; kill -STOP \$\$; exec sleep 300" > /dev/null 2>&1 &
	if [ -n "$CG" ]; then (env -i sh -c "echo \$\$ >> $F; exec sleep 300" > /dev/null 2>&1 &); fi
	echo $$ >> "$F"
	exec sleep 300' &
while :; do sleep 1; done
`

type harness struct {
	b      *Backend
	dir    string
	exited chan string // worker IDs, as Exited reports them
	// atExit holds, per worker, the PIDs still alive when Exited was
	// called.
	mu     sync.Mutex
	atExit map[string][]int
	pids   map[string]string // worker → PID file
}

func newHarness(t *testing.T, cgroups bool, mode string) *harness {
	t.Helper()
	h := &harness{dir: t.TempDir(), exited: make(chan string, 10), atExit: map[string][]int{}, pids: map[string]string{}}
	pidFile := filepath.Join(h.dir, "pids")
	cfg := Config{
		Command:   []string{"/bin/sh", "-c", fakeTaskhost, "sh", pidFile, mode},
		Dir:       filepath.Join(h.dir, "workers"),
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NoCgroups: !cgroups,
		StopGrace: 200 * time.Millisecond,
		Exited: func(id, why string) {
			h.mu.Lock()
			h.atExit[id] = alive(pidFile)
			h.mu.Unlock()
			h.exited <- id
		},
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cgroups && b.Cgroups() == "" {
		t.Fatal("this test needs a writable memory cgroup (root, cgroup v1 or v2)")
	}
	t.Cleanup(b.Stop)
	h.b = b
	return h
}

// start starts a worker and waits until its task's processes are all up.
func (h *harness) start(t *testing.T, id string, cgroups bool) {
	t.Helper()
	if err := h.b.StartWorker(context.Background(), runner.WorkerSpec{ID: id, JobID: "j1", RunnerURL: "http://127.0.0.1:1", BlobURL: "file:///nonexistent"}); err != nil {
		t.Fatal(err)
	}
	want := 5 // taskhost, task, setsid, double fork, stopped
	if cgroups {
		want++ // and the one without a marker
	}
	pidFile := filepath.Join(h.dir, "pids")
	deadline := time.Now().Add(waitLimit)
	for len(readPIDs(pidFile)) < want {
		if time.Now().After(deadline) {
			t.Fatalf("the worker's processes did not start: %v", readPIDs(pidFile))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readPIDs(path string) []int {
	b, _ := os.ReadFile(path)
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive returns the PIDs of the file that are still alive (not gone, not
// zombies).
func alive(pidFile string) []int {
	var out []int
	for _, pid := range readPIDs(pidFile) {
		st, err := procstat.State("", pid)
		if err == nil && st != 'Z' && st != 'X' {
			out = append(out, pid)
		}
	}
	return out
}

func taskhostPID(t *testing.T, b *Backend, id string) int {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.procs[id]
	if p == nil {
		t.Fatalf("worker %s is not running", id)
	}
	return p.cmd.Process.Pid
}

func (h *harness) waitExited(t *testing.T, id string) []int {
	t.Helper()
	select {
	case got := <-h.exited:
		if got != id {
			t.Fatalf("Exited(%s), want %s", got, id)
		}
	case <-time.After(waitLimit):
		t.Fatalf("Exited not called for %s within %v", id, waitLimit)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.atExit[id]
}

func modes(t *testing.T, f func(t *testing.T, cgroups bool)) {
	for _, cg := range []bool{false, true} {
		name := "procs"
		if cg {
			name = "cgroups"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, cg)
		})
	}
}

// TestWorkerKilled: a taskhost killed with kill -9 leaves its task's
// processes behind (setsid, double fork, stopped); the backend kills them
// all before it calls Exited, which is when the runner retries the task.
func TestWorkerKilled(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, cgroups bool) {
		h := newHarness(t, cgroups, "")
		id := fmt.Sprintf("kill9-%v-%d", cgroups, os.Getpid())
		h.start(t, id, cgroups)
		if err := syscall.Kill(taskhostPID(t, h.b, id), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if left := h.waitExited(t, id); len(left) > 0 {
			t.Fatalf("processes %v of worker %s still alive when Exited was called", left, id)
		}
	})
}

// TestStopFrozenWorker: StopWorker on a taskhost stopped with SIGSTOP (a
// frozen worker, which would never act on SIGTERM) kills it and every
// process of its task and returns only when they are gone.
func TestStopFrozenWorker(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, cgroups bool) {
		h := newHarness(t, cgroups, "")
		h.b.cfg.StopGrace = time.Hour // a frozen worker is not waited for
		id := fmt.Sprintf("frozen-%v-%d", cgroups, os.Getpid())
		h.start(t, id, cgroups)
		if err := syscall.Kill(taskhostPID(t, h.b, id), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := h.b.StopWorker(ctx, id); err != nil {
			t.Fatalf("StopWorker: %v", err)
		}
		if left := alive(filepath.Join(h.dir, "pids")); len(left) > 0 {
			t.Fatalf("processes %v still alive after StopWorker returned", left)
		}
		if left := h.waitExited(t, id); len(left) > 0 {
			t.Fatalf("processes %v alive at Exited", left)
		}
	})
}

// TestStopDeafWorker: a taskhost that ignores SIGTERM is killed after
// StopGrace, with its task's processes, before StopWorker returns.
func TestStopDeafWorker(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, cgroups bool) {
		h := newHarness(t, cgroups, "deaf")
		id := fmt.Sprintf("deaf-%v-%d", cgroups, os.Getpid())
		h.start(t, id, cgroups)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := h.b.StopWorker(ctx, id); err != nil {
			t.Fatalf("StopWorker: %v", err)
		}
		if left := alive(filepath.Join(h.dir, "pids")); len(left) > 0 {
			t.Fatalf("processes %v still alive after StopWorker returned", left)
		}
		h.waitExited(t, id)
		// Stopping a worker that is gone is fine.
		if err := h.b.StopWorker(ctx, id); err != nil {
			t.Fatalf("second StopWorker: %v", err)
		}
	})
}

// TestPeriodicSweep: the cgroups a dead server left behind, with a process
// still in them, are swept while the backend runs, not only at its start.
func TestPeriodicSweep(t *testing.T) {
	t.Parallel()
	b, err := New(Config{Command: []string{"true"}, Dir: t.TempDir(), SweepInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	if b.Cgroups() == "" {
		t.Fatal("this test needs a writable memory cgroup (root, cgroup v1 or v2)")
	}
	// A server that died after the backend started.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale, err := cgroup.Detect("/", cgroup.Owner(dead.Process.Pid)+"-localsweep")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stale.Close() })
	g, err := stale.Create("w1", cgroup.Limits{MemoryBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Remove() })
	sleeper := exec.Command("/bin/sh", "-c", `echo $$ > "$1/cgroup.procs" && exec sleep 300`, "sh", g.Path())
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()
	select {
	case err := <-waited:
		if err == nil {
			t.Fatal("the process in the stale group exited on its own")
		}
	case <-time.After(waitLimit):
		_ = sleeper.Process.Kill()
		t.Fatalf("the stale group was not swept within %v", waitLimit)
	}
	deadline := time.Now().Add(waitLimit)
	for {
		if _, err := os.Stat(g.Path()); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale group %s still there", g.Path())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
