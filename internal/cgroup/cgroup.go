// Package cgroup puts haul's workers into Linux control groups with their
// tier's memory and CPU limits, and reads back what the kernel enforced:
// the OOM-kill counter, the effective memory limit and the peak usage.
//
// Both hierarchies are supported. On cgroup v2 a worker's group is one
// directory (memory.max, cpu.max, memory.events); on cgroup v1 it is a
// directory in the memory hierarchy (memory.limit_in_bytes,
// memory.oom_control) plus one in the cpu hierarchy when a CPU quota is
// asked for (cpu.cfs_quota_us).
//
// The server side (a worker backend) uses a Manager: Detect finds a usable
// hierarchy and makes the owner's parent, <base>/haul/<owner>, where base is
// the server's own cgroup when it may create groups there and the
// hierarchy's root otherwise; Create makes one group per worker; Sweep, at
// start, removes what dead servers left behind. The worker side (the
// taskhost) uses Join to enter the group it was given and Self to find the
// group it is in — whoever made it, a Kubernetes container's included.
//
// The package reads and writes files only, no cgo, so the taskhost stays a
// static binary. All paths are taken under a filesystem root ("/" in
// production), so tests can run against a fake cgroupfs tree. It imports
// the standard library only.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrUnavailable is wrapped by the errors of Detect and Self when no usable
// memory cgroup exists (none mounted, or none this process may write).
var ErrUnavailable = errors.New("cgroup: no usable memory cgroup")

// Version is a cgroup hierarchy's version.
type Version int

// The two versions.
const (
	V1 Version = 1
	V2 Version = 2
)

// String returns "cgroup-v1" or "cgroup-v2": the taskhost reports these as
// its enforcement.
func (v Version) String() string {
	switch v {
	case V1:
		return "cgroup-v1"
	case V2:
		return "cgroup-v2"
	}
	return fmt.Sprintf("cgroup-v%d?", int(v))
}

// Limits are a group's limits; zero means unlimited.
type Limits struct {
	// MemoryBytes caps the group's memory (RAM; swap is turned off for the
	// group where the kernel allows it, so the group is OOM-killed rather
	// than swapped).
	MemoryBytes int64
	// CPU is a quota in cores (1.5 = 150ms of CPU time every 100ms).
	CPU float64
}

func (l Limits) validate() error {
	if l.MemoryBytes < 0 {
		return fmt.Errorf("memory limit %d is negative", l.MemoryBytes)
	}
	if math.IsNaN(l.CPU) || math.IsInf(l.CPU, 0) || l.CPU < 0 {
		return fmt.Errorf("CPU limit %v: want a non-negative number of cores", l.CPU)
	}
	return nil
}

// cpuPeriod is the CFS period used for CPU quotas, in microseconds.
const cpuPeriod = 100_000

// unlimitedV1 is the smallest value v1 reports for "no limit" (it prints
// PAGE_COUNTER_MAX pages in bytes, 9223372036854771712 on 4 KiB pages).
const unlimitedV1 = 1 << 62

// Manager makes worker groups under a parent that it owns.
type Manager struct {
	version Version
	owner   string
	closed  bool // Close ran (guarded by ownerMu)
	// mem is the owner's parent in the memory (v1) or unified (v2)
	// hierarchy; cpu is the v1 cpu hierarchy's, "" when CPU quotas cannot
	// be set (v1 without a writable cpu hierarchy, v2 without the cpu
	// controller).
	mem, cpu string
	// memTop and cpuTop are the hierarchies' mount points.
	memTop, cpuTop string
	// v2CPU says whether cpu is enabled for the groups (v2).
	v2CPU bool
	// sweepDirs are the "haul" directories that may hold other owners'
	// parents: under this process's own cgroup and under the root, in each
	// hierarchy used.
	sweepDirs []string
}

// ownerPattern is what Sweep recognises as an owner it may judge: a process
// ID, optionally followed by a suffix that tells apart several managers of
// one process.
var ownerPattern = regexp.MustCompile(`^pid-([0-9]+)(-.*)?$`)

// Owner returns the owner name for a server process: "pid-<pid>". Sweep
// removes the groups of an owner of this form (or "pid-<pid>-<suffix>")
// once that process no longer exists.
func Owner(pid int) string { return "pid-" + strconv.Itoa(pid) }

