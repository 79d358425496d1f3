package s3_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/blob"
	"github.com/haul-dev/haul/internal/blob/blobtest"
	"github.com/haul-dev/haul/internal/blob/s3"
	"github.com/haul-dev/haul/internal/s3test"
)

var bucketSeq atomic.Int64

// newBucket creates a fresh bucket on srv and opens a store on it, under a
// prefix, with the server's credentials.
func newBucket(t *testing.T, srv *s3test.Server, prefix string) *s3.Store {
	t.Helper()
	name := fmt.Sprintf("b%d-%d", time.Now().UnixNano()%1e6, bucketSeq.Add(1))
	raw := srv.NewBucket(t, name)
	o, err := srv.ParseBucketURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	o.Prefix = prefix
	st, err := s3.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		return newBucket(t, srv, "team/store")
	}, blobtest.Options{ManyKeys: 1100, LargeSize: 70 << 20})
}

// TestConformanceNoPrefix runs the listing checks on a store at the top of
// its bucket.
func TestConformanceNoPrefix(t *testing.T) {
	srv := s3test.Start(t)
	blobtest.Run(t, func(t *testing.T) blob.Store {
		return newBucket(t, srv, "")
	}, blobtest.Options{ManyKeys: 20})
}

func TestPrefixIsolatesStores(t *testing.T) {
	srv := s3test.Start(t)
	ctx := t.Context()
	a := newBucket(t, srv, "a")
	o := srv.Options(a.Bucket())
	o.Prefix = "ab"
	b, err := s3.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, "k", strings.NewReader("in a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "k", strings.NewReader("in ab")); err != nil {
		t.Fatal(err)
	}
	keys, err := a.List(ctx, "")
	if err != nil || len(keys) != 1 || keys[0] != "k" {
		t.Fatalf("List in prefix a = %q, %v; want [k]", keys, err)
	}
	raw, err := s3.New(ctx, srv.Options(a.Bucket()))
	if err != nil {
		t.Fatal(err)
	}
	keys, err = raw.List(ctx, "")
	if err != nil || strings.Join(keys, ",") != "a/k,ab/k" {
		t.Fatalf("List of the whole bucket = %q, %v; want [a/k ab/k]", keys, err)
	}
}

func TestOpenThroughRegistry(t *testing.T) {
	srv := s3test.Start(t)
	raw := srv.NewBucket(t, "registry")
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	st, err := blob.Open(raw + "&x=1")
	if err == nil || !strings.Contains(err.Error(), `unknown parameter "x"`) {
		t.Fatalf("Open with an unknown parameter: %v, %v", st, err)
	}
	u := strings.Replace(raw, "s3://registry", "s3://registry/some/prefix", 1)
	st, err = blob.Open(u)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := st.Put(ctx, "x", strings.NewReader("hi")); err != nil {
		t.Fatal(err)
	}
	whole, err := s3.New(ctx, srv.Options("registry"))
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := whole.List(ctx, ""); err != nil || len(keys) != 1 || keys[0] != "some/prefix/x" {
		t.Fatalf("bucket holds %q, %v; want [some/prefix/x]", keys, err)
	}
	if !strings.Contains(strings.Join(blob.Schemes(), ","), "s3") {
		t.Errorf("Schemes() = %q; want s3 among them", blob.Schemes())
	}
}

