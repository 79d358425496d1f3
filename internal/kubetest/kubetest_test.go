package kubetest

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// eventTimeout bounds each wait for an informer event; it is a failsafe,
// not an expectation.
const eventTimeout = 30 * time.Second

func TestVersionMatchesWrapperModule(t *testing.T) {
	t.Parallel()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "tools", "kube", "apiserver", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^(?:require)?\s+k8s\.io/kubernetes\s+(\S+)`).FindSubmatch(gomod)
	got := "nothing"
	if m != nil {
		got = string(m[1])
	}
	if got != Version {
		t.Errorf("tools/kube/apiserver/go.mod requires k8s.io/kubernetes %s, want %s", got, Version)
	}
	out, err := exec.Command("bash", filepath.Join(root, buildScript), "--print-dir").Output()
	if err != nil {
		t.Fatalf("%s --print-dir: %v", buildScript, err)
	}
	want, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("%s builds into %s, the harness looks in %s", buildScript, got, want)
	}
}

// TestBuildFailureIsReported runs the build with the binaries missing (an
// empty HOME) and no way to fetch modules: the error must quote the build's
// output. It cannot be parallel because it changes the environment.
func TestBuildFailureIsReported(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GOMODCACHE", t.TempDir())
	t.Setenv("GOPROXY", "off")
	t.Setenv("GOFLAGS", os.Getenv("GOFLAGS")+" -modcacherw")
	_, err := EnsureBinaries(t.Context(), nil)
	if err == nil {
		t.Fatal("EnsureBinaries succeeded with no module cache and GOPROXY=off")
	}
	for _, want := range []string{buildScript, "build-kube: building etcd", "GOPROXY=off"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

// TestNoKubectlNeeded runs a cluster and uses its kubeconfig with an empty
// PATH: the harness runs its binaries by absolute path and needs no
// kubectl. It cannot be parallel because it changes PATH.
func TestNoKubectlNeeded(t *testing.T) {
	if _, err := EnsureBinaries(t.Context(), os.Stderr); err != nil { // building needs go and bash on PATH
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	if path, err := exec.LookPath("kubectl"); err == nil {
		t.Fatalf("kubectl found at %s with an empty PATH", path)
	}
	c := Start(t)

	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: c.Kubeconfig()}, &clientcmd.ConfigOverrides{})
	raw, err := loader.RawConfig()
	if err != nil {
		t.Fatalf("load kubeconfig: %v", err)
	}
	if raw.CurrentContext != KubeconfigContext {
		t.Errorf("kubeconfig current context = %q, want %q", raw.CurrentContext, KubeconfigContext)
	}
	config, err := loader.ClientConfig()
	if err != nil {
		t.Fatalf("client config from kubeconfig: %v", err)
	}
	if config.Host != c.URL {
		t.Errorf("kubeconfig server = %s, want %s", config.Host, c.URL)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	version, err := client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version through the kubeconfig (verified TLS): %v", err)
	}
	if version.GitVersion != Version {
		t.Errorf("server reports version %s, want %s (the -X flags of build-kube.sh)", version.GitVersion, Version)
	}
	if _, err := client.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
		t.Errorf("get namespace default: %v", err)
	}
}

func TestPodLifecycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c := Start(t)
	client := c.Clientset()

	const ns, podName, nodeName = "lifecycle", "worker-0", "node-a"
	if _, err := client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}

	events := watchPods(t, client, ns)

	_, err := client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "main",
			Image: "example.invalid/worker:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("1"),
			}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	waitPod(t, events, "pending and unbound", func(p *corev1.Pod) bool {
		return p.Name == podName && p.Status.Phase == corev1.PodPending && p.Spec.NodeName == ""
	})

	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("16Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	if err := c.CreateNode(ctx, nodeName, map[string]string{"haul.dev/tier": "small"}, capacity); err != nil {
		t.Fatal(err)
	}
	node, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.Labels["haul.dev/tier"] != "small" {
		t.Errorf("node labels = %v", node.Labels)
	}
	if !nodeReady(node) {
		t.Errorf("node conditions = %+v, want Ready=True", node.Status.Conditions)
	}
	for _, list := range []corev1.ResourceList{node.Status.Capacity, node.Status.Allocatable} {
		if q := list[corev1.ResourceMemory]; q.Cmp(resource.MustParse("16Gi")) != 0 {
			t.Errorf("node memory = %s, want 16Gi", q.String())
		}
	}

	if err := c.BindPod(ctx, ns, podName, nodeName); err != nil {
		t.Fatal(err)
	}
	waitPod(t, events, "bound to "+nodeName, func(p *corev1.Pod) bool {
		return p.Name == podName && p.Spec.NodeName == nodeName
	})

	if err := c.SetPodPhase(ctx, ns, podName, corev1.PodRunning); err != nil {
		t.Fatal(err)
	}
	running := waitPod(t, events, "running", func(p *corev1.Pod) bool {
		return p.Name == podName && p.Status.Phase == corev1.PodRunning
	})
	if running.Spec.NodeName != nodeName || running.Status.StartTime == nil {
		t.Errorf("running pod: node %q, start time %v", running.Spec.NodeName, running.Status.StartTime)
	}

	if err := c.SetPodPhase(ctx, ns, podName, corev1.PodSucceeded); err != nil {
		t.Fatal(err)
	}
	waitPod(t, events, "succeeded", func(p *corev1.Pod) bool {
		return p.Name == podName && p.Status.Phase == corev1.PodSucceeded
	})

	t.Run("bad input", func(t *testing.T) {
		for name, err := range map[string]error{
			"node without name":   c.CreateNode(ctx, "", nil, nil),
			"negative capacity":   c.CreateNode(ctx, "n", nil, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("-1")}),
			"duplicate node":      c.CreateNode(ctx, nodeName, nil, capacity),
			"bind without node":   c.BindPod(ctx, ns, podName, ""),
			"bind missing pod":    c.BindPod(ctx, ns, "no-such-pod", nodeName),
			"unknown phase":       c.SetPodPhase(ctx, ns, podName, "Sleeping"),
			"phase of no pod":     c.SetPodPhase(ctx, ns, "no-such-pod", corev1.PodRunning),
			"phase without names": c.SetPodPhase(ctx, "", "", corev1.PodRunning),
		} {
			if err == nil {
				t.Errorf("%s: no error", name)
			}
		}
	})
}

func TestTwoClustersAreIndependent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var clusters [2]*Cluster
	var errs [2]error
	var wg sync.WaitGroup
	for i := range clusters {
		wg.Go(func() {
			clusters[i], errs[i] = StartCluster(ctx, Options{Dir: t.TempDir()})
		})
	}
	wg.Wait()
	for i, c := range clusters {
		if c != nil {
			t.Cleanup(c.Stop)
		}
		if errs[i] != nil {
			t.Fatalf("cluster %d: %v", i, errs[i])
		}
	}
	a, b := clusters[0], clusters[1]
	if a.URL == b.URL {
		t.Fatalf("both clusters at %s", a.URL)
	}

	// The same node name in both: no conflict.
	for _, c := range clusters {
		if err := c.CreateNode(ctx, "node-0", nil, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}); err != nil {
			t.Fatalf("%s: %v", c.URL, err)
		}
	}
	if _, err := a.Clientset().CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "only-in-a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := b.Clientset().CoreV1().Namespaces().Get(ctx, "only-in-a", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("namespace created in cluster a, get from cluster b: err = %v, want not found", err)
	}

	// Stopping one leaves the other running.
	a.Stop()
	a.Stop() // idempotent
	if !a.apiserver.exited() || !a.etcd.exited() {
		t.Errorf("after Stop: apiserver exited %v, etcd exited %v", a.apiserver.exited(), a.etcd.exited())
	}
	if _, err := b.Clientset().CoreV1().Nodes().Get(ctx, "node-0", metav1.GetOptions{}); err != nil {
		t.Errorf("cluster b after stopping a: %v", err)
	}
	if _, err := os.Stat(a.Dir()); err != nil {
		t.Errorf("Stop removed a caller's directory: %v", err)
	}
}

// TestPortTakenIsRetried hands etcd and the API server a port that is in use
// on their first attempt, as when another process wins the race between the
// pick and the bind: the start must retry on new ports.
func TestPortTakenIsRetried(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	var calls atomic.Int32
	picker := func(n int) ([]int, error) {
		ports, err := freePorts(n)
		// Calls 1 (etcd) and 3 (kube-apiserver) get the busy port.
		if k := calls.Add(1); err == nil && (k == 1 || k == 3) {
			ports[0] = busyPort
		}
		return ports, err
	}
	c, err := startCluster(t.Context(), Options{}, picker)
	if err != nil {
		t.Fatal(err)
	}
	dir := c.Dir()
	c.Stop()
	if got := calls.Load(); got != 4 {
		t.Errorf("ports picked %d times, want 4 (etcd twice, kube-apiserver twice)", got)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Stop left the temporary directory %s: %v", dir, err)
	}
}

// watchPods starts a pod informer on namespace ns and returns the pods it
// sees added or updated, in order.
func watchPods(t *testing.T, client kubernetes.Interface, ns string) <-chan *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	t.Cleanup(func() {
		cancel()
		factory.Shutdown()
	})
	events := make(chan *corev1.Pod, 1000)
	send := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			select {
			case events <- p:
			case <-ctx.Done():
			}
		}
	}
	if _, err := factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    send,
		UpdateFunc: func(_, obj any) { send(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("informer for %v did not sync", typ)
		}
	}
	return events
}

// waitPod returns the first pod event that matches, failing the test if
// none comes within eventTimeout.
func waitPod(t *testing.T, events <-chan *corev1.Pod, what string, match func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	for {
		select {
		case p := <-events:
			if match(p) {
				return p
			}
		case <-timer.C:
			t.Fatalf("no informer event with the pod %s within %v", what, eventTimeout)
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
