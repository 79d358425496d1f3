package taskhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/procstat"
)

// AttemptIDEnv is the environment variable every attempt's process gets,
// set by the taskhost to "<worker>/<task index>/<attempt>". Every
// descendant inherits it (unless it clears its environment), through
// setsid and double forks, so that the attempt's processes can be found
// and killed when it ends; the local backend finds a lost worker's
// processes by the "<worker>/" prefix.
const AttemptIDEnv = "HAUL_ATTEMPT_ID"

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER (linux/prctl.h).
const prSetChildSubreaper = 36

// killTimeout bounds how long the taskhost keeps killing an attempt's
// processes (a process in uninterruptible sleep cannot die until it
// wakes).
const killTimeout = 30 * time.Second

// attemptMarker returns the attempt's environment entry.
func attemptMarker(worker string, a *taskhostv1.Assignment) string {
	return AttemptIDEnv + "=" + worker + "/" + strconv.Itoa(int(a.GetTaskIndex())) + "/" + strconv.Itoa(int(a.GetAttempt()))
}

// subreaper says whether this process is a child subreaper (set once,
// by the first Run that starts processes; it is a property of the whole
// process).
var subreaper struct {
	once sync.Once
	ok   bool
	err  error
}

// ensureSubreaper makes this process a child subreaper, once; it returns
// the error of that one try.
func ensureSubreaper() error {
	subreaper.once.Do(func() {
		subreaper.err = becomeSubreaper()
		subreaper.ok = subreaper.err == nil
	})
	return subreaper.err
}

// becomeSubreaper makes this process a child subreaper: an orphaned
// descendant (whose parent exited: a double fork, a daemon) is reparented
// to it rather than to init, so it stays in the taskhost's tree, where
// the attempt's kill finds it.
func becomeSubreaper() error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", e)
	}
	return nil
}

// leaders are the attempts' main processes that os/exec has not yet
// waited for, in this whole process (a test runs several hosts): the
// orphan reaper must leave them to their Wait. Start and reap hold mu, so
// that a leader that exits at once is registered before a reap looks.
var leaders = struct {
	sync.Mutex
	pids map[int]*exec.Cmd
}{pids: map[int]*exec.Cmd{}}

// markers are the attempt markers in use in this process. Worker IDs are
// unique, so a marker is too, except where one process runs several
// taskhosts with one worker ID (tests): the second gets a "#n" suffix, so
// that no attempt's kill takes another's processes.
var markers = struct {
	sync.Mutex
	inUse map[string]bool
}{inUse: map[string]bool{}}

// acquireMarker returns the attempt's marker, unique in this process;
// release it with releaseMarker once the attempt's processes are gone.
func acquireMarker(worker string, a *taskhostv1.Assignment) string {
	base := attemptMarker(worker, a)
	markers.Lock()
	defer markers.Unlock()
	m := base
	for n := 2; markers.inUse[m]; n++ {
		m = base + "#" + strconv.Itoa(n)
	}
	markers.inUse[m] = true
	return m
}

func releaseMarker(m string) {
	markers.Lock()
	delete(markers.inUse, m)
	markers.Unlock()
}

// startLeader starts an attempt's main process and registers it.
func startLeader(cmd *exec.Cmd) error {
	leaders.Lock()
	defer leaders.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	leaders.pids[cmd.Process.Pid] = cmd
	return nil
}

// waitLeader waits for an attempt's main process and unregisters it.
func waitLeader(cmd *exec.Cmd) error {
	err := cmd.Wait()
	leaders.Lock()
	if leaders.pids[cmd.Process.Pid] == cmd {
		delete(leaders.pids, cmd.Process.Pid)
	}
	leaders.Unlock()
	return err
}

// groupOf reports whether pgid may still be used to signal cmd's process
// group: not when the number now belongs to another attempt's leader (the
// group emptied and the PID was reused).
func groupOf(cmd *exec.Cmd) int {
	pgid := cmd.Process.Pid
	leaders.Lock()
	defer leaders.Unlock()
	if c, ok := leaders.pids[pgid]; ok && c != cmd {
		return 0
	}
	return pgid
}