func TestParseURL(t *testing.T) {
	o, err := s3.ParseURL("s3://bkt/a/b/?region=eu-west-1&endpoint=http://127.0.0.1:9000&path_style=true")
	if err != nil {
		t.Fatal(err)
	}
	want := s3.Options{Bucket: "bkt", Prefix: "a/b", Region: "eu-west-1", Endpoint: "http://127.0.0.1:9000", PathStyle: true}
	if fmt.Sprint(o) != fmt.Sprint(want) || o.Prefix != want.Prefix || o.PathStyle != want.PathStyle {
		t.Errorf("ParseURL = %+v; want %+v", o, want)
	}
	for _, c := range []struct{ raw, want string }{
		{"s3://user:topsecret@bkt/x", "credentials do not go in the URL"},
		{"s3:///x", "want s3://bucket"},
		{"s3://bkt?path_style=maybe", "path_style"},
		{"s3://bkt?endpoint=ftp://x", "endpoint"},
		{"s3://bkt/a/../b", "bad prefix"},
		{"s3://bkt?colour=red", "unknown parameter"},
	} {
		_, err := s3.ParseURL(c.raw)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseURL(%q): %v; want an error containing %q", c.raw, err, c.want)
		} else if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("ParseURL(%q): error quotes the password: %v", c.raw, err)
		}
	}
}

func TestWrongCredentials(t *testing.T) {
	srv := s3test.Start(t)
	srv.NewBucket(t, "creds")
	ctx := t.Context()
	o := srv.Options("creds")
	o.SecretAccessKey = "not-the-secret-XYZZY"
	_, err := s3.New(ctx, o)
	if err == nil {
		t.Fatal("New with a wrong secret succeeded")
	}
	t.Logf("wrong secret: %v", err)
	if !strings.Contains(err.Error(), "creds") || !strings.Contains(err.Error(), "credentials") {
		t.Errorf("error does not name the bucket and the credentials: %v", err)
	}
	if strings.Contains(err.Error(), "XYZZY") || strings.Contains(err.Error(), srv.SecretKey) {
		t.Errorf("error quotes the secret key: %v", err)
	}

	// A store opened without the check reports the same on Put and Get.
	o.SkipBucketCheck = true
	st, err := s3.New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Put(ctx, "k", strings.NewReader("x"))
	t.Logf("put with a wrong secret: %v", err)
	if err == nil || !strings.Contains(err.Error(), "credentials") || strings.Contains(err.Error(), "XYZZY") {
		t.Errorf("Put with a wrong secret: %v; want an error about credentials without the secret", err)
	}
	_, err = st.Get(ctx, "k")
	if err == nil || errors.Is(err, blob.ErrNotFound) || strings.Contains(err.Error(), "XYZZY") {
		t.Errorf("Get with a wrong secret: %v; want an access error, not ErrNotFound", err)
	}
}

func TestMissingBucket(t *testing.T) {
	srv := s3test.Start(t)
	_, err := s3.New(t.Context(), srv.Options("no-such-bucket"))
	t.Logf("missing bucket: %v", err)
	if err == nil || !strings.Contains(err.Error(), "no-such-bucket") || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("New on a missing bucket: %v; want an error naming the bucket", err)
	}
	// Through blob.Open with the environment's credentials, too.
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	_, err = blob.Open("s3://no-such-bucket?endpoint=" + srv.Endpoint() + "&path_style=true")
	if err == nil || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Fatalf("blob.Open on a missing bucket: %v", err)
	}
}

// TestServerStopAndRestart stops the MinIO process under a store: Put fails
// (after the SDK's retries) and leaves no object; after Restart the same
// store works again and older objects are still there.
func TestServerStopAndRestart(t *testing.T) {
	srv := s3test.Start(t)
	st := newBucket(t, srv, "p")
	ctx := t.Context()
	if err := st.Put(ctx, "before", strings.NewReader("kept")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := st.Put(ctx, "during", strings.NewReader("lost"))
	t.Logf("put while stopped (after %v): %v", time.Since(start).Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("Put with the server stopped succeeded")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "after", strings.NewReader("new")); err != nil {
		t.Fatalf("Put after Restart: %v", err)
	}
	keys, err := st.List(ctx, "")
	if err != nil || strings.Join(keys, ",") != "after,before" {
		t.Fatalf("List after restart = %q, %v; want [after before]", keys, err)
	}
	rc, err := st.Get(ctx, "before")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "kept" {
		t.Errorf("object written before the restart reads %q", b)
	}
}

// TestStopDuringLargePut stops the server while a multipart upload is under
// way: Put fails and no object appears.
func TestStopDuringLargePut(t *testing.T) {
	srv := s3test.Start(t)
	st := newBucket(t, srv, "")
	ctx := t.Context()
	srv.ResetCounts()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- st.Put(ctx, "big", blobtest.OnlyReader{R: pr}) }()
	// Feed 80 MiB, with the server stopped once the first part is up.
	go func() {
		src := blobtest.NewRandomReader(7)
		buf := make([]byte, 1<<20)
		for i := range 80 {
			if i == 72 {
				for srv.PutCount() == 0 {
					time.Sleep(10 * time.Millisecond)
				}
				_ = srv.Stop()
			}
			_, _ = io.ReadFull(src, buf)
			if _, err := pw.Write(buf); err != nil {
				return
			}
		}
		pw.Close()
	}()
	err := <-errc
	t.Logf("large put with the server stopped mid-way: %v", err)
	if err == nil {
		t.Fatal("Put succeeded though the server stopped during it")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "big"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("after a failed Put, Get: %v; want ErrNotFound", err)
	}
}

