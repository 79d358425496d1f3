// Package e2e tests haul end to end: the real haul binary, built once per
// test run, started as `haul up` or run as `haul run`, on SQLite and on a
// throwaway PostgreSQL server, with real worker processes.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/bearer"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/pgtest"
	"github.com/haul-dev/haul/internal/syncbuf"
)

var haulBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "haul-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	haulBin = filepath.Join(dir, "haul")
	// Built without -race: these tests measure the system's behaviour with
	// real processes; the race detector covers the packages' own tests.
	build := exec.Command("go", "build", "-o", haulBin, "github.com/haul-dev/haul/cmd/haul")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build haul:", err)
		os.Exit(1)
	}
	// haul query runs haul-query (cgo, DuckDB) found next to haul.
	build = exec.Command("go", "build", "-o", filepath.Join(dir, "haul-query"), "github.com/haul-dev/haul/cmd/haul-query")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build haul-query:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// result is what a haul command printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

// haul runs the haul CLI with env added to the test's environment. A
// command aimed at a server startUp started (HAUL_SERVER or --server) gets
// that server's admin token as HAUL_API_TOKEN, unless env sets
// HAUL_API_TOKEN itself (to "" to test the CLI's own discovery).
func haul(t testing.TB, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, haulBin, args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), env...)
	if tok := adminTokenFor(env, args); tok != "" {
		cmd.Env = append(cmd.Env, "HAUL_API_TOKEN="+tok)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("haul %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// adminTokens maps the URL of each server startUp started to its admin
// token.
var adminTokens sync.Map

// adminTokenFor returns the admin token of the server a command is aimed
// at, if startUp started it and env does not choose a token.
func adminTokenFor(env, args []string) string {
	url := ""
	for _, e := range env {
		if strings.HasPrefix(e, "HAUL_API_TOKEN=") {
			return ""
		}
		if v, ok := strings.CutPrefix(e, "HAUL_SERVER="); ok {
			url = v
		}
	}
	for i, a := range args {
		if a == "--server" && i+1 < len(args) {
			url = args[i+1]
		} else if v, ok := strings.CutPrefix(a, "--server="); ok {
			url = v
		}
	}
	if tok, ok := adminTokens.Load(strings.TrimRight(url, "/")); ok {
		return tok.(string)
	}
	return ""
}

// upServer is a `haul up` process.
type upServer struct {
	t      testing.TB
	addr   string
	data   string
	dbURL  string
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
	// token is the admin token the server wrote to <data>/admin-token.
	token string
	// https: the server serves TLS (--tls-cert).
	https bool
}

func startUp(t testing.TB, addr, data, dbURL string, extra ...string) *upServer {
	t.Helper()
	return startUpEnv(t, nil, addr, data, dbURL, extra...)
}

// startUpEnv is startUp with more environment for the server.
func startUpEnv(t testing.TB, env []string, addr, data, dbURL string, extra ...string) *upServer {
	t.Helper()
	s := &upServer{t: t, addr: addr, data: data, dbURL: dbURL, log: &syncBuffer{}, exited: make(chan struct{})}
	args := append([]string{"up", "--listen", addr, "--data", data, "--log-level", "warn"}, extra...)
	if dbURL != "" {
		args = append(args, "--database-url", dbURL)
	}
	s.cmd = exec.Command(haulBin, args...)
	s.cmd.Dir = repoRoot(t)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.url() + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				s.readAdminToken()
				return s
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("haul up exited: %s", s.log)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("haul up not ready after 30s: %s", s.log)
		}
	}
}

func (s *upServer) url() string {
	if s.https {
		return "https://" + s.addr
	}
	return "http://" + s.addr
}

// readAdminToken reads the token the server wrote (it is written before
// the server answers) and lets haul commands aimed at it use it.
func (s *upServer) readAdminToken() {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.data, "admin-token"))
	if err != nil {
		s.t.Fatalf("haul up wrote no admin token: %v", err)
	}
	s.token = strings.TrimSpace(string(b))
	adminTokens.Store(s.url(), s.token)
}

// httpClient is an HTTP client that authenticates as the server's admin.
func (s *upServer) httpClient() *http.Client {
	return bearer.Client(nil, s.token)
}

func (s *upServer) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *upServer) kill9() {
	s.cmd.Process.Kill()
	<-s.exited
}

func (s *upServer) client() apiv1connect.JobServiceClient {
	return apiv1connect.NewJobServiceClient(s.httpClient(), s.url())
}

