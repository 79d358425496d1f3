package taskhost

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
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
//	--reconnect-timeout D                  (default 2m)
//	--kill-grace D                         (default 10s)
//	--log-level L                          debug, info, warn, error (default info)
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
	fs.DurationVar(&cfg.ReconnectTimeout, "reconnect-timeout", 2*time.Minute, "how long to retry an unreachable runner before giving up")
	fs.DurationVar(&cfg.KillGrace, "kill-grace", 10*time.Second, "time between SIGTERM and SIGKILL")
	fs.TextVar(level, "log-level", level, "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
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
	cfg, level, err := ParseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "haul-taskhost: %v\n", err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
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
