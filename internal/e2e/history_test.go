package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/blob/s3"
	"github.com/haul-dev/haul/internal/s3test"
)

// TestTeamLogsHistoryRetention runs haul on a real S3 server with a team
// whose logs go to its own bucket: an ended job's logs land there in the
// documented layout, `haul logs export` writes them as plain files, the
// history export holds exactly the job's rows (haul query), and once the
// job is retired from the live tables asking for it still answers and
// says where its history is.
func TestTeamLogsHistoryRetention(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	platform := srv.NewBucket(t, "haul-logs")
	team := srv.NewBucket(t, "ml-logs")
	hist := srv.NewBucket(t, "haul-history")
	s := startUpEnv(t, srv.Env(), freePort(t), t.TempDir(), "", "--blob", platform, "--history", hist,
		"--export-interval", "1s", "--log-archive-delay", "5s", "--retain-finished", "15s")
	env := append([]string{"HAUL_SERVER=" + s.url()}, srv.Env()...)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(srv.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	teamURL := strings.Replace(team, "s3://ml-logs", "s3://ml-logs/haul", 1)
	if r := haul(t, env, "team", "logs", "set", "ml", teamURL, "--access-key-id", srv.AccessKey, "--secret-access-key-file", secret); r.code != 0 {
		t.Fatalf("team logs set: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r := haul(t, env, "team", "logs")
	if r.code != 0 || !strings.Contains(r.stdout, "stored") || strings.Contains(r.stdout, srv.SecretKey) {
		t.Fatalf("team logs: %d %q (want the destination, never the secret)", r.code, r.stdout)
	}
	// A destination outside the team's is refused at submit.
	bad := writeSpec(t, "name: bad\nnamespace: ml\nlogs: {destination: \"s3://other-bucket/x/\"}\ntasks:\n  - {key: a, command: [true]}\n")
	if r := haul(t, env, "job", "submit", bad); r.code == 0 || !strings.Contains(r.stderr, "not in the team's bucket") {
		t.Fatalf("destination outside the team's: exit %d %q", r.code, r.stderr)
	}
	dest := strings.Replace(team, "s3://ml-logs", "s3://ml-logs/haul/nightly", 1)
	const n = 300
	spec := writeSpec(t, fmt.Sprintf(`name: team-logs
namespace: ml
logs: {destination: %q}
tasks:
  - key: "sim-{i}"
    foreach: {range: [0, %d]}
    command: [sh, -c, 'echo "sim {i} out"; echo "sim {i} err" >&2']
  - {key: quiet, command: [true]}
`, dest, n))
	r = haul(t, env, "run", spec)
	if r.code != 0 {
		t.Fatalf("run: %d %s %s", r.code, r.stdout, r.stderr)
	}
	id := ""
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "job" && strings.Contains(line, "succeeded") {
			id = f[1]
		}
	}
	if id == "" {
		t.Fatalf("no job ID in %q", r.stdout)
	}

	// The team's bucket: packs and the index, under the job's prefix.
	ctx := context.Background()
	var keys []string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ts, err := openTeam(ctx, srv, dest)
		if err != nil {
			t.Fatal(err)
		}
		keys, err = ts.List(ctx, id+"/")
		if err != nil {
			t.Fatal(err)
		}
		if containsKey(keys, id+"/index.jsonl") && strings.Contains(strings.Join(keys, " "), id+"/packs/") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("team bucket holds %v; server log:\n%s", keys, s.log)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ts, _ := openTeam(ctx, srv, dest)
	rc, err := ts.Get(ctx, id+"/index.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	index := string(b)
	if lines := strings.Count(index, "\n"); lines != n {
		t.Fatalf("index.jsonl has %d lines, want %d (one per attempt that printed)", lines, n)
	}
	if !strings.Contains(index, `"task":"sim-7"`) {
		t.Fatalf("index does not name task sim-7: %.300s", index)
	}
	t.Logf("team bucket: %d objects for %d attempts: %v", len(keys), n, keys)
	r = haul(t, env, "task", "get", id, "sim-7")
	if r.code != 0 || !strings.Contains(r.stdout, "log archive: "+strings.TrimSuffix(dest, "/")) {
		t.Fatalf("task get: %d %q", r.code, r.stdout)
	}

	// Plain files.
	out := t.TempDir()
	r = haul(t, env, "logs", "export", id, out)
	if r.code != 0 {
		t.Fatalf("logs export: %d %s %s", r.code, r.stdout, r.stderr)
	}
	for _, c := range []struct{ file, want string }{{"sim-7/1.stdout", "sim 7 out\n"}, {"sim-299/1.stderr", "sim 299 err\n"}} {
		b, err := os.ReadFile(filepath.Join(out, id, c.file))
		if err != nil || string(b) != c.want {
			t.Fatalf("%s: %q, %v", c.file, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(out, id, "quiet")); !os.IsNotExist(err) {
		t.Fatalf("a task that printed nothing got files: %v", err)
	}

	// History: exactly the job's rows.
	queryEnv := append(env, "XDG_CACHE_HOME="+t.TempDir())
	deadline = time.Now().Add(2 * time.Minute)
	for {
		r = haul(t, queryEnv, "query", "--from", hist, "--format", "csv", fmt.Sprintf("SELECT count(*) FROM tasks WHERE job_id = '%s'", id))
		if r.code == 0 && strings.TrimSpace(r.stdout) == fmt.Sprintf("count_star()\n%d", n+1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history never held the job's %d tasks: %d %q %q", n+1, r.code, r.stdout, r.stderr)
		}
		time.Sleep(time.Second)
	}
	r = haul(t, queryEnv, "query", "--from", hist, "--format", "csv", fmt.Sprintf("SELECT count(*) FROM log_entries WHERE job_id = '%s'", id))
	if r.code != 0 || strings.TrimSpace(r.stdout) != fmt.Sprintf("count_star()\n%d", n) {
		t.Fatalf("log entries in the history: %d %q %q", r.code, r.stdout, r.stderr)
	}
	// Every worker of the job, with the attempts it ran.
	r = haul(t, queryEnv, "query", "--from", hist, "--format", "csv", fmt.Sprintf("SELECT sum(attempts) AS a, count(*) FILTER (WHERE ended_at IS NULL) AS running FROM workers WHERE job_id = '%s'", id))
	if r.code != 0 || strings.TrimSpace(r.stdout) != fmt.Sprintf("a,running\n%d,0", n+1) {
		t.Fatalf("workers in the history: %d %q %q", r.code, r.stdout, r.stderr)
	}

	// Retention: the job leaves the live tables, and still answers.
	deadline = time.Now().Add(2 * time.Minute)
	for {
		r = haul(t, env, "task", "get", id, "sim-7")
		if r.code != 0 && strings.Contains(r.stderr, "archived") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job was never retired: %d %q %q", r.code, r.stdout, r.stderr)
		}
		time.Sleep(time.Second)
	}
	if !strings.Contains(r.stderr, hist) && !strings.Contains(r.stderr, "haul-history") {
		t.Fatalf("a retired job's task does not say where its history is: %q", r.stderr)
	}
	r = haul(t, env, "job", "get", id)
	if r.code != 0 || !strings.Contains(r.stdout, id) {
		t.Fatalf("job get of a retired job: %d %q %q", r.code, r.stdout, r.stderr)
	}
	t.Logf("retired job: %q / %q", strings.TrimSpace(r.stdout), strings.TrimSpace(r.stderr))
}

func containsKey(keys []string, k string) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// openTeam opens a team's destination with the test server's credentials.
func openTeam(ctx context.Context, srv *s3test.Server, url string) (blob.Store, error) {
	o, err := s3.ParseURL(url)
	if err != nil {
		return nil, err
	}
	o.AccessKeyID, o.SecretAccessKey = srv.AccessKey, srv.SecretKey
	return s3.New(ctx, o)
}

// TestHistoryExportKilled kills `haul history export` (SIGKILL) at several
// points of an export to a real S3 server (MinIO) and runs it again: the
// export then holds every row of the store exactly once.
func TestHistoryExportKilled(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	s := startUp(t, freePort(t), data, "")
	env := []string{"HAUL_SERVER=" + s.url()}
	const jobs, tasks = 6, 5000
	for i := range jobs {
		spec := writeSpec(t, fmt.Sprintf("name: j%d\ntasks:\n  - key: \"t-{i}\"\n    foreach: {range: [0, %d]}\n    command: [\"true\"]\n", i, tasks))
		if r := haul(t, env, "run", spec); r.code != 0 {
			t.Fatalf("run: %d %s %s", r.code, r.stdout, r.stderr)
		}
	}
	srv := s3test.Start(t)
	out := srv.NewBucket(t, "haul-history")
	s3env := append(srv.Env(), "XDG_CACHE_HOME="+t.TempDir())
	for i, after := range []time.Duration{150 * time.Millisecond, 400 * time.Millisecond, 900 * time.Millisecond} {
		cmd := exec.Command(haulBin, "history", "export", "--db", data, "--to", out, "--batch-jobs", "1", "--finished-before", "0s")
		cmd.Env = append(os.Environ(), s3env...)
		var log syncBuffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(after)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		t.Logf("export %d killed after %v: %v %s", i, after, err, strings.TrimSpace(log.String()))
	}
	r := haul(t, s3env, "history", "export", "--db", data, "--to", out, "--batch-jobs", "1", "--finished-before", "0s")
	if r.code != 0 {
		t.Fatalf("final export: %d %s %s", r.code, r.stdout, r.stderr)
	}
	for _, c := range []struct {
		sql  string
		want int
	}{
		{"SELECT count(*) FROM jobs", jobs},
		{"SELECT count(*) FROM tasks", jobs * tasks},
		{"SELECT count(*) FROM attempts", jobs * tasks},
		{"SELECT count(*) FROM (SELECT job_id, task_index, number FROM attempts GROUP BY ALL HAVING count(*) > 1)", 0},
	} {
		r := haul(t, s3env, "query", "--from", out, "--format", "csv", c.sql)
		if r.code != 0 || !strings.HasSuffix(strings.TrimSpace(r.stdout), fmt.Sprintf("\n%d", c.want)) {
			t.Fatalf("%s: %d %q %q, want %d", c.sql, r.code, r.stdout, r.stderr, c.want)
		}
	}
}
