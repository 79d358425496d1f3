package taskhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	taskhostv1 "github.com/haul-dev/haul/internal/gen/haul/taskhost/v1"
	"github.com/haul-dev/haul/internal/logs"
	"github.com/haul-dev/haul/internal/outcome"
)

// Result reasons, as in AttemptResult.reason; internal/outcome reads them
// into the result's outcome.
const (
	ReasonExit       = outcome.ReasonExit
	ReasonSignal     = outcome.ReasonSignal
	ReasonTimeout    = outcome.ReasonTimeout
	ReasonCancelled  = outcome.ReasonCancelled
	ReasonStartError = outcome.ReasonStartError
	// ReasonOOM: killed for using more memory than the worker's limit, by
	// the kernel (a cgroup) or by the taskhost (rss-poll).
	ReasonOOM = outcome.ReasonOOM
)

// Exit codes reported with ReasonStartError, as a shell would give them.
const (
	ExitNotFound      = 127 // the executable was not found
	ExitCannotExecute = 126 // anything else that kept the process from starting
)

// Why a task is being killed.
const (
	killNone   = iota
	killCancel // the runner cancelled it: reported
	killDrop   // the worker is going away: not reported
)

// task is one running attempt.
type task struct {
	ref ref
	a   *taskhostv1.Assignment

	mu     sync.Mutex
	why    int
	stop   chan struct{} // closed by kill
	killed bool
	logw   *logs.Writer // nil until the log is open
	sent   int64        // log bytes sent to the runner live
	// tail is the output not yet sent live when the attempt ended (up to
	// tailBytes of it): it goes to the runner with the result, so the
	// runner's live copy of a short log is whole at once.
	tail *taskhostv1.LiveOutput
}

// liveLog returns the attempt's log writer and the offset of its output
// not yet sent live.
func (t *task) liveLog() (*logs.Writer, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.logw, t.sent
}

// liveSent records that the log was sent live up to next.
func (t *task) liveSent(next int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sent = max(t.sent, next)
}

func (t *task) kill(why int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.killed {
		if why == killDrop {
			t.why = why
		}
		return
	}
	t.killed, t.why = true, why
	close(t.stop)
}

func (t *task) reason() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.why
}

func (t *task) dropped() bool { return t.reason() == killDrop }

