package taskhost

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ParseFlags reads the taskhost's command line. Every flag falls back to an
// environment variable (read with getenv), and a flag given on the command
// line wins:
//
//	--runner URL          HAUL_RUNNER      the runner's base URL
//	--worker-id ID        HAUL_WORKER_ID
//	--job ID              HAUL_JOB
//	--blob URL            HAUL_BLOB        object store for logs (file:///path)
//	--spool DIR           HAUL_SPOOL       log spool folder (default: temp dir)
//	--capacity N          HAUL_CAPACITY    attempts at once (default 1)
//	--tier N              HAUL_TIER        the worker's tier index in its job (default 0)
//	--locator URLS        HAUL_LOCATOR     comma-separated base URLs to ask where the job's runner went (the gateways)
//	--reconnect-timeout D                  (default 2m)
//	--kill-grace D                         (default 10s)
//	--log-level L                          debug, info, warn, error (default info)
//	--install PATH                         copy this binary to PATH and exit (a worker pod's init container)
//	--memory-limit BYTES  HAUL_MEMORY_LIMIT the worker tier's memory: 1073741824, 512Mi, 1Gi, 1G (0: none)
//	--cpu-limit CORES     HAUL_CPU_LIMIT    the worker tier's CPU (0: none; enforced by a cgroup only)
//	--cgroup DIR[,DIR...] HAUL_CGROUP       cgroup directories to join before the first poll
//	--sample-interval D                     period of the usage samples (default 250ms)
//	--nvidia-smi PATH     HAUL_NVIDIA_SMI   nvidia-smi for GPU figures (default: from PATH; "-": off)
//	--log-retry D         HAUL_LOG_RETRY    how long a failed log upload is retried after the attempt (default 1m)
//	                      HAUL_WORKER_SECRET the worker's credential (environment only: a flag would show it to ps)
//	                      HAUL_CA           PEM certificates to trust for the runner's TLS certificate, besides the system's
//	                      HAUL_CA_PEM       the same certificates themselves (worker pods)
//	                      HAUL_TASKHOST_CPUPROFILE a folder for a CPU profile of the whole run (taskhost-PID.prof)
//
// The memory limit is enforced by the cgroup the taskhost is in when that
// has a limit no larger (cgroup-v1, cgroup-v2: the kernel's OOM killer,
// read from the group's counter), else by sampling each attempt's process
// tree and killing it over the limit (rss-poll); an attempt killed either
// way ends with reason "oom".
//
// The returned Config has no Logger; Main adds one. flag.ErrHelp is
// returned for -h.
func ParseFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, *slog.LevelVar, error) {
	var cfg Config
	level := new(slog.LevelVar)
	fs := flag.NewFlagSet("taskhost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: haul-taskhost --runner URL --worker-id ID --job ID --blob URL [flags]\n\n"+
			"Runs one haul worker: polls the runner for tasks, runs them, ships their logs.\n\n")
		fs.PrintDefaults()
	}
	capacity := 1
	if v := getenv("HAUL_CAPACITY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return cfg, nil, fmt.Errorf("HAUL_CAPACITY=%q: not a whole number", v)
		}
		capacity = n
	}
	fs.StringVar(&cfg.RunnerURL, "runner", getenv("HAUL_RUNNER"), "runner base URL (env HAUL_RUNNER)")
	fs.StringVar(&cfg.WorkerID, "worker-id", getenv("HAUL_WORKER_ID"), "this worker's ID (env HAUL_WORKER_ID)")
	fs.StringVar(&cfg.JobID, "job", getenv("HAUL_JOB"), "the job this worker serves (env HAUL_JOB)")
	fs.StringVar(&cfg.BlobURL, "blob", getenv("HAUL_BLOB"), "object store URL for logs, e.g. file:///var/lib/haul/blobs (env HAUL_BLOB)")
	fs.StringVar(&cfg.SpoolDir, "spool", getenv("HAUL_SPOOL"), "folder for log spool files (env HAUL_SPOOL; default: the temp dir)")
	fs.IntVar(&cfg.Capacity, "capacity", capacity, "attempts run at once (env HAUL_CAPACITY)")
	tier := getenv(TierEnv)
	fs.StringVar(&tier, "tier", tier, "the worker's tier index in its job (env "+TierEnv+"; default 0)")
	locators := getenv(LocatorEnv)
	fs.StringVar(&locators, "locator", locators, "comma-separated base URLs that answer where the job's runner is after a failover, e.g. the gateways (env "+LocatorEnv+")")
	fs.DurationVar(&cfg.ReconnectTimeout, "reconnect-timeout", 2*time.Minute, "how long to retry an unreachable runner before giving up")
	fs.DurationVar(&cfg.KillGrace, "kill-grace", 10*time.Second, "time between SIGTERM and SIGKILL")
	fs.TextVar(level, "log-level", level, "log level: debug, info, warn, error")
	memory := getenv("HAUL_MEMORY_LIMIT")
	fs.StringVar(&memory, "memory-limit", memory, "the worker tier's memory in bytes, e.g. 1073741824, 512Mi, 1Gi (env HAUL_MEMORY_LIMIT; 0: none)")
	cpu := getenv("HAUL_CPU_LIMIT")
	fs.StringVar(&cpu, "cpu-limit", cpu, "the worker tier's CPU in cores (env HAUL_CPU_LIMIT; 0: none)")
	cgroups := getenv("HAUL_CGROUP")
	fs.StringVar(&cgroups, "cgroup", cgroups, "comma-separated cgroup directories to join before the first poll (env HAUL_CGROUP)")
	fs.DurationVar(&cfg.SampleInterval, "sample-interval", 250*time.Millisecond, "period of the CPU, memory and GPU samples of each attempt")
	logRetry := time.Duration(0)
	if v := getenv("HAUL_LOG_RETRY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return cfg, nil, fmt.Errorf("HAUL_LOG_RETRY=%q: want a duration such as 1m or 30s", v)
		}
		logRetry = d
	}
	fs.DurationVar(&cfg.LogRetry, "log-retry", logRetry, "how long a failed log upload is retried after the attempt ends, before its result is reported with the log marked incomplete (env HAUL_LOG_RETRY; default 1m)")
	cfg.Secret = getenv(WorkerSecretEnv)
	if ca := getenv(CAEnv); ca != "" {
		c, err := CAClient(ca)
		if err != nil {
			return cfg, nil, fmt.Errorf("%s: %w", CAEnv, err)
		}
		cfg.HTTPClient = c
	} else if pem := getenv(CAPEMEnv); pem != "" {
		c, err := CAClientPEM(pem)
		if err != nil {
			return cfg, nil, err
		}
		cfg.HTTPClient = c
	}
	fs.StringVar(&cfg.NvidiaSMI, "nvidia-smi", getenv("HAUL_NVIDIA_SMI"), `nvidia-smi to run for GPU figures (env HAUL_NVIDIA_SMI; default: from PATH; "-": off)`)
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
	}
	if memory != "" {
		n, err := parseBytes(memory)
		if err != nil {
			return cfg, nil, fmt.Errorf("--memory-limit %w", err)
		}
		cfg.MemoryLimit = n
	}
	if cpu != "" {
		v, err := strconv.ParseFloat(cpu, 64)
		if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
			return cfg, nil, fmt.Errorf("--cpu-limit %q: want a non-negative number of cores", cpu)
		}
		cfg.CPULimit = v
	}
	if tier != "" {
		n, err := strconv.ParseInt(tier, 10, 32)
		if err != nil || n < 0 {
			return cfg, nil, fmt.Errorf("--tier %q: want a tier index, a whole number from 0", tier)
		}
		cfg.Tier = int32(n)
	}
	for u := range strings.SplitSeq(locators, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.Locators = append(cfg.Locators, u)
		}
	}
	for d := range strings.SplitSeq(cgroups, ",") {
		if d = strings.TrimSpace(d); d != "" {
			cfg.Cgroup = append(cfg.Cgroup, d)
		}
	}
	if fs.NArg() > 0 {
		return cfg, nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.Capacity < 1 {
		return cfg, nil, fmt.Errorf("--capacity %d: want at least 1", cfg.Capacity)
	}
	if err := cfg.validate(); err != nil {
		return cfg, nil, err
	}
	return cfg, level, nil
}

