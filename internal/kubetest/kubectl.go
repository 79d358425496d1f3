package kubetest

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// KubectlPath returns where scripts/build-kube.sh puts kubectl:
// $HOME/.cache/haul/kube/<Version>/kubectl, next to etcd and kube-apiserver.
// It is built from the wrapper module tools/kube/kubectl (k8s.io/kubectl at
// the version matching Version), never looked up on PATH, so that tests run
// the same kubectl everywhere.
func KubectlPath() (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "kubectl"), nil
}

// EnsureKubectl returns KubectlPath after running scripts/build-kube.sh if
// kubectl is missing there (the script also builds etcd and kube-apiserver
// if they are missing). The build's output goes to out (nil discards it)
// and its end is quoted in the error if it fails.
func EnsureKubectl(ctx context.Context, out io.Writer) (string, error) {
	path, err := KubectlPath()
	if err != nil {
		return "", err
	}
	if isExecutable(path) {
		return path, nil
	}
	if err := runBuildScript(ctx, out, "kubectl", func() bool { return isExecutable(path) }); err != nil {
		return "", err
	}
	if !isExecutable(path) {
		return "", fmt.Errorf("%s succeeded but left no kubectl at %s", buildScript, path)
	}
	return path, nil
}

// Kubectl returns the path of kubectl for a test, building it first if it
// is missing (printing the build's progress on standard error). A failed
// build fails the test at once, quoting the build's output; it never skips.
func Kubectl(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	if c, ok := t.(interface{ Context() context.Context }); ok {
		ctx = c.Context()
	}
	path, err := EnsureKubectl(ctx, os.Stderr)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return path
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
