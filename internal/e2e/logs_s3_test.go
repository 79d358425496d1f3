package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob/s3"
	"github.com/haul-dev/haul/internal/s3test"
)

// TestS3Logs runs haul with its logs on a real S3 server (MinIO): a chatty
// task's log and a log too big for a pack come back byte for byte; a
// running task's output is readable while it runs, and after its worker is
// killed (SIGKILL) the lost attempt's log is what it printed, marked
// incomplete; no segment object is ever written.
func TestS3Logs(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t, "haul-logs")
	s := startUpEnv(t, srv.Env(), freePort(t), t.TempDir(), "", "--blob", bucket)
	env := []string{"HAUL_SERVER=" + s.url()}
	dir := t.TempDir()
	victim := fmt.Sprintf(`if [ -e %[1]s/first ]; then echo second; exit 0; fi
touch %[1]s/first; i=0; while [ $i -lt 200 ]; do echo "victim line $i"; i=$((i+1)); done; echo oops >&2; echo $PPID > %[1]s/worker; exec sleep 300`, dir)
	chatty := `i=0; while [ $i -lt 3000 ]; do echo "chatty line $i"; [ $((i % 100)) = 0 ] && echo "warning $i" >&2; i=$((i+1)); done`
	big := `i=0; while [ $i -lt 40000 ]; do echo "big line $i of a log too big for a pack"; i=$((i+1)); done`
	spec := writeSpec(t, fmt.Sprintf(`name: s3-logs
retries: 1
tasks:
  - {key: victim, command: [sh, -c, %q]}
  - {key: chatty, command: [sh, -c, %q]}
  - {key: big, command: [sh, -c, %q]}
`, victim, chatty, big))
	r := haul(t, env, "job", "submit", spec)
	if r.code != 0 {
		t.Fatalf("submit: %s", r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	var wantVictim strings.Builder
	for i := range 200 {
		fmt.Fprintf(&wantVictim, "victim line %d\n", i)
	}
	// Live: the running attempt's output, before anything is archived.
	start := time.Now()
	for {
		r := haul(t, env, "task", "logs", id, "victim", "--attempt", "1", "--stdout")
		e := haul(t, env, "task", "logs", id, "victim", "--attempt", "1", "--stderr")
		if r.code == 0 && r.stdout == wantVictim.String() && e.code == 0 && e.stdout == "oops\n" {
			break
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("the running attempt's output never showed whole: exit %d %q %q; server log:\n%s", r.code, r.stdout, r.stderr, s.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("running attempt's output readable %v after submit", time.Since(start).Round(time.Millisecond))
	b, err := os.ReadFile(filepath.Join(dir, "worker"))
	if err != nil {
		t.Fatal(err)
	}
	var worker int
	if _, err := fmt.Sscan(string(b), &worker); err != nil || worker <= 1 {
		t.Fatalf("worker PID %q: %v", b, err)
	}
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the worker %d: %v", worker, err)
	}
	j := waitJob(t, s.client(), id, 3*time.Minute, jobEnded)
	if j.State != "succeeded" {
		t.Fatalf("job %s %v, want succeeded on the retry", j.State, j.Counts)
	}
	// The lost attempt: what it printed, then the notice (exit 3).
	r = haul(t, env, "task", "logs", id, "victim", "--attempt", "1", "--stdout")
	if r.code != 3 || r.stdout != wantVictim.String() || !strings.Contains(r.stderr, "log incomplete: ") || !strings.Contains(r.stderr, "lost") {
		t.Fatalf("lost attempt's log: exit %d, stdout %d bytes (want %d), stderr %q", r.code, len(r.stdout), wantVictim.Len(), r.stderr)
	}
	var wantChatty, wantWarn, wantBig strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&wantChatty, "chatty line %d\n", i)
		if i%100 == 0 {
			fmt.Fprintf(&wantWarn, "warning %d\n", i)
		}
	}
	for i := range 40000 {
		fmt.Fprintf(&wantBig, "big line %d of a log too big for a pack\n", i)
	}
	// Archived logs: whole, once their packs are uploaded (within the
	// pack age) and indexed.
	for _, c := range []struct {
		key, stream, want string
	}{{"victim", "stdout", "second\n"}, {"chatty", "stdout", wantChatty.String()}, {"chatty", "stderr", wantWarn.String()}, {"big", "stdout", wantBig.String()}} {
		r := haul(t, env, "task", "logs", id, c.key, "--"+c.stream)
		if r.code != 0 || r.stdout != c.want {
			t.Fatalf("%s %s: exit %d, %d bytes (want %d), stderr %q", c.key, c.stream, r.code, len(r.stdout), len(c.want), r.stderr)
		}
	}
	// What is in the bucket: packs, the big log's own object, the lost
	// attempt's live copy; never a segment.
	store, err := s3.New(context.Background(), srv.Options("haul-logs"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		keys, err := store.List(context.Background(), "logs/"+id+"/")
		if err != nil {
			t.Fatal(err)
		}
		var packs, own, live int
		for _, k := range keys {
			switch {
			case strings.Contains(k, "/seg-"):
				t.Fatalf("a segment object: %s", k)
			case strings.Contains(k, "/packs/"):
				packs++
			case strings.HasSuffix(k, "/log"):
				own++
			case strings.HasSuffix(k, "/live"):
				live++
			}
		}
		if packs >= 1 && own == 1 && live == 1 {
			t.Logf("objects: %d packs, %d own, %d live: %v; requests %v", packs, own, live, keys, srv.Requests())
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("objects %v: want packs, one own object, one live copy", keys)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestS3PutsPerTask runs 100,000 short tasks that each print a line, with
// logs on a real S3 server, and counts the object writes: packs keep them
// under 1,000 (the bound), where a PUT per log would be 100,000.
func TestS3PutsPerTask(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	bucket := srv.NewBucket(t, "haul-logs")
	s := startUpEnv(t, srv.Env(), freePort(t), t.TempDir(), "", "--blob", bucket)
	env := []string{"HAUL_SERVER=" + s.url()}
	spec := writeSpec(t, `
name: hundred-thousand-lines
tasks:
  - key: "t-{i}"
    foreach: {range: [0, 100000]}
    command: [echo, "line of t-{i}"]
`)
	srv.ResetCounts()
	start := time.Now()
	r := haul(t, env, "run", spec)
	if r.code != 0 || !strings.Contains(r.stdout, "100000 succeeded") {
		t.Fatalf("100k-task job: exit %d\n%s\n%s\nserver: %s", r.code, r.stdout, r.stderr, s.log)
	}
	ran := time.Since(start)
	// "job ID succeeded in ...": the summary's second word.
	id := ""
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "job" && strings.Contains(line, "100000 succeeded") {
			id = f[1]
		}
	}
	if id == "" {
		t.Fatalf("no job ID in %q", r.stdout)
	}
	// Every log archived: the last packs go up when the workers exit.
	for _, k := range []string{"t-0", "t-77777", "t-99999"} {
		want := "line of " + k + "\n"
		deadline := time.Now().Add(time.Minute)
		for {
			r := haul(t, env, "task", "logs", id, k)
			if r.code == 0 && r.stdout == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("log of %s: exit %d %q %q (job output %q)", k, r.code, r.stdout, r.stderr, r.stdout)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	time.Sleep(12 * time.Second) // a last pack's age
	puts := srv.PutCount()
	t.Logf("100000 tasks in %v: %d object writes (%.4f per task), requests %v", ran.Round(time.Millisecond), puts, float64(puts)/100000, srv.Requests())
	if puts > 1000 {
		t.Fatalf("%d object writes for 100000 tasks: want at most 1000", puts)
	}
}
