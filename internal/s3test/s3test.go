// Package s3test starts throwaway S3-compatible servers for tests: a real
// MinIO server (built from the Go module proxy on first use, see Binary) on
// a temporary data folder and loopback ports, behind a reverse proxy on a
// port of its own that counts requests and can drop replies.
//
// Clients talk to Endpoint, which is the proxy. Stop and Restart stop and
// start the MinIO process itself (same data, same port), so a test sees a
// real outage: while MinIO is down the proxy answers 502 Bad Gateway, as a
// load balancer in front of a dead server would.
//
// Leaks: MinIO runs as a direct child of the test process, in its own
// process group, with a parent-death signal (SIGKILL), so it goes away with
// the test binary even when that is killed. Start's cleanup stops it and
// removes its folder.
package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob/s3"
)

// Region is the region that clients of the server use.
const Region = "us-east-1"

// readyTimeout bounds how long a start waits for MinIO to answer its health
// check.
const readyTimeout = 60 * time.Second

// Server is a MinIO server started by Start, with its proxy.
type Server struct {
	// AccessKey and SecretKey are the root credentials (MINIO_ROOT_USER and
	// MINIO_ROOT_PASSWORD).
	AccessKey, SecretKey string

	bin, dir    string
	port, conPt int // MinIO's S3 and console ports

	proxyURL string
	proxySrv *http.Server

	mu   sync.Mutex
	proc *process // nil while stopped

	counts struct {
		sync.Mutex
		byMethod map[string]int64
		puts     int64
	}
	drop struct {
		sync.Mutex
		n     int
		match func(*http.Request) bool // nil matches every request
	}
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // set before done is closed
}

// Start builds MinIO if needed (see Binary; a failed build fails the test
// with the build's error), starts it on a fresh folder under the system's
// temporary directory and free loopback ports, starts the proxy, and waits
// until MinIO is ready. The test's cleanup stops both and removes the
// folder.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := Binary(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "s3test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &Server{
		AccessKey: "haul-test",
		SecretKey: "haul-test-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		bin:       bin,
		dir:       dir,
	}
	s.counts.byMethod = make(map[string]int64)
	if err := s.startProxy(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.proxySrv.Close() })

	// Another process may take a port between its pick and MinIO's bind:
	// try again on new ports.
	var lastErr error
	for range 3 {
		ports, err := freePorts(2)
		if err != nil {
			t.Fatal(err)
		}
		s.port, s.conPt = ports[0], ports[1]
		if lastErr = s.start(t.Context()); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		t.Fatal(lastErr)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// Endpoint returns the base URL that clients use: the proxy's.
func (s *Server) Endpoint() string { return s.proxyURL }

// DirectEndpoint returns MinIO's own base URL, bypassing the proxy.
func (s *Server) DirectEndpoint() string { return "http://127.0.0.1:" + strconv.Itoa(s.port) }

// Dir returns the folder that holds MinIO's data and log.
func (s *Server) Dir() string { return s.dir }

// Env returns the environment that points the AWS credential chain of a
// child process at the server's root credentials: AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION, and AWS_EC2_METADATA_DISABLED (so the
// chain never waits for an instance metadata service).
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + Region,
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Options returns the s3 driver options for bucket on this server, through
// the proxy, with the root credentials.
func (s *Server) Options(bucket string) s3.Options {
	return s3.Options{
		Bucket:          bucket,
		Region:          Region,
		Endpoint:        s.Endpoint(),
		PathStyle:       true,
		AccessKeyID:     s.AccessKey,
		SecretAccessKey: s.SecretKey,
	}
}

// NewBucket creates bucket name (S3 rules: 3 to 63 lower-case letters,
// digits, '-' and '.') and returns its store URL,
// s3://name?endpoint=<Endpoint>&path_style=true&region=us-east-1. The URL
// carries no credentials: open it with Env's variables set, or with
// s3.ParseURL and s3.New adding AccessKey and SecretKey.
func (s *Server) NewBucket(t testing.TB, name string) string {
	t.Helper()
	o := s.Options(name)
	o.SkipBucketCheck = true
	st, err := s3.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	o.AccessKeyID, o.SecretAccessKey, o.SkipBucketCheck = "", "", false
	return o.String()
}

// Requests returns how many requests the proxy has passed on since the
// start or the last ResetCounts, by HTTP method. Dropped replies count.
func (s *Server) Requests() map[string]int64 {
	s.counts.Lock()
	defer s.counts.Unlock()
	out := make(map[string]int64, len(s.counts.byMethod))
	for m, n := range s.counts.byMethod {
		out[m] = n
	}
	return out
}

// PutCount returns how many object-writing requests the proxy has passed
// on: PUTs of objects (PutObject, CopyObject) and of multipart parts
// (UploadPart), not bucket-level PUTs such as CreateBucket.
func (s *Server) PutCount() int64 {
	s.counts.Lock()
	defer s.counts.Unlock()
	return s.counts.puts
}

// ResetCounts sets every count to zero.
func (s *Server) ResetCounts() {
	s.counts.Lock()
	defer s.counts.Unlock()
	clear(s.counts.byMethod)
	s.counts.puts = 0
}

// DropReplies makes the proxy pass the next n requests on to MinIO, let it
// act on them, and then close the client's connection without a reply, as a
// network failure after the request has reached the server would. Zero
// ends the dropping.
func (s *Server) DropReplies(n int) { s.DropRepliesIf(n, nil) }

// DropRepliesIf is DropReplies for only the next n requests that match
// reports true for (nil matches all); other requests pass as usual. match
// runs before the request's body is read.
func (s *Server) DropRepliesIf(n int, match func(r *http.Request) bool) {
	s.drop.Lock()
	defer s.drop.Unlock()
	s.drop.n, s.drop.match = n, match
}

// IsCompleteMultipartUpload reports whether r is a
// CompleteMultipartUpload request (POST /bucket/key?uploadId=...), for
// DropRepliesIf.
func IsCompleteMultipartUpload(r *http.Request) bool {
	return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
}

// IsUploadPart reports whether r is an UploadPart request (PUT
// /bucket/key?partNumber=N&uploadId=...), for DropRepliesIf.
func IsUploadPart(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Has("partNumber")
}

func (s *Server) startProxy() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("s3test: proxy listen: %w", err)
	}
	s.proxyURL = "http://" + l.Addr().String()
	rp := &httputil.ReverseProxy{
		// The request keeps its Host header: the client signed it, and
		// MinIO checks the signature against what it receives.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = "127.0.0.1:" + strconv.Itoa(s.port)
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "s3test proxy: MinIO unreachable: "+err.Error(), http.StatusBadGateway)
		},
	}
	s.proxySrv = &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(rp, w, r) }),
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() { _ = s.proxySrv.Serve(l) }()
	return nil
}

