package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/pgtest"
)

// mountTmpfs mounts a tmpfs of size bytes at dir (created) and unmounts it
// when the test ends (after everything registered later, such as the
// server, has stopped).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test fills a real filesystem: it mounts a %s tmpfs, which needs root (uid 0); run it as root (uid is %d)", size, os.Geteuid())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a %s tmpfs at %s: %v: %s", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
}

// diskFill writes a file at path until its filesystem is full and returns its
// size.
func diskFill(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("create filler: %v", err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{'f'}, 64<<10)
	var n int64
	for {
		m, err := f.Write(chunk)
		n += int64(m)
		if errors.Is(err, syscall.ENOSPC) {
			// Top off the last partial page.
			for _, size := range []int{4096, 512, 1} {
				for {
					if _, err := f.Write(chunk[:size]); err != nil {
						break
					}
					n += int64(size)
				}
			}
			return n
		}
		if err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}

// diskHealthz returns the server's /healthz status code and body; 0 when it
// did not answer.
func diskHealthz(s *upServer) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url()+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// diskSeconds matches the durations in health messages, which change each
// second.
var diskSeconds = regexp.MustCompile(`[0-9.]+m?s\b`)

// diskTaskOutput is what the test's tasks print: lines numbered by task,
// about 10 KiB, on stdout.
func diskTaskOutput(i int) string {
	var b strings.Builder
	for n := range 200 {
		fmt.Fprintf(&b, "task %02d line %03d %s\n", i, n, strings.Repeat("=", 30))
	}
	return b.String()
}

// TestFullDisk fills a real 8 MiB tmpfs while a job of 40 tasks prints
// output, then frees the space. The server must keep answering, the job
// must end, and every task's log must be either byte-identical to what it
// printed or marked incomplete with the reason by `haul task logs` (exit
// 3): nothing silently missing. After the space returns, a new job runs
// with complete logs.
//
// Three cases: the whole data directory on the tmpfs with SQLite (the
// database fills too: the runner cannot renew its lease, so nothing runs
// until the space returns, and then everything does), only its blobs/ (the
// log store) with SQLite (the database works: tasks run while the log
// store is full), and the whole data directory with PostgreSQL elsewhere
// (log store and workers' spools full, database fine).
func TestFullDisk(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, store, mount string }{
		{"sqlite", "sqlite", "."},
		{"sqlite-blobs", "sqlite", "blobs"},
		{"postgres", "postgres", "."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := tc.name
			dbURL := ""
			if tc.store == "postgres" {
				dbURL = pgtest.Start(t)
			}
			data := filepath.Join(t.TempDir(), "data")
			full := filepath.Join(data, tc.mount)
			mountTmpfs(t, full, "8m")
			outside := t.TempDir() // the gate and the task script: not on the full disk
			gate := filepath.Join(outside, "gate")
			script := filepath.Join(outside, "print.sh")
			if err := os.WriteFile(script, []byte(`#!/bin/sh
n=0
while [ $n -lt 200 ]; do
  printf 'task %02d line %03d ==============================\n' "$1" $n
  n=$((n+1))
done
touch "$2/$1"
`), 0o755); err != nil {
				t.Fatal(err)
			}
			// big prints 5 MiB, more than a worker keeps in memory while
			// its spool's disk is full, then waits for gate2.
			gate2, bigPrinted := filepath.Join(outside, "gate2"), filepath.Join(outside, "big-printed")
			big := filepath.Join(outside, "big.sh")
			const bigSize = 5 << 20
			if err := os.WriteFile(big, fmt.Appendf(nil, `#!/bin/sh
head -c %d /dev/zero | tr '\0' z
touch %s
while [ ! -e %s ]; do sleep 0.05; done
`, bigSize, bigPrinted, gate2), 0o755); err != nil {
				t.Fatal(err)
			}
			done := filepath.Join(outside, "done")
			if err := os.Mkdir(done, 0o755); err != nil {
				t.Fatal(err)
			}
			if got := diskTaskOutput(0); !strings.HasPrefix(got, "task 00 line 000 ==============================\n") || len(got) != 200*48 {
				t.Fatalf("diskTaskOutput does not match the script: %q...", got[:60])
			}
			const logRetry = 3 * time.Second
			s := startUpEnv(t, []string{"HAUL_LOG_RETRY=" + logRetry.String()}, freePort(t), data, dbURL)
			env := []string{"HAUL_SERVER=" + s.url()}
			c := s.client()

			// Health is sampled all along: the server must keep answering.
			stopHealth := make(chan struct{})
			var healthMu sync.Mutex
			health := map[string]int{}
			var healthWG sync.WaitGroup
			healthWG.Go(func() {
				for {
					code, body := diskHealthz(s)
					key := fmt.Sprint(code)
					if code != http.StatusOK {
						key += " " + diskSeconds.ReplaceAllString(body, "Ns")
					}
					healthMu.Lock()
					health[key]++
					healthMu.Unlock()
					select {
					case <-stopHealth:
						return
					case <-time.After(200 * time.Millisecond):
					}
				}
			})
			defer func() { close(stopHealth); healthWG.Wait() }()

			const n = 40
			spec := writeSpec(t, fmt.Sprintf(`
name: full-disk
tasks:
  - key: gate
    command: [sh, -c, "while [ ! -e %s ]; do sleep 0.05; done"]
  - key: big
    command: [%s]
    after: [gate]
  - key: "t-{i}"
    foreach: {range: [0, %d]}
    command: [%s, "{i}", %s]
    after: [gate]
`, gate, big, n, script, done))
			r := haul(t, env, "job", "submit", spec)
			if r.code != 0 {
				t.Fatalf("submit: %s", r.stderr)
			}
			id := strings.TrimSpace(r.stdout)
			waitJob(t, c, id, time.Minute, func(j *apiv1.Job) bool { return j.Counts.GetRunning() > 0 })

			filler := filepath.Join(full, "filler")
			size := diskFill(t, filler)
			fullAt := time.Now()
			t.Logf("%s: filled the data filesystem with a %d-byte file", st, size)
			if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Fatal(err)
			}

			// Keep the disk full until tasks have printed while it was full
			// and their workers have given up on storing some logs (a task
			// that ended with its log incomplete shows in the API) and big
			// has printed; or, where nothing runs because the store itself
			// cannot record anything, until time passes well beyond the
			// retry window.
			sawIncomplete, bigWhileFull := "", false
			for (sawIncomplete == "" || !bigWhileFull) && time.Since(fullAt) < 10*logRetry {
				if sawIncomplete == "" {
					sawIncomplete = diskFirstIncomplete(c, id)
				}
				_, err := os.Stat(bigPrinted)
				bigWhileFull = err == nil
				time.Sleep(200 * time.Millisecond)
			}
			entries, _ := os.ReadDir(done)
			code, body := diskHealthz(s)
			t.Logf("%s: after %v full: %d tasks printed, an incomplete log seen in the API: %q; healthz %d %q",
				st, time.Since(fullAt).Round(time.Millisecond), len(entries), sawIncomplete, code, body)
			select {
			case <-s.exited:
				t.Fatalf("haul up exited while the disk was full: %s", s.log)
			default:
			}

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			freedAt := time.Now()
			if err := os.WriteFile(gate2, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			var healthyAfter time.Duration
			for {
				if code, _ := diskHealthz(s); code == http.StatusOK {
					healthyAfter = time.Since(freedAt)
					break
				}
				if time.Since(freedAt) > 2*time.Minute {
					code, body := diskHealthz(s)
					t.Fatalf("healthz still %d %q two minutes after the space returned", code, body)
				}
				time.Sleep(100 * time.Millisecond)
			}
			j := waitJob(t, c, id, 5*time.Minute, jobEnded)
			endedAfter := time.Since(freedAt)
			select {
			case <-s.exited:
				t.Fatalf("haul up exited: %s", s.log)
			default:
			}

			complete, incomplete := 0, 0
			var reasons []string
			for i := range n {
				key := fmt.Sprintf("t-%d", i)
				want := diskTaskOutput(i)
				r := haul(t, env, "task", "logs", id, key)
				switch {
				case r.code == 0 && r.stdout == want:
					complete++
				case r.code == 0:
					t.Errorf("task %s: log silently differs: %d bytes, want %d (stderr %q)", key, len(r.stdout), len(want), r.stderr)
				case r.code == 3 && strings.Contains(r.stderr, "log incomplete: ") && strings.HasPrefix(want, r.stdout):
					incomplete++
					if !strings.Contains(r.stderr, "no space left on device") {
						t.Errorf("task %s: the notice does not say the disk was full: %q", key, r.stderr)
					}
					if len(reasons) < 3 {
						reasons = append(reasons, strings.TrimSpace(r.stderr))
					}
				default:
					t.Errorf("task %s: haul task logs exited %d, stdout %d bytes (a prefix of the output: %v), stderr %q",
						key, r.code, len(r.stdout), strings.HasPrefix(want, r.stdout), r.stderr)
				}
			}
			r = haul(t, env, "task", "logs", id, "big")
			allZ := strings.Count(r.stdout, "z") == len(r.stdout)
			switch {
			case r.code == 0 && len(r.stdout) == bigSize && allZ:
				if bigWhileFull && tc.mount == "." {
					t.Errorf("big printed %d bytes while its spool's disk was full, more than the memory buffer, yet its log is complete", bigSize)
				}
				t.Logf("%s: big's log is complete (%d bytes)", st, len(r.stdout))
			case r.code == 3 && allZ && strings.Contains(r.stderr, fmt.Sprintf("%d of %d bytes of output stored", len(r.stdout), bigSize)):
				if bigWhileFull && tc.mount == "." && !strings.Contains(r.stderr, "dropped") {
					t.Errorf("big's notice does not say output was dropped: %q", r.stderr)
				}
				t.Logf("%s: big's log: %d bytes, notice %q", st, len(r.stdout), strings.TrimSpace(r.stderr))
			default:
				t.Errorf("big: haul task logs exited %d with %d bytes (all z: %v), stderr %q; workers' logs:\n%s", r.code, len(r.stdout), allZ, r.stderr, workerLogs(data))
			}
			t.Logf("%s: healthy %v and job %s %v ended %v after the space returned; logs: %d complete, %d marked incomplete; e.g. %q",
				st, healthyAfter.Round(time.Millisecond), j.State, j.Counts, endedAfter.Round(time.Millisecond), complete, incomplete, reasons)
			if j.State != "succeeded" {
				t.Errorf("job ended %s %v; its tasks all exit 0", j.State, j.Counts)
			}
			if complete+incomplete != n {
				t.Fatalf("%d of %d logs neither complete nor marked incomplete", n-complete-incomplete, n)
			}
			if sawIncomplete != "" && incomplete == 0 {
				t.Errorf("the API showed an incomplete log (%q) but haul task logs marked none", sawIncomplete)
			}

			// Space is back: a new job runs with complete logs.
			spec2 := writeSpec(t, fmt.Sprintf("name: after\ntasks:\n  - key: \"a-{i}\"\n    foreach: {range: [0, 4]}\n    command: [%s, \"{i}\", %s]\n", script, done))
			start := time.Now()
			r = haul(t, env, "job", "submit", spec2)
			if r.code != 0 {
				t.Fatalf("submit after the space returned: %s", r.stderr)
			}
			id2 := strings.TrimSpace(r.stdout)
			j2 := waitJob(t, c, id2, 2*time.Minute, jobEnded)
			if j2.State != "succeeded" {
				t.Fatalf("job after the space returned: %s %v", j2.State, j2.Counts)
			}
			for i := range 4 {
				r := haul(t, env, "task", "logs", id2, fmt.Sprintf("a-%d", i))
				if r.code != 0 || r.stdout != diskTaskOutput(i) {
					t.Errorf("after the space returned: task a-%d log: exit %d, %d bytes, want %d, stderr %q", i, r.code, len(r.stdout), len(diskTaskOutput(i)), r.stderr)
				}
			}
			healthMu.Lock()
			t.Logf("%s: a new job of 4 tasks succeeded with complete logs in %v; healthz answers seen: %v",
				st, time.Since(start).Round(time.Millisecond), health)
			healthMu.Unlock()
			if code, body := diskHealthz(s); code != http.StatusOK {
				t.Errorf("healthz after recovery: %d %s", code, body)
			}
			healthMu.Lock()
			for k, n := range health {
				if strings.HasPrefix(k, "0 ") {
					t.Errorf("healthz did not answer %d times: %s", n, k)
				}
			}
			healthMu.Unlock()
		})
	}
}

