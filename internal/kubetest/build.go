package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
)

// buildScript is the script, relative to the repository root, that builds
// the binaries.
const buildScript = "scripts/build-kube.sh"

// buildTailBytes is how much of the build output a build error quotes.
const buildTailBytes = 16 << 10

// buildMu serializes builds within one test binary; the script itself takes
// a file lock against other processes.
var buildMu sync.Mutex

// BinDir returns the directory where scripts/build-kube.sh puts the etcd and
// kube-apiserver binaries: $HOME/.cache/haul/kube/<Version>.
func BinDir() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locate the binary cache: %w", err)
	}
	return filepath.Join(home, ".cache", "haul", "kube", Version), nil
}

// EnsureBinaries returns BinDir after running scripts/build-kube.sh if
// either binary is missing there. The build's output goes to out (nil
// discards it) and its end is quoted in the error if it fails.
func EnsureBinaries(ctx context.Context, out io.Writer) (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	if haveBinaries(dir) {
		return dir, nil
	}
	if err := runBuildScript(ctx, out, "the Kubernetes binaries", func() bool { return haveBinaries(dir) }); err != nil {
		return "", err
	}
	if !haveBinaries(dir) {
		return "", fmt.Errorf("%s succeeded but %s lacks etcd or kube-apiserver", buildScript, dir)
	}
	return dir, nil
}

// runBuildScript runs scripts/build-kube.sh, once at a time in this
// process, unless done already says the binaries are there. The build's
// output goes to out (nil discards it) and its end is quoted in the error
// if it fails.
func runBuildScript(ctx context.Context, out io.Writer, what string, done func() bool) error {
	buildMu.Lock()
	defer buildMu.Unlock()
	if done() {
		return nil
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	var w io.Writer = &buf
	if out != nil {
		w = io.MultiWriter(&buf, out)
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, buildScript))
	cmd.Dir = root
	cmd.Stdout = w
	cmd.Stderr = w
	if err := cmd.Run(); err != nil {
		tail := buf.Bytes()
		if len(tail) > buildTailBytes {
			tail = tail[len(tail)-buildTailBytes:]
		}
		return fmt.Errorf("build %s with %s: %w\n%s", what, buildScript, err, tail)
	}
	return nil
}

func haveBinaries(dir string) bool {
	for _, name := range []string{"etcd", "kube-apiserver"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// repoRoot returns the root of the haul repository: found from this
// package's source path, or, when the binary was built with -trimpath, by
// walking up from the working directory (a test's is its package directory).
func repoRoot() (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, start := range starts {
		for dir := start; ; dir = filepath.Dir(dir) {
			if _, err := os.Stat(filepath.Join(dir, buildScript)); err == nil {
				return dir, nil
			} else if !errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("look for %s: %w", buildScript, err)
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	return "", fmt.Errorf("cannot find the haul repository (no %s above %v)", buildScript, starts)
}