// validName rejects names that are not one plain path element.
func validName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("cgroup: %s is empty", what)
	case name == "." || name == "..":
		return fmt.Errorf("cgroup: %s %q is not a plain name", what, name)
	case strings.ContainsAny(name, "/\\\x00\n"):
		return fmt.Errorf("cgroup: %s %q contains a path separator or control character", what, name)
	case len(name) > 200:
		return fmt.Errorf("cgroup: %s %q is longer than 200 bytes", what, name)
	}
	return nil
}

// Detect finds a hierarchy where this process can make groups with a
// memory limit and creates the owner's parent directory in it. fsRoot is
// "/" in production. cgroup v2 is used when its mount offers the memory
// controller and it can be enabled for haul's subtree; otherwise cgroup
// v1's memory hierarchy. The parent is <base>/haul/<owner>, base being
// this process's own cgroup where it may create groups and enable the
// controllers, else the hierarchy's root. The error wraps ErrUnavailable,
// with the reasons, when neither hierarchy is usable.
//
// owner names the calling server so that two servers on one machine never
// touch each other's groups; use Owner(os.Getpid()), with a suffix
// ("pid-123-a") if one process holds several Managers.
func Detect(fsRoot, owner string) (*Manager, error) {
	if err := validName("owner", owner); err != nil {
		return nil, err
	}
	view, err := readProcView(fsRoot)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var reasons []string
	if h, ok := view.v2(fsRoot); ok {
		m, err := detectV2(h, owner)
		if err == nil {
			return m.use(), nil
		}
		reasons = append(reasons, "v2: "+err.Error())
	} else {
		reasons = append(reasons, "v2: no cgroup2 mount")
	}
	if h, ok := view.v1(fsRoot, "memory"); ok {
		m, err := detectV1(fsRoot, view, h, owner)
		if err == nil {
			return m.use(), nil
		}
		reasons = append(reasons, "v1: "+err.Error())
	} else {
		reasons = append(reasons, "v1: no memory controller mounted")
	}
	return nil, fmt.Errorf("%w: %s", ErrUnavailable, strings.Join(reasons, "; "))
}

// bases returns the candidate bases of a hierarchy: own cgroup, then root.
func (h hierarchy) bases() []string {
	if h.own == h.mount {
		return []string{h.mount}
	}
	return []string{h.own, h.mount}
}

func detectV1(fsRoot string, view procView, mem hierarchy, owner string) (*Manager, error) {
	m := &Manager{version: V1, owner: owner, memTop: mem.mount}
	var errs []string
	for _, base := range mem.bases() {
		m.sweepDirs = append(m.sweepDirs, filepath.Join(base, "haul"))
		if m.mem != "" {
			continue
		}
		dir := filepath.Join(base, "haul", owner)
		if err := mkdirAll(dir); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "memory.limit_in_bytes")); err != nil {
			_ = os.Remove(dir)
			errs = append(errs, fmt.Sprintf("%s is not a memory cgroup: %v", dir, err))
			continue
		}
		m.mem = dir
	}
	if m.mem == "" {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	// The cpu hierarchy is optional: without it, CPU quotas are not set.
	if cpu, ok := view.v1(fsRoot, "cpu"); ok {
		m.cpuTop = cpu.mount
		for _, base := range cpu.bases() {
			m.sweepDirs = append(m.sweepDirs, filepath.Join(base, "haul"))
			if m.cpu != "" {
				continue
			}
			dir := filepath.Join(base, "haul", owner)
			if err := mkdirAll(dir); err != nil {
				continue
			}
			if _, err := os.Stat(filepath.Join(dir, "cpu.cfs_quota_us")); err != nil {
				_ = os.Remove(dir)
				continue
			}
			m.cpu = dir
		}
	}
	return m, nil
}