// execute runs one attempt to its end and returns its result. The log is
// closed (its final object written) before it returns.
func (h *host) execute(ctx context.Context, t *task) *taskhostv1.AttemptResult {
	if h.cfg.Exec != nil {
		return h.executeFunc(ctx, t)
	}
	a := t.a
	log := h.log.With("task_index", a.GetTaskIndex(), "attempt", a.GetAttempt(), "key", a.GetKey())
	res := &taskhostv1.AttemptResult{
		TaskIndex:        a.GetTaskIndex(),
		Attempt:          a.GetAttempt(),
		StartedUnixNanos: h.cfg.Clock().UnixNano(),
		Enforcement:      h.lim.enforcement,
	}

	out, errOut, closeLog, err := h.openLog(ctx, t, a)
	if err != nil {
		log.Error("cannot open the attempt's log", "err", err)
		startError(res, ExitCannotExecute, err.Error())
		res.FinishedUnixNanos = h.cfg.Clock().UnixNano()
		return res
	}
	finish := func() *taskhostv1.AttemptResult {
		res.FinishedUnixNanos = h.cfg.Clock().UnixNano()
		if res.Usage != nil {
			res.Usage.WallSeconds = time.Duration(res.FinishedUnixNanos - res.StartedUnixNanos).Seconds()
		}
		n, out, err := closeLog(ctx)
		res.LogBytes, res.OutputBytes = n, out
		if err != nil {
			// The log was not stored whole even after retrying: the
			// attempt's message says so plainly ("log incomplete: N of M
			// bytes of output stored: why"), and `haul task logs` shows it.
			msg := err.Error()
			if _, ok := logs.IncompleteNotice(msg); !ok {
				msg = logs.IncompletePrefix + msg
			}
			log.Error("attempt's log is incomplete", "err", err)
			addMessage(res, msg)
		}
		log.Debug("attempt ended", "reason", res.Reason, "exit_code", res.ExitCode, "signal", res.Signal)
		return res
	}

	marker := acquireMarker(h.cfg.WorkerID, a)
	defer releaseMarker(marker)
	cmd, code, err := h.command(a, marker)
	if err != nil {
		fmt.Fprintf(errOut, "haul: cannot start %q: %v\n", a.GetArgv(), err)
		startError(res, code, err.Error())
		return finish()
	}
	if a.GetCwd() == "" {
		// The attempt's scratch folder goes with it.
		defer h.dropScratch(cmd.Dir)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		startError(res, ExitCannotExecute, fmt.Sprintf("stdout pipe: %v", err))
		return finish()
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		startError(res, ExitCannotExecute, fmt.Sprintf("stderr pipe: %v", err))
		return finish()
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	watch := h.startWatch()
	startErr := startLeader(cmd)
	// The child has its own copies of the write ends now.
	outW.Close()
	errW.Close()
	if startErr != nil {
		outR.Close()
		errR.Close()
		code := ExitCannotExecute
		if errors.Is(startErr, fs.ErrNotExist) {
			code = ExitNotFound
		}
		fmt.Fprintf(errOut, "haul: cannot start %q: %v\n", a.GetArgv(), startErr)
		startError(res, code, startErr.Error())
		return finish()
	}
	pgid := cmd.Process.Pid
	h.restoreOOMAdj(pgid)
	watch.sample(ctx, pgid, marker)
	// Per attempt at debug only: the store keeps every attempt, and two
	// lines of the worker's log per attempt were 6% of its CPU with short
	// tasks.
	log.Debug("attempt started", "pid", pgid, "argv", a.GetArgv())

	var pipes sync.WaitGroup
	pipes.Go(func() { drain(outR, out) })
	pipes.Go(func() { drain(errR, errOut) })
	pipesDone := make(chan struct{})
	go func() { pipes.Wait(); close(pipesDone) }()
	leader := make(chan error, 1)
	go func() { leader <- waitLeader(cmd) }()

	var timeout <-chan time.Time
	if ms := a.GetTimeoutMs(); ms > 0 {
		tm := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer tm.Stop()
		timeout = tm.C
	}
	var waitErr error
	select {
	case waitErr = <-leader:
	case <-timeout:
		res.Reason = ReasonTimeout
		res.Message = fmt.Sprintf("timed out after %v", time.Duration(a.GetTimeoutMs())*time.Millisecond)
		log.Info("attempt timed out; terminating its processes")
		waitErr = h.terminate(cmd, marker, leader)
	case <-t.stop:
		res.Reason = ReasonCancelled
		res.Message = "cancelled by the runner"
		if t.dropped() {
			res.Message = "killed: the worker is stopping"
		}
		waitErr = h.terminate(cmd, marker, leader)
	}

	// The main process has ended; its output pipes close when the last
	// process holding them does. Background children get PipeGrace, then
	// the attempt's processes are killed; pipes held from outside the
	// attempt are closed.
	grace := time.NewTimer(h.cfg.PipeGrace)
	defer grace.Stop()
	select {
	case <-pipesDone:
	case <-grace.C:
		log.Warn("output still open after the main process exited; killing the attempt's processes")
		if err := h.killAttempt(cmd, marker); err != nil {
			log.Error("the attempt's processes survived SIGKILL", "err", err)
		}
		grace.Reset(h.cfg.PipeGrace)
		select {
		case <-pipesDone:
		case <-grace.C:
			log.Warn("output held open by a process outside the attempt; closing it")
			outR.Close()
			errR.Close()
			<-pipesDone
		}
	}
	// Whatever is left of the attempt (background jobs with their output
	// redirected, daemons that called setsid, double forks, stopped
	// processes) goes with it: nothing it started outlives it.
	killErr := h.killAttempt(cmd, marker)
	outR.Close()
	errR.Close()
	if killErr != nil {
		log.Error("the attempt's processes survived SIGKILL", "err", killErr)
	}

	setExit(res, waitErr)
	watch.finish(res, cmd.ProcessState)
	if killErr != nil {
		addMessage(res, "some of the attempt's processes could not be killed: "+killErr.Error())
	}
	return finish()
}

// executeFunc runs one attempt through Config.Exec, in this process: no
// log, no usage, the same reasons as a process (timeout, cancelled, exit,
// start_error).
func (h *host) executeFunc(ctx context.Context, t *task) *taskhostv1.AttemptResult {
	a := t.a
	res := &taskhostv1.AttemptResult{
		TaskIndex:        a.GetTaskIndex(),
		Attempt:          a.GetAttempt(),
		StartedUnixNanos: h.cfg.Clock().UnixNano(),
		Enforcement:      h.lim.enforcement,
	}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	if ms := a.GetTimeoutMs(); ms > 0 {
		var cancelT context.CancelFunc
		ectx, cancelT = context.WithTimeout(ectx, time.Duration(ms)*time.Millisecond)
		defer cancelT()
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-t.stop:
			cancel()
		case <-ectx.Done():
		}
		close(stopped)
	}()
	code, err := h.cfg.Exec(ectx, a)
	cancel()
	<-stopped
	select {
	case <-t.stop:
		res.Reason, res.Message = ReasonCancelled, "cancelled by the runner"
		if t.dropped() {
			res.Message = "killed: the worker is stopping"
		}
		res.ExitCode = -1
	default:
		switch {
		case errors.Is(ectx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
			res.Reason = ReasonTimeout
			res.Message = fmt.Sprintf("timed out after %v", time.Duration(a.GetTimeoutMs())*time.Millisecond)
			res.ExitCode = -1
		case err != nil:
			startError(res, ExitCannotExecute, err.Error())
		default:
			res.Reason, res.ExitCode = ReasonExit, code
		}
	}
	res.FinishedUnixNanos = h.cfg.Clock().UnixNano()
	return res
}

// terminate sends SIGTERM to the attempt's processes (its process group
// and every process carrying its marker) and, if the main process has not
// exited after KillGrace, kills them all; it returns the main process's
// Wait error.
func (h *host) terminate(cmd *exec.Cmd, marker string, leader <-chan error) error {
	signalAttempt(h.log, cmd, marker, syscall.SIGTERM)
	t := time.NewTimer(h.cfg.KillGrace)
	defer t.Stop()
	select {
	case err := <-leader:
		return err
	case <-t.C:
		if err := h.killAttempt(cmd, marker); err != nil {
			h.log.Error("the attempt's processes survived SIGKILL", "err", err)
		}
		return <-leader
	}
}

// setExit fills in how the main process ended. A reason already set
// (timeout, cancelled) is kept. A signal is reported as exit code 128+n.
func setExit(res *taskhostv1.AttemptResult, waitErr error) {
	reason := ReasonExit
	var ee *exec.ExitError
	switch {
	case waitErr == nil:
		res.ExitCode = 0
	case errors.As(waitErr, &ee):
		ws, ok := ee.Sys().(syscall.WaitStatus)
		if ok && ws.Signaled() {
			reason = ReasonSignal
			res.Signal = int32(ws.Signal())
			res.ExitCode = 128 + res.Signal
		} else {
			res.ExitCode = int32(ee.ExitCode())
		}
	default:
		res.ExitCode = -1
		addMessage(res, "wait: "+waitErr.Error())
	}
	if res.Reason == "" {
		res.Reason = reason
	}
}

func addMessage(res *taskhostv1.AttemptResult, msg string) {
	if res.Message != "" {
		msg = res.Message + "; " + msg
	}
	res.Message = msg
}

func startError(res *taskhostv1.AttemptResult, code int, msg string) {
	res.Reason = ReasonStartError
	res.ExitCode = int32(code)
	res.Message = msg
}

// drain copies a pipe into the log. If the log stops accepting data the pipe
// is still read to its end, so that the task never blocks on a full pipe.
func drain(r io.Reader, w io.Writer) {
	buf := make([]byte, 32<<10)
	var werr error
	for {
		n, err := r.Read(buf)
		if n > 0 && werr == nil {
			_, werr = w.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// openLog returns the attempt's stdout and stderr writers and the function
// that closes the log. An assignment without a log prefix gets its output
// discarded.
func (h *host) openLog(ctx context.Context, t *task, a *taskhostv1.Assignment) (out, errOut io.Writer, closeLog func(context.Context) (int64, int64, error), err error) {
	if a.GetLogPrefix() == "" {
		h.log.Warn("assignment has no log prefix; its output is discarded", "task_index", a.GetTaskIndex(), "attempt", a.GetAttempt())
		return io.Discard, io.Discard, func(context.Context) (int64, int64, error) { return 0, 0, nil }, nil
	}
	w, err := logs.NewWriter(a.GetLogPrefix(), h.cfg.SpoolDir, logs.WriterOptions{
		Clock:  h.cfg.Clock,
		Logger: h.log,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	t.mu.Lock()
	t.logw = w
	t.mu.Unlock()
	closeLog = func(ctx context.Context) (int64, int64, error) {
		sealed, err := w.Seal()
		if err != nil {
			return 0, 0, err
		}
		if _, from := t.liveLog(); from < sealed.Len {
			if b, _, err := w.Live(from, tailBytes); err == nil && len(b) > 0 {
				t.mu.Lock()
				t.tail = &taskhostv1.LiveOutput{TaskIndex: t.ref.index, Attempt: t.ref.attempt, Offset: from, Frames: b}
				t.mu.Unlock()
			}
		}
		// Archived in the background: the result does not wait for it.
		h.packer.add(t.ref, sealed, strings.TrimSuffix(a.GetLogPrefix(), "/")+"/log")
		if sealed.Incomplete != nil {
			return sealed.Len, sealed.Total, sealed.Incomplete
		}
		return sealed.Len, sealed.Total, nil
	}
	return w.Stdout(), w.Stderr(), closeLog, nil
}

// scratchDir makes the attempt's own empty working directory, used when
// its spec names no cwd: <spool dir>/attempts/<task index>.<attempt> (the
// spool dir defaults to the temp dir), readable by the worker's user only.
func (h *host) scratchDir(a *taskhostv1.Assignment) (string, error) {
	root := h.cfg.SpoolDir
	if root == "" {
		root = filepath.Join(os.TempDir(), "haul-"+h.cfg.WorkerID)
	}
	dir, err := filepath.Abs(filepath.Join(root, "attempts", fmt.Sprintf("%d.%d", a.GetTaskIndex(), a.GetAttempt())))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return "", err
	}
	if free := h.scratch.take(); free != "" {
		// An empty folder an earlier attempt left: renamed into place,
		// which costs ext4 no block, where mkdir and rmdir allocate and
		// free one (a fifth of a worker's CPU with /bin/true tasks).
		if err := os.Rename(free, dir); err == nil {
			return dir, nil
		}
		os.RemoveAll(free)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// scratchPool keeps a few empty scratch folders for later attempts.
type scratchPool struct {
	mu   sync.Mutex
	free []string
	seq  int
}

func (p *scratchPool) take() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		return ""
	}
	d := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	return d
}

// dropScratch removes an attempt's scratch folder, or keeps it for a later
// attempt when the attempt left it as it was made: empty, a folder of the
// worker's user with mode 0700 (a task may have changed either).
func (h *host) dropScratch(dir string) {
	p := &h.scratch
	p.mu.Lock()
	room := len(p.free) < max(h.cfg.Capacity, 1)
	p.seq++
	free := filepath.Join(filepath.Dir(dir), fmt.Sprintf(".free-%d", p.seq))
	p.mu.Unlock()
	if room && emptyOwnDir(dir) && os.Rename(dir, free) == nil {
		p.mu.Lock()
		p.free = append(p.free, free)
		p.mu.Unlock()
		return
	}
	os.RemoveAll(dir)
}

// dropAllScratch removes the kept scratch folders (the worker stops).
func (h *host) dropAllScratch() {
	for d := h.scratch.take(); d != ""; d = h.scratch.take() {
		os.RemoveAll(d)
	}
}

func emptyOwnDir(dir string) bool {
	st, err := os.Lstat(dir)
	if err != nil || st.Mode() != os.ModeDir|0o700 {
		return false
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Getuid() {
		return false
	}
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return len(names) == 0 && errors.Is(err, io.EOF)
}

// command prepares the attempt's process: argv, the complete environment,
// cwd and its own process group. It returns a start-error exit code with
// its error.
//
// The assignment's env is the process's whole environment, plus the
// attempt's marker (HAUL_ATTEMPT_ID), less any HAUL_WORKER_SECRET: nothing
// of the taskhost's own
// environment leaks in, except PATH when the assignment sets none (so
// that plain command names resolve as they would in a shell). argv[0] is
// looked up in that PATH (relative PATH entries are taken from the
// attempt's cwd); a name with a '/' is used as is, relative to cwd.
func (h *host) command(a *taskhostv1.Assignment, marker string) (*exec.Cmd, int, error) {
	argv := a.GetArgv()
	if len(argv) == 0 || argv[0] == "" {
		return nil, ExitNotFound, errors.New("empty argv: no command to run")
	}
	for i, s := range argv {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, ExitCannotExecute, fmt.Errorf("argv[%d] contains a NUL byte", i)
		}
	}
	env, err := buildEnv(a.GetEnv(), os.Getenv("PATH"))
	if err != nil {
		return nil, ExitCannotExecute, err
	}
	// The attempt's marker, which the taskhost alone sets; never the
	// worker's own credential.
	env = slices.DeleteFunc(env, func(kv string) bool {
		return strings.HasPrefix(kv, AttemptIDEnv+"=") || strings.HasPrefix(kv, WorkerSecretEnv+"=")
	})
	env = append(env, marker)
	slices.Sort(env)
	dir := a.GetCwd()
	if dir != "" {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, ExitCannotExecute, fmt.Errorf("cwd: %w", err)
		}
		if !st.IsDir() {
			return nil, ExitCannotExecute, fmt.Errorf("cwd %q is not a directory", dir)
		}
	} else {
		// No cwd in the spec: the attempt's own empty folder of the
		// worker (the same on every backend; execute removes it).
		if dir, err = h.scratchDir(a); err != nil {
			return nil, ExitCannotExecute, fmt.Errorf("the attempt's working directory: %w", err)
		}
	}
	path, err := lookPath(argv[0], pathOf(env), dir)
	if err != nil {
		if a.GetCwd() == "" {
			os.RemoveAll(dir)
		}
		return nil, ExitNotFound, err
	}
	return &exec.Cmd{
		Path:        path,
		Args:        slices.Clone(argv),
		Env:         env,
		Dir:         dir,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}, 0, nil
}

// buildEnv turns the assignment's env into a sorted KEY=value list, adding
// the taskhost's PATH when env has none.
func buildEnv(m map[string]string, ownPATH string) ([]string, error) {
	env := make([]string, 0, len(m)+1)
	for k, v := range m {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("env: bad variable name %q", k)
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("env: %s contains a NUL byte", k)
		}
		env = append(env, k+"="+v)
	}
	if _, ok := m["PATH"]; !ok && ownPATH != "" {
		env = append(env, "PATH="+ownPATH)
	}
	slices.Sort(env)
	return env, nil
}

func pathOf(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			return v
		}
	}
	return ""
}

// lookPath finds name in the PATH list, as execvp would, but in the task's
// PATH rather than the taskhost's.
func lookPath(name, pathList, dir string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, d := range filepath.SplitList(pathList) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		if !filepath.IsAbs(p) {
			base := dir
			if base == "" {
				wd, err := os.Getwd()
				if err != nil {
					continue
				}
				base = wd
			}
			p = filepath.Join(base, p)
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("executable %q not found in PATH %q", name, pathList)
}
