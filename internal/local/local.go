// Package local is the worker backend that runs workers as processes on this
// machine: each worker is a `haul taskhost` process in its own process group,
// with its own log file, and in its own cgroup with its tier's memory and
// CPU limits (the taskhost joins the group before it runs anything; where
// no cgroup can be made it is given the memory limit to enforce itself). It
// imports the runner's Backend contract and internal/cgroup.
package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/haul-dev/haul/internal/cgroup"
	"github.com/haul-dev/haul/internal/runner"
)

// Config configures the local backend.
type Config struct {
	// Command runs a taskhost: the executable and the arguments before the
	// taskhost flags, such as [/usr/bin/haul taskhost].
	Command []string
	// Dir holds each worker's log file and spool directory.
	Dir    string
	Logger *slog.Logger
	// Exited is called when a worker process ends, for whatever reason.
	Exited func(id, why string)
	// NodePricePerHour is what this machine costs, for per-job cost
	// estimates (0: jobs cost nothing, their worker time is still counted).
	NodePricePerHour float64
	// CgroupRoot is the filesystem root under which cgroups are looked for
	// ("/" when empty); NoCgroups turns them off (workers then enforce
	// their memory limit by sampling).
	CgroupRoot string
	NoCgroups  bool
}

// Backend starts workers as local processes.
type Backend struct {
	cfg Config

	// cg makes the workers' cgroups; nil when none can be made.
	cg *cgroup.Manager

	mu     sync.Mutex
	procs  map[string]*exec.Cmd
	groups map[string]*cgroup.Group
	wg     sync.WaitGroup
}

var (
	_ runner.Backend    = (*Backend)(nil)
	_ runner.NodeInfoer = (*Backend)(nil)
)

// WorkerNode describes this machine: every local worker runs on it.
func (b *Backend) WorkerNode(string) (runner.NodeInfo, bool) {
	return runner.NodeInfo{PricePerHour: b.cfg.NodePricePerHour, CPU: float64(runtime.NumCPU()), MemoryBytes: memTotal()}, true
}

// memTotal reads the machine's memory from /proc/meminfo (0 if unknown).
func memTotal() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// New returns a local backend.
func New(cfg Config) (*Backend, error) {
	if len(cfg.Command) == 0 {
		return nil, errors.New("local backend: no taskhost command")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Exited == nil {
		cfg.Exited = func(string, string) {}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("local backend: %w", err)
	}
	b := &Backend{cfg: cfg, procs: map[string]*exec.Cmd{}, groups: map[string]*cgroup.Group{}}
	if !cfg.NoCgroups {
		root := cmp.Or(cfg.CgroupRoot, "/")
		m, err := cgroup.Detect(root, cgroup.Owner(os.Getpid()))
		if err != nil {
			cfg.Logger.Warn("no cgroups for workers: each worker enforces its memory limit by sampling its tasks' memory", "err", err)
		} else {
			b.cg = m
			n, err := m.Sweep()
			if err != nil {
				cfg.Logger.Warn("sweep cgroups of dead servers", "err", err)
			}
			cfg.Logger.Info("workers run in cgroups", "version", m.Version().String(), "parent", m.Parent(), "stale_groups_removed", n)
		}
	}
	return b, nil
}

// Cgroups reports the cgroup version workers run in, or "" when they run
// without cgroups.
func (b *Backend) Cgroups() string {
	if b.cg == nil {
		return ""
	}
	return b.cg.Version().String()
}

// StartWorker starts a taskhost process for the worker.
func (b *Backend) StartWorker(_ context.Context, s runner.WorkerSpec) error {
	dir := filepath.Join(b.cfg.Dir, s.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("worker %s: %w", s.ID, err)
	}
	logf, err := os.Create(filepath.Join(dir, "taskhost.log"))
	if err != nil {
		return fmt.Errorf("worker %s: %w", s.ID, err)
	}
	args := append(append([]string(nil), b.cfg.Command[1:]...),
		"--runner", s.RunnerURL, "--worker-id", s.ID, "--job", s.JobID,
		"--blob", s.BlobURL, "--spool", filepath.Join(dir, "spool"),
		"--memory-limit", strconv.FormatInt(s.Tier.MemoryBytes, 10),
		"--cpu-limit", strconv.FormatFloat(s.Tier.CPU, 'g', -1, 64))
	var group *cgroup.Group
	if b.cg != nil {
		g, err := b.cg.Create(s.ID, cgroup.Limits{MemoryBytes: s.Tier.MemoryBytes, CPU: s.Tier.CPU})
		if err != nil {
			logf.Close()
			return fmt.Errorf("worker %s: %w", s.ID, err)
		}
		group = g
		args = append(args, "--cgroup", strings.Join(g.Dirs(), ","))
	}
	cmd := exec.Command(b.cfg.Command[0], args...)
	// Tasks find haul itself first on PATH (a task may run `haul task add`).
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(b.cfg.Command[0])+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir, _ = os.Getwd()
	// Its own process group: a Ctrl-C meant for the CLI does not reach the
	// worker, and StopWorker can kill the worker with everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		b.removeGroup(s.ID, group)
		return fmt.Errorf("worker %s: start %s: %w", s.ID, b.cfg.Command[0], err)
	}
	b.mu.Lock()
	b.procs[s.ID] = cmd
	if group != nil {
		b.groups[s.ID] = group
	}
	b.mu.Unlock()
	b.cfg.Logger.Debug("worker started", "worker", s.ID, "pid", cmd.Process.Pid)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		err := cmd.Wait()
		logf.Close()
		b.mu.Lock()
		delete(b.procs, s.ID)
		delete(b.groups, s.ID)
		b.mu.Unlock()
		// Whatever the worker left in its group (a task's orphans) goes too.
		b.removeGroup(s.ID, group)
		why := "exited"
		if err != nil {
			why = "exited: " + err.Error()
		}
		b.cfg.Exited(s.ID, why)
		if err == nil {
			os.RemoveAll(dir) // keep the log of a worker that failed
		}
	}()
	return nil
}

func (b *Backend) removeGroup(id string, g *cgroup.Group) {
	if g == nil {
		return
	}
	if err := g.Remove(); err != nil {
		b.cfg.Logger.Warn("remove worker cgroup", "worker", id, "err", err)
	}
}

// StopWorker asks a worker to stop (SIGTERM to its process group) and kills
// it if it has not exited within a few seconds.
func (b *Backend) StopWorker(_ context.Context, id string) error {
	b.mu.Lock()
	cmd := b.procs[id]
	b.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	go func() {
		time.Sleep(5 * time.Second)
		b.mu.Lock()
		_, alive := b.procs[id]
		b.mu.Unlock()
		if alive {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	return nil
}

// Stop stops every worker still running and waits for them to exit: SIGTERM
// first, so each taskhost kills its tasks' process groups (which are not in
// the worker's own group), then SIGKILL after a grace period.
func (b *Backend) Stop() {
	b.signalAll(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		b.signalAll(syscall.SIGKILL)
		<-done
	}
	if b.cg != nil {
		if err := b.cg.Close(); err != nil {
			b.cfg.Logger.Warn("remove the server's cgroup parent", "err", err)
		}
	}
}

func (b *Backend) signalAll(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, cmd := range b.procs {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
}
