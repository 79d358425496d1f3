package taskhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/cgroup"
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/procstat"
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
	if r := b.fake.result(t); r.GetTaskIndex() != 3 || r.GetReason() != ReasonCancelled || r.GetOutcome() != taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_CANCELLED {
		t.Errorf("cancelled: got %v", r)
	}

	// A timeout likewise.
	a := assignment(4, "wait")
	a.TimeoutMs = 10
	b.fake.assign(a)
	if r := b.fake.result(t); r.GetTaskIndex() != 4 || r.GetReason() != ReasonTimeout || r.GetOutcome() != taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_TIMED_OUT {
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

// Scripts whose processes try to outlive their attempt. Each appends the
// PID of every process that should die with the attempt to $F and then
// lets the main process go on (MAIN, a shell command).
var escapes = map[string]string{
	// A child in its own session, holding the attempt's stdout.
	"setsid": `setsid sh -c 'echo $$ >> "$F"; exec sleep 300' &`,
	// A double fork: the grandchild is orphaned at once.
	"doublefork": `(sh -c 'echo $$ >> "$F"; exec sleep 300' > /dev/null 2>&1 &)`,
	// A process that stops itself: SIGTERM would wait for a SIGCONT.
	"stopped": `setsid sh -c 'echo $$ >> "$F"; kill -STOP $$; exec sleep 300' > /dev/null 2>&1 &`,
	// A session that ignores SIGTERM.
	"ignoreterm": `setsid sh -c 'trap "" TERM; echo $$ >> "$F"; while :; do sleep 1; done' > /dev/null 2>&1 &`,
	// A spawner racing the kill: it starts sleeps until it is killed.
	"spawner": `setsid sh -c 'echo $$ >> "$F"; while :; do sleep 300 & done' > /dev/null 2>&1 &`,
}

// escapeCommand runs the named escapes, waits until each has written its
// PID, then runs main.
func escapeCommand(names []string, main string) []string {
	var b strings.Builder
	b.WriteString(`trap '' TERM; `)
	for _, n := range names {
		b.WriteString(escapes[n] + "\n")
	}
	fmt.Fprintf(&b, `while [ "$(wc -l < "$F")" -lt %d ]; do sleep 0.01; done; `, len(names))
	b.WriteString(main)
	return []string{"/bin/sh", "-c", b.String()}
}

// readPIDs reads the PIDs the escapes wrote.
func readPIDs(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %q is not a PID", path, f)
		}
		pids = append(pids, pid)
	}
	return pids
}

// assertGone fails unless no process carries the worker's attempt marker
// and every recorded PID is gone (reaped: not left a zombie of reaper) or
// now belongs to an unrelated process.
func assertGone(t *testing.T, worker string, pids []int, reaper int) {
	t.Helper()
	prefix := AttemptIDEnv + "=" + worker + "/"
	left, err := procstat.Find(procstat.Selector{EnvPrefix: []string{prefix}})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("processes with %s... still alive after the attempt ended: %+v", prefix, left)
	}
	for _, pid := range pids {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone
		}
		if strings.Contains(string(st), ") Z ") && strings.Contains(string(st), fmt.Sprintf(") Z %d ", reaper)) {
			t.Errorf("process %d is a zombie of %d that nobody reaped: %s", pid, reaper, st)
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if strings.Contains(string(env), prefix) {
			t.Errorf("process %d survived its attempt: %s", pid, st)
		}
	}
}

// killLeftovers makes sure a failing test leaves nothing running.
func killLeftovers(t *testing.T, worker string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_, _ = procstat.Kill(ctx, procstat.Selector{EnvPrefix: []string{AttemptIDEnv + "=" + worker + "/"}})
	})
}