// waitJob polls a job until cond holds or the timeout passes.
func waitJob(t testing.TB, c apiv1connect.JobServiceClient, id string, timeout time.Duration, cond func(*apiv1.Job) bool) *apiv1.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.GetJob(context.Background(), connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
		var last *apiv1.Job
		if err == nil {
			last = resp.Msg.Job
			if cond(last) {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: condition not met after %s (last: %v, err %v)", id, timeout, last, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeSpec(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "job.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunHelloDAGEmbedded(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	// No server answers at this address, so haul run starts an embedded one.
	r := haul(t, []string{"HAUL_SERVER="}, "run", "examples/hello-dag.yaml", "--data", data, "--server", "http://"+freePort(t))
	if r.code == 0 {
		t.Fatalf("--server set explicitly to a dead address must fail, got success: %s", r.stdout)
	}
	r = haul(t, []string{"HAUL_SERVER=", "HAUL_DATA=" + data}, "run", "examples/hello-dag.yaml")
	if r.code != 0 {
		t.Fatalf("haul run hello-dag: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) < 2 || !strings.Contains(lines[1], "succeeded") || !strings.Contains(lines[1], "102 succeeded") {
		t.Fatalf("want the job ID then a summary of 102 succeeded tasks, got:\n%s", r.stdout)
	}
	if strings.ContainsAny(lines[0], " \t") {
		t.Fatalf("first line must be the job ID, got %q", lines[0])
	}
}

func TestFailedElementAndRepro(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	r := haul(t, env, "run", "examples/fail.yaml")
	if r.code == 0 {
		t.Fatalf("haul run fail.yaml must exit non-zero:\n%s\n%s", r.stdout, r.stderr)
	}
	id := strings.SplitN(r.stdout, "\n", 2)[0]

	r = haul(t, env, "task", "list", id, "--state", "failed", "-o", "json")
	if r.code != 0 {
		t.Fatalf("task list: %d %s", r.code, r.stderr)
	}
	var failed []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &failed); err != nil {
		t.Fatalf("task list -o json: %v\n%s", err, r.stdout)
	}
	if len(failed) != 1 {
		t.Fatalf("want exactly one failed task, got %d: %s", len(failed), r.stdout)
	}
	key := failed[0]["key"].(string)
	if failed[0]["state"] != "failed" || failed[0]["attempts"] == nil {
		t.Fatalf("failed task JSON lacks state/attempts: %v", failed[0])
	}

	r = haul(t, env, "task", "list", id, "--state", "upstream_failed", "-o", "json")
	var up []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &up); err != nil || len(up) == 0 {
		t.Fatalf("the task after the foreach must be upstream_failed: %v %s", err, r.stdout)
	}

	r = haul(t, env, "task", "logs", id, key)
	if r.code != 0 || r.stdout == "" {
		t.Fatalf("task logs %s: exit %d, output %q, stderr %s", key, r.code, r.stdout, r.stderr)
	}
	logOut := r.stdout

	r = haul(t, env, "task", "repro", id, key)
	if r.code != 0 {
		t.Fatalf("task repro: %d %s", r.code, r.stderr)
	}
	sh := exec.Command("sh", "-c", r.stdout)
	sh.Dir = t.TempDir()
	out, err := sh.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() == 0 {
		t.Fatalf("repro command must fail like the task did; err %v, output %s\ncommand:\n%s", err, out, r.stdout)
	}
	if string(out) != logOut {
		t.Fatalf("repro output differs from the task's log:\nrepro: %q\nlog:   %q", out, logOut)
	}
}

func TestHundredThousandTasks(t *testing.T) {
	t.Parallel()
	for _, st := range []string{"sqlite", "postgres"} {
		t.Run(st, func(t *testing.T) {
			t.Parallel()
			dbURL := ""
			if st == "postgres" {
				dbURL = pgtest.Start(t)
			}
			s := startUp(t, freePort(t), t.TempDir(), dbURL)
			spec := writeSpec(t, `
name: hundred-thousand
tasks:
  - key: "t-{i}"
    foreach: {range: [0, 100000]}
    command: [/bin/true]
`)
			start := time.Now()
			r := haul(t, []string{"HAUL_SERVER=" + s.url()}, "run", spec)
			if r.code != 0 {
				t.Fatalf("100k-task job on %s: exit %d\n%s\n%s\nserver: %s", st, r.code, r.stdout, r.stderr, s.log)
			}
			if !strings.Contains(r.stdout, "100000 succeeded") {
				t.Fatalf("want 100000 succeeded: %s", r.stdout)
			}
			t.Logf("%s: 100000 tasks in %s: %s", st, time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stdout))
		})
	}
}

// TestCrashRecovery kills the server with SIGKILL while a job runs, restarts
// it on the same data, and checks every task ended exactly once: succeeded,
// with exactly one succeeded attempt, and attempts that were running when the
// server died recorded as lost and retried.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	for _, st := range []string{"sqlite", "postgres"} {
		t.Run(st, func(t *testing.T) {
			t.Parallel()
			dbURL := ""
			if st == "postgres" {
				dbURL = pgtest.Start(t)
			}
			addr, data := freePort(t), t.TempDir()
			s := startUp(t, addr, data, dbURL)
			const n = 300
			spec := writeSpec(t, fmt.Sprintf(`
name: crash
tasks:
  - key: first
    command: [sh, -c, "echo first"]
  - key: "w-{i}"
    foreach: {range: [0, %d]}
    command: [sh, -c, "sleep 0.05; echo done {i}"]
    after: [first]
  - key: last
    command: [sh, -c, "echo last"]
    after: ["w-*"]
`, n))
			r := haul(t, []string{"HAUL_SERVER=" + s.url()}, "job", "submit", spec)
			if r.code != 0 {
				t.Fatalf("submit: %s", r.stderr)
			}
			id := strings.TrimSpace(r.stdout)
			c := s.client()
			waitJob(t, c, id, 2*time.Minute, func(j *apiv1.Job) bool {
				return j.Counts.GetSucceeded() >= 40 && j.Counts.GetRunning() > 0
			})
			s.kill9()

			s2 := startUp(t, addr, data, dbURL)
			c = s2.client()
			j := waitJob(t, c, id, 5*time.Minute, jobEnded)
			if j.State != "succeeded" || j.Counts.GetSucceeded() != n+2 {
				t.Fatalf("after restart: job %s with counts %v, want succeeded with %d tasks", j.State, j.Counts, n+2)
			}
			lost := checkOnce(t, c, id)
			if lost == 0 {
				t.Errorf("no attempt was recorded lost: the kill did not interrupt running tasks")
			}
			t.Logf("%s: %d attempts lost by the crash and retried", st, lost)
		})
	}
}