// TestDropReplies closes connections after MinIO has acted on the request:
// Put either fails or is retried by the SDK, and the object is then whole.
func TestDropReplies(t *testing.T) {
	srv := s3test.Start(t)
	st := newBucket(t, srv, "")
	ctx := t.Context()
	for _, c := range []struct {
		name     string
		drop     int
		match    func(*http.Request) bool
		size     int64
		mustPass bool // the SDK's three attempts outlast the drops
	}{
		{"small-1", 1, nil, 1000, true},
		{"small-2", 2, nil, 1000, true},
		{"small-5", 5, nil, 1000, false},
		{"multipart-1", 1, nil, 70 << 20, true},
		{"multipart-3", 3, nil, 70 << 20, false},
		{"part-1", 1, s3test.IsUploadPart, 70 << 20, true},
		{"part-2", 2, s3test.IsUploadPart, 70 << 20, true},
		// The first CompleteMultipartUpload completes the object; the
		// retry finds the upload gone, and Put checks the ETag.
		{"complete-1", 1, s3test.IsCompleteMultipartUpload, 70 << 20, true},
		{"complete-5", 5, s3test.IsCompleteMultipartUpload, 70 << 20, true}, // all three attempts lose their replies
	} {
		t.Run(c.name, func(t *testing.T) {
			data := make([]byte, c.size)
			_, _ = io.ReadFull(blobtest.NewRandomReader(uint64(c.size)+uint64(c.drop)), data)
			srv.ResetCounts()
			srv.DropRepliesIf(c.drop, c.match)
			err := st.Put(ctx, c.name, blobtest.OnlyReader{R: bytes.NewReader(data)})
			srv.DropReplies(0)
			t.Logf("put with %d dropped replies: err=%v, requests %v", c.drop, err, srv.Requests())
			if err != nil && c.mustPass {
				t.Errorf("Put failed: %v", err)
			}
			rc, gerr := st.Get(ctx, c.name)
			if err != nil {
				if gerr == nil {
					// The object may exist only if it is whole.
					got, _ := io.ReadAll(rc)
					rc.Close()
					if !bytes.Equal(got, data) {
						t.Fatalf("failed Put left a partial object (%d of %d bytes)", len(got), len(data))
					}
				} else if !errors.Is(gerr, blob.ErrNotFound) {
					t.Fatal(gerr)
				}
				return
			}
			if gerr != nil {
				t.Fatalf("Put succeeded but Get: %v", gerr)
			}
			h := sha256.New()
			n, _ := io.Copy(h, rc)
			rc.Close()
			if n != c.size || !bytes.Equal(h.Sum(nil), sha(data)) {
				t.Fatalf("object after retried Put: %d bytes, hash differs=%v", n, !bytes.Equal(h.Sum(nil), sha(data)))
			}
		})
	}
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// TestPutRequestShapes checks which requests Put sends: one PutObject up to
// 64 MiB, a multipart upload above, for sized and unsized bodies.
func TestPutRequestShapes(t *testing.T) {
	srv := s3test.Start(t)
	st := newBucket(t, srv, "")
	ctx := t.Context()
	for _, c := range []struct {
		name    string
		size    int64
		unsized bool
		puts    int64
		posts   int64 // create and complete of a multipart upload
	}{
		{"small-sized", 100, false, 1, 0},
		{"small-unsized", 100, true, 1, 0},
		{"spooled-unsized", 5 << 20, true, 1, 0},
		{"at-limit-unsized", 64 << 20, true, 1, 0},
		{"above-limit-unsized", 64<<20 + 1, true, 5, 2},
		{"above-limit-sized", 70 << 20, false, 5, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r io.Reader = io.LimitReader(blobtest.NewRandomReader(3), c.size)
			if c.unsized {
				r = blobtest.OnlyReader{R: r}
			} else {
				b, _ := io.ReadAll(r)
				r = bytes.NewReader(b)
			}
			srv.ResetCounts()
			if err := st.Put(ctx, c.name, r); err != nil {
				t.Fatal(err)
			}
			req := srv.Requests()
			if srv.PutCount() != c.puts || req["POST"] != c.posts {
				t.Errorf("Put of %d bytes sent %d object PUTs and %d POSTs; want %d and %d (all: %v)", c.size, srv.PutCount(), req["POST"], c.puts, c.posts, req)
			}
			rc, err := st.GetRange(ctx, c.name, c.size-10, -1)
			if err != nil {
				t.Fatal(err)
			}
			tail, _ := io.ReadAll(rc)
			rc.Close()
			if len(tail) != 10 {
				t.Errorf("last 10 bytes: got %d", len(tail))
			}
		})
	}
}