func detectV2(h hierarchy, owner string) (*Manager, error) {
	rootCtrls, err := readWords(filepath.Join(h.mount, "cgroup.controllers"))
	if err != nil {
		return nil, err
	}
	if !slices.Contains(rootCtrls, "memory") {
		return nil, fmt.Errorf("the memory controller is not available in %s (it is bound to v1 or disabled)", h.mount)
	}
	m := &Manager{version: V2, owner: owner, memTop: h.mount}
	var errs []string
	for _, base := range h.bases() {
		m.sweepDirs = append(m.sweepDirs, filepath.Join(base, "haul"))
		if m.mem != "" {
			continue
		}
		cpu, err := enableV2(base, owner)
		if errors.Is(err, fs.ErrNotExist) {
			// Another owner's Close removed an empty "haul" meanwhile.
			cpu, err = enableV2(base, owner)
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		m.mem, m.v2CPU = filepath.Join(base, "haul", owner), cpu
		if cpu {
			m.cpu = m.mem
		}
	}
	if m.mem == "" {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return m, nil
}

// enableV2 makes base/haul/owner with the memory controller enabled down
// to the owner's groups, and cpu too where the kernel allows; it reports
// whether cpu is. A base that holds processes cannot enable controllers
// for its children (the kernel's "no internal processes" rule), which
// makes it fail here.
func enableV2(base, owner string) (bool, error) {
	ctrls, err := readWords(filepath.Join(base, "cgroup.controllers"))
	if err != nil {
		return false, err
	}
	if !slices.Contains(ctrls, "memory") {
		return false, fmt.Errorf("memory controller not available in %s", base)
	}
	cpu := slices.Contains(ctrls, "cpu")
	var made []string
	fail := func(err error) (bool, error) {
		for _, d := range slices.Backward(made) {
			_ = os.Remove(d)
		}
		return false, err
	}
	dir := base
	for _, name := range []string{"", "haul", owner} {
		if name != "" {
			dir = filepath.Join(dir, name)
			if err := os.Mkdir(dir, 0o755); err == nil {
				made = append(made, dir)
			} else if !errors.Is(err, fs.ErrExist) {
				return fail(err)
			}
		}
		// Enabling what is already enabled is a no-op for the kernel.
		control := filepath.Join(dir, "cgroup.subtree_control")
		if err := writeFile(control, "+memory"); err != nil {
			return fail(fmt.Errorf("enable memory in %s: %w", dir, err))
		}
		// cpu is optional: the kernel refuses it while a realtime process
		// is in the group, for one.
		if cpu && writeFile(control, "+cpu") != nil {
			cpu = false
		}
	}
	return cpu, nil
}

// Version returns the hierarchy the Manager uses.
func (m *Manager) Version() Version { return m.version }

// CPU reports whether the Manager's groups get CPU quotas; without, Create
// ignores Limits.CPU.
func (m *Manager) CPU() bool { return m.cpu != "" }

// Parent returns the owner's parent directory in the memory (v1) or
// unified (v2) hierarchy.
func (m *Manager) Parent() string { return m.mem }

// Create makes a group named name with limits l. The name must be one
// plain path element and new for this owner.
func (m *Manager) Create(name string, l Limits) (*Group, error) {
	if err := validName("group name", name); err != nil {
		return nil, err
	}
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("cgroup: group %s: %w", name, err)
	}
	g := &Group{version: m.version, mem: filepath.Join(m.mem, name), memTop: m.memTop}
	if err := os.Mkdir(g.mem, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: create group %s: %w", name, err)
	}
	g.dirs = []string{g.mem}
	var err error
	if m.version == V2 {
		err = m.limitV2(g, l)
	} else {
		err = m.limitV1(g, name, l)
	}
	if err != nil {
		_ = g.Remove()
		return nil, fmt.Errorf("cgroup: group %s: %w", name, err)
	}
	return g, nil
}

func (m *Manager) limitV1(g *Group, name string, l Limits) error {
	if l.MemoryBytes > 0 {
		v := strconv.FormatInt(l.MemoryBytes, 10)
		if err := writeFile(filepath.Join(g.mem, "memory.limit_in_bytes"), v); err != nil {
			return fmt.Errorf("set memory limit: %w", err)
		}
		// Memory plus swap at the same value: no swap. Only present with
		// swap accounting; best effort.
		if p := filepath.Join(g.mem, "memory.memsw.limit_in_bytes"); exists(p) {
			_ = writeFile(p, v)
		}
	}
	if l.CPU > 0 && m.cpu != "" {
		dir := filepath.Join(m.cpu, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("create cpu group: %w", err)
		}
		g.dirs = append(g.dirs, dir)
		if err := writeFile(filepath.Join(dir, "cpu.cfs_period_us"), strconv.Itoa(cpuPeriod)); err != nil {
			return fmt.Errorf("set cpu period: %w", err)
		}
		if err := writeFile(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(cpuQuota(l.CPU), 10)); err != nil {
			return fmt.Errorf("set cpu quota: %w", err)
		}
	}
	return nil
}

func (m *Manager) limitV2(g *Group, l Limits) error {
	if l.MemoryBytes > 0 {
		if err := writeFile(filepath.Join(g.mem, "memory.max"), strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
			return fmt.Errorf("set memory.max: %w", err)
		}
		if p := filepath.Join(g.mem, "memory.swap.max"); exists(p) {
			_ = writeFile(p, "0")
		}
	}
	if l.CPU > 0 && m.v2CPU {
		v := fmt.Sprintf("%d %d", cpuQuota(l.CPU), cpuPeriod)
		if err := writeFile(filepath.Join(g.mem, "cpu.max"), v); err != nil {
			return fmt.Errorf("set cpu.max: %w", err)
		}
	}
	return nil
}

// cpuQuota is the CFS quota for cores, at least the kernel's 1ms minimum.
func cpuQuota(cores float64) int64 {
	return max(1000, int64(math.Round(cores*cpuPeriod)))
}

// Sweep removes the groups left behind by dead owners: under each "haul"
// directory the Manager knows (below its own cgroup and below the root, in
// every hierarchy it uses), an owner named "pid-N" or "pid-N-suffix" whose
// process N no longer exists has every process still in its groups
// SIGKILLed and its groups and parent removed. Live owners and names of
// another form are never touched. It returns how many groups it removed
// (a v1 group's memory and cpu directories count once).
func (m *Manager) Sweep() (int, error) {
	removed := map[string]bool{}
	var errs []error
	for _, haul := range slices.Compact(slices.Clone(m.sweepDirs)) {
		owners, err := os.ReadDir(haul)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s: %w", haul, err))
			continue
		}
		for _, o := range owners {
			if !o.IsDir() || o.Name() == m.owner || !ownerDead(o.Name()) {
				continue
			}
			parent := filepath.Join(haul, o.Name())
			groups, err := os.ReadDir(parent)
			if err != nil {
				errs = append(errs, fmt.Errorf("list %s: %w", parent, err))
				continue
			}
			for _, g := range groups {
				if !g.IsDir() {
					continue
				}
				dir := filepath.Join(parent, g.Name())
				if err := removeDir(dir, m.version); err != nil {
					errs = append(errs, err)
					continue
				}
				removed[o.Name()+"/"+g.Name()] = true
			}
			if err := rmdirRetry(parent); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return len(removed), fmt.Errorf("cgroup: sweep: %w", errors.Join(errs...))
	}
	return len(removed), nil
}

// ownerDead reports whether owner names a process that no longer exists.
func ownerDead(owner string) bool {
	sm := ownerPattern.FindStringSubmatch(owner)
	if sm == nil {
		return false
	}
	pid, err := strconv.Atoi(sm[1])
	if err != nil || pid <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// Close removes the owner's parent directories; groups still in them make
// it fail (remove them first). The "haul" directories above are removed
// too when nothing else is in them. Closing twice is fine.
func (m *Manager) Close() error {
	ownerMu.Lock()
	again := m.closed
	m.closed = true
	ownerMu.Unlock()
	if again {
		return nil
	}
	var errs []error
	for _, dir := range []string{m.mem, m.cpu} {
		if dir == "" || !release(dir) {
			continue // another Manager of this process still uses it
		}
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("cgroup: remove %s: %w", dir, err))
			continue
		}
		// Another owner may still use it: then this fails, as it should.
		_ = os.Remove(filepath.Dir(dir))
	}
	return errors.Join(errs...)
}

