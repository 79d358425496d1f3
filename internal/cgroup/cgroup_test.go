package cgroup

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const mib = 1 << 20

// realManager returns a Manager on this machine's real cgroups, which the
// tests require: this machine and CI run as root with cgroup v1's memory
// controller mounted.
func realManager(t *testing.T, suffix string) *Manager {
	t.Helper()
	m, err := Detect("/", Owner(os.Getpid())+"-"+suffix)
	if err != nil {
		t.Fatalf("these tests need a writable memory cgroup (root, cgroup v1 or v2 with the memory controller): %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

func create(t *testing.T, m *Manager, name string, l Limits) *Group {
	t.Helper()
	g, err := m.Create(name, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Remove(); err != nil {
			t.Errorf("Remove: %v", err)
		}
	})
	return g
}

// startIn starts a shell that joins the group's directories and then runs
// script, so that the program is inside before it allocates anything. The
// returned function waits until the shell has joined.
func startIn(t *testing.T, g *Group, script string) (*exec.Cmd, func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	t.Cleanup(func() { r.Close() })
	args := append([]string{"-c", `for d in "$@"; do echo $$ > "$d/cgroup.procs" || exit 99; done; echo joined >&3; exec 3>&-; ` + script, "sh"}, g.Dirs()...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	joined := func() {
		t.Helper()
		if err := r.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 7)
		if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "joined\n" {
			t.Fatalf("the process did not join its group: %q, %v", buf, err)
		}
	}
	return cmd, joined
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestV1OOMKill(t *testing.T) {
	t.Parallel()
	m := realManager(t, "oom")
	if m.Version() != V1 {
		t.Fatalf("version %v: this machine has cgroup v1's memory controller", m.Version())
	}
	g := create(t, m, "w1", Limits{MemoryBytes: 64 * mib, CPU: 0.5})
	dirs := g.Dirs()
	if g.Version() != V1 || len(dirs) != 2 || dirs[0] != filepath.Join(m.Parent(), "w1") {
		t.Fatalf("group %v %q (parent %s)", g.Version(), dirs, m.Parent())
	}
	if got := readTrim(t, filepath.Join(dirs[0], "memory.limit_in_bytes")); got != strconv.Itoa(64*mib) {
		t.Fatalf("memory.limit_in_bytes %s", got)
	}
	if got := readTrim(t, filepath.Join(dirs[1], "cpu.cfs_quota_us")); got != "50000" {
		t.Fatalf("cpu.cfs_quota_us %s", got)
	}
	if n, err := g.OOMKills(); err != nil || n != 0 {
		t.Fatalf("OOMKills before: %d, %v", n, err)
	}
	if l, err := g.MemoryLimit(); err != nil || l != 64*mib {
		t.Fatalf("MemoryLimit %d, %v", l, err)
	}

	cmd, _ := startIn(t, g, `exec python3 -c 'b = bytearray(300 * 2**20)'`)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("python: %v, want killed", err)
	}
	if ws := ee.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("python ended %v, want SIGKILL", ws)
	}
	if n, err := g.OOMKills(); err != nil || n != 1 {
		t.Fatalf("OOMKills after: %d, %v; want 1", n, err)
	}
	if p, err := g.MemoryPeak(); err != nil || p < 32*mib || p > 64*mib {
		t.Fatalf("MemoryPeak %d, %v; want near the 64 MiB limit", p, err)
	}

	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s still there: %v", d, err)
		}
	}
	if err := g.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestV1RemoveKillsLeftovers(t *testing.T) {
	t.Parallel()
	m := realManager(t, "leftover")
	g := create(t, m, "w1", Limits{MemoryBytes: 256 * mib})
	cmd, joined := startIn(t, g, "exec sleep 60")
	joined()
	if pids, err := Procs(g.Path()); err != nil || !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("procs %v, %v; want %d", pids, err, cmd.Process.Pid)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("sleep survived Remove")
	}
	if _, err := os.Stat(g.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("group still there: %v", err)
	}
}

