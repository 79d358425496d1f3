// Package blob is haul's object-store seam: a small Store interface (put,
// get, list, delete of whole objects under '/'-separated keys) and the
// drivers behind it. Logs and the Parquet export go through it; nothing above
// this package knows whether objects live on a local filesystem or in an
// S3-compatible bucket.
//
// Drivers: the filesystem driver ("file:///abs/path") lives in this package;
// others register a URL scheme with Register from their own package, so that
// a binary links only the drivers it imports. The S3 driver is package
// internal/blob/s3 ("s3://bucket/prefix"); importing it for its side effect
//
//	import _ "github.com/haul-dev/haul/internal/blob/s3"
//
// makes Open accept s3 URLs. This package itself imports only the standard
// library, so that small binaries such as haul-taskhost can link it.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// ErrNotFound is returned by Get when no object has the key.
var ErrNotFound = errors.New("blob: object not found")

// Store holds whole objects under '/'-separated keys such as
// "logs/job-1/seg-00000001". A Put is atomic: readers see either the old
// object, the new one, or none, never part of one.
type Store interface {
	// Put stores the bytes read from r under key, replacing any object there.
	Put(ctx context.Context, key string, r io.Reader) error
	// Get opens the object under key; it returns an error wrapping
	// ErrNotFound when there is none. The caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// GetRange opens length bytes of the object under key starting at byte
	// offset; a negative length means to the end of the object. A range
	// that runs past the end yields the bytes that exist (a short read, not
	// an error), and an offset at or past the end yields an empty reader. A
	// missing object is an error wrapping ErrNotFound, and a negative
	// offset is an error. The caller closes the reader.
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// List returns the keys that start with prefix (a plain string prefix,
	// not only a folder), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes the object under key. Deleting a missing object is not
	// an error.
	Delete(ctx context.Context, key string) error
}

// An Opener opens the Store that a parsed URL of its scheme names.
type Opener func(u *url.URL) (Store, error)

var registry struct {
	mu      sync.RWMutex
	openers map[string]Opener
}

// Register makes Open hand URLs of scheme (lower case, without "://") to
// open. Drivers call it from an init function. It panics if scheme is empty,
// is "file" (built in), is already registered, or open is nil: all of them
// are programming errors found at start-up.
func Register(scheme string, open func(u *url.URL) (Store, error)) {
	if scheme == "" || scheme != strings.ToLower(scheme) || strings.Contains(scheme, ":") {
		panic(fmt.Sprintf("blob: Register: bad scheme %q (want a lower-case URL scheme without ':')", scheme))
	}
	if open == nil {
		panic("blob: Register: nil opener for scheme " + scheme)
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if scheme == "file" || registry.openers[scheme] != nil {
		panic("blob: Register: scheme " + scheme + " registered twice")
	}
	if registry.openers == nil {
		registry.openers = make(map[string]Opener)
	}
	registry.openers[scheme] = open
}

// Schemes returns the URL schemes that Open accepts, sorted: "file" and
// every registered one.
func Schemes() []string {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	out := []string{"file"}
	for s := range registry.openers {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func opener(scheme string) Opener {
	registry.mu.RLock()
	defer registry.mu.RUnlock()
	return registry.openers[scheme]
}

// Open returns the Store that a URL names:
//
//	file:///abs/path   a folder on the local filesystem (created if missing)
//	/abs/path          the same
//	scheme://...       the driver registered for scheme (see Register), such
//	                   as s3://bucket/prefix from package internal/blob/s3
//
// An unknown scheme is an error that lists the supported ones.
func Open(rawURL string) (Store, error) {
	if rawURL == "" {
		return nil, errors.New("blob: empty store URL")
	}
	if strings.HasPrefix(rawURL, "/") {
		return NewFS(rawURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error quotes the URL, which may carry credentials; name only
		// what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("blob: parse store URL: %w", err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("blob: store URL %q: file URLs name a local path (file:///abs/path), not host %q", rawURL, u.Host)
		}
		if u.Path == "" || !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("blob: store URL %q: want an absolute path, as in file:///var/lib/haul/blobs", rawURL)
		}
		return NewFS(u.Path)
	case "":
		return nil, fmt.Errorf("blob: store URL %q: want file:///abs/path, an absolute path, or a URL of a registered scheme (supported: %s)", u.Redacted(), strings.Join(Schemes(), ", "))
	}
	if open := opener(strings.ToLower(u.Scheme)); open != nil {
		return open(u)
	}
	return nil, fmt.Errorf("blob: store URL %q: unsupported scheme %q (supported: %s)", u.Redacted(), u.Scheme, strings.Join(Schemes(), ", "))
}

// ValidateKey reports whether key is acceptable to every driver: not empty,
// relative, '/'-separated, with no empty, "." or ".." parts and no NUL or
// backslash.
func ValidateKey(key string) error {
	if key == "" {
		return errors.New("blob: empty key")
	}
	if strings.HasPrefix(key, "/") {
		return fmt.Errorf("blob: key %q is absolute; keys are relative, like logs/a/b", key)
	}
	if strings.ContainsAny(key, "\x00\\") {
		return fmt.Errorf("blob: key %q contains a NUL or backslash", key)
	}
	for part := range strings.SplitSeq(key, "/") {
		switch {
		case part == "":
			return fmt.Errorf("blob: key %q has an empty part (a leading, trailing or doubled '/')", key)
		case part == "." || part == "..":
			return fmt.Errorf("blob: key %q contains %q; keys may not walk out of the store", key, part)
		case strings.HasPrefix(part, tempPrefix):
			return fmt.Errorf("blob: key %q: parts starting with %q are reserved for temporary files", key, tempPrefix)
		}
	}
	return nil
}

// CheckRange validates the key and offset of a GetRange call: drivers call
// it first so that every driver refuses the same requests with the same
// words.
func CheckRange(key string, offset int64) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if offset < 0 {
		return fmt.Errorf("blob: get %s: negative range offset %d", key, offset)
	}
	return nil
}

// ValidatePrefix reports whether prefix is acceptable to List: "" or a
// prefix whose complete parts are valid key parts (the last part may be
// partial, and the prefix may end with '/').
func ValidatePrefix(prefix string) error { return validatePrefix(prefix) }

// validatePrefix accepts "" and any prefix whose complete parts are valid
// (the last part may be partial, and the prefix may end with '/').
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	k := strings.TrimSuffix(prefix, "/")
	if k == "" {
		return fmt.Errorf("blob: list prefix %q is absolute", prefix)
	}
	if err := ValidateKey(k); err != nil {
		return fmt.Errorf("blob: list prefix %q: %w", prefix, err)
	}
	return nil
}
