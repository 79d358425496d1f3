// Package taskhost is the worker process of haul: it polls its runner for
// attempts (TaskHostService.Poll), runs each as a unix process group, ships
// its stdout and stderr to the object store through internal/logs, and
// reports results on the next poll. It enforces the worker's memory limit
// (through the worker's cgroup, or by polling each attempt's RSS) and
// reports what each attempt used: CPU, memory, GPUs. When its runner stops
// answering for its job (a failover moved the job's shard), it asks its
// locators (TaskHostService.Locate) where the job's runner is now and
// switches to it without restarting.
//
// It is linked into small worker binaries (cmd/haul-taskhost), so it imports
// only the standard library, connect, the generated taskhost protocol,
// internal/blob, internal/logs, internal/cgroup, internal/procstat,
// internal/gpu and internal/outcome (with the pure types of internal/sched
// and internal/store it maps between): never the relational store
// drivers, and nothing that needs cgo (the binary is static).
package taskhost

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/blob"
	_ "github.com/haul-dev/haul/internal/blob/s3" // s3:// object stores
	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/gen/haul/taskhost/v1/taskhostv1connect"
	"github.com/haul-dev/haul/internal/outcome"
	"github.com/haul-dev/haul/internal/procstat"
)

// ErrRejected is wrapped by Run's error when the runner answers that it does
// not know this worker or does not accept its credential (Connect codes
// NotFound, FailedPrecondition or Unauthenticated), as a freshly started
// runner that never heard of it does.
var ErrRejected = errors.New("taskhost: the runner rejected this worker")

