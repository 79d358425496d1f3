// Package local is the worker backend that runs workers as processes on this
// machine: each worker is a `haul taskhost` process in its own process group,
// with its own log file, and in its own cgroup with its tier's memory and
// CPU limits (the taskhost joins the group before it runs anything; where
// no cgroup can be made it is given the memory limit to enforce itself). It
// imports the runner's Backend contract, internal/cgroup, internal/procstat
// and the taskhost's environment names (internal/taskhost).
//
// A worker's processes end with it. Every process of a worker is in its
// cgroup, carries HAUL_WORKER_ID=<id> (the taskhost and its helpers) or
// HAUL_ATTEMPT_ID=<id>/... (its tasks, through setsid and double forks;
// the taskhost sets it), or descends from one of those. When the taskhost
// exits for whatever reason (kill -9 included), the backend kills all of
// them, looping until none is left, before it calls Exited, so that the
// runner retries the lost attempts only once their old copies are dead;
// StopWorker returns only when they are gone. The cgroups that dead
// servers left behind are swept at start and every SweepInterval.
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
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/procstat"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/taskhost"
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
	// Capacity is what this machine offers workers, for placement: the
	// local backend is one cluster, ClusterName. Zero: placement sees no
	// capacity, so nothing starts; servers pass the machine's (see
	// DefaultCapacity).
	Capacity placement.Resources
	// NodePricePerHour is what this machine costs, for per-job cost
	// estimates (0: jobs cost nothing, their worker time is still counted).
	NodePricePerHour float64
	// CgroupRoot is the filesystem root under which cgroups are looked for
	// ("/" when empty); NoCgroups turns them off (workers then enforce
	// their memory limit by sampling).
	CgroupRoot string
	NoCgroups  bool
	// StopGrace is how long StopWorker waits for a worker's taskhost to
	// exit on SIGTERM (it kills its tasks first) before it kills the
	// worker's processes (default 5s). A stopped (SIGSTOP) taskhost is
	// killed at once.
	StopGrace time.Duration
	// SweepInterval is how often the cgroups of dead servers are swept
	// (default 1m).
	SweepInterval time.Duration
	// CAFile, when set, is a PEM file of the certificates the taskhosts
	// (and the tasks' `haul` commands) trust for the server's TLS
	// certificate: given to them as HAUL_CA.
	CAFile string
}

// NoCgroupsEnv, set to 1 or true in the server's environment, turns the
// workers' cgroups off as Config.NoCgroups does (a machine where they
// misbehave; tests of the marker-only path).
const NoCgroupsEnv = "HAUL_NO_CGROUPS"

// killTimeout bounds how long the backend keeps killing a worker's
// processes (one in uninterruptible sleep dies only when it wakes).
const killTimeout = 30 * time.Second

// proc is one running worker.
type proc struct {
	cmd   *exec.Cmd
	group *cgroup.Group
	// exited is closed when the taskhost process has exited; gone when
	// every process of the worker is dead too (before Exited is called).
	exited, gone chan struct{}
}

// Backend starts workers as local processes.
type Backend struct {
	cfg Config

	// cg makes the workers' cgroups; nil when none can be made.
	cg *cgroup.Manager

	mu    sync.Mutex
	procs map[string]*proc
	wg    sync.WaitGroup

	stopSweep chan struct{}
	sweepDone chan struct{}
	stopOnce  sync.Once
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
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("local backend: %w", err)
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 5 * time.Second
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Minute
	}
	b := &Backend{cfg: cfg, procs: map[string]*proc{}, stopSweep: make(chan struct{}), sweepDone: make(chan struct{})}
	if v := os.Getenv(NoCgroupsEnv); v == "1" || v == "true" {
		cfg.NoCgroups = true
		cfg.Logger.Info("no cgroups for workers: " + NoCgroupsEnv + " is set")
	}
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
	go b.sweepLoop()
	return b, nil
}

