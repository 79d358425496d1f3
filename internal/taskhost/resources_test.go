package taskhost

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/cgroup"
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
)

// childEnv makes the test binary run as a taskhost (TestMain), so that a
// test can put a whole taskhost process into a cgroup.
const childEnv = "HAUL_TASKHOST_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := Main(ctx, os.Args[1:], os.Getenv, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

const (
	mib = 1 << 20
	// oomTask allocates 300 MiB and then waits, long enough for a sampler
	// to see it.
	oomTask = "b = bytearray(300 * 2**20); import time; time.sleep(5)"
)

var enforcements = []string{EnforcementNone, EnforcementRSSPoll, cgroup.V1.String(), cgroup.V2.String()}

func TestUsageReported(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.SampleInterval = 20 * time.Millisecond
	b.fake.assign(
		assignment(1, "sh", "-c", `i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done`),
		assignment(2, "python3", "-c", "b = bytearray(100 * 2**20)"),
		assignment(3, "no-such-program-here"),
	)
	b.run(t)
	got := map[int32]*taskhostv1.AttemptResult{}
	for range 3 {
		r := b.fake.result(t)
		got[r.GetTaskIndex()] = r
	}
	for i, r := range got {
		if !slices.Contains(enforcements, r.GetEnforcement()) {
			t.Errorf("task %d: enforcement %q", i, r.GetEnforcement())
		}
	}

	cpu := got[1]
	u := cpu.GetUsage()
	if cpu.GetReason() != ReasonExit || cpu.GetExitCode() != 0 || u == nil {
		t.Fatalf("cpu task: %v", cpu)
	}
	if u.GetCpuUserSeconds() <= 0 || u.GetPeakRssBytes() <= 0 || u.GetAvgRssBytes() <= 0 || u.GetWallSeconds() <= 0 {
		t.Fatalf("cpu task usage: %v", u)
	}
	if u.GetGpuNote() == "" && len(u.GetGpus()) == 0 {
		t.Fatalf("cpu task: neither GPU figures nor a note: %v", u)
	}

	alloc := got[2]
	u = alloc.GetUsage()
	if alloc.GetReason() != ReasonExit || alloc.GetExitCode() != 0 || u == nil {
		t.Fatalf("allocating task: %v", alloc)
	}
	if u.GetPeakRssBytes() < 100*mib || u.GetAvgRssBytes() <= 0 || u.GetAvgRssBytes() > u.GetPeakRssBytes() {
		t.Fatalf("allocating task usage: %v; want a peak of 100 MiB at least", u)
	}

	if r := got[3]; r.GetReason() != ReasonStartError || r.GetUsage() != nil {
		t.Fatalf("start error: %v (no process, no usage)", r)
	}
}

// Without a cgroup limit, the taskhost kills a tree over --memory-limit.
func TestRSSPollKillsOverLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.MemoryLimit = 64 * mib
	b.cfg.SampleInterval = 20 * time.Millisecond
	b.fake.assign(assignment(1, "python3", "-c", oomTask))
	b.run(t)
	r := b.fake.result(t)
	if r.GetReason() != ReasonOOM || r.GetEnforcement() != EnforcementRSSPoll || r.GetSignal() != 9 || r.GetExitCode() != 137 ||
		r.GetOutcome() != taskhostv1.AttemptOutcome_ATTEMPT_OUTCOME_OOM {
		t.Fatalf("result %v", r)
	}
	if !strings.Contains(r.GetMessage(), "over the worker's 64.0 MiB limit; killed by the taskhost (rss-poll)") {
		t.Fatalf("message %q", r.GetMessage())
	}
	if r.GetUsage().GetPeakRssBytes() <= 64*mib {
		t.Fatalf("usage %v: want a peak over the limit", r.GetUsage())
	}
}