// Config says which runner to serve and how. Zero values take the defaults.
type Config struct {
	// RunnerURL is the base URL of the runner's Connect handler.
	RunnerURL string
	WorkerID  string
	JobID     string
	// Tier is the worker's tier index in its job (HAUL_TIER), sent on
	// every Poll and Locate: a runner that takes the job over after a
	// failover learns from it which tier the worker serves, and the
	// worker's credential is bound to it.
	Tier int32
	// Locators are base URLs that serve TaskHostService.Locate (the
	// gateways; HAUL_LOCATOR, comma-separated). When a poll fails for a
	// reason other than a rejection, the taskhost asks them in turn where
	// its job's runner is now and switches to it. None: it only ever
	// polls RunnerURL.
	Locators []string
	// Secret is the worker's credential, which the runner made when it
	// asked for the worker (HAUL_WORKER_SECRET): every poll carries it as
	// "Authorization: Bearer <secret>". It is never logged and never in
	// an attempt's environment.
	Secret string
	// BlobURL names the object store for logs (see blob.Open); Store, when
	// set, is used instead.
	BlobURL string
	Store   blob.Store
	// SpoolDir holds the log spool files (default os.TempDir()).
	SpoolDir string
	// Capacity is how many attempts run at once (default 1).
	Capacity   int
	HTTPClient *http.Client
	Logger     *slog.Logger
	// ReconnectTimeout is how long to keep trying to reach a runner that went
	// away before killing the running attempts and returning (default 2m).
	ReconnectTimeout time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL (default 10s).
	KillGrace time.Duration
	// PipeGrace is how long the output pipes may stay open after an
	// attempt's main process exited (a background child still holds them)
	// before the process group is killed (default 1s).
	PipeGrace time.Duration
	// IdleWait is how long the runner may hold a poll open when nothing
	// runs (default 20s).
	IdleWait time.Duration
	// Heartbeat is the poll period while attempts run (default 1s).
	Heartbeat time.Duration
	// LiveInterval is how often running attempts' new output is sent to
	// the runner (default 500ms), which holds it for live readers: the
	// worker makes no object-store request while its tasks run.
	LiveInterval time.Duration
	// PackBytes, PackEntries and PackAge say when the current pack of
	// ended attempts' logs is uploaded: when it holds that many bytes or
	// logs, or that long after its first log (defaults 8 MiB, 256, 10s),
	// and when the worker stops. A log over OwnObjectBytes (default 1 MiB)
	// gets an object of its own.
	PackBytes      int
	PackEntries    int
	PackAge        time.Duration
	OwnObjectBytes int
	// LogRetry is how long the upload of a log too big for a pack is
	// retried (a full disk, an object store that is away) before the
	// result is reported with the log marked incomplete, and how long a
	// stopping worker tries to upload its last pack (default 1m).
	LogRetry time.Duration
	// Clock stamps results and log frames and times the reconnect deadline
	// (default time.Now).
	Clock func() time.Time
	// Rand jitters reconnect backoff (default: seeded from the clock and
	// the worker ID).
	Rand *rand.Rand

	// Cgroup lists the cgroup directories (one per v1 hierarchy, one for
	// v2) that the taskhost joins before its first poll, so that it and
	// everything it starts is inside; the local backend makes them.
	Cgroup []string
	// MemoryLimit is the worker tier's memory in bytes (0: none). A
	// cgroup limit no larger than it is left to the kernel; otherwise the
	// taskhost enforces it by sampling each attempt's RSS ("rss-poll").
	MemoryLimit int64
	// CPULimit is the tier's CPU in cores (0: none). Only a cgroup
	// enforces it; the taskhost logs it.
	CPULimit float64
	// SampleInterval is the period of the usage samples (default 250ms;
	// the first comes 20ms after an attempt starts).
	SampleInterval time.Duration
	// CgroupRoot is the filesystem root under which /proc/self and the
	// cgroup mounts are read (default "/").
	CgroupRoot string
	// NvidiaSMI is the nvidia-smi to run for GPU figures: "" finds it in
	// PATH, "-" turns GPU accounting off.
	NvidiaSMI string

	// Exec, when set, runs each attempt inside this process instead of
	// starting one: haul bench uses it to measure the system's own
	// overhead (the protocol and every state change) without fork/exec.
	// It is called on the attempt's own goroutine, up to Capacity at
	// once, with a context that ends when the attempt is cancelled, times
	// out or the worker stops. Its result is reported exactly like a
	// process that exited with that code (reason "exit"); an error is
	// reported as a start error with exit code 126; one cancelled or
	// timed out (whatever it returns once its context ended) with exit
	// code -1. No log is written and usage is left empty. With Exec set,
	// the taskhost joins no cgroup, enforces no memory limit
	// (enforcement "none") and looks for no GPU: there is no process to
	// limit or watch.
	Exec func(ctx context.Context, a *taskhostv1.Assignment) (exitCode int32, err error)
}

func (c *Config) setDefaults() {
	c.Capacity = cmp.Or(c.Capacity, 1)
	c.ReconnectTimeout = cmp.Or(c.ReconnectTimeout, 2*time.Minute)
	c.KillGrace = cmp.Or(c.KillGrace, 10*time.Second)
	c.PipeGrace = cmp.Or(c.PipeGrace, time.Second)
	c.IdleWait = cmp.Or(c.IdleWait, 20*time.Second)
	c.Heartbeat = cmp.Or(c.Heartbeat, time.Second)
	c.LiveInterval = cmp.Or(c.LiveInterval, DefaultLiveInterval)
	c.PackBytes = cmp.Or(c.PackBytes, DefaultPackBytes)
	c.PackEntries = cmp.Or(c.PackEntries, DefaultPackEntries)
	c.PackAge = cmp.Or(c.PackAge, DefaultPackAge)
	c.OwnObjectBytes = cmp.Or(c.OwnObjectBytes, DefaultOwnObjectBytes)
	c.LogRetry = cmp.Or(c.LogRetry, time.Minute)
	c.SampleInterval = cmp.Or(c.SampleInterval, 250*time.Millisecond)
	c.CgroupRoot = cmp.Or(c.CgroupRoot, "/")
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Rand == nil {
		h := fnv.New64a()
		_, _ = h.Write([]byte(c.WorkerID))
		c.Rand = rand.New(rand.NewPCG(uint64(c.Clock().UnixNano()), h.Sum64()))
	}
}

