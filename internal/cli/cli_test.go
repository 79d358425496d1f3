package cli

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
)

// TestShellQuoteRoundTrip runs quoted words through a real shell and checks
// each arrives as one argument, byte for byte.
func TestShellQuoteRoundTrip(t *testing.T) {
	t.Parallel()
	words := []string{"plain", "", "two words", "it's", `"double"`, "$HOME", "`id`", "a\nb", "tab\there", "*", "back\\slash", "ünïcode", "-dash", "x=y", "'", "''"}
	out, err := exec.Command("sh", "-c", "set -- "+shellJoin(words)+`; for a in "$@"; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(got) != len(words) {
		t.Fatalf("got %d words %q, want %d", len(got), got, len(words))
	}
	for i := range words {
		if got[i] != words[i] {
			t.Errorf("word %d: got %q, want %q", i, got[i], words[i])
		}
	}
}

func TestReproCommandRunsExactly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"GREETING": "hello world", "QUOTE": "it's"}
	cmd := reproCommand([]string{"sh", "-c", `printf '%s|%s|%s|%s' "$GREETING" "$QUOTE" "$(pwd)" "$HOME"; exit 4`}, env, dir)
	c := exec.Command("sh", "-c", cmd)
	c.Env = []string{"PATH=/usr/bin:/bin", "HOME=/should/not/leak"}
	out, err := c.Output()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 4 {
		t.Fatalf("exit: %v, want status 4 (command %s)", err, cmd)
	}
	if want := "hello world|it's|" + dir + "|"; string(out) != want {
		t.Fatalf("output %q, want %q: the environment must be exactly the task's", out, want)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"job", "get"}, 2, "accepts 1 arg"},
		{[]string{"nonsense"}, 2, "unknown command"},
		{[]string{"job", "list", "-o", "xml"}, 2, "--output"},
		{[]string{"job", "list", "--bogus"}, 2, "unknown flag"},
		{[]string{"job", "submit", "/no/such/file.yaml"}, 1, "no such file"},
		{[]string{"job", "submit", "-", "--server", "http://127.0.0.1:1"}, 1, "the spec is empty"},
		{[]string{"task", "list", "J", "--server", "http://127.0.0.1:1"}, 1, "cannot reach the haul server"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(tc.args, strings.NewReader(""), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("haul %s: exit %d, stderr %q; want exit %d mentioning %q", strings.Join(tc.args, " "), code, stderr.String(), tc.code, tc.want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	t.Parallel()
	j := &apiv1.Job{Id: "J", State: "running", TaskCount: 100, Counts: &apiv1.TaskCounts{Succeeded: 40, Failed: 2, Running: 3, Queued: 55}}
	got := progressLine(j, 12300*time.Millisecond, true)
	want := "[##########--------------] J running: 42/100 done · 3 running · 55 queued · 40 succeeded · 2 failed · 12.3s"
	if got != want {
		t.Fatalf("progress line\n got %q\nwant %q", got, want)
	}
	if got := progressLine(j, time.Second, false); strings.Contains(got, "[") {
		t.Fatalf("plain progress has a bar: %q", got)
	}
}

func TestBytesIEC(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{512: "512B", 1 << 30: "1Gi", 1536 << 20: "1.5Gi", 32 << 30: "32Gi", 1 << 20: "1Mi"} {
		if got := bytesIEC(n); got != want {
			t.Errorf("bytesIEC(%d) = %q, want %q", n, got, want)
		}
	}
}