// ownerUsers counts the Managers of this process per owner directory:
// several (tests run backends side by side) share one, and only the last
// to close removes it, so that no Manager loses its directory under a
// group it is about to make.
var (
	ownerMu    sync.Mutex
	ownerUsers = map[string]int{}
)

// use counts m among the users of its owner directories.
func (m *Manager) use() *Manager {
	ownerMu.Lock()
	defer ownerMu.Unlock()
	for _, dir := range []string{m.mem, m.cpu} {
		if dir != "" {
			ownerUsers[dir]++
		}
	}
	return m
}

// release uncounts a user of dir and reports whether it was the last (or
// not counted: a Manager made without Detect).
func release(dir string) bool {
	ownerMu.Lock()
	defer ownerMu.Unlock()
	n, ok := ownerUsers[dir]
	if !ok {
		return true
	}
	if n <= 1 {
		delete(ownerUsers, dir)
		return true
	}
	ownerUsers[dir] = n - 1
	return false
}

// Group is one cgroup: a worker's (made by Create) or this process's own
// (from Self).
type Group struct {
	version Version
	dirs    []string
	mem     string // the memory (v1) or unified (v2) directory
	memTop  string // its hierarchy's mount point
}

// Version returns the group's hierarchy version.
func (g *Group) Version() Version { return g.version }

