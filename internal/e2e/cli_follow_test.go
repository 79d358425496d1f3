package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/auth/oidctest"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// haulIn runs the haul CLI with env added and stdin as its input; no
// admin token is added (env chooses the credential).
func haulIn(t testing.TB, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, haulBin, args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb syncBuffer
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

// started is a haul command running in the background.
type started struct {
	cmd         *exec.Cmd
	out, errb   *syncBuffer
	done        chan struct{}
	code        int
	description string
}

func haulStart(t testing.TB, env []string, args ...string) *started {
	t.Helper()
	cmd := exec.Command(haulBin, args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), env...)
	if tok := adminTokenFor(env, args); tok != "" {
		cmd.Env = append(cmd.Env, "HAUL_API_TOKEN="+tok)
	}
	s := &started{cmd: cmd, out: &syncBuffer{}, errb: &syncBuffer{}, done: make(chan struct{}), description: strings.Join(args, " ")}
	cmd.Stdout, cmd.Stderr = s.out, s.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			s.code = ee.ExitCode()
		} else if err != nil {
			s.code = -1
		}
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			cmd.Process.Kill()
			<-s.done
		}
	})
	return s
}

// wait waits for the command to exit and returns how.
func (s *started) wait(t testing.TB, timeout time.Duration) result {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.cmd.Process.Kill()
		<-s.done
		t.Fatalf("haul %s did not end in %s\nstdout: %s\nstderr: %s", s.description, timeout, s.out, s.errb)
	}
	return result{stdout: s.out.String(), stderr: s.errb.String(), code: s.code}
}

