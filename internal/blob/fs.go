package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// errNotDir is what opening "a/b" gives when "a" is an object, not a folder.
var errNotDir error = syscall.ENOTDIR

// tempPrefix starts the names of the files that FS.Put writes before renaming
// them into place; List skips them and ValidateKey refuses keys that use it.
const tempPrefix = ".tmp-"

// FS is a Store in a folder of the local filesystem: the key "a/b/c" is the
// file root/a/b/c. Empty folders left behind by Delete are not removed.
type FS struct {
	root string
}

var _ Store = (*FS)(nil)

// NewFS returns a filesystem store rooted at the absolute path root, creating
// the folder if it does not exist.
func NewFS(root string) (*FS, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("blob: filesystem store root %q is not an absolute path", root)
	}
	root = filepath.Clean(root)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("blob: create store root: %w", err)
	}
	return &FS{root: root}, nil
}

// Root returns the folder that holds the objects.
func (s *FS) Root() string { return s.root }

func (s *FS) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

// Put writes r to a temporary file in the object's folder, syncs it and
// renames it over the key, so that readers never see a partial object.
func (s *FS) Put(ctx context.Context, key string, r io.Reader) (err error) {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	dst := s.path(key)
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err := io.Copy(f, ctxReader{ctx: ctx, r: r}); err != nil {
		// The error names the file and what failed ("write /x/.tmp-1: no
		// space left on device"); the temporary file is removed.
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("blob: put %s: sync: %w", key, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("blob: put %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("blob: put %s: close: %w", key, err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return fmt.Errorf("blob: put %s: rename: %w", key, err)
	}
	// Make the rename itself durable.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// Get opens the object's file. The returned reader is an *os.File, so it
// also implements io.Seeker.
func (s *FS) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("blob: get %s: %w", key, err)
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
			return nil, fmt.Errorf("blob: get %s: %w", key, ErrNotFound)
		}
		return nil, fmt.Errorf("blob: get %s: %w", key, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("blob: get %s: %w", key, err)
	}
	if !st.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("blob: get %s: %w", key, ErrNotFound)
	}
	return f, nil
}

// GetRange opens the object's file and returns a reader of the requested
// range of it (see Store.GetRange).
func (s *FS) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := CheckRange(key, offset); err != nil {
		return nil, err
	}
	rc, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	f := rc.(*os.File)
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("blob: get %s: seek to %d: %w", key, offset, err)
	}
	if length < 0 {
		return f, nil
	}
	return rangeReader{Reader: io.LimitReader(f, length), c: f}, nil
}

// rangeReader reads part of a file and closes the whole file.
type rangeReader struct {
	io.Reader
	c io.Closer
}

func (r rangeReader) Close() error { return r.c.Close() }

// List walks the folder that holds prefix and returns the matching keys,
// sorted.
func (s *FS) List(ctx context.Context, prefix string) ([]string, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	// Walk the deepest folder that every matching key must be under.
	base := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		base = prefix[:i]
	}
	start := s.root
	if base != "" {
		start = s.path(base)
	}
	var keys []string
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir)) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			// Skip folders that cannot hold a match.
			if p != start && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("blob: list %q: %w", prefix, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete removes the object's file; a missing object is not an error.
func (s *FS) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob: delete %s: %w", key, err)
	}
	p := s.path(key)
	st, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
			return nil
		}
		return fmt.Errorf("blob: delete %s: %w", key, err)
	}
	if st.IsDir() {
		return nil // a folder of other keys, not an object
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob: delete %s: %w", key, err)
	}
	return nil
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
