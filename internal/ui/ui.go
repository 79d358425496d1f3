// Package ui serves haul's web UI: the files Vite builds from ui/ into
// dist, embedded so that the binary needs no Node (make ui rebuilds them).
package ui

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// Headers every response carries.
const (
	csp            = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
	immutable      = "public, max-age=31536000, immutable"
	noCache        = "no-cache"
	assetsPrefix   = "assets/"
	indexFile      = "index.html"
	allowedMethods = "GET, HEAD"
)

// Handler serves the embedded UI: the hashed files under /assets/ cached
// for a year, any other file as it is, and index.html (never cached) for
// every path that is not a file, so that client-side routes load the app.
func Handler() http.Handler {
	files, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded: it is always there
	}
	return handler(files)
}

func handler(files fs.FS) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", allowedMethods)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// Clean against the root: ".." can never climb out of files.
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name != "" && name != indexFile {
			// ReadFile fails on directories, so they fall through to
			// index.html and are never listed.
			if data, err := fs.ReadFile(files, name); err == nil {
				if strings.HasPrefix(name, assetsPrefix) {
					h.Set("Cache-Control", immutable)
				} else {
					h.Set("Cache-Control", noCache)
				}
				http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
				return
			}
			// A missing hashed asset is an old page asking for a file a
			// newer build replaced: index.html would only confuse it.
			if strings.HasPrefix(name, assetsPrefix) {
				h.Set("Cache-Control", noCache)
				http.NotFound(w, r)
				return
			}
		}
		data, err := fs.ReadFile(files, indexFile)
		if err != nil {
			http.Error(w, "the UI was not built (make ui)", http.StatusNotFound)
			return
		}
		h.Set("Cache-Control", noCache)
		http.ServeContent(w, r, indexFile, time.Time{}, bytes.NewReader(data))
	})
}