// checkURL reports whether s is a usable base URL for a Connect client:
// http or https with a host.
func checkURL(s string) error {
	if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: want http://host:port or https://host:port", s)
	}
	return nil
}

func (c *Config) validate() error {
	var errs []error
	if c.RunnerURL == "" {
		errs = append(errs, errors.New("runner URL is empty (--runner, HAUL_RUNNER)"))
	} else if err := checkURL(c.RunnerURL); err != nil {
		errs = append(errs, fmt.Errorf("runner URL %w", err))
	}
	for _, l := range c.Locators {
		if err := checkURL(l); err != nil {
			errs = append(errs, fmt.Errorf("locator URL %w (--locator, %s)", err, LocatorEnv))
		}
	}
	if c.Tier < 0 {
		errs = append(errs, fmt.Errorf("tier %d is negative (--tier, %s)", c.Tier, TierEnv))
	}
	if c.WorkerID == "" {
		errs = append(errs, errors.New("worker ID is empty (--worker-id, HAUL_WORKER_ID)"))
	}
	if c.JobID == "" {
		errs = append(errs, errors.New("job ID is empty (--job, HAUL_JOB)"))
	}
	if c.Store == nil && c.BlobURL == "" {
		errs = append(errs, errors.New("object store URL is empty (--blob, HAUL_BLOB)"))
	}
	if c.Capacity < 0 {
		errs = append(errs, fmt.Errorf("capacity %d: want at least 1", c.Capacity))
	}
	if c.MemoryLimit < 0 {
		errs = append(errs, fmt.Errorf("memory limit %d is negative", c.MemoryLimit))
	}
	if math.IsNaN(c.CPULimit) || math.IsInf(c.CPULimit, 0) || c.CPULimit < 0 {
		errs = append(errs, fmt.Errorf("CPU limit %v: want a non-negative number of cores", c.CPULimit))
	}
	for _, d := range c.Cgroup {
		if !filepath.IsAbs(d) {
			errs = append(errs, fmt.Errorf("cgroup directory %q is not an absolute path", d))
		}
	}
	for name, d := range map[string]time.Duration{
		"reconnect timeout": c.ReconnectTimeout, "kill grace": c.KillGrace, "pipe grace": c.PipeGrace,
		"idle wait": c.IdleWait, "heartbeat": c.Heartbeat, "live interval": c.LiveInterval, "pack age": c.PackAge,
		"sample interval": c.SampleInterval,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", name, d))
		}
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		slices.Sort(msgs)
		return fmt.Errorf("taskhost: bad config: %s", strings.Join(msgs, "; "))
	}
	return nil
}

// bearer returns an interceptor that sends the worker's secret on every
// call (none when it is empty: the runner will refuse the worker).
func bearer(secret string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if secret != "" {
				req.Header().Set("Authorization", "Bearer "+secret)
			}
			return next(ctx, req)
		}
	}
}

// ref names one attempt.
type ref struct{ index, attempt int32 }

func refOf(index, attempt int32) ref { return ref{index, attempt} }

// host is one Run: the poll loop and the attempts it started.
type host struct {
	cfg      Config
	store    blob.Store
	log      *slog.Logger
	locators []locator
	// procs samples every attempt's process tree with one read of /proc
	// per round.
	procs *procstat.Hub
	// scratch keeps empty scratch folders for later attempts.
	scratch scratchPool

	// runnerMu guards the runner the taskhost polls, which a relocation
	// changes while a report-only call may be using the old one.
	runnerMu  sync.Mutex
	client    taskhostv1connect.TaskHostServiceClient
	runnerURL string

	mu      sync.Mutex
	tasks   map[ref]*task
	results []*taskhostv1.AttemptResult // ended, not yet acknowledged by a poll
	wake    chan struct{}               // an attempt ended
	ship    chan struct{}               // log entries are ready to send
	tails   []*taskhostv1.LiveOutput    // ended attempts' last output, not yet sent
	wg      sync.WaitGroup              // attempt goroutines

	lim limits // settled before the first poll

	packer *packer // archives ended attempts' logs
}

