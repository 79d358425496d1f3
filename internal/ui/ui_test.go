package ui

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"
)

var testFiles = fstest.MapFS{
	"index.html":            {Data: []byte("<!doctype html><title>haul</title>")},
	"assets/index-abc1.js":  {Data: []byte("console.log(1)")},
	"assets/index-abc1.css": {Data: []byte("body{}")},
	"robots.txt":            {Data: []byte("User-agent: *")},
}

func get(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "/", nil)
	r.URL.Path = target // as a server would pass it, unnormalized
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got := w.Header().Get("Content-Security-Policy"); got != csp {
		t.Errorf("%s %s: CSP %q", method, target, got)
	}
	if got := w.Header().Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s %s: X-Content-Type-Options %q", method, target, got)
	}
	if got := w.Header().Get("Referrer-Policy"); got != "same-origin" {
		t.Errorf("%s %s: Referrer-Policy %q", method, target, got)
	}
	return w
}

func isIndex(w *httptest.ResponseRecorder) bool {
	return w.Code == http.StatusOK && strings.Contains(w.Body.String(), "<title>haul</title>") &&
		w.Header().Get("Cache-Control") == "no-cache" &&
		strings.HasPrefix(w.Header().Get("Content-Type"), "text/html")
}

func TestIndexFallback(t *testing.T) {
	h := handler(testFiles)
	for _, p := range []string{"/", "/index.html", "/jobs", "/jobs/j-1/tasks/sim-3", "/teams?x=1", "/assets"} {
		if w := get(t, h, "GET", p); !isIndex(w) {
			t.Errorf("GET %s: %d %q, want index.html", p, w.Code, w.Body.String())
		}
	}
	w := get(t, h, "HEAD", "/jobs")
	if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-cache" || w.Body.Len() != 0 {
		t.Errorf("HEAD /jobs: %d %q %q", w.Code, w.Header().Get("Cache-Control"), w.Body.String())
	}
}

func TestAssetsCachedForever(t *testing.T) {
	h := handler(testFiles)
	w := get(t, h, "GET", "/assets/index-abc1.js")
	if w.Code != http.StatusOK || w.Body.String() != "console.log(1)" {
		t.Fatalf("GET asset: %d %q", w.Code, w.Body.String())
	}
	if got := w.Header().Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
		t.Errorf("asset Cache-Control %q", got)
	}
	if got := w.Header().Get("Content-Type"); !strings.Contains(got, "javascript") {
		t.Errorf("asset Content-Type %q", got)
	}
	if w := get(t, h, "HEAD", "/assets/index-abc1.css"); w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Errorf("HEAD asset: %d", w.Code)
	}
	// A file outside assets/ is not hashed: it must be revalidated.
	if w := get(t, h, "GET", "/robots.txt"); w.Code != 200 || w.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("GET /robots.txt: %d %q", w.Code, w.Header().Get("Cache-Control"))
	}
	// A missing asset is a 404, not index.html served as JavaScript.
	if w := get(t, h, "GET", "/assets/gone-1234.js"); w.Code != http.StatusNotFound {
		t.Errorf("missing asset: %d", w.Code)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	h := handler(testFiles)
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		w := get(t, h, m, "/jobs")
		if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d Allow %q", m, w.Code, w.Header().Get("Allow"))
		}
	}
}

func TestNoDirectoryListing(t *testing.T) {
	h := handler(testFiles)
	for _, p := range []string{"/assets/", "/assets", "/./assets/"} {
		w := get(t, h, "GET", p)
		if strings.Contains(w.Body.String(), "index-abc1") {
			t.Errorf("GET %s lists the directory: %q", p, w.Body.String())
		}
	}
}

func TestNoPathEscape(t *testing.T) {
	h := handler(testFiles)
	for _, p := range []string{"/../../etc/passwd", "/assets/../../../etc/passwd", "/..", "/%2e%2e/etc/passwd"} {
		w := get(t, h, "GET", p)
		if strings.Contains(w.Body.String(), "root:") || !isIndex(w) {
			t.Errorf("GET %s: %d %q", p, w.Code, w.Body.String())
		}
	}
}

// The embedded build has an index.html that loads its hashed assets.
func TestEmbeddedBuild(t *testing.T) {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		t.Fatal(err)
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		t.Fatalf("dist has no index.html: run make ui")
	}
	h := Handler()
	if w := get(t, h, "GET", "/jobs"); w.Code != 200 || w.Body.String() != string(index) {
		t.Errorf("GET /jobs: %d", w.Code)
	}
	// Every file index.html loads is there (a commit that left a new
	// hashed file out would serve a blank page).
	refs := regexp.MustCompile(`"(/assets/[^"]+)"`).FindAllStringSubmatch(string(index), -1)
	if len(refs) == 0 {
		t.Fatal("index.html loads no assets")
	}
	for _, ref := range refs {
		w := get(t, h, "GET", ref[1])
		if w.Code != 200 || w.Header().Get("Cache-Control") != immutable {
			t.Errorf("GET %s: %d %q", ref[1], w.Code, w.Header().Get("Cache-Control"))
		}
	}
}
