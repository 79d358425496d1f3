// Package local is the worker backend that runs workers as processes on this
// machine: each worker is a `haul taskhost` process in its own process group,
// with its own log file. It imports only the runner's Backend contract.
package local

import (
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
}

// Backend starts workers as local processes.
type Backend struct {
	cfg Config

	mu    sync.Mutex
	procs map[string]*exec.Cmd
	wg    sync.WaitGroup
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
	return &Backend{cfg: cfg, procs: map[string]*exec.Cmd{}}, nil
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
		"--blob", s.BlobURL, "--spool", filepath.Join(dir, "spool"))
	cmd := exec.Command(b.cfg.Command[0], args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir, _ = os.Getwd()
	// Its own process group: a Ctrl-C meant for the CLI does not reach the
	// worker, and StopWorker can kill the worker with everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("worker %s: start %s: %w", s.ID, b.cfg.Command[0], err)
	}
	b.mu.Lock()
	b.procs[s.ID] = cmd
	b.mu.Unlock()
	b.cfg.Logger.Debug("worker started", "worker", s.ID, "pid", cmd.Process.Pid)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		err := cmd.Wait()
		logf.Close()
		b.mu.Lock()
		delete(b.procs, s.ID)
		b.mu.Unlock()
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
		return
	case <-time.After(15 * time.Second):
	}
	b.signalAll(syscall.SIGKILL)
	<-done
}

func (b *Backend) signalAll(sig syscall.Signal) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, cmd := range b.procs {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
}