// Dirs returns every directory of the group: for v1 the memory one and,
// with a CPU quota, the cpu one; for v2 the one. A worker joins all of them.
func (g *Group) Dirs() []string { return slices.Clone(g.dirs) }

// Path returns the group's memory (v1) or unified (v2) directory.
func (g *Group) Path() string { return g.mem }

// Remove kills the processes still in the group (SIGKILL) and removes its
// directories, retrying for a while as the killed processes exit. Removing
// a removed group is fine.
func (g *Group) Remove() error {
	var errs []error
	for _, dir := range g.dirs {
		if err := removeDir(dir, g.version); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeDir empties a group of processes and removes it.
func removeDir(dir string, v Version) error {
	if !exists(dir) {
		return nil
	}
	if v == V2 {
		if p := filepath.Join(dir, "cgroup.kill"); exists(p) {
			_ = writeFile(p, "1")
		}
	}
	killAll(dir)
	return rmdirRetry(dir, func() { killAll(dir) })
}

// rmdirRetry removes a cgroup directory, retrying on EBUSY (processes that
// are dying still count) for up to two seconds, calling each before a try.
func rmdirRetry(dir string, each ...func()) error {
	const tries = 100
	var err error
	for i := range tries {
		err = syscall.Rmdir(dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || i == tries-1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
		for _, f := range each {
			f()
		}
	}
	return fmt.Errorf("cgroup: remove %s: %w", dir, err)
}

// killAll SIGKILLs every process listed in dir's cgroup.procs, except this
// process.
func killAll(dir string) {
	pids, err := Procs(dir)
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, pid := range pids {
		if pid > 0 && pid != self {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Procs returns the process IDs in a group directory's cgroup.procs.
func Procs(dir string) ([]int, error) {
	words, err := readWords(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(words))
	for _, w := range words {
		pid, err := strconv.Atoi(w)
		if err != nil {
			return nil, fmt.Errorf("cgroup: %s/cgroup.procs: bad process ID %q", dir, w)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// Join moves process pid into each directory's group (writing it into
// cgroup.procs): a taskhost joins the group its backend made for it before
// it runs anything, so everything it starts is inside.
func Join(dirs []string, pid int) error {
	if len(dirs) == 0 {
		return errors.New("cgroup: join: no group directory given")
	}
	if pid <= 0 {
		return fmt.Errorf("cgroup: join: bad process ID %d", pid)
	}
	for _, dir := range dirs {
		if !filepath.IsAbs(dir) {
			return fmt.Errorf("cgroup: join: group directory %q is not an absolute path", dir)
		}
		if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("cgroup: join %s: %w", dir, err)
		}
	}
	return nil
}

// Self returns the memory cgroup this process is in, from
// /proc/self/cgroup and /proc/self/mountinfo under fsRoot. v1's memory
// hierarchy is preferred when it is mounted (a hybrid system binds the
// memory controller there); else the unified hierarchy. Inside a cgroup
// namespace or a container whose cgroupfs shows only its own subtree, the
// path in /proc/self/cgroup does not exist under the mount and the mount
// itself is the group. The error wraps ErrUnavailable when there is no
// memory cgroup to read.
func Self(fsRoot string) (*Group, error) {
	view, err := readProcView(fsRoot)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if h, ok := view.v1(fsRoot, "memory"); ok {
		return &Group{version: V1, dirs: []string{h.own}, mem: h.own, memTop: h.mount}, nil
	}
	if h, ok := view.v2(fsRoot); ok {
		return &Group{version: V2, dirs: []string{h.own}, mem: h.own, memTop: h.mount}, nil
	}
	return nil, fmt.Errorf("%w: neither a v1 memory hierarchy nor a cgroup2 mount holds this process", ErrUnavailable)
}

// OOMKills returns how many of the group's processes the kernel's OOM
// killer has killed since the group was made: "oom_kill" in memory.events
// (v2) or in memory.oom_control (v1, kernel 4.13 and later). Older v1
// kernels lack that counter; there it returns memory.failcnt, the number
// of times the group's usage hit its limit, so that an attempt killed by
// SIGKILL while the counter rose still reads as OOM-killed (a task that
// only pushes page cache against the limit raises it too, but is not
// killed).
func (g *Group) OOMKills() (int64, error) {
	if g.version == V2 {
		n, ok, err := readKeyed(filepath.Join(g.mem, "memory.events"), "oom_kill")
		if err != nil {
			return 0, fmt.Errorf("cgroup: %w", err)
		}
		if !ok {
			return 0, fmt.Errorf("cgroup: %s/memory.events has no oom_kill line", g.mem)
		}
		return n, nil
	}
	n, ok, err := readKeyed(filepath.Join(g.mem, "memory.oom_control"), "oom_kill")
	if err != nil {
		return 0, fmt.Errorf("cgroup: %w", err)
	}
	if ok {
		return n, nil
	}
	n, err = readInt(filepath.Join(g.mem, "memory.failcnt"))
	if err != nil {
		return 0, fmt.Errorf("cgroup: %w", err)
	}
	return n, nil
}

// MemoryLimit returns the memory limit in force for the group: the
// smallest limit set on it or on an ancestor up to the hierarchy's mount
// point, 0 when there is none ("max" in v2, PAGE_COUNTER_MAX in v1). An
// ancestor without the limit file (the v2 root) is skipped.
func (g *Group) MemoryLimit() (int64, error) {
	file := "memory.limit_in_bytes"
	if g.version == V2 {
		file = "memory.max"
	}
	var limit int64
	for dir := g.mem; ; dir = filepath.Dir(dir) {
		v, err := readLimit(filepath.Join(dir, file))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return 0, fmt.Errorf("cgroup: %w", err)
		case v > 0 && (limit == 0 || v < limit):
			limit = v
		}
		if dir == g.memTop || len(dir) <= len(g.memTop) || dir == filepath.Dir(dir) {
			break
		}
	}
	return limit, nil
}

// MemoryPeak returns the largest memory use the kernel recorded for the
// group (page cache included): memory.max_usage_in_bytes (v1) or
// memory.peak (v2, Linux 5.19 and later); 0 when the kernel keeps none.
func (g *Group) MemoryPeak() (int64, error) {
	file := "memory.max_usage_in_bytes"
	if g.version == V2 {
		file = "memory.peak"
	}
	v, err := readInt(filepath.Join(g.mem, file))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cgroup: %w", err)
	}
	return v, nil
}

// readLimit reads a limit file: "max" and v1's huge "unlimited" are 0.
func readLimit(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if _, uerr := strconv.ParseUint(s, 10, 64); uerr == nil {
			return 0, nil // larger than int64: unlimited
		}
		return 0, fmt.Errorf("%s: not a number: %q", path, s)
	}
	if v >= unlimitedV1 {
		return 0, nil
	}
	return v, nil
}

func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: not a number: %q", path, s)
	}
	return v, nil
}

// readKeyed reads the value of key in a flat-keyed file ("key value"
// lines); ok is false when the key is absent.
func readKeyed(path, key string) (int64, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if k != key {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("%s: %s: not a number: %q", path, key, v)
		}
		return n, true, nil
	}
	if err := sc.Err(); err != nil {
		return 0, false, fmt.Errorf("read %s: %w", path, err)
	}
	return 0, false, nil
}

func readWords(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(b)), nil
}

// writeFile writes one value into a cgroup file with a single write(2), as
// the kernel wants. The file is created if missing, which only a fake tree
// allows: cgroupfs refuses.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// mkdirAll is os.MkdirAll, tried again when another owner's Close removed
// an empty "haul" directory between the steps.
func mkdirAll(dir string) error {
	err := os.MkdirAll(dir, 0o755)
	for i := 0; i < 3 && errors.Is(err, fs.ErrNotExist); i++ {
		err = os.MkdirAll(dir, 0o755)
	}
	return err
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