// Run serves the runner until it says exit (nil), the runner rejects this
// worker (ErrRejected), it stays unreachable for ReconnectTimeout, or ctx
// ends. In every case the attempts still running are killed and waited for
// before Run returns.
//
// Each poll carries the results of attempts that ended since the last
// successful poll (they are sent again until a poll succeeds), the attempts
// still running, and the free capacity. While idle, polls are long polls
// (IdleWait); while attempts run, a poll goes out every Heartbeat or as soon
// as an attempt ends.
//
// A poll that fails without a rejection (the runner is away, or answers
// Unavailable for a job whose shard it no longer owns) is retried with a
// jittered backoff; with Locators, the taskhost first asks them where the
// job's runner is now and, when they name another one, polls that one at
// once, sending it the results no runner acknowledged. ReconnectTimeout
// counts from the first failure however many runners it tried.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	cfg.setDefaults()
	store := cfg.Store
	if store == nil {
		s, err := blob.Open(cfg.BlobURL)
		if err != nil {
			return fmt.Errorf("taskhost: %w", err)
		}
		store = s
	}
	if cfg.SpoolDir != "" {
		if err := os.MkdirAll(cfg.SpoolDir, 0o755); err != nil {
			return fmt.Errorf("taskhost: create spool dir: %w", err)
		}
	}
	h := &host{
		cfg:   cfg,
		store: store,
		log:   cfg.Logger.With("worker", cfg.WorkerID, "job", cfg.JobID),
		tasks: make(map[ref]*task),
		wake:  make(chan struct{}, 1),
		ship:  make(chan struct{}, 1),
	}
	h.packer = newPacker(store, h.log, &h.cfg, h.poke)
	h.procs = procstat.NewHub("", 0)
	defer h.procs.Close()
	defer h.dropAllScratch()
	h.setRunner(cfg.RunnerURL)
	for _, u := range cfg.Locators {
		h.locators = append(h.locators, locator{url: u, client: h.newClient(u)})
	}
	if cfg.Exec != nil {
		h.lim.enforcement = EnforcementNone
	} else if err := h.setupLimits(ctx); err != nil {
		return err
	}
	return h.run(ctx)
}