// A whole taskhost process (this test binary, see TestMain) joins a real
// cgroup v1 group with a 64 MiB limit; the kernel kills the attempt and
// the taskhost reads it from the group's counter.
func TestCgroupV1OOM(t *testing.T) {
	t.Parallel()
	m, err := cgroup.Detect("/", cgroup.Owner(os.Getpid())+"-taskhost-test")
	if err != nil {
		t.Fatalf("this test needs a writable memory cgroup (root with cgroup v1 or v2): %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	if m.Version() != cgroup.V1 {
		t.Fatalf("cgroup %v: this machine and CI have cgroup v1's memory controller", m.Version())
	}
	g, err := m.Create("w1", cgroup.Limits{MemoryBytes: 64 * mib, CPU: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
	})

	b := setup(t)
	cmd := exec.Command(os.Args[0],
		"--runner", b.srv.URL, "--worker-id", "w1", "--job", "j1",
		"--blob", "file://"+b.store.Root(), "--spool", t.TempDir(),
		"--cgroup", strings.Join(g.Dirs(), ","), "--memory-limit", "64Mi", "--cpu-limit", "1",
		"--sample-interval", "20ms", "--nvidia-smi", "-", "--log-level", "debug")
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

	b.fake.assign(assignment(1, "python3", "-c", oomTask))
	r := b.fake.result(t)
	if r.GetReason() != ReasonOOM || r.GetEnforcement() != "cgroup-v1" || r.GetSignal() != 9 || r.GetExitCode() != 137 {
		t.Fatalf("result %v", r)
	}
	if want := "out of memory: killed by the kernel at the worker's 64.0 MiB limit (cgroup-v1)"; r.GetMessage() != want {
		t.Fatalf("message %q, want %q", r.GetMessage(), want)
	}
	// The peak is about the limit: RSS counts mapped files the group was
	// not charged for, so it may be a little over.
	if u := r.GetUsage(); u.GetPeakRssBytes() <= 32*mib || u.GetPeakRssBytes() > 100*mib || u.GetGpuNote() != "no GPU: GPU accounting is off" {
		t.Fatalf("usage %v: want a peak near the 64 MiB limit", u)
	}
	if n, err := g.OOMKills(); err != nil || n != 1 {
		t.Fatalf("the group's OOM kills: %d, %v", n, err)
	}
	if pids, err := cgroup.Procs(g.Path()); err != nil || !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("taskhost %d not in its group: %v, %v", cmd.Process.Pid, pids, err)
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

// GPU figures come from nvidia-smi (here a fake that reports the attempt's
// process on one GPU).
func TestGPUUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	smi := filepath.Join(dir, "nvidia-smi")
	script := fmt.Sprintf(`#!/bin/sh
d=%s
case "$1" in
--query-gpu=*) echo "0, GPU-4aa494b9-9659-a279-8cc5-12c1c9fbf439, NVIDIA H100 80GB HBM3" ;;
--query-compute-apps=*)
	if [ -f $d/pid ]; then echo "$(cat $d/pid), GPU-4aa494b9-9659-a279-8cc5-12c1c9fbf439, 2048"; fi ;;
pmon)
	echo "# gpu         pid   type     sm    mem    enc    dec    jpg    ofa    command"
	echo "# Idx           #    C/G      %%      %%      %%      %%      %%      %%    name"
	if [ -f $d/pid ]; then
		echo "    0      $(cat $d/pid)     C     40     10      -      -      -      -    sh"
		touch $d/sampled
	fi ;;
*) exit 2 ;;
esac
`, dir)
	if err := os.WriteFile(smi, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	b := setup(t)
	b.cfg.NvidiaSMI = smi
	b.cfg.SampleInterval = 10 * time.Millisecond
	// The task runs until nvidia-smi has seen it.
	b.fake.assign(assignment(1, "sh", "-c", fmt.Sprintf(`echo $$ > %[1]s/pid.tmp; mv %[1]s/pid.tmp %[1]s/pid; while [ ! -e %[1]s/sampled ]; do sleep 0.01; done`, dir)))
	b.run(t)
	r := b.fake.result(t)
	u := r.GetUsage()
	if r.GetReason() != ReasonExit || u.GetGpuNote() != "" || len(u.GetGpus()) != 1 {
		t.Fatalf("result %v", r)
	}
	g := u.GetGpus()[0]
	if g.GetIndex() != 0 || g.GetName() != "NVIDIA H100 80GB HBM3" || g.GetPeakMemoryBytes() != 2048*mib ||
		g.GetAvgUtilizationPercent() <= 0 || g.GetAvgUtilizationPercent() > 40 {
		t.Fatalf("GPU usage %v", g)
	}
}

func TestParseBytesAndFormat(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"0": 0, "1048576": mib, "64Mi": 64 * mib, "1Gi": 1 << 30, "2G": 2e9, "512k": 512e3} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5Gi", "12XB", "Mi", "99999999999Ti"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q): no error", in)
		}
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 64 * mib: "64.0 MiB", 1536 << 20: "1.5 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseResourceFlags(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"HAUL_RUNNER": "http://env:1", "HAUL_WORKER_ID": "w", "HAUL_JOB": "j", "HAUL_BLOB": "file:///tmp/b",
		"HAUL_MEMORY_LIMIT": "1Gi", "HAUL_CPU_LIMIT": "2", "HAUL_CGROUP": "/sys/fs/cgroup/memory/a, /sys/fs/cgroup/cpu/a",
	}
	getenv := func(k string) string { return env[k] }
	var sb strings.Builder
	cfg, _, err := ParseFlags(nil, getenv, &sb)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MemoryLimit != 1<<30 || cfg.CPULimit != 2 || !slices.Equal(cfg.Cgroup, []string{"/sys/fs/cgroup/memory/a", "/sys/fs/cgroup/cpu/a"}) ||
		cfg.SampleInterval != 250*time.Millisecond {
		t.Fatalf("from env: %+v", cfg)
	}
	cfg, _, err = ParseFlags([]string{"--memory-limit", "64Mi", "--cpu-limit", "0.5", "--cgroup", "/x", "--sample-interval", "1s", "--nvidia-smi", "-"}, getenv, &sb)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MemoryLimit != 64*mib || cfg.CPULimit != 0.5 || !slices.Equal(cfg.Cgroup, []string{"/x"}) || cfg.SampleInterval != time.Second || cfg.NvidiaSMI != "-" {
		t.Fatalf("from flags: %+v", cfg)
	}
	for _, args := range [][]string{
		{"--memory-limit", "lots"}, {"--memory-limit", "-5"}, {"--cpu-limit", "-1"}, {"--cpu-limit", "NaN"},
		{"--cgroup", "relative/dir"}, {"--sample-interval", "-1s"},
	} {
		if _, _, err := ParseFlags(args, getenv, &sb); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
	sb.Reset()
	if code := Main(context.Background(), []string{"-h"}, getenv, &sb); code != 0 || !strings.Contains(sb.String(), "-memory-limit") {
		t.Fatalf("-h: %d %q", code, sb.String())
	}
}

func TestInstallCopiesTheBinary(t *testing.T) {
	t.Parallel()
	dest := filepath.Join(t.TempDir(), "bin", "haul-taskhost")
	if code := Main(context.Background(), []string{"--install", dest}, func(string) string { return "" }, io.Discard); code != 0 {
		t.Fatalf("--install exited %d", code)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(self)
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("installed copy differs from the executable (err %v)", err)
	}
	if st, _ := os.Stat(dest); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v, want 0755", st.Mode().Perm())
	}
}