// sweepLoop removes the cgroups of dead servers every SweepInterval (a
// server killed with kill -9 leaves its workers' groups, and whatever
// still runs in them, behind).
func (b *Backend) sweepLoop() {
	defer close(b.sweepDone)
	if b.cg == nil {
		return
	}
	t := time.NewTicker(b.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stopSweep:
			return
		case <-t.C:
		}
		n, err := b.cg.Sweep()
		if err != nil {
			b.cfg.Logger.Warn("sweep cgroups of dead servers", "err", err)
		}
		if n > 0 {
			b.cfg.Logger.Info("swept the cgroups of dead servers", "groups_removed", n)
		}
	}
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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("worker %s: %w", s.ID, err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "taskhost.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("worker %s: %w", s.ID, err)
	}
	args := append(append([]string(nil), b.cfg.Command[1:]...),
		"--runner", s.RunnerURL, "--worker-id", s.ID, "--job", s.JobID, "--tier", strconv.Itoa(int(s.TierIndex)),
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
	// HAUL_WORKER_ID marks the taskhost and its helpers as this worker's.
	// The worker's credential goes in the environment, never in argv
	// (which ps shows to every user); the taskhost takes it out of its
	// environment before it starts anything, and tasks never see it.
	// HAUL_LOCATOR is always set, empty when the spec names no locator,
	// so that one in the server's own environment does not reach the
	// worker.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(b.cfg.Command[0])+string(os.PathListSeparator)+os.Getenv("PATH"),
		WorkerIDEnv+"="+s.ID, taskhost.WorkerSecretEnv+"="+s.Secret, taskhost.LocatorEnv+"="+s.LocatorURL)
	if b.cfg.CAFile != "" {
		cmd.Env = append(cmd.Env, taskhost.CAEnv+"="+b.cfg.CAFile)
	}
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
	p := &proc{cmd: cmd, group: group, exited: make(chan struct{}), gone: make(chan struct{})}
	b.mu.Lock()
	b.procs[s.ID] = p
	b.mu.Unlock()
	b.cfg.Logger.Debug("worker started", "worker", s.ID, "pid", cmd.Process.Pid)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		err := cmd.Wait()
		close(p.exited)
		logf.Close()
		// Whatever the worker left (its tasks, their orphans, stopped or
		// not) dies before the runner hears that the worker is gone and
		// retries its tasks.
		b.killWorker(s.ID, 0, group)
		b.removeGroup(s.ID, group)
		b.mu.Lock()
		delete(b.procs, s.ID)
		b.mu.Unlock()
		close(p.gone)
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

// WorkerIDEnv is the environment variable that marks a local worker's
// taskhost process (and its helpers) with the worker's ID.
const WorkerIDEnv = "HAUL_WORKER_ID"