// reapOrphans reaps the zombies among this process's children that are
// attempt processes reparented to it as the subreaper: children outside
// its own process group (its other children, nvidia-smi, share its group)
// that are no attempt's registered leader. It returns the PIDs it reaped.
func reapOrphans() []int {
	leaders.Lock()
	defer leaders.Unlock()
	self := os.Getpid()
	kids, err := procstat.Children("", self)
	if err != nil {
		return nil
	}
	own := syscall.Getpgrp()
	var reaped []int
	for _, k := range kids {
		if !k.Zombie || k.Pgrp == own || leaders.pids[k.PID] != nil {
			continue
		}
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(k.PID, &ws, syscall.WNOHANG, nil); err == nil && pid == k.PID {
			reaped = append(reaped, pid)
		}
	}
	return reaped
}

// selector picks an attempt's processes: its process group (while the
// number is its own), everything carrying its marker and their
// descendants. With the taskhost a subreaper, only its own descendants
// can be the attempt's, so only theirs environments are read.
func selector(cmd *exec.Cmd, marker string) procstat.Selector {
	sel := procstat.Selector{Env: []string{marker}, Pgid: groupOf(cmd), Skip: []int{os.Getpid()}}
	if subreaper.ok {
		sel.Under, sel.SkipGroup = os.Getpid(), syscall.Getpgrp()
	}
	return sel
}

// killAttempt kills every process of the attempt, stopped ones and ones
// that left its process group included, looping until none is left, and
// reaps the orphans among them. It returns an error naming the survivors
// when some are still alive after killTimeout.
func (h *host) killAttempt(cmd *exec.Cmd, marker string) error {
	if nothingLeft(cmd) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	n, err := procstat.Kill(ctx, selector(cmd, marker))
	reaped := reapOrphans()
	if n > 0 || len(reaped) > 0 {
		h.log.Debug("killed the attempt's remaining processes", "marker", marker, "killed", n, "orphans_reaped", reaped)
	}
	return err
}

// signalAttempt sends sig to every live process of the attempt.
func signalAttempt(log *slog.Logger, cmd *exec.Cmd, marker string, sig syscall.Signal) {
	if _, err := procstat.Signal(selector(cmd, marker), sig); err != nil {
		log.Warn("signal the attempt's processes", "signal", sig, "err", err)
	}
}

// childrenBuf is nothingLeft's buffer, used under leaders' lock.
var childrenBuf = make([]byte, 0, 4096)

// readChildren reads /proc/self/task/TID/children into buf.
func readChildren(tid string, buf []byte) ([]byte, error) {
	fd, err := syscall.Open("/proc/self/task/"+tid+"/children", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// nothingLeft reports, cheaply, that an ended attempt can have no process
// left, so that the common case (a task whose processes all exited) costs
// two system calls and a few small reads, not a scan of every process: its
// process group is empty, and the taskhost, a subreaper, has no child but
// the main processes of attempts still running (with the attempt's main
// process gone, everything it left behind was reparented to the taskhost).
// In doubt it says false and the caller scans.
func nothingLeft(cmd *exec.Cmd) bool {
	if !subreaper.ok {
		return false
	}
	if pgid := groupOf(cmd); pgid > 0 {
		if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
			return false
		}
	}
	d, err := os.Open("/proc/self/task")
	if err != nil {
		return false
	}
	tids, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return false
	}
	leaders.Lock()
	defer leaders.Unlock()
	// One buffer for every thread's file, read with plain system calls:
	// this runs once per attempt, for each of the taskhost's threads.
	buf := childrenBuf[:0]
	for _, tid := range tids {
		b, err := readChildren(tid, buf)
		if err != nil {
			if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) {
				continue // the thread ended
			}
			return false // no children files (CONFIG_PROC_CHILDREN): scan
		}
		buf, childrenBuf = b[:0], b[:0]
		for f := range strings.FieldsSeq(string(b)) {
			pid, err := strconv.Atoi(f)
			if err != nil {
				return false
			}
			if c := leaders.pids[pid]; c == nil || c == cmd {
				return false // an orphan, or the attempt's own unreaped process
			}
		}
	}
	return true
}
