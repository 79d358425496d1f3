package procstat

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const waitLimit = 10 * time.Second

// statLine makes a /proc/<pid>/stat line in the kernel's format.
func statLine(pid int, comm string, state byte, ppid, pgrp int, utime, stime, cutime, cstime, rssPages int) string {
	return fmt.Sprintf("%d (%s) %c %d %d %d 0 -1 4194304 99 0 0 0 %d %d %d %d 20 0 1 0 931101 3133440 %d 18446744073709551615 1 2 3 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		pid, comm, state, ppid, pgrp, pgrp, utime, stime, cutime, cstime, rssPages)
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	p, err := parseStat([]byte(statLine(42, "my (odd) prog) x", 'S', 7, 40, 12, 3, 100, 5, 250)))
	if err != nil {
		t.Fatal(err)
	}
	want := proc{pid: 42, ppid: 7, pgrp: 40, utime: 12, stime: 3, cutime: 100, cstime: 5, rss: 250}
	if p != want {
		t.Fatalf("got %+v, want %+v", p, want)
	}
	if p, _ := parseStat([]byte(statLine(9, "z", 'Z', 1, 9, 0, 0, 0, 0, 0))); !p.zombie {
		t.Fatal("state Z is not a zombie")
	}
	for _, bad := range []string{"", "42 noparens S 1", "x (a) S 1 2", "42 (a) S 1 2 3", strings.Replace(statLine(1, "a", 'S', 1, 1, 1, 1, 1, 1, 1), " 3133440 1 ", " 3133440 1x ", 1)} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// A fake /proc: the tree of group 100 is its members and the descendants
// of its members that left it, not the unrelated processes.
func TestScanTree(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	procs := map[int]string{
		100: statLine(100, "sh", 'S', 1, 100, 10, 2, 50, 5, 100), // the leader
		101: statLine(101, "worker", 'R', 100, 100, 20, 1, 0, 0, 200),
		102: statLine(102, "daemon", 'S', 101, 102, 1, 1, 0, 0, 300),  // setsid'd
		103: statLine(103, "child", 'S', 102, 103, 1, 1, 0, 0, 400),   // its child
		104: statLine(104, "orphan", 'S', 1, 100, 0, 0, 0, 0, 500),    // reparented, still in the group
		105: statLine(105, "dead", 'Z', 100, 100, 7, 7, 0, 0, 0),      // a zombie
		200: statLine(200, "other", 'S', 1, 200, 99, 99, 99, 99, 999), // unrelated
		201: statLine(201, "other2", 'S', 200, 200, 99, 99, 99, 99, 999),
	}
	for pid, line := range procs {
		dir := filepath.Join(root, fmt.Sprint(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, junk := range []string{"self", "sys", "300"} { // 300 has no stat
		if err := os.MkdirAll(filepath.Join(root, junk), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := NewScanner(root)
	now := time.Unix(1000, 0)
	got, err := s.Scan(100, now)
	if err != nil {
		t.Fatal(err)
	}
	page := int64(os.Getpagesize())
	if !slices.Equal(got.PIDs, []int{100, 101, 102, 103, 104, 105}) || got.Procs != 5 ||
		got.RSSBytes != 1500*page || got.CPUUser != 0.89 || got.CPUSystem != 0.17 || !got.Time.Equal(now) {
		t.Fatalf("sample %+v", got)
	}
	if got, err := s.Scan(999, now); err != nil || got.Procs != 0 || len(got.PIDs) != 0 {
		t.Fatalf("no such group: %+v, %v", got, err)
	}
	if _, err := s.Scan(0, now); err == nil {
		t.Fatal("group 0: no error")
	}
	if _, err := NewScanner(filepath.Join(root, "missing")).Scan(1, now); err == nil {
		t.Fatal("missing /proc: no error")
	}
}

// start runs a shell script in its own process group; the script signals
// readiness by writing a line to fd 3, which the returned function waits
// for.
func start(t *testing.T, script string) (*exec.Cmd, func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	t.Cleanup(func() { r.Close() })
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	ready := func() {
		t.Helper()
		if err := r.SetReadDeadline(time.Now().Add(waitLimit)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 6)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatalf("the script never said ready: %v", err)
		}
	}
	return cmd, ready
}

func TestScanRealTree(t *testing.T) {
	t.Parallel()
	// Three background children, one of which leaves the group; then a
	// busy loop so that there is CPU time to see.
	cmd, ready := start(t, `sleep 30 & sleep 30 & setsid sleep 30 &
		i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done
		echo ready >&3; wait`)
	ready()
	got, err := NewScanner("").Scan(cmd.Process.Pid, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got.Procs != 4 || len(got.PIDs) != 4 || !slices.Contains(got.PIDs, cmd.Process.Pid) {
		t.Fatalf("sample %+v: want the shell and its three children", got)
	}
	if got.RSSBytes <= 0 || got.CPUUser+got.CPUSystem <= 0 {
		t.Fatalf("sample %+v: want memory and CPU time", got)
	}
}

func TestSamplerLimit(t *testing.T) {
	t.Parallel()
	cmd, ready := start(t, `exec python3 -c '
import os, time
b = bytearray(100 * 2**20)
os.write(3, b"ready\n")
time.sleep(60)
'`)
	ready()
	fired := make(chan Sample, 1)
	s := Start(cmd.Process.Pid, Options{
		Interval:    10 * time.Millisecond,
		MemoryLimit: 50 << 20,
		OnLimit:     func(smp Sample) { fired <- smp },
	})
	select {
	case smp := <-fired:
		if smp.RSSBytes <= 50<<20 || !slices.Contains(smp.PIDs, cmd.Process.Pid) {
			t.Fatalf("OnLimit with %+v", smp)
		}
	case <-time.After(waitLimit):
		t.Fatal("OnLimit not called")
	}
	if pids := s.PIDs(); !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("PIDs %v", pids)
	}
	sum := s.Stop()
	if !sum.OverLimit || sum.Samples < 1 || sum.PeakRSSBytes < 100<<20 || sum.AvgRSSBytes <= 0 ||
		sum.AvgRSSBytes > sum.PeakRSSBytes || sum.MaxProcs != 1 || sum.Err != nil {
		t.Fatalf("summary %+v", sum)
	}
	if again := s.Stop(); again != sum {
		t.Fatalf("second Stop %+v, first %+v", again, sum)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// The mean weighs each sample by the time until the next; samples of an
// empty tree end the previous one's time and count for nothing.
func TestSamplerTimeWeightedMean(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	clock := &fakeClock{now: t0}
	// No sample of its own before Stop: the test feeds them.
	s := Start(1, Options{FirstDelay: time.Hour, Clock: clock.Now})
	at := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	s.add(Sample{Time: at(0), RSSBytes: 100, Procs: 1, CPUUser: 1}, nil)
	s.add(Sample{Time: at(1), RSSBytes: 400, Procs: 2, CPUUser: 3, CPUSystem: 1}, nil)
	s.add(Sample{Time: at(3), Procs: 0}, nil)                             // the tree is gone
	s.add(Sample{}, fmt.Errorf("boom"))                                   // an error is kept, not counted
	s.add(Sample{Time: at(4), RSSBytes: 1000, Procs: 1, CPUUser: 2}, nil) // back (a new child)
	clock.Set(at(5))
	sum := s.Stop()
	// (100×1 + 400×2 + 1000×1) / 4
	if sum.AvgRSSBytes != 475 || sum.PeakRSSBytes != 1000 || sum.Samples != 3 || sum.CPUUser != 3 ||
		sum.CPUSystem != 1 || sum.MaxProcs != 2 || sum.Err == nil || sum.OverLimit {
		t.Fatalf("summary %+v", sum)
	}

	one := Start(1, Options{FirstDelay: time.Hour, Clock: clock.Now})
	one.add(Sample{Time: at(5), RSSBytes: 77, Procs: 1}, nil)
	if sum := one.Stop(); sum.AvgRSSBytes != 77 || sum.Samples != 1 {
		t.Fatalf("a single sample at Stop's instant: %+v", sum)
	}
	none := Start(1, Options{FirstDelay: time.Hour, Clock: clock.Now})
	if sum := none.Stop(); sum.Samples != 0 || sum.AvgRSSBytes != 0 {
		t.Fatalf("no sample: %+v", sum)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(statLine(42, "a (b) c", 'S', 1, 42, 1, 2, 3, 4, 5)))
	f.Add([]byte("1 (x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseStat(b)
	})
}

// BenchmarkScan measures one sample of this machine's /proc (the cost of
// one sampler tick).
func BenchmarkScan(b *testing.B) {
	s := NewScanner("")
	pgid := syscall.Getpgrp()
	now := time.Now()
	for b.Loop() {
		if _, err := s.Scan(pgid, now); err != nil {
			b.Fatal(err)
		}
	}
}