func (h *host) run(ctx context.Context) error {
	h.log.Info("taskhost started", "runner", h.cfg.RunnerURL, "capacity", h.cfg.Capacity, "tier", h.cfg.Tier, "locators", len(h.locators))
	// The packer outlives ctx: a stopping worker still uploads its last
	// pack (for LogRetry at most, see finishLogs).
	packCtx, stopPacker := context.WithCancel(context.WithoutCancel(ctx))
	go h.packer.run(packCtx)
	shipCtx, stopShipping := context.WithCancel(ctx)
	shipped := make(chan struct{})
	go func() { defer close(shipped); h.shipLoop(shipCtx) }()
	defer func() {
		// Nothing of this Run outlives it: the shipper and the packer end,
		// and what the packer could not archive is removed from the disk.
		stopShipping()
		<-shipped
		stopPacker()
		<-h.packer.done
		h.packer.discard()
	}()
	var (
		exiting      bool
		failingSince time.Time // first failure since the last successful poll
		failures     int
		hurried      bool // the last retry went out at once, after a relocation
	)
	for {
		if ctx.Err() != nil {
			return h.shutdown(ctx)
		}
		// Drain a stale wake-up: what it announced is in this snapshot.
		select {
		case <-h.wake:
		default:
		}
		results, running, free := h.snapshot()
		if exiting && len(running) == 0 && len(results) == 0 {
			h.wg.Wait()
			stopShipping()
			h.finishLogs(ctx, h.cfg.LogRetry)
			h.log.Info("runner said exit; all attempts reported")
			return nil
		}
		if exiting {
			free = 0
		}
		var wait time.Duration
		switch {
		case len(results) > 0 && free == 0:
			wait = 0
		case len(running) == 0:
			wait = h.cfg.IdleWait
		case free > 0:
			wait = h.cfg.Heartbeat
		}
		req := h.request(results)
		req.Running = running
		req.Capacity = int32(free)
		req.WaitMs = wait.Milliseconds()
		resp, err := h.pollReporting(ctx, req, wait)
		if err != nil {
			if ctx.Err() != nil {
				return h.shutdown(ctx)
			}
			if code := connect.CodeOf(err); code == connect.CodeNotFound || code == connect.CodeFailedPrecondition || code == connect.CodeUnauthenticated {
				h.log.Error("runner rejected this worker; killing attempts", "err", err)
				h.killAll()
				return fmt.Errorf("%w: %w", ErrRejected, err)
			}
			now := h.cfg.Clock()
			if failingSince.IsZero() {
				failingSince = now
			}
			if down := now.Sub(failingSince); down >= h.cfg.ReconnectTimeout {
				h.log.Error("runner unreachable; killing attempts", "for", down, "err", err)
				h.killAll()
				return fmt.Errorf("taskhost: runner unreachable for %v: %w", down.Round(time.Millisecond), err)
			}
			failures++
			// The job may have moved to another runner: ask where it is
			// and go there at once. Two relocations in a row without a
			// successful poll (locators that disagree, runners passing
			// the job on) back off in between.
			if h.relocate(ctx, err) && !hurried {
				hurried = true
				continue
			}
			hurried = false
			d := h.backoff(failures)
			h.log.Warn("poll failed; retrying", "err", err, "in", d, "failures", failures)
			if !h.pause(ctx, d, nil) {
				return h.shutdown(ctx)
			}
			continue
		}
		if failures > 0 {
			h.log.Info("runner reachable again", "after_failures", failures)
		}
		failingSince, failures, hurried = time.Time{}, 0, false
		h.ack(results)
		h.sentTails(req.Live)

		for _, c := range resp.GetCancel() {
			h.cancel(refOf(c.GetTaskIndex(), c.GetAttempt()))
		}
		for _, a := range resp.GetAssignments() {
			h.start(ctx, a)
		}
		if resp.GetExit() && !exiting {
			h.log.Info("runner said exit; finishing running attempts")
			exiting = true
		}

		// When to poll next.
		results, running, free = h.snapshot()
		if exiting {
			free = 0
		}
		var next time.Duration
		switch {
		case len(results) > 0, exiting && len(running) == 0:
			next = 0 // report now, or leave now
		case free == 0:
			next = h.cfg.Heartbeat // the next poll is a heartbeat
		case len(resp.GetAssignments()) == 0:
			// The next poll waits for work itself; the runner may ask for a
			// pause first.
			next = time.Duration(resp.GetRetryAfterMs()) * time.Millisecond
		}
		if !h.pause(ctx, next, h.wake) {
			return h.shutdown(ctx)
		}
	}
}

// pollReporting makes one poll; while the runner holds it open with
// attempts running, each attempt that ends is reported at once by a
// report-only call beside it, so a held poll never delays a result.
func (h *host) pollReporting(ctx context.Context, req *taskhostv1.PollRequest, wait time.Duration) (*taskhostv1.PollResponse, error) {
	if wait <= 0 || len(req.Running) == 0 {
		return h.poll(ctx, req, wait)
	}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-rctx.Done():
				return
			case <-h.wake:
			}
			results, _, free := h.snapshot()
			if len(results) == 0 {
				continue
			}
			r := h.request(results)
			r.Capacity, r.ReportOnly = int32(free), true
			if _, err := h.poll(rctx, r, 0); err != nil {
				// The main loop sends them again after the poll.
				h.log.Debug("report failed", "err", err)
				continue
			}
			h.ack(results)
			h.sentTails(r.Live)
		}
	})
	resp, err := h.poll(ctx, req, wait)
	stop()
	wg.Wait()
	return resp, err
}

