// Package kubetest starts throwaway Kubernetes control planes for tests: an
// etcd and a kube-apiserver, both on loopback, with no controller manager,
// scheduler or kubelet. It is haul's stand-in for a real cluster in
// integration tests of the Kubernetes backends (autoscaler, placement): the
// API server is the real one, so validation, status subresources, watches and
// informers behave as in production.
//
// The binaries are built from Go modules by scripts/build-kube.sh into
// $HOME/.cache/haul/kube/<Version>/ (see docs/testing-kubernetes.md). Start
// runs that script when they are missing, which takes about 10 minutes on 2
// cores, so run `make tools` (or the script) before the first `go test`.
//
// What the harness sets up, because nothing else in the cluster would:
//   - authentication by a random bearer token (system:masters), authorization
//     AlwaysAllow, and a kubeconfig file with a context named "kubetest";
//   - service-account signing keys generated in Go (no openssl);
//   - the ServiceAccount admission plugin disabled, so pods can be created
//     without a "default" service account;
//   - nodes (CreateNode), scheduling (BindPod) and pod phases (SetPodPhase),
//     which a scheduler and a kubelet would otherwise provide.
//
// Processes: etcd and kube-apiserver run as children of the test binary, each
// in its own process group. Stop (registered with t.Cleanup by Start) sends
// SIGTERM to each group and SIGKILL ten seconds later. On Linux each child also
// has a parent-death signal (SIGKILL), so it goes away when the test binary
// dies, even by SIGKILL or a `go test -timeout` panic; elsewhere children of a
// killed test binary may outlive it.
//
// This package imports only the standard library and client-go (with
// k8s.io/api and k8s.io/apimachinery). It is meant for tests and test tools,
// never for production code.
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Version is the Kubernetes version the harness runs. It must equal the
// k8s.io/kubernetes version in tools/kube/apiserver/go.mod (a test checks).
const Version = "v1.34.4"

// KubeconfigContext is the name of the context (and of its cluster and
// user) in the file that Cluster.Kubeconfig returns.
const KubeconfigContext = "kubetest"

// DefaultReadyTimeout bounds a cluster's start, from launching etcd to the
// API server's /readyz answering ok, retries after a port race included.
const DefaultReadyTimeout = 60 * time.Second

// pollInterval is how often readiness is polled.
const pollInterval = 100 * time.Millisecond

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 10 * time.Second

// Options configures StartCluster. The zero value is ready to use.
type Options struct {
	// Dir holds the cluster's data, certificates, keys, kubeconfig and the
	// processes' logs (etcd.log, kube-apiserver.log). Empty: a new
	// temporary directory that Stop removes. A directory given here is
	// created if missing and left in place by Stop.
	Dir string

	// BinDir holds the etcd and kube-apiserver binaries. Empty: the cache
	// directory of scripts/build-kube.sh, built there when missing.
	BinDir string

	// ReadyTimeout bounds the start (DefaultReadyTimeout when zero). It does
	// not cover building the binaries, which only ctx bounds.
	ReadyTimeout time.Duration

	// Logger receives the harness's own progress messages; nil discards them.
	Logger *slog.Logger

	// BuildOutput receives the output of scripts/build-kube.sh while it runs,
	// if it has to; nil discards it (it is still quoted in a build error).
	BuildOutput io.Writer
}

// Cluster is a running etcd and kube-apiserver pair. Its methods are safe for
// concurrent use.
type Cluster struct {
	// URL is the API server's address, https://127.0.0.1:<port>.
	URL string

	dir        string
	removeDir  bool
	kubeconfig string
	config     *rest.Config
	clientset  *kubernetes.Clientset
	log        *slog.Logger

	etcd      *process
	apiserver *process

	stopOnce sync.Once
}

// Start starts a cluster for the test and registers its Stop with t.Cleanup.
// Its files live in a t.TempDir. It builds the binaries first if they are
// missing, printing the build's progress on standard error. Any failure fails
// the test at once, with the build output or the API server's log tail; it
// never skips. Several clusters may run at once.
func Start(t testing.TB) *Cluster {
	t.Helper()
	ctx := context.Background()
	if c, ok := t.(interface{ Context() context.Context }); ok {
		ctx = c.Context()
	}
	c, err := StartCluster(ctx, Options{
		Dir:         t.TempDir(),
		Logger:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		BuildOutput: os.Stderr,
	})
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("kubetest: kube-apiserver log tail (%s):\n%s", c.URL, c.apiserver.logTail())
		}
	})
	return c
}

// testWriter sends a slog handler's lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// StartCluster starts etcd and kube-apiserver and returns when the API
// server's /readyz answers ok. ctx bounds the start only (building the
// binaries if needed, then at most opts.ReadyTimeout): cancelling it later
// does not stop the cluster; call Stop for that.
func StartCluster(ctx context.Context, opts Options) (*Cluster, error) {
	return startCluster(ctx, opts, freePorts)
}

// startCluster is StartCluster with the port picker as a seam, so tests can
// force the bind race that the retries handle.
func startCluster(ctx context.Context, opts Options, ports portPicker) (_ *Cluster, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	binDir := opts.BinDir
	if binDir == "" {
		binDir, err = EnsureBinaries(ctx, opts.BuildOutput)
		if err != nil {
			return nil, err
		}
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(binDir, name)); err != nil {
			return nil, fmt.Errorf("binary %s: %w", name, err)
		}
	}

	c := &Cluster{dir: opts.Dir, log: log}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "kubetest-"); err != nil {
			return nil, fmt.Errorf("create cluster directory: %w", err)
		}
		c.removeDir = true
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cluster directory: %w", err)
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()

	timeout := opts.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()

	creds, err := writeCredentials(c.dir)
	if err != nil {
		return nil, err
	}
	etcdURL, err := c.startEtcd(ctx, binDir, ports)
	if err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx, binDir, ports, etcdURL, creds); err != nil {
		return nil, err
	}
	clientset, err := kubernetes.NewForConfig(c.config)
	if err != nil {
		return nil, fmt.Errorf("create clientset: %w", err)
	}
	c.clientset = clientset
	log.Info("kubetest cluster ready", "url", c.URL, "dir", c.dir, "elapsed", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// RESTConfig returns a new copy of the configuration for talking to the API
// server as a cluster administrator (system:masters).
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// Clientset returns a client for the cluster, shared by all callers.
func (c *Cluster) Clientset() kubernetes.Interface { return c.clientset }

// Kubeconfig returns the path of a kubeconfig file for the cluster whose
// current context is KubeconfigContext.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// Dir returns the directory that holds the cluster's files and logs.
func (c *Cluster) Dir() string { return c.dir }

// Stop stops the API server, then etcd (SIGTERM to each process group,
// SIGKILL after ten seconds), and removes the cluster's directory if
// StartCluster created it. It is idempotent.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		for _, p := range []*process{c.apiserver, c.etcd} {
			if p == nil {
				continue
			}
			if err := p.stop(stopGrace); err != nil {
				c.log.Warn("kubetest: stop", "process", p.name, "err", err)
			}
		}
		if c.removeDir {
			if err := os.RemoveAll(c.dir); err != nil {
				c.log.Warn("kubetest: remove cluster directory", "dir", c.dir, "err", err)
			}
		}
	})
}

// errPortTaken marks a start that failed because another process took a
// port between our picking it and the server binding it; the start is
// retried on new ports.
var errPortTaken = errors.New("port taken by another process")
