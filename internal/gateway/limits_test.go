package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/pgtest"
	"github.com/haul-dev/haul/internal/spec"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/postgres"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// gzipBomb returns a gzip stream of prefix, about n bytes of fill (whole
// MiB), then suffix: small on the wire (about 1 KiB per MiB), built from
// concatenated gzip members as an attacker would, without compressing n
// bytes.
func gzipBomb(t testing.TB, prefix string, fill byte, n int, suffix string) []byte {
	t.Helper()
	member := func(data []byte) []byte {
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(data)
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	out := member([]byte(prefix))
	if rest := n % (1 << 20); rest > 0 {
		out = append(out, member(bytes.Repeat([]byte{fill}, rest))...)
	}
	mib := member(bytes.Repeat([]byte{fill}, 1<<20))
	for range n >> 20 {
		out = append(out, mib...)
	}
	return append(out, member([]byte(suffix))...)
}

// endOfStream reads a Connect streaming response to its end-of-stream
// message (which may be gzipped) and returns that message.
func endOfStream(t *testing.T, body []byte) string {
	t.Helper()
	for len(body) >= 5 {
		flags, size := body[0], binary.BigEndian.Uint32(body[1:5])
		if int(size) > len(body)-5 {
			break
		}
		msg := body[5 : 5+size]
		body = body[5+size:]
		if flags&1 != 0 {
			zr, err := gzip.NewReader(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			if msg, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		if flags&2 != 0 {
			return string(msg)
		}
	}
	t.Fatalf("no end-of-stream message in %q", body)
	return ""
}

func TestLimitedGzip(t *testing.T) {
	t.Parallel()
	const max = 1000
	for _, n := range []int{0, 1, max - 1, max} {
		z := &limitedGzip{max: max}
		if err := z.Reset(bytes.NewReader(gzipBomb(t, "", 'a', n, ""))); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(z)
		if err != nil || len(got) != n {
			t.Errorf("%d bytes under a limit of %d: read %d bytes, error %v; want all, no error", n, max, len(got), err)
		}
	}
	z := &limitedGzip{max: max}
	if err := z.Reset(bytes.NewReader(gzipBomb(t, "", 'a', 64<<20, ""))); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(z)
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "limit of 1000 bytes") {
		t.Fatalf("64 MiB over a limit of %d: want resource_exhausted naming the limit, got %v", max, err)
	}
	if len(got) != max {
		t.Errorf("read %d bytes before failing, want exactly the limit %d", len(got), max)
	}
	// Reset starts a new count.
	if err := z.Reset(bytes.NewReader(gzipBomb(t, "", 'b', 10, ""))); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(z); err != nil || string(got) != "bbbbbbbbbb" {
		t.Fatalf("after Reset: %q, %v", got, err)
	}
}

// testGateway serves a gateway on a real SQLite store through Bounded, as
// haul's server does.
func testGateway(t *testing.T, lim spec.Limits) (*httptest.Server, store.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "haul.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	gw := New(Config{Store: st, Limits: lim, Auth: auth.NewAuthenticator(auth.AuthnConfig{Tokens: st})})
	mux := http.NewServeMux()
	mux.Handle(Bounded(gw.ReadMaxBytes(), apiv1connect.NewJobServiceHandler)(gw, connect.WithInterceptors(gw.Interceptor())))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, st
}

// adminClient issues a platform admin's token into st and returns an HTTP
// client that sends it.
func adminClient(t *testing.T, st store.Store) *http.Client {
	t.Helper()
	return &http.Client{Transport: withBearer{adminToken(t, st)}}
}

// adminToken issues a platform admin's token into st.
func adminToken(t *testing.T, st store.Store) string {
	t.Helper()
	return issueToken(t, st, "test-admin", true, nil)
}

// issueToken stores a token of subject with teams' roles (and platform
// admin when platform is set), valid for an hour, and returns it.
func issueToken(t *testing.T, st store.Store, subject string, platform bool, teams map[string]string) string {
	t.Helper()
	tok, id, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := st.CreateToken(context.Background(), &store.Token{ID: id, Hash: hash, Subject: subject, Kind: "user", Teams: teams,
		PlatformAdmin: platform, CreatedBy: "test", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return tok
}

type withBearer struct{ token string }

func (b withBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// allocated runs f and returns the bytes the process allocated meanwhile.
func allocated(f func()) uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	f()
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc - before
}

// TestGzipBombRefused sends requests that are small on the wire and huge
// decompressed, in the Connect unary protocol (Content-Encoding) and the
// Connect streaming protocol (a compressed envelope), and checks each is
// refused as resource_exhausted naming the limit, with the server
// allocating about the limit, not the decompressed size.
func TestGzipBombRefused(t *testing.T) {
	t.Parallel()
	lim := spec.Limits{MaxSpecBytes: 1 << 20}
	srv, st := testGateway(t, lim)
	max := ReadMaxBytes(lim)
	const inflated = 512 << 20
	unary := gzipBomb(t, `{"spec":"`, 'A', inflated, `"}`)
	stream := gzipBomb(t, `{"jobId":"`, 'A', inflated, `"}`)
	t.Logf("%d MiB decompressed: %d KiB on the wire", inflated>>20, len(unary)>>10)

	var body []byte
	var status int
	alloc := allocated(func() {
		req, _ := http.NewRequest("POST", srv.URL+apiv1connect.JobServiceSubmitJobProcedure, bytes.NewReader(unary))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		status = resp.StatusCode
	})
	if status != http.StatusTooManyRequests || !strings.Contains(string(body), "resource_exhausted") || !strings.Contains(string(body), fmt.Sprint(max)) {
		t.Errorf("unary gzip bomb: HTTP %d %s; want 429 resource_exhausted naming the limit %d", status, body, max)
	}
	if alloc > 4*uint64(max)+32<<20 {
		t.Errorf("unary gzip bomb: the server allocated %d MiB for a request limited to %d MiB", alloc>>20, max>>20)
	}
	t.Logf("unary gzip bomb: %d MiB allocated, answer %s", alloc>>20, body)

	// Connect streaming: flags 1 (compressed), then the length.
	env := make([]byte, 5, 5+len(stream))
	env[0] = 1
	binary.BigEndian.PutUint32(env[1:], uint32(len(stream)))
	env = append(env, stream...)
	tok := adminToken(t, st)
	alloc = allocated(func() {
		req, _ := http.NewRequest("POST", srv.URL+apiv1connect.JobServiceGetLogsProcedure, bytes.NewReader(env))
		req.Header.Set("Content-Type", "application/connect+json")
		req.Header.Set("Connect-Content-Encoding", "gzip")
		// Authenticated: a stream without a credential is refused before
		// its first message is read.
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		body = []byte(endOfStream(t, raw))
	})
	if !strings.Contains(string(body), "resource_exhausted") || !strings.Contains(string(body), fmt.Sprint(max)) {
		t.Errorf("streaming gzip bomb: %s; want resource_exhausted naming the limit %d", body, max)
	}
	if alloc > 4*uint64(max)+32<<20 {
		t.Errorf("streaming gzip bomb: the server allocated %d MiB for a request limited to %d MiB", alloc>>20, max>>20)
	}
	t.Logf("streaming gzip bomb: %d MiB allocated, answer %s", alloc>>20, body)
}

// TestOversizedBodyRefused sends an uncompressed body over the limit: it is
// refused as resource_exhausted and not read to its end.
func TestOversizedBodyRefused(t *testing.T) {
	t.Parallel()
	lim := spec.Limits{MaxSpecBytes: 1 << 20}
	srv, st := testGateway(t, lim)
	c := apiv1connect.NewJobServiceClient(adminClient(t, st), srv.URL)
	big := bytes.Repeat([]byte("a"), 4<<20)
	_, err := c.SubmitJob(context.Background(), connect.NewRequest(&apiv1.SubmitJobRequest{Spec: big}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("a 4 MiB request against a %d-byte limit: want resource_exhausted, got %v", ReadMaxBytes(lim), err)
	}
	// Under the read limit but over the spec limit: refused by the spec
	// check, before decoding, naming the limit.
	_, err = c.SubmitJob(context.Background(), connect.NewRequest(&apiv1.SubmitJobRequest{Spec: big[:(1<<20)+1]}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "more than the limit of 1048576 (checked before decoding)") {
		t.Fatalf("a spec one byte over the limit: want resource_exhausted naming the limit, got %v", err)
	}
}

// TestExpandedJobRefused submits a small spec whose tasks expand past the
// job-bytes limit: refused, naming the limit, and nothing is stored.
func TestExpandedJobRefused(t *testing.T) {
	t.Parallel()
	srv, st := testGateway(t, spec.Limits{MaxJobBytes: 1 << 20})
	c := apiv1connect.NewJobServiceClient(adminClient(t, st), srv.URL)
	src := fmt.Sprintf("name: big\ntasks:\n  - key: \"t-{i}\"\n    foreach: {range: [0, 2000]}\n    command: [echo, %s]\n", strings.Repeat("x", 10000))
	_, err := c.SubmitJob(context.Background(), connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(src)}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "more than the limit of 1048576 bytes") {
		t.Fatalf("2,000 tasks of 10 KB against a 1 MiB job limit: want resource_exhausted naming the limit, got %v", err)
	}
	jobs, err := st.ListJobs(context.Background(), store.JobFilter{Limit: 10})
	if err != nil || len(jobs) != 0 {
		t.Fatalf("after a refused job the store holds %d jobs (err %v), want none", len(jobs), err)
	}
	resp, err := c.SubmitJob(context.Background(), connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte("name: ok\ntasks: [{key: a, command: [x]}]\n")}))
	if err != nil || resp.Msg.TaskCount != 1 {
		t.Fatalf("a small job after the refused one: %v", err)
	}
}

func TestStoreErrorCodes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want connect.Code
		msg  string
	}{
		{fmt.Errorf("get: %w", store.ErrNotFound), connect.CodeNotFound, "job j1 not found"},
		{fmt.Errorf("insert: %w: text with NUL", store.ErrRejected), connect.CodeFailedPrecondition, "store refused the data"},
		{errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), connect.CodeUnavailable, "store unavailable: dial tcp 127.0.0.1:5432: connect: connection refused; retry"},
		{fmt.Errorf("query: %w", context.DeadlineExceeded), connect.CodeDeadlineExceeded, "deadline exceeded"},
		{connect.NewError(connect.CodePermissionDenied, errors.New("no")), connect.CodePermissionDenied, "no"},
	} {
		err := storeError(c.err, "job", "j1")
		if connect.CodeOf(err) != c.want || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("storeError(%v) = %v; want %s containing %q", c.err, err, c.want, c.msg)
		}
	}
	if err := storeErrorCode(store.ErrRejected, "job", "j1", connect.CodeInvalidArgument); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("a rejected write of the caller's data: %v, want invalid_argument", err)
	}
}