// poll makes one call, bounding it by the wait it asked for plus a margin.
func (h *host) poll(ctx context.Context, req *taskhostv1.PollRequest, wait time.Duration) (*taskhostv1.PollResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	defer cancel()
	client, _ := h.runner()
	resp, err := client.Poll(cctx, connect.NewRequest(req))
	if err != nil {
		return nil, err
	}
	return resp.Msg, nil
}

// request returns a PollRequest naming this worker, carrying results and,
// when there are results, the ended attempts' last output (up to
// livePollBytes of it; the shipper sends the rest).
func (h *host) request(results []*taskhostv1.AttemptResult) *taskhostv1.PollRequest {
	req := &taskhostv1.PollRequest{WorkerId: h.cfg.WorkerID, JobId: h.cfg.JobID, Tier: h.cfg.Tier, Results: results}
	if len(results) > 0 {
		req.Live = h.takeTails(livePollBytes)
	}
	return req
}

// takeTails returns unsent tails, up to budget bytes of them (at least one).
func (h *host) takeTails(budget int) []*taskhostv1.LiveOutput {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*taskhostv1.LiveOutput
	for _, t := range h.tails {
		if len(out) > 0 && len(t.Frames) > budget {
			break
		}
		budget -= len(t.Frames)
		out = append(out, t)
	}
	return out
}

// sentTails forgets tails that a successful call carried.
func (h *host) sentTails(sent []*taskhostv1.LiveOutput) {
	if len(sent) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tails = slices.DeleteFunc(h.tails, func(t *taskhostv1.LiveOutput) bool { return slices.Contains(sent, t) })
}

// poke wakes the shipper: log entries are ready.
func (h *host) poke() {
	select {
	case h.ship <- struct{}{}:
	default:
	}
}

// shipLoop sends, every LiveInterval, the new output of running attempts
// and the entries of uploaded logs, by report-only calls beside the polls:
// one call per worker per interval at most, however many attempts run.
func (h *host) shipLoop(ctx context.Context) {
	t := time.NewTicker(h.cfg.LiveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.ship:
		}
		if err := h.shipOnce(ctx); err != nil && ctx.Err() == nil {
			h.log.Debug("sending live output failed; sent again next time", "err", err)
		}
	}
}

// liveSend is one attempt's chunk in a live call.
type liveSend struct {
	t    *task
	next int64
}

// shipOnce makes one report-only call with what is new, if anything is.
func (h *host) shipOnce(ctx context.Context) error {
	req := h.request(nil)
	req.ReportOnly = true
	req.LogEntries = h.packer.takeReady()
	req.Live = h.takeTails(livePollBytes)
	tails := slices.Clone(req.Live)
	var sent []liveSend
	h.mu.Lock()
	tasks := make([]*task, 0, len(h.tasks))
	for _, t := range h.tasks {
		tasks = append(tasks, t)
	}
	h.mu.Unlock()
	slices.SortFunc(tasks, func(a, b *task) int {
		return cmp.Or(cmp.Compare(a.ref.index, b.ref.index), cmp.Compare(a.ref.attempt, b.ref.attempt))
	})
	budget := livePollBytes
	for _, t := range req.Live {
		budget -= len(t.Frames)
	}
	for _, t := range tasks {
		if budget <= 0 {
			break
		}
		w, from := t.liveLog()
		if w == nil {
			continue
		}
		b, next, err := w.Live(from, min(liveAttemptBytes, budget))
		if err != nil || next == from {
			continue // closed (the attempt is ending), or nothing new
		}
		budget -= len(b)
		req.Live = append(req.Live, &taskhostv1.LiveOutput{TaskIndex: t.ref.index, Attempt: t.ref.attempt, Offset: from, Frames: b})
		sent = append(sent, liveSend{t, next})
	}
	if len(req.Live) == 0 && len(req.LogEntries) == 0 {
		return nil
	}
	if _, err := h.poll(ctx, req, 0); err != nil {
		return err
	}
	for _, s := range sent {
		s.t.liveSent(s.next)
	}
	h.sentTails(tails)
	h.packer.delivered(req.LogEntries)
	return nil
}