// Main runs the taskhost with command-line args (without the program name)
// and returns the process exit code: 0 when the runner told it to exit or
// ctx ended (a signal), 1 on failure, 2 on bad usage. Both haul-taskhost
// and `haul taskhost` call it; the caller turns signals into ctx's end.
func Main(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	if len(args) == 2 && (args[0] == "--install" || args[0] == "-install") {
		// The init container of a Kubernetes worker pod: copy this static
		// binary into the volume the user's image will run it from.
		if err := Install(args[1]); err != nil {
			fmt.Fprintf(stderr, "haul-taskhost: install: %v\n", err)
			return 1
		}
		return 0
	}
	cfg, level, err := ParseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "haul-taskhost: %v\n", err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	hideSecret(cfg.Logger)
	if dir := getenv(CPUProfileEnv); dir != "" {
		stop, err := startCPUProfile(dir)
		if err != nil {
			fmt.Fprintf(stderr, "haul-taskhost: %s: %v\n", CPUProfileEnv, err)
			return 2
		}
		defer stop()
	}
	err = Run(ctx, cfg)
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		cfg.Logger.Info("stopped", "cause", context.Cause(ctx))
		return 0
	default:
		cfg.Logger.Error("taskhost failed", "err", err)
		return 1
	}
}

// CPUProfileEnv names a folder where a taskhost writes a CPU profile of
// its whole run, as taskhost-PID.prof (haul bench --cpuprofile sets it
// for its process workers).
const CPUProfileEnv = "HAUL_TASKHOST_CPUPROFILE"

func startCPUProfile(dir string) (func(), error) {
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("taskhost-%d.prof", os.Getpid())))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// WorkerSecretEnv carries the worker's credential to the taskhost
// (Config.Secret).
const WorkerSecretEnv = "HAUL_WORKER_SECRET"

// TierEnv carries the worker's tier index (Config.Tier, --tier), and
// LocatorEnv the comma-separated URLs it asks where its job's runner is
// after a failover (Config.Locators, --locator).
const (
	TierEnv    = "HAUL_TIER"
	LocatorEnv = "HAUL_LOCATOR"
)

// prSetDumpable is prctl's PR_SET_DUMPABLE (linux/prctl.h).
const prSetDumpable = 4

// hideSecret keeps the worker's credential from the attempts, which run as
// the same user: it leaves the process environment (so nothing the
// taskhost starts inherits it), and the process becomes non-dumpable, so
// that its /proc files (environ, mem) belong to root and no process of the
// same user can read them or ptrace it. The attempts' own processes, being
// exec'd, are dumpable as usual.
func hideSecret(log *slog.Logger) {
	_ = os.Unsetenv(WorkerSecretEnv)
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); e != 0 {
		log.Warn("cannot make the taskhost non-dumpable: tasks of the same user may read its environment", "err", e)
	}
}

// Install copies the running executable to dest (mode 0755), through a
// temporary file renamed into place, so that a reader never sees half a
// binary. A worker pod's init container runs `haul-taskhost --install
// /haul/bin/haul-taskhost` to put the taskhost into the user's image.
func Install(dest string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".haul-taskhost-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}