// TestAttemptProcessesEnd: every process an attempt started dies with it,
// whether it ends by exiting, by its timeout or by a cancel, including
// processes that called setsid, were double-forked, are stopped, ignore
// SIGTERM or keep forking, and orphans are reaped (the taskhost is a
// child subreaper).
func TestAttemptProcessesEnd(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		names []string
		end   string // exit, timeout, cancel
	}{
		{"exit-setsid", []string{"setsid"}, "exit"},
		{"exit-doublefork", []string{"doublefork"}, "exit"},
		{"exit-stopped", []string{"stopped"}, "exit"},
		{"exit-spawner", []string{"spawner"}, "exit"},
		{"timeout-ignoreterm", []string{"ignoreterm", "doublefork"}, "timeout"},
		{"cancel-ignoreterm", []string{"ignoreterm", "setsid", "stopped"}, "cancel"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.cfg.WorkerID = "escape-" + c.name
			b.cfg.KillGrace = 300 * time.Millisecond
			killLeftovers(t, b.cfg.WorkerID)
			pidFile := filepath.Join(t.TempDir(), "pids")
			if err := os.WriteFile(pidFile, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			main := "exit 0"
			if c.end != "exit" {
				main = "touch \"$F.ready\"; sleep 300"
			}
			a := assignment(1, escapeCommand(c.names, main)...)
			a.Env = map[string]string{"F": pidFile}
			if c.end == "timeout" {
				a.TimeoutMs = 3000
			}
			b.fake.assign(a)
			b.run(t)
			if c.end == "cancel" {
				waitFile(t, pidFile+".ready")
				b.fake.cancel(1, 1)
			}
			r := b.fake.result(t)
			want := map[string]string{"exit": ReasonExit, "timeout": ReasonTimeout, "cancel": ReasonCancelled}[c.end]
			if r.GetReason() != want {
				t.Fatalf("result %v, want reason %s", r, want)
			}
			if strings.Contains(r.GetMessage(), "could not be killed") {
				t.Fatalf("result %v", r)
			}
			pids := readPIDs(t, pidFile)
			if len(pids) != len(c.names) {
				t.Fatalf("PIDs %v, want %d (the escapes did not all start before the attempt ended)", pids, len(c.names))
			}
			assertGone(t, b.cfg.WorkerID, pids, os.Getpid())
		})
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", path, waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAttemptProcessesEndInCgroup: a whole taskhost process (this test
// binary, see TestMain) in a real cgroup, as the local backend runs it:
// after the attempt ends nothing of it is left, neither by marker nor in
// the worker's group, which holds the taskhost alone again; the attempt's
// accounting still works (its peak RSS and the group's OOM counter).
func TestAttemptProcessesEndInCgroup(t *testing.T) {
	t.Parallel()
	m, err := cgroup.Detect("/", cgroup.Owner(os.Getpid())+"-taskhost-escape")
	if err != nil {
		t.Fatalf("this test needs a writable memory cgroup (root with cgroup v1 or v2): %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	g, err := m.Create("w1", cgroup.Limits{MemoryBytes: 256 * mib})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
	})
	const worker = "escape-cgroup"
	killLeftovers(t, worker)
	b := setup(t)
	cmd := exec.Command(os.Args[0],
		"--runner", b.srv.URL, "--worker-id", worker, "--job", "j1",
		"--blob", "file://"+b.store.Root(), "--spool", t.TempDir(),
		"--cgroup", strings.Join(g.Dirs(), ","), "--memory-limit", "256Mi",
		"--kill-grace", "300ms", "--sample-interval", "20ms", "--nvidia-smi", "-")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(waitLimit):
			t.Error("the taskhost process did not end after SIGKILL")
		}
	})

	dir := t.TempDir()
	for i, end := range []string{"exit", "cancel"} {
		idx := int32(i + 1)
		pidFile := filepath.Join(dir, end)
		if err := os.WriteFile(pidFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		names := []string{"setsid", "doublefork", "stopped", "ignoreterm"}
		main := "exit 0"
		if end == "cancel" {
			main = `touch "$F.ready"; sleep 300`
		}
		a := assignment(idx, escapeCommand(names, main)...)
		a.Env = map[string]string{"F": pidFile}
		b.fake.assign(a)
		if end == "cancel" {
			waitFile(t, pidFile+".ready")
			b.fake.cancel(idx, 1)
		}
		r := b.fake.result(t)
		if want := map[string]string{"exit": ReasonExit, "cancel": ReasonCancelled}[end]; r.GetReason() != want || r.GetEnforcement() != g.Version().String() {
			t.Fatalf("%s: result %v, want reason %s and enforcement %s", end, r, want, g.Version())
		}
		if r.GetUsage().GetPeakRssBytes() == 0 {
			t.Errorf("%s: no peak RSS in %v", end, r.GetUsage())
		}
		pids := readPIDs(t, pidFile)
		if len(pids) != len(names) {
			t.Fatalf("%s: PIDs %v, want %d", end, pids, len(names))
		}
		assertGone(t, worker, pids, cmd.Process.Pid)
		if procs, err := cgroup.Procs(g.Path()); err != nil || !slices.Equal(procs, []int{cmd.Process.Pid}) {
			t.Fatalf("%s: the worker's group holds %v (err %v), want the taskhost %d alone", end, procs, err, cmd.Process.Pid)
		}
	}

	b.fake.update(func(f *fakeRunner) { f.exit = true })
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("taskhost: %v", waitErr)
		}
	case <-time.After(waitLimit):
		t.Fatal("the taskhost did not exit")
	}
}