func (s *Server) serve(rp *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request) {
	s.count(r)
	if s.takeDrop(r) {
		// Let MinIO act on the request, discard its answer, and close the
		// client's connection.
		rp.ServeHTTP(&discardWriter{h: make(http.Header)}, r)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // closes the connection without a reply
	}
	rp.ServeHTTP(w, r)
}

func (s *Server) takeDrop(r *http.Request) bool {
	s.drop.Lock()
	defer s.drop.Unlock()
	if s.drop.n <= 0 || (s.drop.match != nil && !s.drop.match(r)) {
		return false
	}
	s.drop.n--
	return true
}

func (s *Server) count(r *http.Request) {
	s.counts.Lock()
	defer s.counts.Unlock()
	s.counts.byMethod[r.Method]++
	if r.Method == http.MethodPut && isObjectPath(r.URL.Path) {
		s.counts.puts++
	}
}

// isObjectPath reports whether a path-style request path names an object
// (/bucket/key...) rather than a bucket (/bucket or /bucket/).
func isObjectPath(p string) bool {
	p = strings.TrimPrefix(p, "/")
	_, key, ok := strings.Cut(p, "/")
	return ok && key != ""
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// start runs MinIO on s.dir/data and s.port and waits until it is ready.
func (s *Server) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return nil
	}
	logPath := filepath.Join(s.dir, "minio.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("s3test: open MinIO log: %w", err)
	}
	fmt.Fprintf(logFile, "--- s3test: starting MinIO on port %d at %s\n", s.port, time.Now().Format(time.RFC3339Nano))
	addr := "127.0.0.1:" + strconv.Itoa(s.port)
	cmd := exec.Command(s.bin, "server", filepath.Join(s.dir, "data"),
		"--address", addr,
		"--console-address", "127.0.0.1:"+strconv.Itoa(s.conPt),
		"--quiet")
	cmd.Env = append(minioEnv(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"HOME="+s.dir,
	)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("s3test: start MinIO: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()

	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	health := "http://" + addr + "/minio/health/ready"
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, health, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.proc = p
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("s3test: MinIO exited before it was ready (%v); log %s ends:\n%s", p.err, logPath, logTail(logPath))
		case <-ctx.Done():
			killGroup(cmd.Process.Pid)
			<-p.done
			return fmt.Errorf("s3test: MinIO not ready within %v: %w; log %s ends:\n%s", readyTimeout, ctx.Err(), logPath, logTail(logPath))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// minioEnv is the test's environment without MINIO_ and AWS_ variables,
// which could change how the server runs.
func minioEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MINIO_") || strings.HasPrefix(kv, "AWS_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// Stop stops the MinIO process (SIGTERM, then SIGKILL after 10 s) and
// waits for it to exit; the proxy keeps running and answers 502 until
// Restart. It is a no-op when MinIO is not running.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	_ = p.cmd.Process.Signal(stopSignal)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		killGroup(p.cmd.Process.Pid)
		<-p.done
		return errors.New("s3test: MinIO did not stop within 10s of SIGTERM; killed")
	}
}

// Restart stops MinIO if it is running and starts it again on the same data
// folder and port, returning once it is ready. Objects written before stay.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var err error
	// The old process's port can take a moment to become free.
	for range 3 {
		if err = s.start(ctx); err == nil {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return err
}

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("s3test: pick a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// ParseBucketURL is a convenience for tests: it parses a URL from NewBucket
// and adds the server's credentials.
func (s *Server) ParseBucketURL(raw string) (s3.Options, error) {
	o, err := s3.ParseURL(raw)
	if err != nil {
		return o, err
	}
	o.AccessKeyID, o.SecretAccessKey = s.AccessKey, s.SecretKey
	return o, nil
}
