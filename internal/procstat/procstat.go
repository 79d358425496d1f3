// Package procstat measures a process tree from /proc, without cgo: the
// resident memory, CPU time and number of the processes of one attempt,
// sampled at an interval, with the peak and the time-weighted mean of the
// resident set, and an optional memory limit whose breach is reported to a
// callback (the taskhost's "rss-poll" enforcement when no cgroup limits
// the worker).
//
// The tree is the processes whose process group is the attempt's (the
// taskhost starts every attempt as a group leader) plus every descendant
// of those that left the group (setsid, setpgid), plus the orphans that
// were reparented to the taskhost (a child subreaper) and carry the
// attempt's environment marker. One sample reads /proc once: the
// directory and each process's stat file (and the environment of the
// taskhost's own children).
//
// Find, Kill and Signal pick the processes of an attempt or a worker by
// environment marker, process group and known PIDs, for killing them all
// when the attempt or the worker ends.
//
// Resident sets are summed over the tree's processes, so pages shared
// between them (libraries, copy-on-write after fork) are counted once per
// process: the sum can exceed what the tree costs the machine. CPU time of
// a sample is that of the tree's live processes plus what they reaped
// (cutime, cstime).
//
// It imports the standard library only.
package procstat

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ClockTicks is the unit of the CPU times in /proc/<pid>/stat: USER_HZ,
// which is 100 on every Linux architecture haul runs on (sysconf
// _SC_CLK_TCK; reading it needs cgo or the auxiliary vector, and the
// kernel's ABI fixes it at 100).
const ClockTicks = 100

// Sample is one look at a process tree.
type Sample struct {
	Time time.Time
	// RSSBytes is the sum of the resident sets of the tree's live
	// (non-zombie) processes.
	RSSBytes int64
	// CPUUser and CPUSystem are seconds of CPU time used by the tree's
	// processes, zombies included, and by the children they reaped.
	CPUUser, CPUSystem float64
	// Procs is the number of live processes in the tree.
	Procs int
	// PIDs lists the tree's processes, zombies included, ascending.
	PIDs []int
}

// proc is what a sample needs of one /proc/<pid>/stat.
type proc struct {
	pid, ppid, pgrp int
	zombie          bool
	utime, stime    uint64 // ticks, own
	cutime, cstime  uint64 // ticks, reaped children
	rss             int64  // pages
}