// finishLogs uploads the last pack and delivers the entries still
// waiting, trying for up to d.
func (h *host) finishLogs(ctx context.Context, d time.Duration) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	defer cancel()
	if err := h.packer.stop(cctx); err != nil {
		h.log.Error("logs not archived before the worker stopped; the runner keeps what it received of them", "err", err)
	}
	for try := 0; len(h.packer.takeReady()) > 0; try++ {
		if err := h.shipOnce(cctx); err == nil {
			break
		} else if cctx.Err() != nil {
			h.log.Error("log entries not delivered before the worker stopped", "n", len(h.packer.takeReady()), "err", err)
			return
		}
		select {
		case <-cctx.Done():
		case <-time.After(h.backoff(try + 1)):
		}
	}
}

// newClient returns a TaskHostService client for baseURL that sends the
// worker's credential on every call.
func (h *host) newClient(baseURL string) taskhostv1connect.TaskHostServiceClient {
	return taskhostv1connect.NewTaskHostServiceClient(h.cfg.HTTPClient, baseURL, connect.WithInterceptors(bearer(h.cfg.Secret)))
}

// runner returns the client of the runner to poll and its URL.
func (h *host) runner() (taskhostv1connect.TaskHostServiceClient, string) {
	h.runnerMu.Lock()
	defer h.runnerMu.Unlock()
	return h.client, h.runnerURL
}

// setRunner makes baseURL the runner to poll from the next call on.
func (h *host) setRunner(baseURL string) {
	c := h.newClient(baseURL)
	h.runnerMu.Lock()
	defer h.runnerMu.Unlock()
	h.client, h.runnerURL = c, baseURL
}

// locator is one address that serves Locate.
type locator struct {
	url    string
	client taskhostv1connect.TaskHostServiceClient
}

// locateTimeout bounds one Locate call: a locator that does not answer
// quickly is skipped for the next one.
const locateTimeout = 2 * time.Second

// relocate asks the locators in turn where the job's runner is now, after
// a poll failed with pollErr, and switches to the first answer if it names
// another runner than the current one. It reports whether it switched;
// without locators, when none answers, or when the answer is the current
// runner, the caller backs off as usual.
func (h *host) relocate(ctx context.Context, pollErr error) bool {
	if len(h.locators) == 0 {
		return false
	}
	_, current := h.runner()
	req := &taskhostv1.LocateRequest{WorkerId: h.cfg.WorkerID, JobId: h.cfg.JobID, Tier: h.cfg.Tier}
	for _, l := range h.locators {
		cctx, cancel := context.WithTimeout(ctx, locateTimeout)
		resp, err := l.client.Locate(cctx, connect.NewRequest(req))
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if err != nil {
			h.log.Debug("locate failed", "locator", l.url, "err", err)
			continue
		}
		u := resp.Msg.GetRunnerUrl()
		if err := checkURL(u); err != nil {
			h.log.Warn("locator answered a bad runner URL; ignored", "locator", l.url, "err", err)
			continue
		}
		if strings.TrimSuffix(u, "/") == strings.TrimSuffix(current, "/") {
			return false
		}
		h.log.Info("the job's runner moved; switching", "from", current, "to", u, "locator", l.url, "poll_err", pollErr)
		h.setRunner(u)
		return true
	}
	return false
}

// backoff returns the wait before retry number n (from 1): exponential from
// 50ms, capped at 2s, jittered to between half and all of that.
func (h *host) backoff(n int) time.Duration {
	d := 2 * time.Second
	if n < 7 {
		d = min(d, 50*time.Millisecond<<(n-1))
	}
	return d/2 + time.Duration(h.cfg.Rand.Int64N(int64(d/2)+1))
}

