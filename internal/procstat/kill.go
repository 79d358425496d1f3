package procstat

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// Selector picks the processes of one unit of work (an attempt, a worker)
// by what survives setsid, setpgid and double forks: an entry of the
// initial environment that every descendant inherits (a marker), the
// process group, and a list of known processes (a cgroup's). Every
// descendant of a picked process (by parent ID) is picked too, so that a
// child that cleared its environment is still found while its parent
// lives.
type Selector struct {
	// ProcRoot is the proc filesystem (default /proc).
	ProcRoot string
	// Env picks a process whose environment holds one of these entries
	// exactly ("HAUL_ATTEMPT_ID=w/3/1").
	Env []string
	// EnvPrefix picks a process whose environment holds an entry that
	// begins with one of these ("HAUL_ATTEMPT_ID=w/").
	EnvPrefix []string
	// Pgid, when positive, picks the members of this process group.
	Pgid int
	// PIDs, when set, is called on every scan for more processes to pick
	// (a cgroup's cgroup.procs).
	PIDs func() []int
	// Under, when positive, restricts the environment check to the
	// descendants of this process (a child subreaper: every orphan of its
	// tree is reparented to it), which saves reading the environment of
	// every process on the machine. The process Under itself is never
	// picked.
	Under int
	// SkipGroup, with Under, leaves out the children of Under that are in
	// this process group, and their descendants: the subreaper's own
	// helpers (nvidia-smi) and, in tests, other taskhost processes, as
	// opposed to attempts, which each lead a group of their own.
	SkipGroup int
	// Skip lists processes never picked (the caller itself).
	Skip []int
}

// Proc is one process a Find returned.
type Proc struct {
	PID, PPID, Pgrp int
	// Zombie: it has exited and waits to be reaped; it cannot be killed,
	// and its environment can no longer be read.
	Zombie bool
}

// Find returns the processes sel picks, in ascending PID order. Processes
// that exit while it reads are skipped.
func Find(sel Selector) ([]Proc, error) {
	root := cmp.Or(sel.ProcRoot, "/proc")
	d, err := os.Open(root)
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("procstat: list %s: %w", root, err)
	}
	scan := NewScanner(root)
	all := make(map[int]proc, len(names))
	children := make(map[int][]int)
	for _, name := range names {
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := scan.readStat(name)
		if err != nil {
			continue
		}
		p, err := parseStat(b)
		if err != nil {
			continue
		}
		all[p.pid] = p
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	// Which processes may have their environment read.
	var candidates map[int]bool
	if sel.Under > 0 {
		var tops []int
		for _, c := range children[sel.Under] {
			if sel.SkipGroup <= 0 || all[c].pgrp != sel.SkipGroup {
				tops = append(tops, c)
			}
		}
		candidates = descendants(children, tops)
		for _, c := range tops {
			candidates[c] = true
		}
	}
	picked := make(map[int]bool)
	var roots []int
	pick := func(pid int) {
		if _, ok := all[pid]; ok && !picked[pid] && pid != sel.Under && !slices.Contains(sel.Skip, pid) {
			picked[pid] = true
			roots = append(roots, pid)
		}
	}
	if sel.PIDs != nil {
		for _, pid := range sel.PIDs() {
			pick(pid)
		}
	}
	wantEnv := len(sel.Env) > 0 || len(sel.EnvPrefix) > 0
	for pid, p := range all {
		if sel.Pgid > 0 && p.pgrp == sel.Pgid {
			pick(pid)
			continue
		}
		if !wantEnv || p.zombie || (candidates != nil && !candidates[pid]) || picked[pid] {
			continue
		}
		if hasMarker(root, pid, sel.Env, sel.EnvPrefix) {
			pick(pid)
		}
	}
	for pid := range descendants(children, roots) {
		pick(pid)
	}
	out := make([]Proc, 0, len(picked))
	for pid := range picked {
		p := all[pid]
		out = append(out, Proc{PID: pid, PPID: p.ppid, Pgrp: p.pgrp, Zombie: p.zombie})
	}
	slices.SortFunc(out, func(a, b Proc) int { return cmp.Compare(a.PID, b.PID) })
	return out, nil
}

