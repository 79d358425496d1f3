package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// peakRSS returns a running process's peak resident set size in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestHundredMegabyteLog runs a task that writes 100 MB of random bytes and
// reads them back through the gateway and the CLI: the bytes must be exactly
// the task's, and neither the server nor the client may hold the log in
// memory.
func TestHundredMegabyteLog(t *testing.T) {
	t.Parallel()
	const size = 100 << 20
	dir := t.TempDir()
	src := filepath.Join(dir, "data.bin")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, want), rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	spec := writeSpec(t, "name: big-log\ntasks:\n  - {key: big, command: [cat, "+src+"]}\n  - {key: tiny, command: [echo, hi]}\n")
	if r := haul(t, env, "run", spec); r.code != 0 {
		t.Fatalf("run: %d %s %s", r.code, r.stdout, r.stderr)
	}
	id := strings.SplitN(haul(t, env, "job", "list", "--limit", "1", "-o", "json").stdout, `"id": "`, 2)[1][:13]

	// readLog runs `haul task logs` and returns the bytes' count and hash
	// and the client's peak RSS.
	readLog := func(key string) (int64, []byte, int64) {
		cmd := exec.Command(haulBin, "task", "logs", id, key)
		cmd.Env = append(os.Environ(), append(env, "HAUL_API_TOKEN="+s.token)...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, out)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("task logs %s: %v %s", key, err, stderr.String())
		}
		return n, h.Sum(nil), cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	}
	_, _, clientBase := readLog("tiny")
	serverBase := peakRSS(t, s.cmd.Process.Pid)
	n, sum, clientPeak := readLog("big")
	if n != size || !bytes.Equal(sum, want.Sum(nil)) {
		t.Fatalf("log: %d bytes, sha256 %x; want %d bytes, sha256 %x", n, sum, size, want.Sum(nil))
	}
	serverPeak := peakRSS(t, s.cmd.Process.Pid)
	t.Logf("100 MiB log: client peak RSS %d MiB (%d MiB for a 3-byte log); server peak RSS %d MiB before reading, %d MiB after",
		clientPeak>>20, clientBase>>20, serverBase>>20, serverPeak>>20)
	// Holding the log would add 100 MiB; streaming adds what the garbage
	// collector lets the message buffers take before it runs.
	if clientPeak-clientBase > size/2 {
		t.Errorf("client peak RSS grew by %d MiB reading a 100 MiB log: it holds the log in memory", (clientPeak-clientBase)>>20)
	}
	if serverPeak-serverBase > size/2 {
		t.Errorf("server peak RSS grew by %d MiB while streaming a 100 MiB log", (serverPeak-serverBase)>>20)
	}
}

// TestFollowLiveLog follows a running task's log with -f: lines arrive
// while the task runs, and the command returns when the attempt ends.
func TestFollowLiveLog(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	env := []string{"HAUL_SERVER=" + s.url()}
	gate := filepath.Join(t.TempDir(), "gate")
	// The task prints, then waits for the test to see that line before
	// printing the rest.
	spec := writeSpec(t, `
name: follow
tasks:
  - key: talker
    command: [sh, -c, 'echo first; while [ ! -e `+gate+` ]; do sleep 0.05; done; echo second >&2; echo third']
`)
	r := haul(t, env, "job", "submit", spec)
	id := strings.TrimSpace(r.stdout)
	waitJob(t, s.client(), id, time.Minute, func(j *apiv1.Job) bool { return j.Counts.GetRunning() == 1 })

	cmd := exec.Command(haulBin, "task", "logs", id, "talker", "-f")
	cmd.Env = append(os.Environ(), append(env, "HAUL_API_TOKEN="+s.token)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(out)
	first, err := lines.ReadString('\n')
	if err != nil || first != "first\n" {
		t.Fatalf("first line while the task runs: %q %v", first, err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(lines)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logs -f: %v", err)
	}
	// stdout and stderr are separate pipes: lines written microseconds
	// apart on the two may arrive in either order.
	if r := string(rest); r != "second\nthird\n" && r != "third\nsecond\n" {
		t.Fatalf("rest of the log: %q", rest)
	}
}