// TestStoreDownUnavailable kills the PostgreSQL server under a gateway:
// every call then answers unavailable, naming the cause, not internal or
// unknown; a job stored before is served again once PostgreSQL is back.
func TestStoreDownUnavailable(t *testing.T) {
	t.Parallel()
	dir, err := pgtest.MkdirTemp()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pg, err := pgtest.StartServer(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })
	st, err := postgres.Open(t.Context(), pg.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	gw := New(Config{Store: st, Auth: auth.NewAuthenticator(auth.AuthnConfig{Tokens: st})})
	mux := http.NewServeMux()
	mux.Handle(Bounded(gw.ReadMaxBytes(), apiv1connect.NewJobServiceHandler)(gw, connect.WithInterceptors(gw.Interceptor())))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := apiv1connect.NewJobServiceClient(adminClient(t, st), srv.URL)
	ctx := t.Context()
	job := []byte("name: ok\ntasks: [{key: a, command: [x]}]\n")
	sub, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: job}))
	if err != nil {
		t.Fatal(err)
	}
	id := sub.Msg.JobId

	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"SubmitJob": func() error {
			_, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: job}))
			return err
		},
		"GetJob": func() error {
			_, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
			return err
		},
		"ListJobs": func() error {
			_, err := c.ListJobs(ctx, connect.NewRequest(&apiv1.ListJobsRequest{}))
			return err
		},
		"CancelJob": func() error {
			_, err := c.CancelJob(ctx, connect.NewRequest(&apiv1.CancelJobRequest{JobId: id}))
			return err
		},
		"GetTask": func() error {
			_, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: id, Key: "a"}))
			return err
		},
	}
	for name, call := range calls {
		err := call()
		if connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "store unavailable: ") || !strings.HasSuffix(err.Error(), "; retry") {
			t.Errorf("%s with PostgreSQL down: %v; want unavailable, \"store unavailable: <cause>; retry\"", name, err)
		}
	}

	pg2, err := pgtest.StartServer(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg2.Stop() })
	got, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
	if err != nil || got.Msg.Job.Id != id {
		t.Fatalf("GetJob once PostgreSQL is back: %v", err)
	}
}