// checkOnce checks that every task of a finished job succeeded with exactly
// one succeeded attempt and nothing left running, and that an attempt
// retried after a runner restart ran on a worker of another ID than the
// earlier runner's (worker IDs are never reused across restarts). It returns how many attempts
// were lost.
func checkOnce(t testing.TB, c apiv1connect.JobServiceClient, id string) (lost int) {
	t.Helper()
	var token string
	for {
		resp, err := c.ListTasks(context.Background(), connect.NewRequest(&apiv1.ListTasksRequest{JobId: id, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range resp.Msg.Tasks {
			if task.State != "succeeded" {
				t.Errorf("task %s ended %s", task.Key, task.State)
			}
			if task.Attempts == 1 {
				continue
			}
			g, err := c.GetTask(context.Background(), connect.NewRequest(&apiv1.GetTaskRequest{JobId: id, Key: task.Key}))
			if err != nil {
				t.Fatal(err)
			}
			succ := 0
			lostOn := map[string]bool{}
			for _, a := range g.Msg.Attempts {
				if lostOn[a.WorkerId] && a.State == "succeeded" {
					t.Errorf("task %s: attempt %d ran on worker %s, which lost an earlier attempt: a worker ID was reused", task.Key, a.Number, a.WorkerId)
				}
				switch a.State {
				case "succeeded":
					succ++
				case "lost":
					lost++
					if strings.Contains(a.Message, "runner restarted") {
						lostOn[a.WorkerId] = true // a worker of the runner before
					}
				case "running":
					t.Errorf("task %s: attempt %d still running after the job ended", task.Key, a.Number)
				}
			}
			if succ != 1 {
				t.Errorf("task %s: %d succeeded attempts, want exactly 1", task.Key, succ)
			}
		}
		if token = resp.Msg.NextPageToken; token == "" {
			return lost
		}
	}
}

// syncBuffer collects output written while the test reads it.
type syncBuffer = syncbuf.Buffer