// parseStat parses /proc/<pid>/stat (proc(5)). The command name, field 2,
// is in parentheses and may itself contain spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStat(b []byte) (proc, error) {
	var p proc
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return p, fmt.Errorf("stat: no command name in %q", b)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return p, fmt.Errorf("stat: bad pid in %q", b)
	}
	p.pid = pid
	f := bytes.Fields(b[end+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 22 {
		return p, fmt.Errorf("stat of %d: %d fields after the name, want at least 22", pid, len(f))
	}
	p.zombie = len(f[0]) == 1 && (f[0][0] == 'Z' || f[0][0] == 'X')
	ints := []struct {
		field int
		dst   *int
	}{{4, &p.ppid}, {5, &p.pgrp}}
	for _, x := range ints {
		v, err := strconv.Atoi(string(f[x.field-3]))
		if err != nil {
			return p, fmt.Errorf("stat of %d: field %d: %w", pid, x.field, err)
		}
		*x.dst = v
	}
	uints := []struct {
		field int
		dst   *uint64
	}{{14, &p.utime}, {15, &p.stime}, {16, &p.cutime}, {17, &p.cstime}}
	for _, x := range uints {
		// cutime and cstime are signed in the kernel's format; never
		// negative in practice.
		v, err := strconv.ParseInt(string(f[x.field-3]), 10, 64)
		if err != nil {
			return p, fmt.Errorf("stat of %d: field %d: %w", pid, x.field, err)
		}
		*x.dst = uint64(max(v, 0))
	}
	rss, err := strconv.ParseInt(string(f[24-3]), 10, 64)
	if err != nil {
		return p, fmt.Errorf("stat of %d: field 24: %w", pid, err)
	}
	p.rss = max(rss, 0)
	return p, nil
}

// Scanner reads process trees from a proc filesystem. It keeps a buffer
// between scans; it is not safe for concurrent use.
type Scanner struct {
	root     string
	pageSize int64
	buf      []byte
	procs    []proc
}

// NewScanner returns a Scanner of procRoot ("" means /proc).
func NewScanner(procRoot string) *Scanner {
	return &Scanner{
		root:     cmp.Or(procRoot, "/proc"),
		pageSize: int64(os.Getpagesize()),
		buf:      make([]byte, 0, 1024),
	}
}

// Scan takes one sample of the tree of process group pgid. Processes that
// exit while it reads are skipped.
func (s *Scanner) Scan(pgid int, now time.Time) (Sample, error) {
	if pgid <= 0 {
		return Sample{Time: now}, fmt.Errorf("procstat: bad process group %d", pgid)
	}
	if err := s.read(); err != nil {
		return Sample{Time: now}, err
	}
	return s.tree(pgid, "", 0, now), nil
}

// read reads every process's stat file into s.procs.
func (s *Scanner) read() error {
	d, err := os.Open(s.root)
	if err != nil {
		return fmt.Errorf("procstat: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("procstat: list %s: %w", s.root, err)
	}
	s.procs = s.procs[:0]
	for _, name := range names {
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := s.readStat(name)
		if err != nil {
			continue // gone meanwhile, or not a process
		}
		p, err := parseStat(b)
		if err != nil {
			continue
		}
		s.procs = append(s.procs, p)
	}
	return nil
}

// tree is the sample of process group pgid (and of the orphans carrying
// marker reparented to reaper) in what read read last.
func (s *Scanner) tree(pgid int, marker string, reaper int, now time.Time) Sample {
	smp := Sample{Time: now}
	// The group's members, then their descendants by parent ID.
	in := make(map[int]bool)
	children := make(map[int][]int)
	var queue []int
	for _, p := range s.procs {
		switch {
		case p.pgrp == pgid:
			in[p.pid] = true
			queue = append(queue, p.pid)
		case marker != "" && p.ppid == reaper && p.pid != reaper && !p.zombie &&
			hasMarker(s.root, p.pid, []string{marker}, nil):
			// An orphan of the tree, reparented to the subreaper.
			in[p.pid] = true
			queue = append(queue, p.pid)
		}
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
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
	var user, sys uint64
	for _, p := range s.procs {
		if !in[p.pid] {
			continue
		}
		smp.PIDs = append(smp.PIDs, p.pid)
		user += p.utime + p.cutime
		sys += p.stime + p.cstime
		if !p.zombie {
			smp.Procs++
			smp.RSSBytes += p.rss * s.pageSize
		}
	}
	slices.Sort(smp.PIDs)
	smp.CPUUser = float64(user) / ClockTicks
	smp.CPUSystem = float64(sys) / ClockTicks
	return smp
}

func (s *Scanner) readStat(pid string) ([]byte, error) {
	fd, err := syscall.Open(s.root+"/"+pid+"/stat", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	s.buf = s.buf[:cap(s.buf)]
	n := 0
	for {
		m, err := syscall.Read(fd, s.buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			return s.buf[:n], nil
		}
		n += m
		if n == len(s.buf) {
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
	}
}

// Options configure a Sampler. Zero values take the defaults.
type Options struct {
	// ProcRoot is the proc filesystem (default /proc).
	ProcRoot string
	// FirstDelay is the wait before the first sample (default 20ms), so
	// that short attempts are seen at least once.
	FirstDelay time.Duration
	// Interval is the wait between samples (default 250ms).
	Interval time.Duration
	// MemoryLimit, when positive, is the RSS in bytes above which OnLimit
	// is called.
	MemoryLimit int64
	// OnLimit is called once, from the Sampler's goroutine, with the first
	// sample whose RSSBytes exceeds MemoryLimit.
	OnLimit func(Sample)
	// Clock times the samples (default time.Now).
	Clock func() time.Time
	// Marker and Reaper, when set, add to the tree the children of
	// process Reaper (a child subreaper, the taskhost) whose environment
	// holds the entry Marker, and their descendants: the orphans of the
	// tree that left its process group (setsid, a double fork) and lost
	// their parent.
	Marker string
	Reaper int
}

// Summary is what a Sampler saw.
type Summary struct {
	// Samples counts the samples that found a live process.
	Samples int
	// PeakRSSBytes is the largest RSSBytes sampled.
	PeakRSSBytes int64
	// AvgRSSBytes is the time-weighted mean of the samples: each sample
	// counts for the time until the next one (or until Stop).
	AvgRSSBytes int64
	// CPUUser and CPUSystem are the largest sampled values, in seconds.
	CPUUser, CPUSystem float64
	// MaxProcs is the largest number of live processes sampled.
	MaxProcs int
	// OverLimit is set when OnLimit was called.
	OverLimit bool
	// Err is the last sampling error, if any.
	Err error
}

// Sampler samples one process tree in its own goroutine.
type Sampler struct {
	pgid  int
	opts  Options
	once  sync.Once
	start time.Time

	mu   sync.Mutex
	pids []int
	sum  Summary
	// For the time-weighted mean: the last sample that found the tree
	// alive, and the accumulated RSS×seconds and seconds.
	last     *Sample
	rssTime  float64
	duration float64

	// hub takes the samples (Start's sampler has a hub of its own, own);
	// due is when the next sample is (under hub.mu); limits runs OnLimit.
	hub    *Hub
	own    bool
	due    time.Time
	limits sync.WaitGroup
}

// Start samples the tree of process group pgid until Stop, in a Hub of
// its own (a Hub's Start shares one read of /proc among many trees).
func Start(pgid int, opts Options) *Sampler {
	s := NewHub(opts.ProcRoot, 0).Start(pgid, opts)
	s.own = true
	return s
}

// add records a sample; it reports whether OnLimit is due.
func (s *Sampler) add(smp Sample, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.sum.Err = err
		return false
	}
	s.pids = smp.PIDs
	s.closeInterval(smp.Time)
	if smp.Procs == 0 {
		return false
	}
	s.last = &smp
	s.sum.Samples++
	s.sum.PeakRSSBytes = max(s.sum.PeakRSSBytes, smp.RSSBytes)
	s.sum.CPUUser = max(s.sum.CPUUser, smp.CPUUser)
	s.sum.CPUSystem = max(s.sum.CPUSystem, smp.CPUSystem)
	s.sum.MaxProcs = max(s.sum.MaxProcs, smp.Procs)
	if s.opts.MemoryLimit > 0 && smp.RSSBytes > s.opts.MemoryLimit && !s.sum.OverLimit && s.opts.OnLimit != nil {
		s.sum.OverLimit = true
		return true
	}
	return false
}

// closeInterval weighs the last live sample by the time until now.
func (s *Sampler) closeInterval(now time.Time) {
	if s.last == nil {
		return
	}
	d := now.Sub(s.last.Time).Seconds()
	if d > 0 {
		s.rssTime += float64(s.last.RSSBytes) * d
		s.duration += d
	}
	s.last = nil
}

// PIDs returns the processes of the latest sample (nil before the first).
func (s *Sampler) PIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pids
}

// Stop ends sampling, waits for the goroutine (and a running OnLimit) and
// returns what was seen. Calling it again returns the same Summary.
func (s *Sampler) Stop() Summary {
	s.once.Do(func() {
		s.hub.remove(s)
		s.limits.Wait()
		if s.own {
			s.hub.Close()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		lastRSS := int64(0)
		if s.last != nil {
			lastRSS = s.last.RSSBytes
		}
		s.closeInterval(s.opts.Clock())
		switch {
		case s.duration > 0:
			s.sum.AvgRSSBytes = int64(s.rssTime / s.duration)
		case s.sum.Samples > 0:
			s.sum.AvgRSSBytes = lastRSS
		}
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum
}