// diskFirstIncomplete returns the message of an ended attempt of job id whose
// log is marked incomplete, or "".
func diskFirstIncomplete(c interface {
	ListTasks(context.Context, *connect.Request[apiv1.ListTasksRequest]) (*connect.Response[apiv1.ListTasksResponse], error)
	GetTask(context.Context, *connect.Request[apiv1.GetTaskRequest]) (*connect.Response[apiv1.GetTaskResponse], error)
}, id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.ListTasks(ctx, connect.NewRequest(&apiv1.ListTasksRequest{JobId: id, States: []string{"succeeded", "failed"}}))
	if err != nil {
		return ""
	}
	for _, task := range resp.Msg.Tasks {
		g, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: id, Key: task.Key}))
		if err != nil {
			continue
		}
		for _, a := range g.Msg.Attempts {
			if strings.Contains(a.Message, "log incomplete: ") {
				return a.Message
			}
		}
	}
	return ""
}

// TestLostAttemptLogMarked kills a worker (SIGKILL) while its task runs:
// the attempt is lost before its log was finished, so `haul task logs` of
// that attempt prints what was uploaded and then says the log is
// incomplete (exit 3); the retried attempt's log is whole.
func TestLostAttemptLogMarked(t *testing.T) {
	t.Parallel()
	for _, st := range []string{"sqlite", "postgres"} {
		t.Run(st, func(t *testing.T) {
			t.Parallel()
			dbURL := ""
			if st == "postgres" {
				dbURL = pgtest.Start(t)
			}
			s := startUp(t, freePort(t), t.TempDir(), dbURL)
			env := []string{"HAUL_SERVER=" + s.url()}
			dir := t.TempDir()
			script := fmt.Sprintf(`if [ -e %[1]s/first ]; then echo second; exit 0; fi
touch %[1]s/first; echo before the kill; echo $PPID > %[1]s/worker; exec sleep 300`, dir)
			spec := writeSpec(t, fmt.Sprintf("name: lost-log\nretries: 1\ntasks:\n  - key: victim\n    command: [sh, -c, %q]\n", script))
			r := haul(t, env, "job", "submit", spec)
			if r.code != 0 {
				t.Fatalf("submit: %s", r.stderr)
			}
			id := strings.TrimSpace(r.stdout)
			// Wait until the first attempt's output is uploaded (a segment).
			deadline := time.Now().Add(2 * time.Minute)
			for {
				r := haul(t, env, "task", "logs", id, "victim", "--attempt", "1")
				if r.code == 0 && r.stdout == "before the kill\n" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the first attempt's output never showed: exit %d %q %q; server log:\n%s", r.code, r.stdout, r.stderr, s.log)
				}
				time.Sleep(100 * time.Millisecond)
			}
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
			r = haul(t, env, "task", "logs", id, "victim", "--attempt", "1")
			if r.code != 3 || r.stdout != "before the kill\n" || !strings.Contains(r.stderr, "log incomplete: ") || !strings.Contains(r.stderr, "lost") {
				t.Fatalf("lost attempt's log: exit %d, stdout %q, stderr %q; want what was uploaded, then a notice that the attempt was lost, exit 3", r.code, r.stdout, r.stderr)
			}
			t.Logf("%s: lost attempt: %q", st, strings.TrimSpace(r.stderr))
			r = haul(t, env, "task", "logs", id, "victim")
			if r.code != 0 || r.stdout != "second\n" || r.stderr != "" {
				t.Fatalf("retried attempt's log: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// workerLogs returns the tail of every worker log under a data directory.
func workerLogs(data string) string {
	var b strings.Builder
	logs, _ := filepath.Glob(filepath.Join(data, "workers", "*", "*.log"))
	for _, l := range logs {
		c, _ := os.ReadFile(l)
		if len(c) > 4000 {
			c = c[len(c)-4000:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", l, c)
	}
	return b.String()
}