func TestCountsIgnoreCreateBucket(t *testing.T) {
	srv := s3test.Start(t)
	srv.ResetCounts()
	srv.NewBucket(t, "counted")
	if n := srv.PutCount(); n != 0 {
		t.Errorf("PutCount after CreateBucket = %d; want 0", n)
	}
	if n := srv.Requests()["PUT"]; n != 1 {
		t.Errorf("PUT requests after CreateBucket = %d; want 1", n)
	}
}

// TestPutUnsizedMemoryBounded streams 160 MiB of unknown length and checks
// that the heap never grows by anything near the body's size: the body goes
// through a spool file, not memory.
func TestPutUnsizedMemoryBounded(t *testing.T) {
	srv := s3test.Start(t)
	st := newBucket(t, srv, "")
	const size = 160 << 20
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	done := make(chan struct{})
	go func() {
		var m runtime.MemStats
		for {
			select {
			case <-done:
				return
			case <-time.After(25 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
		}
	}()
	start := time.Now()
	h := sha256.New()
	err := st.Put(t.Context(), "unsized", blobtest.OnlyReader{R: io.TeeReader(io.LimitReader(blobtest.NewRandomReader(9), size), h)})
	close(done)
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	growth := int64(peak.Load()) - int64(base.HeapInuse)
	t.Logf("Put of %d MiB of unknown length: %v (%.0f MiB/s), heap grew by at most %.1f MiB, %d object PUTs",
		size>>20, elapsed.Round(time.Millisecond), float64(size>>20)/elapsed.Seconds(), float64(growth)/(1<<20), srv.PutCount())
	if growth > 48<<20 {
		t.Errorf("heap grew by %d MiB during the Put; want it bounded well below the body's %d MiB", growth>>20, size>>20)
	}
	rc, err := st.Get(t.Context(), "unsized")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h2 := sha256.New()
	if n, err := io.Copy(h2, rc); err != nil || n != size || !bytes.Equal(h.Sum(nil), h2.Sum(nil)) {
		t.Fatalf("read back %d bytes, %v; hashes equal: %v", n, err, bytes.Equal(h.Sum(nil), h2.Sum(nil)))
	}
}
