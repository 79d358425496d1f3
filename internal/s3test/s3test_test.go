package s3test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob"
)

// helperEnv names the variable that turns this test binary into a helper
// process for the tests below.
const helperEnv = "S3TEST_HELPER"

// TestHelperProcess is not a test: run as a child with S3TEST_HELPER set, it
// does what the variable names and exits.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		return
	case "build":
		p, err := Binary(t.Context())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Print(p)
		os.Exit(0)
	case "put":
		st, err := blob.Open(os.Getenv("S3TEST_URL"))
		if err == nil {
			err = st.Put(t.Context(), "from-child", strings.NewReader("hello from a child"))
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// fakeGo puts a fake go command first on PATH and an empty HOME in place:
// each run appends its arguments and CGO_ENABLED to log, waits a moment,
// and either writes a fake minio into GOBIN or fails with "boom".
func fakeGo(t *testing.T, fail bool) (log string) {
	dir := t.TempDir()
	log = filepath.Join(dir, "go.log")
	script := `#!/bin/sh
echo "$* CGO_ENABLED=$CGO_ENABLED" >> "` + log + `"
sleep 1
`
	if fail {
		script += "echo boom >&2\nexit 3\n"
	} else {
		script += `printf '#!/bin/sh\necho fake\n' > "$GOBIN/minio"; chmod +x "$GOBIN/minio"` + "\n"
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("HOME", filepath.Join(dir, "home"))
	return log
}

// TestBinaryBuildsOnceAcrossProcesses starts three processes and three
// goroutines that all want the binary at once on an empty cache: one build
// runs, and everyone gets its result.
func TestBinaryBuildsOnceAcrossProcesses(t *testing.T) {
	log := fakeGo(t, false)
	want, err := BinaryPath()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 3 {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
			cmd.Env = append(os.Environ(), helperEnv+"=build")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				errs <- fmt.Errorf("child: %v: %s", err, stderr.Bytes())
			} else if string(out) != want {
				errs <- fmt.Errorf("child got %q; want %q", out, want)
			}
		})
		wg.Go(func() {
			p, err := Binary(t.Context())
			if err != nil {
				errs <- err
			} else if p != want {
				errs <- fmt.Errorf("Binary() = %q; want %q", p, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	wantLine := "install " + MinIOModule + "@" + MinIOVersion + " CGO_ENABLED=0"
	if len(lines) != 1 || lines[0] != wantLine {
		t.Errorf("go ran %d times: %q; want once: %q", len(lines), lines, wantLine)
	}
	if !isExecutable(want) {
		t.Errorf("%s is not an executable after the build", want)
	}
	entries, _ := os.ReadDir(filepath.Dir(want))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".minio-build-") {
			t.Errorf("build folder %s left behind", e.Name())
		}
	}
}

func TestBinaryBuildFailureQuotesOutput(t *testing.T) {
	fakeGo(t, true)
	_, err := Binary(t.Context())
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), MinIOVersion) {
		t.Fatalf("Binary with a failing build: %v; want an error quoting the build output", err)
	}
}

// TestServer checks the proxy's counts, DropReplies, Env for a child
// process, and Restart keeping the data and the port.
func TestServer(t *testing.T) {
	start := time.Now()
	s := Start(t)
	t.Logf("MinIO started and ready in %v", time.Since(start).Round(time.Millisecond))
	raw := s.NewBucket(t, "server-test")

	// A child process reaches the bucket with Env alone.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(append(os.Environ(), helperEnv+"=put", "S3TEST_URL="+raw), s.Env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child with Env: %v\n%s", err, out)
	}

	o, err := s.ParseBucketURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	if o.Endpoint != s.Endpoint() || !o.PathStyle || o.Bucket != "server-test" {
		t.Errorf("NewBucket URL %s parses to %+v", raw, o)
	}

	s.ResetCounts()
	// A fresh connection per request: Go's client resends an idempotent
	// request whose reused connection closed without a reply.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (*http.Response, error) {
		return client.Get(s.Endpoint() + "/minio/health/live")
	}
	resp, err := get()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := s.Requests()["GET"]; n != 1 {
		t.Errorf("GET count = %d; want 1", n)
	}
	s.DropReplies(2)
	for i := range 2 {
		resp, err := get()
		if err == nil {
			resp.Body.Close()
			t.Fatalf("request %d with a dropped reply got %s", i, resp.Status)
		}
	}
	resp, err = get()
	if err != nil {
		t.Fatalf("request after the drops: %v", err)
	}
	resp.Body.Close()
	if n := s.Requests()["GET"]; n != 4 {
		t.Errorf("GET count = %d; want 4 (dropped requests count)", n)
	}

	direct := s.DirectEndpoint()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	resp, err = get()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("with MinIO stopped the proxy answers %s; want 502", resp.Status)
	}
	start = time.Now()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart took %v", time.Since(start).Round(time.Millisecond))
	if s.DirectEndpoint() != direct {
		t.Errorf("Restart moved MinIO from %s to %s", direct, s.DirectEndpoint())
	}
	// blob.Open takes credentials from the environment.
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	st, err := blob.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := st.Get(t.Context(), "from-child")
	if err != nil {
		t.Fatalf("object written before Restart: %v", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "hello from a child" {
		t.Errorf("object after Restart reads %q", b)
	}
}
