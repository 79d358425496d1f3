// Package blob is haul's object-store seam: a small Store interface (put,
// get, list, delete of whole objects under '/'-separated keys) and the
// drivers behind it. Logs and the Parquet export go through it; nothing above
// this package knows whether objects live on a local filesystem or in an
// S3-compatible bucket.
//
// Only the filesystem driver exists today ("file:///abs/path"). This package
// imports only the standard library, so that small binaries such as
// haul-taskhost can link it.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
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
	// List returns the keys that start with prefix (a plain string prefix,
	// not only a folder), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes the object under key. Deleting a missing object is not
	// an error.
	Delete(ctx context.Context, key string) error
}

// Open returns the Store that a URL names:
//
//	file:///abs/path   a folder on the local filesystem (created if missing)
//	/abs/path          the same
func Open(rawURL string) (Store, error) {
	if rawURL == "" {
		return nil, errors.New("blob: empty store URL")
	}
	if strings.HasPrefix(rawURL, "/") {
		return NewFS(rawURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("blob: parse store URL %q: %w", rawURL, err)
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
		return nil, fmt.Errorf("blob: store URL %q: want file:///abs/path or an absolute path", rawURL)
	default:
		return nil, fmt.Errorf("blob: store URL %q: unsupported scheme %q (supported: file)", rawURL, u.Scheme)
	}
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
