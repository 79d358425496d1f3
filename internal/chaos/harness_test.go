package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/bearer"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/pgtest"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/postgres"
)

// haulBin is the haul binary TestMain builds for the processes the test
// starts.
var haulBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "haul-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	haulBin = filepath.Join(dir, "haul")
	// Built without -race, as internal/e2e does: the processes are the
	// system under test; the race detector covers the packages' own tests
	// and this harness.
	build := exec.Command("go", "build", "-o", haulBin, "github.com/haul-dev/haul/cmd/haul")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build haul:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// readyTimeout bounds a process's start, until its /healthz answers 200.
const readyTimeout = time.Minute

// proc is one haul process (a gateway or a runner) that the test starts,
// kills with SIGKILL and starts again with the same arguments. Its output
// goes to a log file that lives across restarts.
type proc struct {
	name    string
	addr    string // listen address, host:port
	args    []string
	env     []string
	logPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the current process has been reaped
	killing bool          // the test is killing the current process
	// died records exits the test did not cause: haul failures.
	died []string
}

func (p *proc) url() string { return "http://" + p.addr }

// start runs the process and waits until its /healthz answers 200.
func (p *proc) start(ctx context.Context) error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== chaos: start %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(haulBin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that a kill takes the process and nothing
	// else (local workers have process groups of their own and outlive
	// their runner, as they would on a real machine); killed with the
	// test binary should that die.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.exited, p.killing = cmd, exited, false
	p.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		if !p.killing {
			p.died = append(p.died, fmt.Sprintf("%s exited by itself at %s: %v", p.name, time.Now().Format(time.TimeOnly), err))
		}
		p.mu.Unlock()
		close(exited)
	}()
	return waitHealthy(ctx, p.url(), exited, p.name)
}

// waitHealthy polls url's /healthz until it answers 200, the process
// exits, or readyTimeout passes.
func waitHealthy(ctx context.Context, url string, exited <-chan struct{}, name string) error {
	cl := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	last := ""
	for {
		resp, err := cl.Get(url + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %v (last: %s)", name, readyTimeout, last)
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited while starting (last health: %s)", name, last)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL to the process's group and waits until it is reaped.
// It is a no-op when the process is not running.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	if cmd == nil {
		p.mu.Unlock()
		return
	}
	p.killing = true
	p.mu.Unlock()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// deaths returns the exits the test did not cause.
func (p *proc) deaths() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.died...)
}

// rrProxy is a TCP round-robin balancer in front of the gateways, as a
// load balancer would be: each connection goes to the next gateway that
// accepts it. Runners give it to workers as their locator and to tasks as
// HAUL_SERVER, so a dead gateway breaks neither.
type rrProxy struct {
	ln      net.Listener
	targets []string

	mu    sync.Mutex
	next  int
	conns map[net.Conn]struct{}
	done  bool
}