// waitFor waits until the command's stdout contains want.
func (s *started) waitFor(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(s.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("haul %s: no %q after %s\nstdout: %s\nstderr: %s", s.description, want, timeout, s.out, s.errb)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFollowAcrossRetries: `haul task logs -f` started before a task with
// retries: 2 runs follows its three attempts (failed, failed, succeeded),
// announcing each later attempt on stderr, and exits 0 saying it
// succeeded. A task that fails for good ends it with exit 1.
func TestFollowAcrossRetries(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	count := filepath.Join(t.TempDir(), "count")
	id := submit(t, s, fmt.Sprintf(`
name: retry-follow
tasks:
  - key: flaky
    retries: 2
    command: [sh, -c, "n=$(cat %[1]s 2>/dev/null || echo 0); n=$((n+1)); echo $n > %[1]s; echo attempt $n begins; sleep 0.5; echo attempt $n ends; [ $n -ge 3 ]"]
  - key: broken
    retries: 1
    command: [sh, -c, "echo broken runs; sleep 1; exit 7"]
`, count))
	broken := haulStart(t, env, "task", "logs", id, "broken", "-f")
	r := haul(t, env, "task", "logs", id, "flaky", "-f")
	if r.code != 0 {
		t.Fatalf("logs -f: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for n := 1; n <= 3; n++ {
		for _, w := range []string{"begins", "ends"} {
			if line := fmt.Sprintf("attempt %d %s\n", n, w); !strings.Contains(r.stdout, line) {
				t.Errorf("stdout lacks %q:\n%s", line, r.stdout)
			}
		}
	}
	if !regexp.MustCompile(`--- attempt 2 \(tier [^)]+\) ---\n(.|\n)*--- attempt 3 \(tier [^)]+\) ---\n`).MatchString(r.stderr) ||
		!strings.Contains(r.stderr, "task flaky succeeded after 3 attempts") {
		t.Errorf("stderr: %s\nwant the attempt separators and why it stopped", r.stderr)
	}
	r = broken.wait(t, time.Minute)
	if r.code != 1 || strings.Count(r.stdout, "broken runs\n") != 2 || !strings.Contains(r.stderr, "task broken failed after 2 attempts (exit code 7)") {
		t.Fatalf("logs -f of a failing task: exit %d\nstdout: %s\nstderr: %s\nwant both attempts' output and exit 1 saying it failed", r.code, r.stdout, r.stderr)
	}
	// Without -f: the latest attempt only, exit 0 (as before).
	if r := haul(t, env, "task", "logs", id, "flaky"); r.code != 0 || r.stdout != "attempt 3 begins\nattempt 3 ends\n" {
		t.Fatalf("logs without -f: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
}

// TestFollowServerLost: when the server is killed mid-follow, `logs -f`
// tries again for a while, then exits 1 saying it lost the server.
func TestFollowServerLost(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	id := submit(t, s, "name: long\ntasks:\n  - key: long\n    command: [sh, -c, \"echo started; sleep 120\"]\n")
	f := haulStart(t, env, "task", "logs", id, "long", "-f")
	f.waitFor(t, "started\n", 60*time.Second)
	killedAt := time.Now()
	s.kill9()
	r := f.wait(t, 60*time.Second)
	if r.code != 1 || !strings.Contains(r.stderr, "lost the server") {
		t.Fatalf("logs -f after the server died: exit %d\nstderr: %s\nwant exit 1, lost the server", r.code, r.stderr)
	}
	if waited := time.Since(killedAt); waited < 9*time.Second {
		t.Fatalf("gave up %s after the server died; want about 10s of retries", waited)
	}
}

// TestJobLogs: `haul job logs` prefixes each line with its task's key,
// follows the running tasks and shows the failed ones' last lines, and
// exits 1 when the job failed.
func TestJobLogs(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	id := submit(t, s, `
name: job-logs
tasks:
  - key: w-{i}
    foreach: {range: [1, 4]}
    command: [sh, -c, "echo w-{i} one; sleep 1; printf 'w-{i} two\nw-{i} three'"]
  - key: bad
    command: [sh, -c, "for i in 1 2 3 4 5; do echo bad line $i; done; exit 2"]
`)
	r := haul(t, env, "job", "logs", id)
	if r.code != 1 || !strings.Contains(r.stderr, "job "+id+" failed") {
		t.Fatalf("job logs: exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and how the job ended", r.code, r.stdout, r.stderr)
	}
	for _, k := range []string{"w-1", "w-2", "w-3"} {
		for _, l := range []string{"one", "two", "three"} {
			if want := fmt.Sprintf("%s | %s %s\n", k, k, l); !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q", want)
			}
		}
	}
	if !strings.Contains(r.stdout, "bad | bad line 5\n") {
		t.Errorf("stdout lacks the failed task's last line:\n%s", r.stdout)
	}
	// --max 1: one task followed at a time (the runner may run them one
	// after another on one worker, so that more than one is not
	// guaranteed to run at once), every one's output comes, exit 0 as the
	// job succeeded.
	many := submit(t, s, `
name: many
tasks:
  - key: m-{i}
    foreach: {range: [0, 3]}
    command: [sh, -c, "echo m-{i} starts; sleep 1; echo m-{i} ends"]
`)
	r = haul(t, env, "job", "logs", many, "--max", "1")
	if r.code != 0 || !strings.Contains(r.stderr, "job "+many+" succeeded") {
		t.Fatalf("job logs --max 1: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for i := 0; i < 3; i++ {
		if want := fmt.Sprintf("m-%[1]d | m-%[1]d starts\nm-%[1]d | m-%[1]d ends\n", i); !strings.Contains(r.stdout, want) {
			t.Errorf("job logs --max 1: stdout lacks task m-%d:\n%s", i, r.stdout)
		}
	}

	// Afterwards, failed only with --tail 2: the last two lines of bad.
	r = haul(t, env, "job", "logs", id, "--state", "failed", "--tail", "2")
	if r.code != 1 || r.stdout != "bad | bad line 4\nbad | bad line 5\n" {
		t.Fatalf("job logs --state failed --tail 2: exit %d\nstdout: %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

var attemptDir = regexp.MustCompile(`^(/.*)/workers/[^/]+/spool/attempts/0\.1\n$`)

// TestEmbeddedReadsAndDefaultCwd: after `haul run` (embedded) a job that
// fails, its own hint works with no server: read commands read the data
// directory and say so; changes are refused, saying how to start a
// server. A task with no cwd runs in its attempt's own folder of the
// worker, in embedded and in server mode alike. HAUL_SERVER naming a dead
// address makes haul run say how to run embedded.
func TestEmbeddedReadsAndDefaultCwd(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	env := []string{"HAUL_SERVER=", "HAUL_DATA=" + data, "HAUL_API_TOKEN=", "XDG_CONFIG_HOME=" + t.TempDir()}
	spec := writeSpec(t, `
name: embedded-fail
tasks:
  - key: where
    command: [sh, -c, "pwd; ls -A | wc -l"]
  - key: work-7
    command: [sh, -c, "echo about to fail; exit 4"]
`)
	r := haul(t, env, "run", spec)
	if r.code != 1 {
		t.Fatalf("haul run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	id := strings.SplitN(r.stdout, "\n", 2)[0]
	hint := "haul task logs " + id + " work-7"
	if !strings.Contains(r.stderr, hint) {
		t.Fatalf("haul run's stderr lacks the hint %q:\n%s", hint, r.stderr)
	}
	note := "(no server answered; read from " + data + " directly)"
	r = haul(t, env, "task", "logs", id, "work-7")
	if r.code != 0 || r.stdout != "about to fail\n" || !strings.Contains(r.stderr, note) {
		t.Fatalf("the hint with no server: exit %d\nstdout: %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"job", "get", id}, {"job", "list"}, {"task", "list", id}, {"task", "get", id, "work-7"}} {
		if r := haul(t, env, args...); r.code != 0 || !strings.Contains(r.stdout, id) && args[0] != "task" || !strings.Contains(r.stderr, note) {
			t.Errorf("haul %s with no server: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	if r := haul(t, env, "job", "cancel", id); r.code == 0 || !strings.Contains(r.stderr, "no server is running; start one with `haul up --data "+data+"`") {
		t.Errorf("cancel with no server: exit %d\nstderr: %s", r.code, r.stderr)
	}
	// The default working directory, embedded: the attempt's own empty
	// folder under the worker's, in the data directory.
	r = haul(t, env, "task", "logs", id, "where")
	m := attemptDir.FindStringSubmatch(strings.SplitN(r.stdout, "\n", 2)[0] + "\n")
	if r.code != 0 || m == nil || !strings.HasSuffix(r.stdout, "\n0\n") {
		t.Fatalf("embedded task's cwd: %q (exit %d, %s); want <data>/workers/<id>/spool/attempts/0.1, empty", r.stdout, r.code, r.stderr)
	}
	if real, _ := filepath.EvalSymlinks(data); m[1] != data && m[1] != real {
		t.Fatalf("embedded task's cwd %s is not under the data directory %s", r.stdout, data)
	}

	// While haul run's embedded server runs, read commands with no server
	// chosen find it (through the data directory) and follow live.
	ldata := t.TempDir()
	lenv := []string{"HAUL_SERVER=", "HAUL_DATA=" + ldata, "HAUL_API_TOKEN=", "XDG_CONFIG_HOME=" + t.TempDir()}
	live := haulStart(t, lenv, "run", writeSpec(t, "name: live\ntasks:\n  - key: slow\n    command: [sh, -c, \"echo live one; sleep 2; echo live two\"]\n"))
	live.waitFor(t, "\n", time.Minute)
	lid := strings.SplitN(live.out.String(), "\n", 2)[0]
	r = haul(t, lenv, "task", "logs", lid, "slow", "-f")
	if r.code != 0 || r.stdout != "live one\nlive two\n" || !strings.Contains(r.stderr, "(using the haul server at http://127.0.0.1:") || !strings.Contains(r.stderr, "task slow succeeded after 1 attempt") {
		t.Fatalf("logs -f during haul run: exit %d\nstdout: %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := live.wait(t, time.Minute); r.code != 0 {
		t.Fatalf("haul run live: %d %s", r.code, r.stderr)
	}

	// The same in server mode.
	sdata := t.TempDir()
	s := startUp(t, freePort(t), sdata, "")
	sid := submit(t, s, "name: where\ntasks:\n  - key: where\n    command: [sh, -c, \"pwd; ls -A | wc -l\"]\n")
	waitJob(t, s.client(), sid, time.Minute, func(j *apiv1.Job) bool { return j.State == "succeeded" })
	r = haul(t, []string{"HAUL_SERVER=" + s.url()}, "task", "logs", sid, "where")
	m = attemptDir.FindStringSubmatch(strings.SplitN(r.stdout, "\n", 2)[0] + "\n")
	if r.code != 0 || m == nil || !strings.HasSuffix(r.stdout, "\n0\n") {
		t.Fatalf("server task's cwd: %q (exit %d, %s)", r.stdout, r.code, r.stderr)
	}
	if real, _ := filepath.EvalSymlinks(sdata); m[1] != sdata && m[1] != real {
		t.Fatalf("server task's cwd %s is not under the server's data directory %s", r.stdout, sdata)
	}

	// HAUL_SERVER at a dead address: haul run says how to run embedded.
	dead := "http://" + freePort(t)
	r = haul(t, []string{"HAUL_SERVER=" + dead, "HAUL_DATA=" + data}, "run", spec)
	if r.code == 0 || !strings.Contains(r.stderr, "no haul server answers at "+dead+" (chosen by HAUL_SERVER)") ||
		!strings.Contains(r.stderr, "unset HAUL_SERVER") || !strings.Contains(r.stderr, "--embedded") {
		t.Fatalf("haul run with a dead HAUL_SERVER: exit %d\nstderr: %s", r.code, r.stderr)
	}
	if r := haul(t, []string{"HAUL_SERVER=" + dead, "HAUL_DATA=" + data}, "run", "--embedded", spec); r.code != 1 || !strings.Contains(r.stdout, "1 failed") {
		t.Fatalf("haul run --embedded with a dead HAUL_SERVER: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestProfilesAndLogin: two profiles for two servers, tokens stored by
// haul login from stdin; --profile and HAUL_PROFILE choose, the
// environment wins, a profile's team is job list's namespace, a profile's
// token is not sent to another server, and a config file others may read
// is refused while it holds a token.
func TestProfilesAndLogin(t *testing.T) {
	t.Parallel()
	s1 := startUp(t, freePort(t), t.TempDir(), "")
	s2 := startUp(t, freePort(t), t.TempDir(), "")
	cfg := t.TempDir()
	// No token from the environment or a local server's admin-token file.
	env := []string{"XDG_CONFIG_HOME=" + cfg, "HAUL_SERVER=", "HAUL_API_TOKEN=", "HAUL_TOKEN=", "HAUL_PROFILE=", "HAUL_DATA=" + t.TempDir()}
	run := func(stdin string, extra []string, args ...string) result {
		return haulIn(t, append(append([]string(nil), env...), extra...), stdin, args...)
	}
	if r := run("", nil, "profile", "set", "one", "--server", s1.url(), "--team", "t1"); r.code != 0 {
		t.Fatalf("profile set one: %d %s", r.code, r.stderr)
	}
	if r := run("", nil, "profile", "set", "two", "--server", s2.url()); r.code != 0 {
		t.Fatalf("profile set two: %d %s", r.code, r.stderr)
	}
	// No token yet: the server refuses.
	if r := run("", nil, "job", "list"); r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "unauthenticated") {
		t.Fatalf("job list with no token: %d %s", r.code, r.stderr)
	}
	if r := run("not-a-token\n", nil, "login", "--token-stdin"); r.code == 0 || !strings.Contains(r.stderr, "refuses") {
		t.Fatalf("login with a bad token: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r := run(s1.token+"\n", nil, "login", "--token-stdin")
	if r.code != 0 || !strings.Contains(r.stdout, "logged in to "+s1.url()) || !strings.Contains(r.stdout, "profile one") || strings.Contains(r.stdout+r.stderr, s1.token) {
		t.Fatalf("login (current profile one): %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := run(s2.token+"\n", nil, "login", "--profile", "two"); r.code != 0 || !strings.Contains(r.stdout, "logged in to "+s2.url()) {
		t.Fatalf("login --profile two (stdin not a terminal): %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	path := filepath.Join(cfg, "haul", "config.yaml")
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v, mode %v; want 0600", err, st.Mode())
	}

	j1 := submit(t, s1, "name: in-t1\nnamespace: t1\ntasks:\n  - key: a\n    command: [\"true\"]\n")
	other := submit(t, s1, "name: elsewhere\nnamespace: t9\ntasks:\n  - key: a\n    command: [\"true\"]\n")
	j2 := submit(t, s2, "name: on-two\ntasks:\n  - key: a\n    command: [\"true\"]\n")

	// The current profile (one): its server, its token, its team.
	if r := run("", nil, "job", "get", j1); r.code != 0 || !strings.Contains(r.stdout, j1) {
		t.Fatalf("job get with profile one: %d %s", r.code, r.stderr)
	}
	if r := run("", nil, "job", "list"); r.code != 0 || !strings.Contains(r.stdout, j1) || strings.Contains(r.stdout, other) {
		t.Fatalf("job list with profile one (team t1): %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := run("", nil, "job", "list", "-n", "t9"); r.code != 0 || !strings.Contains(r.stdout, other) {
		t.Fatalf("job list -n t9: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// --profile and HAUL_PROFILE.
	if r := run("", nil, "--profile", "two", "job", "get", j2); r.code != 0 {
		t.Fatalf("--profile two: %d %s", r.code, r.stderr)
	}
	if r := run("", []string{"HAUL_PROFILE=two"}, "job", "get", j2); r.code != 0 {
		t.Fatalf("HAUL_PROFILE=two: %d %s", r.code, r.stderr)
	}
	if r := run("", []string{"HAUL_PROFILE=two"}, "job", "get", j1); r.code == 0 {
		t.Fatalf("HAUL_PROFILE=two reads s1's job: %s", r.stdout)
	}
	// The environment wins: HAUL_SERVER with its own token.
	if r := run("", []string{"HAUL_SERVER=" + s1.url(), "HAUL_API_TOKEN=" + s1.token}, "--profile", "two", "job", "get", j1); r.code != 0 {
		t.Fatalf("HAUL_SERVER and HAUL_API_TOKEN over --profile two: %d %s", r.code, r.stderr)
	}
	// ...and profile two's token is not sent to s1.
	if r := run("", []string{"HAUL_SERVER=" + s1.url()}, "--profile", "two", "job", "get", j1); r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "unauthenticated") {
		t.Fatalf("profile two's token sent to s1? %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := run("", nil, "profile", "list"); r.code != 0 || !regexp.MustCompile(`\*\s+one\s+`+regexp.QuoteMeta(s1.url())+`\s+t1\s+stored`).MatchString(r.stdout) || strings.Contains(r.stdout, s1.token) {
		t.Fatalf("profile list: %d\n%s", r.code, r.stdout)
	}
	if r := run("", nil, "profile", "use", "two"); r.code != 0 {
		t.Fatalf("profile use two: %d %s", r.code, r.stderr)
	}
	if r := run("", nil, "job", "get", j2); r.code != 0 {
		t.Fatalf("job get after profile use two: %d %s", r.code, r.stderr)
	}
	if r := run("", nil, "--profile", "nope", "job", "list"); r.code != 2 || !strings.Contains(r.stderr, `profile "nope"`) {
		t.Fatalf("--profile nope: %d %s", r.code, r.stderr)
	}
	// Others may read the file: refused, saying how to fix it.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run("", nil, "job", "list"); r.code == 0 || !strings.Contains(r.stderr, "chmod 600") {
		t.Fatalf("a world-readable config with tokens: %d %s", r.code, r.stderr)
	}
}

// TestLoginSSO: `haul login --sso` runs the device flow against the
// server's OIDC issuer (which approves the code as the user who logged
// in there); the stored ID token then works as that user.
func TestLoginSSO(t *testing.T) {
	t.Parallel()
	iss := oidctest.New(t)
	iss.DeviceInterval = time.Second
	iss.LogInAs(map[string]any{"sub": "u-7", "email": "ann@example.com", "groups": []string{"team-a"}})
	iss.AutoApprove(true)
	// The first poll is told to slow down: the CLI must wait 5 seconds
	// more from then on, or the issuer keeps refusing until the code
	// expires.
	iss.SlowDownOnce()
	s := startUp(t, freePort(t), t.TempDir(), "", "--oidc-issuer", iss.URL, "--oidc-client-id", "haul")
	env := []string{"XDG_CONFIG_HOME=" + t.TempDir(), "HAUL_SERVER=", "HAUL_API_TOKEN=", "HAUL_TOKEN=", "HAUL_PROFILE=", "HAUL_DATA=" + t.TempDir()}
	r := haulIn(t, env, "", "login", "--sso", "--server", s.url())
	if r.code != 0 || !strings.Contains(r.stdout, "as ann@example.com (user via oidc; team-a (member))") ||
		!strings.Contains(r.stderr, iss.URL+"/device/verify") || !regexp.MustCompile(`enter the code [A-Z]{4}-[A-Z]{4}`).MatchString(r.stderr) {
		t.Fatalf("login --sso: %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	spec := writeSpec(t, "name: ann\nnamespace: team-a\ntasks:\n  - key: x\n    command: [\"true\"]\n")
	r = haulIn(t, env, "", "job", "submit", spec)
	if r.code != 0 {
		t.Fatalf("submit as ann: %d %s", r.code, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if r := haulIn(t, env, "", "job", "list", "-o", "json"); r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "ann@example.com") {
		t.Fatalf("job list as ann: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// A server with no SSO says so.
	plain := startUp(t, freePort(t), t.TempDir(), "")
	if r := haulIn(t, env, "", "login", "--sso", "--server", plain.url()); r.code == 0 || !strings.Contains(r.stderr, "no SSO") {
		t.Fatalf("login --sso without OIDC: %d %s", r.code, r.stderr)
	}
}