// killWorker kills every process of the worker: its taskhost's process
// group (pgid, while the taskhost is not yet reaped; 0 after), everything
// in its cgroup, everything carrying its markers, and their descendants,
// looping until none is left.
func (b *Backend) killWorker(id string, pgid int, group *cgroup.Group) {
	sel := procstat.Selector{
		Env:       []string{WorkerIDEnv + "=" + id},
		EnvPrefix: []string{taskhost.AttemptIDEnv + "=" + id + "/"},
		Pgid:      pgid,
		Skip:      []int{os.Getpid()},
	}
	if group != nil {
		sel.PIDs = func() []int {
			var pids []int
			for _, d := range group.Dirs() {
				p, _ := cgroup.Procs(d)
				pids = append(pids, p...)
			}
			return pids
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	n, err := procstat.Kill(ctx, sel)
	if err != nil {
		b.cfg.Logger.Error("a worker's processes survived SIGKILL", "worker", id, "err", err)
	}
	if n > 0 {
		b.cfg.Logger.Info("killed the worker's remaining processes", "worker", id, "killed", n)
	}
}

func (b *Backend) removeGroup(id string, g *cgroup.Group) {
	if g == nil {
		return
	}
	if err := g.Remove(); err != nil {
		b.cfg.Logger.Warn("remove worker cgroup", "worker", id, "err", err)
	}
}

// StopWorker stops a worker and returns when every process of it is gone:
// SIGTERM to its taskhost (which kills its tasks and exits), and after
// StopGrace, or at once when the taskhost is stopped (SIGSTOP: frozen, it
// would never act on SIGTERM), SIGKILL to the taskhost and to every
// process of the worker (see killWorker). It returns early only when ctx
// ends.
func (b *Backend) StopWorker(ctx context.Context, id string) error {
	b.mu.Lock()
	p := b.procs[id]
	b.mu.Unlock()
	if p == nil {
		return nil
	}
	pgid := p.cmd.Process.Pid
	isFrozen := func() bool {
		st, err := procstat.State("", pgid)
		return err == nil && (st == 'T' || st == 't')
	}
	frozen := isFrozen()
	if !frozen {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		// A stopped taskhost cannot act on SIGTERM: it is killed at once.
		// A SIGSTOP sent just before may show only after a moment, so the
		// state is looked at again while waiting.
		t := time.NewTimer(b.cfg.StopGrace)
		look := time.NewTicker(frozenLook)
	wait:
		for {
			select {
			case <-p.exited:
				break wait
			case <-t.C:
				break wait
			case <-ctx.Done():
				break wait
			case <-look.C:
				if frozen = isFrozen(); frozen {
					break wait
				}
			}
		}
		t.Stop()
		look.Stop()
	}
	select {
	case <-p.exited:
	default:
		b.cfg.Logger.Info("killing worker", "worker", id, "pid", pgid, "frozen", frozen)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	// The goroutine that waits for the taskhost kills the rest.
	select {
	case <-p.gone:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("local backend: stop worker %s: %w", id, context.Cause(ctx))
	}
}

// frozenLook is how often StopWorker looks whether a worker it asked to
// stop is frozen (SIGSTOP), and so cannot act on the request.
const frozenLook = 100 * time.Millisecond

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
	b.stopOnce.Do(func() { close(b.stopSweep) })
	<-b.sweepDone
	if b.cg != nil {
		if err := b.cg.Close(); err != nil {
			b.cfg.Logger.Warn("remove the server's cgroup parent", "err", err)
		}
	}
}

func (b *Backend) signalAll(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.procs {
		select {
		case <-p.exited:
		default:
			_ = syscall.Kill(-p.cmd.Process.Pid, sig)
		}
	}
}

// ClusterName is the name of the local backend's one cluster.
const ClusterName = "local"

// PlacementClusters describes this machine as one cluster for placement;
// its capacity is the backend's (Owned: refreshed at every start, the
// state an operator set kept).
func (b *Backend) PlacementClusters() []runner.BackendCluster {
	return []runner.BackendCluster{{Cluster: placement.Cluster{Name: ClusterName, State: placement.Enabled, Capacity: b.cfg.Capacity}, Owned: true}}
}

// DefaultCapacity is the local cluster's capacity when none is given: as
// many cores as the larger of the machine's CPUs and the worker cap (local
// workers share the CPUs, and most tasks wait on something), the machine's
// memory, and its GPUs by type (gpus, from nvidia-smi: nil for none).
func DefaultCapacity(maxWorkers int, gpus map[string]int64) placement.Resources {
	r := placement.Resources{MilliCPU: int64(max(runtime.NumCPU(), maxWorkers)) * 1000, Memory: physicalMemory()}
	for t, n := range gpus {
		if n > 0 {
			if r.GPU == nil {
				r.GPU = map[string]int64{}
			}
			r.GPU[t] += n
		}
	}
	return r
}

// physicalMemory is the machine's memory in bytes (MemTotal of
// /proc/meminfo), or 1 TiB when it cannot be read.
func physicalMemory() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(rest)
				if len(f) >= 1 {
					if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil && kb > 0 {
						return kb << 10
					}
				}
			}
		}
	}
	return 1 << 40
}