// descendants returns the descendants of roots (roots excluded unless one
// descends from another).
func descendants(children map[int][]int, roots []int) map[int]bool {
	in := make(map[int]bool)
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		pid := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, c := range children[pid] {
			if !in[c] {
				in[c] = true
				queue = append(queue, c)
			}
		}
	}
	return in
}

// maxEnviron bounds what is read of one process's environment.
const maxEnviron = 1 << 20

// hasMarker reports whether the process's initial environment holds one of
// the entries exactly or one beginning with one of the prefixes.
func hasMarker(root string, pid int, exact, prefixes []string) bool {
	env, err := readBounded(root+"/"+strconv.Itoa(pid)+"/environ", maxEnviron)
	if err != nil {
		return false
	}
	for len(env) > 0 {
		var kv []byte
		kv, env, _ = bytes.Cut(env, []byte{0})
		for _, e := range exact {
			if string(kv) == e {
				return true
			}
		}
		for _, p := range prefixes {
			if bytes.HasPrefix(kv, []byte(p)) {
				return true
			}
		}
	}
	return false
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// ErrSurvivors is wrapped by Kill's error when processes were still alive
// when its context ended.
var ErrSurvivors = errors.New("procstat: processes survived SIGKILL")

// Kill sends SIGKILL to every live process sel picks and scans again,
// until a scan finds none alive (zombies do not count: they are dead).
// Stopped processes die too (SIGKILL needs no SIGCONT), and a process
// that forks while being killed has its children found by the next scan.
// It returns how many processes it signalled; when ctx ends first, the
// error wraps ErrSurvivors and names them.
func Kill(ctx context.Context, sel Selector) (int, error) {
	killed := map[int]bool{}
	wait := time.Millisecond
	for {
		procs, err := Find(sel)
		if err != nil {
			return len(killed), err
		}
		var live []int
		for _, p := range procs {
			if !p.Zombie {
				live = append(live, p.PID)
			}
		}
		if len(live) == 0 {
			return len(killed), nil
		}
		for _, pid := range live {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				killed[pid] = true
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return len(killed), fmt.Errorf("%w: %d still alive after %s: %v", ErrSurvivors, len(live), context.Cause(ctx), live)
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// Signal sends sig once to every live process sel picks (a SIGTERM that
// asks them to end); it returns how many it signalled.
func Signal(sel Selector, sig syscall.Signal) (int, error) {
	procs, err := Find(sel)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range procs {
		if !p.Zombie && syscall.Kill(p.PID, sig) == nil {
			n++
		}
	}
	return n, nil
}

// Children returns the children of process pid, zombies included.
func Children(procRoot string, pid int) ([]Proc, error) {
	root := cmp.Or(procRoot, "/proc")
	d, err := os.Open(root)
	if err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("procstat: list %s: %w", root, err)
	}
	scan := NewScanner(root)
	var out []Proc
	for _, name := range names {
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := scan.readStat(name)
		if err != nil {
			continue
		}
		p, err := parseStat(b)
		if err != nil || p.ppid != pid {
			continue
		}
		out = append(out, Proc{PID: p.pid, PPID: p.ppid, Pgrp: p.pgrp, Zombie: p.zombie})
	}
	slices.SortFunc(out, func(a, b Proc) int { return cmp.Compare(a.PID, b.PID) })
	return out, nil
}

// State returns the state letter of process pid from its stat file ('R',
// 'S', 'D', 'T' stopped, 't' traced, 'Z' zombie, ...).
func State(procRoot string, pid int) (byte, error) {
	root := cmp.Or(procRoot, "/proc")
	b, err := NewScanner(root).readStat(strconv.Itoa(pid))
	if err != nil {
		return 0, fmt.Errorf("procstat: %w", err)
	}
	end := bytes.LastIndexByte(b, ')')
	if end < 0 || end+2 >= len(b) {
		return 0, fmt.Errorf("procstat: stat of %d: no state in %q", pid, b)
	}
	return b[end+2], nil
}