func TestSweep(t *testing.T) {
	t.Parallel()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	// A Manager of a dead server: its owner names a process that is gone.
	stale, err := Detect("/", Owner(dead.Process.Pid)+"-sweeptest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stale.Close() })
	staleGroup := create(t, stale, "w1", Limits{MemoryBytes: 128 * mib, CPU: 1})
	cmd, joined := startIn(t, staleGroup, "exec sleep 60")
	joined()
	other := filepath.Join(filepath.Dir(stale.Parent()), "someone-else")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(other) })

	live := realManager(t, "live")
	liveGroup := create(t, live, "w1", Limits{MemoryBytes: 128 * mib})

	sweeper := realManager(t, "sweeper")
	n, err := sweeper.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Fatalf("Sweep removed %d groups, want the stale one at least", n)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("the process in the stale group survived")
	}
	for _, d := range append(staleGroup.Dirs(), stale.Parent()) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stale %s still there: %v", d, err)
		}
	}
	for _, d := range append(liveGroup.Dirs(), other) {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("Sweep touched %s: %v", d, err)
		}
	}
}

func TestBadNamesAndLimits(t *testing.T) {
	t.Parallel()
	m := realManager(t, "names")
	for _, name := range []string{"", ".", "..", "a/b", "../x", "a\x00b"} {
		if g, err := m.Create(name, Limits{}); err == nil {
			_ = g.Remove()
			t.Errorf("Create(%q): no error", name)
		}
	}
	for _, l := range []Limits{{MemoryBytes: -1}, {CPU: -1}} {
		if g, err := m.Create("w", l); err == nil {
			_ = g.Remove()
			t.Errorf("Create with %+v: no error", l)
		}
	}
	if _, err := m.Create("w", Limits{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create("w", Limits{}); err == nil {
		t.Error("Create of an existing group: no error")
	}
	g := &Group{version: m.Version(), dirs: []string{filepath.Join(m.Parent(), "w")}, mem: filepath.Join(m.Parent(), "w")}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := Detect("/", "a/b"); err == nil {
		t.Error("Detect with a bad owner: no error")
	}
	if err := Join(nil, 1); err == nil {
		t.Error("Join without dirs: no error")
	}
	if err := Join([]string{"relative"}, 1); err == nil {
		t.Error("Join of a relative dir: no error")
	}
}

func TestSelfReal(t *testing.T) {
	t.Parallel()
	g, err := Self("/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var want string
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if slices.Contains(strings.Split(parts[1], ","), "memory") {
			want = parts[2]
		}
	}
	if g.Version() != V1 || !strings.HasSuffix(g.Path(), want) {
		t.Fatalf("Self: %v %s; /proc/self/cgroup says %s", g.Version(), g.Path(), want)
	}
	if _, err := g.MemoryLimit(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.OOMKills(); err != nil {
		t.Fatal(err)
	}
}

// fakeTree builds a fake filesystem root: files maps paths under it to
// contents (a path ending in "/" is a directory).
func fakeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const v2MountInfo = "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n" +
	"30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"

func TestV2FakeTree(t *testing.T) {
	t.Parallel()
	own := "sys/fs/cgroup/system.slice/haul.service/"
	root := fakeTree(t, map[string]string{
		"proc/self/cgroup":                          "0::/system.slice/haul.service\n",
		"proc/self/mountinfo":                       v2MountInfo,
		"sys/fs/cgroup/cgroup.controllers":          "cpuset cpu io memory hugetlb pids rdma misc\n",
		"sys/fs/cgroup/cgroup.subtree_control":      "cpu memory pids\n",
		"sys/fs/cgroup/system.slice/memory.max":     "1073741824\n",
		own + "cgroup.controllers":                  "cpu memory pids\n",
		own + "cgroup.subtree_control":              "",
		own + "memory.max":                          "max\n",
		own + "memory.events":                       "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\noom_group_kill 0\n",
		own + "memory.peak":                         "52428800\n",
		"sys/fs/cgroup/system.slice/cgroup.procs":   "",
		"sys/fs/cgroup/system.slice/memory.current": "0\n",
	})
	m, err := Detect(root, "pid-1")
	if err != nil {
		t.Fatal(err)
	}
	ownDir := filepath.Join(root, own)
	if m.Version() != V2 || m.Parent() != filepath.Join(ownDir, "haul", "pid-1") || !m.CPU() {
		t.Fatalf("manager %v parent %s cpu %v", m.Version(), m.Parent(), m.CPU())
	}
	for _, d := range []string{ownDir, filepath.Join(ownDir, "haul"), m.Parent()} {
		// A fake tree keeps the last write only.
		if got := readTrim(t, filepath.Join(d, "cgroup.subtree_control")); got != "+cpu" {
			t.Fatalf("%s/cgroup.subtree_control = %q", d, got)
		}
	}
	g, err := m.Create("w1", Limits{MemoryBytes: 128 * mib, CPU: 1.5})
	if err != nil {
		t.Fatal(err)
	}
	if dirs := g.Dirs(); len(dirs) != 1 || dirs[0] != filepath.Join(m.Parent(), "w1") || g.Version() != V2 {
		t.Fatalf("group dirs %q", dirs)
	}
	if got := readTrim(t, filepath.Join(g.Path(), "memory.max")); got != strconv.Itoa(128*mib) {
		t.Fatalf("memory.max %q", got)
	}
	if got := readTrim(t, filepath.Join(g.Path(), "cpu.max")); got != "150000 100000" {
		t.Fatalf("cpu.max %q", got)
	}
	if err := Join(g.Dirs(), 4242); err != nil {
		t.Fatal(err)
	}
	if pids, err := Procs(g.Path()); err != nil || !slices.Equal(pids, []int{4242}) {
		t.Fatalf("procs %v, %v", pids, err)
	}

	// The worker's side: Self finds the group from /proc/self.
	self, err := Self(root)
	if err != nil {
		t.Fatal(err)
	}
	if self.Version() != V2 || self.Path() != ownDir {
		t.Fatalf("Self: %v %s", self.Version(), self.Path())
	}
	if n, err := self.OOMKills(); err != nil || n != 1 {
		t.Fatalf("OOMKills %d, %v", n, err)
	}
	// Its own memory.max is "max"; the parent's 1 GiB is in force.
	if l, err := self.MemoryLimit(); err != nil || l != 1<<30 {
		t.Fatalf("MemoryLimit %d, %v", l, err)
	}
	if p, err := self.MemoryPeak(); err != nil || p != 50*mib {
		t.Fatalf("MemoryPeak %d, %v", p, err)
	}
}

// A base without the memory controller (or one the kernel refuses to
// enable it in) gives way to the hierarchy's root; a root without it makes
// v2 unusable.
func TestV2FallsBackToRoot(t *testing.T) {
	t.Parallel()
	own := "sys/fs/cgroup/user.slice/"
	root := fakeTree(t, map[string]string{
		"proc/self/cgroup":                     "0::/user.slice\n",
		"proc/self/mountinfo":                  v2MountInfo,
		"sys/fs/cgroup/cgroup.controllers":     "memory pids\n",
		"sys/fs/cgroup/cgroup.subtree_control": "",
		own + "cgroup.controllers":             "pids\n",
	})
	m, err := Detect(root, "pid-7")
	if err != nil {
		t.Fatal(err)
	}
	if m.Parent() != filepath.Join(root, "sys/fs/cgroup/haul/pid-7") || m.CPU() {
		t.Fatalf("parent %s cpu %v", m.Parent(), m.CPU())
	}
	for _, d := range []string{"sys/fs/cgroup", "sys/fs/cgroup/haul", "sys/fs/cgroup/haul/pid-7"} {
		if got := readTrim(t, filepath.Join(root, d, "cgroup.subtree_control")); got != "+memory" {
			t.Fatalf("%s/cgroup.subtree_control = %q", d, got)
		}
	}
	g, err := m.Create("w", Limits{MemoryBytes: mib, CPU: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(g.Path(), "cpu.max")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cpu.max written without the cpu controller: %v", err)
	}

	none := fakeTree(t, map[string]string{
		"proc/self/cgroup":                 "0::/\n",
		"proc/self/mountinfo":              v2MountInfo,
		"sys/fs/cgroup/cgroup.controllers": "cpu pids\n",
	})
	_, err = Detect(none, "pid-7")
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "memory controller is not available") ||
		!strings.Contains(err.Error(), "v1: no memory controller mounted") {
		t.Fatalf("Detect without memory: %v", err)
	}
}

func TestSelfNamespaced(t *testing.T) {
	t.Parallel()
	// A container with a cgroup namespace (v2): /proc/self/cgroup says
	// "/", or a path that does not exist in the container's mount.
	for _, path := range []string{"/", "/../../kubepods/pod1/ctr"} {
		root := fakeTree(t, map[string]string{
			"proc/self/cgroup":            "0::" + path + "\n",
			"proc/self/mountinfo":         v2MountInfo,
			"sys/fs/cgroup/memory.max":    "268435456\n",
			"sys/fs/cgroup/memory.events": "oom 0\noom_kill 0\n",
		})
		g, err := Self(root)
		if err != nil {
			t.Fatal(err)
		}
		if g.Path() != filepath.Join(root, "sys/fs/cgroup") {
			t.Fatalf("%s: Self at %s", path, g.Path())
		}
		if l, err := g.MemoryLimit(); err != nil || l != 256*mib {
			t.Fatalf("%s: MemoryLimit %d, %v", path, l, err)
		}
	}
	// A v1 container: the memory hierarchy's mount root is the container's
	// own group (mountinfo field 4), which /proc/self/cgroup names in full.
	root := fakeTree(t, map[string]string{
		"proc/self/cgroup": "12:memory:/kubepods/burstable/pod1/ctr\n11:cpu,cpuacct:/kubepods/burstable/pod1/ctr\n0::/\n",
		"proc/self/mountinfo": "22 1 259:1 / / rw - overlay overlay rw\n" +
			"40 39 0:33 /kubepods/burstable/pod1/ctr /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n",
		"sys/fs/cgroup/memory/memory.limit_in_bytes": "134217728\n",
		"sys/fs/cgroup/memory/memory.oom_control":    "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
	})
	g, err := Self(root)
	if err != nil {
		t.Fatal(err)
	}
	if g.Version() != V1 || g.Path() != filepath.Join(root, "sys/fs/cgroup/memory") {
		t.Fatalf("v1 container: %v %s", g.Version(), g.Path())
	}
	if l, err := g.MemoryLimit(); err != nil || l != 128*mib {
		t.Fatalf("MemoryLimit %d, %v", l, err)
	}
	if n, err := g.OOMKills(); err != nil || n != 3 {
		t.Fatalf("OOMKills %d, %v", n, err)
	}
}

func TestV1Counters(t *testing.T) {
	t.Parallel()
	dir := fakeTree(t, map[string]string{
		"memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\n",
		"memory.failcnt":            "5\n",
		"memory.limit_in_bytes":     "9223372036854771712\n",
		"memory.max_usage_in_bytes": "1234\n",
	})
	g := &Group{version: V1, dirs: []string{dir}, mem: dir, memTop: dir}
	// An old kernel without oom_kill: failcnt stands in.
	if n, err := g.OOMKills(); err != nil || n != 5 {
		t.Fatalf("OOMKills %d, %v", n, err)
	}
	if l, err := g.MemoryLimit(); err != nil || l != 0 {
		t.Fatalf("MemoryLimit %d, %v: want unlimited", l, err)
	}
	if p, err := g.MemoryPeak(); err != nil || p != 1234 {
		t.Fatalf("MemoryPeak %d, %v", p, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte("lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := g.MemoryLimit(); err == nil || !strings.Contains(err.Error(), "not a number") {
		t.Fatalf("bad limit file: %v", err)
	}
}

func TestParseMountInfo(t *testing.T) {
	t.Parallel()
	in := "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n" +
		"35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n" +
		"36 31 0:33 /a\\040b /mnt/my\\040cgroups rw shared:9 master:2 - cgroup cgroup rw,cpu,cpuacct\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
	got, err := parseMountInfo(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mount{
		{root: "/", point: "/sys/fs/cgroup/memory", fstype: "cgroup", opts: []string{"rw", "memory"}},
		{root: "/a b", point: "/mnt/my cgroups", fstype: "cgroup", opts: []string{"rw", "cpu", "cpuacct"}},
		{root: "/", point: "/sys/fs/cgroup/unified", fstype: "cgroup2", opts: []string{"rw"}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	for _, bad := range []string{"1 2 3\n", "1 2 3 4 5 6 - cgroup\n"} {
		if _, err := parseMountInfo(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	t.Parallel()
	in := "9:name=systemd:/\n4:memory:/process_api/abc\n2:cpu,cpuacct:/x\n0::/\n"
	got, err := parseProcCgroup(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []membership{
		{id: "9", controllers: []string{"name=systemd"}, path: "/"},
		{id: "4", controllers: []string{"memory"}, path: "/process_api/abc"},
		{id: "2", controllers: []string{"cpu", "cpuacct"}, path: "/x"},
		{id: "0", path: "/"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	for _, bad := range []string{"no colons\n", "4:memory\n", "4:memory:relative\n"} {
		if _, err := parseProcCgroup(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("4:memory:/a\n0::/\n")
	f.Add("35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseProcCgroup(strings.NewReader(s))
		_, _ = parseMountInfo(strings.NewReader(s))
		_ = unescapeOctal(s)
	})
}