// pause waits for d, for a wake-up, or for ctx; it reports false when ctx
// ended.
func (h *host) pause(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}

// snapshot returns the unreported results, the running attempts (sorted)
// and the free capacity.
func (h *host) snapshot() ([]*taskhostv1.AttemptResult, []*taskhostv1.AttemptRef, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	results := slices.Clone(h.results)
	running := make([]*taskhostv1.AttemptRef, 0, len(h.tasks))
	for r := range h.tasks {
		running = append(running, &taskhostv1.AttemptRef{TaskIndex: r.index, Attempt: r.attempt})
	}
	slices.SortFunc(running, func(a, b *taskhostv1.AttemptRef) int {
		return cmp.Or(cmp.Compare(a.TaskIndex, b.TaskIndex), cmp.Compare(a.Attempt, b.Attempt))
	})
	return results, running, max(0, h.cfg.Capacity-len(h.tasks))
}

// ack forgets results that a successful poll delivered.
func (h *host) ack(sent []*taskhostv1.AttemptResult) {
	if len(sent) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.results = slices.DeleteFunc(h.results, func(r *taskhostv1.AttemptResult) bool { return slices.Contains(sent, r) })
}

// start runs an assignment in the background.
func (h *host) start(ctx context.Context, a *taskhostv1.Assignment) {
	r := refOf(a.GetTaskIndex(), a.GetAttempt())
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, dup := h.tasks[r]; dup {
		h.log.Warn("assignment already running; ignored", "task_index", r.index, "attempt", r.attempt)
		return
	}
	if len(h.tasks) >= h.cfg.Capacity {
		h.log.Warn("runner assigned more than the free capacity; running it anyway", "task_index", r.index, "attempt", r.attempt)
	}
	t := &task{ref: r, a: a, stop: make(chan struct{})}
	h.tasks[r] = t
	h.wg.Go(func() {
		res := h.execute(ctx, t)
		res.Outcome = outcome.Label(res)
		h.mu.Lock()
		delete(h.tasks, r)
		if !t.dropped() {
			h.results = append(h.results, res)
			t.mu.Lock()
			if t.tail != nil {
				h.tails = append(h.tails, t.tail)
			}
			t.mu.Unlock()
		}
		h.mu.Unlock()
		select {
		case h.wake <- struct{}{}:
		default:
		}
	})
}

// cancel stops an attempt on the runner's word.
func (h *host) cancel(r ref) {
	h.mu.Lock()
	t := h.tasks[r]
	h.mu.Unlock()
	if t == nil {
		return // it already ended; its result is on its way
	}
	h.log.Info("cancelling attempt", "task_index", r.index, "attempt", r.attempt)
	t.kill(killCancel)
}

// killAll stops every attempt without reporting it (the worker is going
// away; the runner treats these attempts as lost) and waits for them.
func (h *host) killAll() {
	h.mu.Lock()
	for _, t := range h.tasks {
		t.kill(killDrop)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// shutdown handles the end of Run's context: kill the attempts, then try
// once, briefly, to report the results of the ones that had ended.
func (h *host) shutdown(ctx context.Context) error {
	h.log.Info("stopping: killing running attempts")
	h.killAll()
	results, _, _ := h.snapshot()
	if len(results) > 0 {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		client, _ := h.runner()
		_, err := client.Poll(cctx, connect.NewRequest(h.request(results)))
		if err != nil {
			h.log.Warn("could not report the last results", "n", len(results), "err", err)
		}
	}
	h.finishLogs(ctx, 5*time.Second)
	if cause := context.Cause(ctx); cause != ctx.Err() {
		return fmt.Errorf("taskhost: %w: %w", ctx.Err(), cause)
	}
	return fmt.Errorf("taskhost: %w", ctx.Err())
}
