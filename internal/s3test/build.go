package s3test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// MinIOModule and MinIOVersion name the MinIO server that Binary builds.
const (
	MinIOModule  = "github.com/minio/minio"
	MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"
)

// buildTailBytes is how much of the build output a build error quotes.
const buildTailBytes = 16 << 10

// buildMu serializes builds within one test binary; a file lock serializes
// them across processes.
var buildMu sync.Mutex

// BinaryPath returns where Binary caches the server:
// $HOME/.cache/haul/bin/minio-<MinIOVersion>.
func BinaryPath() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("s3test: locate the binary cache: %w", err)
	}
	return filepath.Join(home, ".cache", "haul", "bin", "minio-"+MinIOVersion), nil
}

// Binary returns the path of the MinIO server binary, building it first when
// the cache lacks it: `go install` of MinIOModule@MinIOVersion through the
// module proxy (with CGO_ENABLED=0; about 8 minutes on a cold module cache)
// into a temporary folder next to the cache, then an atomic rename into
// place. Concurrent callers, in this process or others, wait for one build
// under a file lock and then use its result. A failed build's error quotes
// the end of the go command's output.
func Binary(ctx context.Context) (string, error) {
	path, err := BinaryPath()
	if err != nil {
		return "", err
	}
	if isExecutable(path) {
		return path, nil
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if isExecutable(path) {
		return path, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("s3test: create the binary cache: %w", err)
	}
	unlock, err := lockFile(ctx, path+".lock")
	if err != nil {
		return "", fmt.Errorf("s3test: lock the MinIO build: %w", err)
	}
	defer unlock()
	if isExecutable(path) { // another process built it while we waited
		return path, nil
	}

	tmp, err := os.MkdirTemp(dir, ".minio-build-")
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "install", MinIOModule+"@"+MinIOVersion)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-buildvcs=false")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		tail := out.Bytes()
		if len(tail) > buildTailBytes {
			tail = tail[len(tail)-buildTailBytes:]
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w; a cold build takes about 8 minutes: raise go test -timeout, or run the build once first)", err, ctx.Err())
		}
		return "", fmt.Errorf("s3test: build MinIO (go install %s@%s): %w\n%s", MinIOModule, MinIOVersion, err, tail)
	}
	if err := os.Rename(filepath.Join(tmp, "minio"), path); err != nil {
		return "", fmt.Errorf("s3test: install the MinIO binary: %w", err)
	}
	return path, nil
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