func startProxy(t *testing.T, targets []string) *rrProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &rrProxy{ln: ln, targets: targets, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *rrProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *rrProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

// track records an open connection so that close can cut it; it reports
// false once the proxy is closed.
func (p *rrProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *rrProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *rrProxy) forward(c net.Conn) {
	defer c.Close()
	if !p.track(c) {
		return
	}
	defer p.untrack(c)
	p.mu.Lock()
	first := p.next
	p.next = (p.next + 1) % len(p.targets)
	p.mu.Unlock()
	var up net.Conn
	for i := range p.targets {
		u, err := net.DialTimeout("tcp", p.targets[(first+i)%len(p.targets)], time.Second)
		if err == nil {
			up = u
			break
		}
	}
	if up == nil {
		return // no gateway accepts: the client sees its connection cut
	}
	defer up.Close()
	if !p.track(up) {
		return
	}
	defer p.untrack(up)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
}

func (p *rrProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.done = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// apiClient returns a JobService client of its own (its own connections)
// for the API at url.
func apiClient(url, token string) apiv1connect.JobServiceClient {
	hc := bearer.Client(&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}, token)
	return apiv1connect.NewJobServiceClient(hc, url)
}

// harness is the deployment under test: PostgreSQL, two gateways behind a
// round-robin proxy, three runners, all sharing one data directory.
type harness struct {
	t        *testing.T
	pgDir    string
	pgMu     sync.Mutex
	pg       *pgtest.Server
	data     string // the --data directory of every process
	gates    string // where the test drops the gate files the jobs wait for
	gateways []*proc
	runners  []*proc
	proxy    *rrProxy
	token    string
	store    *postgres.Store // the test's own view of the leases
	ttl      time.Duration   // the runners' --lease-ttl
}

func (h *harness) leaseTTL() time.Duration { return h.ttl }

// setup starts the deployment and registers its teardown, which prints
// the processes' logs when the test failed.
func setup(t *testing.T, leaseTTL time.Duration, maxWorkers int) *harness {
	t.Helper()
	ctx := t.Context()
	h := &harness{t: t, data: t.TempDir(), gates: t.TempDir(), ttl: leaseTTL}
	logs := t.TempDir()
	pgDir, err := pgtest.MkdirTemp()
	if err != nil {
		t.Fatal(err)
	}
	h.pgDir = pgDir
	t.Cleanup(func() { os.RemoveAll(pgDir) })
	// Registered before anything starts, so it runs after every process
	// is stopped, and before the temporary directories go.
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append(append([]*proc(nil), h.gateways...), h.runners...) {
				t.Logf("--- log of %s (%s), last lines:\n%s", p.name, p.logPath, tailFile(p.logPath, 150))
			}
			t.Logf("--- PostgreSQL log, last lines:\n%s", tailFile(filepath.Join(pgDir, "postgres.log"), 60))
		}
	})
	pg, err := pgtest.StartServer(ctx, pgDir)
	if err != nil {
		t.Fatal(err)
	}
	h.pg = pg
	t.Cleanup(func() {
		h.pgMu.Lock()
		defer h.pgMu.Unlock()
		h.pg.Stop()
	})
	dbURL := pg.URL()

	env := processEnv()
	for i := range 2 {
		addr := freePort(t)
		h.gateways = append(h.gateways, &proc{
			name: fmt.Sprintf("gateway-%d", i), addr: addr, env: env,
			logPath: filepath.Join(logs, fmt.Sprintf("gateway-%d.log", i)),
			args:    []string{"gateway", "--listen", addr, "--data", h.data, "--database-url", dbURL, "--log-level", "info"},
		})
	}
	var targets []string
	for _, g := range h.gateways {
		targets = append(targets, g.addr)
	}
	h.proxy = startProxy(t, targets)
	for i := range 3 {
		addr := freePort(t)
		h.runners = append(h.runners, &proc{
			name: fmt.Sprintf("runner-%d", i), addr: addr, env: env,
			logPath: filepath.Join(logs, fmt.Sprintf("runner-%d.log", i)),
			args: []string{"runner", "--listen", addr, "--advertise", "http://" + addr,
				"--locator", h.proxy.url(), "--data", h.data, "--database-url", dbURL,
				"--lease-ttl", leaseTTL.String(), "--max-workers", strconv.Itoa(maxWorkers),
				"--log-level", "info"},
		})
	}
	t.Cleanup(h.teardown)

	// The first gateway makes the deployment's keys and the admin token;
	// the others start once it has.
	if err := h.gateways[0].start(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(h.data, "admin-token"))
	if err != nil {
		t.Fatalf("the first gateway wrote no admin token: %v", err)
	}
	h.token = strings.TrimSpace(string(tok))
	for _, p := range append(h.gateways[1:], h.runners...) {
		if err := p.start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st, err := postgres.Open(ctx, dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.store = st
	return h
}

// teardown kills every process, then every worker the runners left.
func (h *harness) teardown() {
	for _, p := range append(append([]*proc(nil), h.runners...), h.gateways...) {
		p.kill()
	}
	if h.store != nil {
		h.store.Close()
	}
	killWorkersUnder(h.data)
}

// killWorkersUnder kills, by process group, every process whose command
// line names dir: the local workers the runners started (their spool is
// under the data directory), which outlive a killed runner.
func killWorkersUnder(dir string) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), dir) {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		} else {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// processEnv is the environment of every haul process: the test's, less
// anything that would aim haul elsewhere, with local workers outside
// cgroups.
func processEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HAUL_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HAUL_NO_CGROUPS=1")
}

// restartPostgres stops PostgreSQL (immediate shutdown: crash recovery at
// the next start), waits pause and starts it again on the same directory.
func (h *harness) restartPostgres(ctx context.Context, pause time.Duration) error {
	h.pgMu.Lock()
	defer h.pgMu.Unlock()
	if err := h.pg.Stop(); err != nil {
		return fmt.Errorf("stop PostgreSQL: %w", err)
	}
	time.Sleep(pause)
	pg, err := pgtest.StartServer(ctx, h.pgDir)
	if err != nil {
		return fmt.Errorf("start PostgreSQL again: %w", err)
	}
	h.pg = pg
	return nil
}

// deaths lists the processes' exits the test did not cause.
func (h *harness) deaths() []string {
	var out []string
	for _, p := range append(append([]*proc(nil), h.gateways...), h.runners...) {
		out = append(out, p.deaths()...)
	}
	return out
}

// leaseView is one reading of the runner group's leases.
type leaseView struct {
	at      time.Time
	shards  map[string]store.Lease // by lease name
	members map[string]store.Lease // by holder
}

func (h *harness) leases(ctx context.Context) (leaseView, error) {
	v := leaseView{at: time.Now(), shards: map[string]store.Lease{}, members: map[string]store.Lease{}}
	sh, err := h.store.ListLeases(ctx, store.ShardLeasePrefix)
	if err != nil {
		return v, err
	}
	mem, err := h.store.ListLeases(ctx, store.MemberLeasePrefix)
	if err != nil {
		return v, err
	}
	for _, l := range sh {
		v.shards[l.Name] = l
	}
	for _, l := range mem {
		v.members[l.Holder] = l
	}
	return v, nil
}

// holderAt returns the holder of the live membership lease advertised at
// url: the one that expires last, since a runner killed before on the
// same address may still have one.
func (v leaseView) holderAt(url string) (string, bool) {
	best, found := store.Lease{}, false
	for _, l := range v.members {
		if l.Address == url && l.ExpiresAt.After(v.at) && (!found || l.ExpiresAt.After(best.ExpiresAt)) {
			best, found = l, true
		}
	}
	return best.Holder, found
}

// heldBy returns the shard leases holder holds, unexpired.
func (v leaseView) heldBy(holder string) []string {
	var out []string
	for name, l := range v.shards {
		if l.Holder == holder && l.ExpiresAt.After(v.at) {
			out = append(out, name)
		}
	}
	return out
}

// liveHeld reports whether the shard lease name is held, unexpired, by a
// runner other than dead whose membership lease is unexpired.
func (v leaseView) liveHeld(name, dead string) bool {
	l, ok := v.shards[name]
	if !ok || l.Holder == dead || !l.ExpiresAt.After(v.at) {
		return false
	}
	m, ok := v.members[l.Holder]
	return ok && m.ExpiresAt.After(v.at)
}

// waitShards polls the leases until every shard in names is held by a live
// runner other than dead, and returns when that was first seen.
func (h *harness) waitShards(ctx context.Context, names []string, dead string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		v, err := h.leases(ctx)
		if err == nil {
			ok := true
			for _, n := range names {
				if !v.liveHeld(n, dead) {
					ok = false
					break
				}
			}
			if ok {
				return v.at, nil
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("shards %v not all held by live runners after %v (last store error: %v)", names, timeout, lastErr)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// allShards lists every shard lease name.
func allShards() []string {
	out := make([]string, store.NumShards)
	for i := range out {
		out[i] = store.ShardLease(i)
	}
	return out
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// tailFile returns the last n lines of a file, or why it cannot.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 2*n {
			lines = lines[len(lines)-n:]
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.EOF) {
		lines = append(lines, "(read: "+err.Error()+")")
	}
	return strings.Join(lines, "\n")
}
