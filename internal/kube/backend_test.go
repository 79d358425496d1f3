package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/haul-dev/haul/internal/kubetest"
	"github.com/haul-dev/haul/internal/store"
)

// waitTimeout bounds every wait for something to happen; it is a failsafe,
// not an expectation.
const waitTimeout = 30 * time.Second

// One API server serves the package's tests; each test has its own
// namespace and its own backend, whose instance label keeps it from seeing
// the others' pods.
var shared struct {
	once    sync.Once
	cluster *kubetest.Cluster
	err     error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cluster != nil {
		shared.cluster.Stop()
	}
	os.Exit(code)
}

func sharedCluster(t *testing.T) *kubetest.Cluster {
	t.Helper()
	shared.once.Do(func() {
		shared.cluster, shared.err = kubetest.StartCluster(context.Background(), kubetest.Options{BuildOutput: os.Stderr})
	})
	if shared.err != nil {
		t.Fatalf("kubetest: %v", shared.err)
	}
	return shared.cluster
}

// ending is one report of a worker's end.
type ending struct {
	id, why string
	oom     bool
}

// recorder collects the backend's callbacks.
type recorder struct {
	mu      sync.Mutex
	ends    []ending
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) add(e ending) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends = append(r.ends, e)
	close(r.changed)
	r.changed = make(chan struct{})
}

// wait returns the first report for id, waiting for it.
func (r *recorder) wait(t *testing.T, id string) ending {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		r.mu.Lock()
		for _, e := range r.ends {
			if e.id == id {
				r.mu.Unlock()
				return e
			}
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("worker %s: no end reported within %v", id, waitTimeout)
		}
	}
}

// count returns how many times each worker's end was reported.
func (r *recorder) count() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[string]int{}
	for _, e := range r.ends {
		n[e.id]++
	}
	return n
}

type bundle struct {
	b      *Backend
	rec    *recorder
	client kubernetes.Interface
	ns     string
	kc     *kubetest.Cluster
}

// setup starts a backend on the shared cluster in a namespace of its own;
// change adjusts its config.
func setup(t *testing.T, change func(*Config)) *bundle {
	t.Helper()
	kc := sharedCluster(t)
	ns := newNamespace(t, kc)
	rec := newRecorder()
	cfg := Config{
		Clusters:       []ClusterConfig{{Name: "test", InCluster: true, Namespace: ns, Enabled: true}},
		TaskhostImage:  "ghcr.io/haul-dev/taskhost:test",
		PodCreateQPS:   1000,
		PodCreateBurst: 100,
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Gone:           func(id, why string) { rec.add(ending{id: id, why: why}) },
		OOMKilled:      func(id, why string) { rec.add(ending{id: id, why: why, oom: true}) },
		RESTConfig:     func(ClusterConfig) (*rest.Config, error) { return kc.RESTConfig(), nil },
	}
	if change != nil {
		change(&cfg)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	return &bundle{b: b, rec: rec, client: kc.Clientset(), ns: ns, kc: kc}
}

var nsSeq struct {
	sync.Mutex
	n int
}

func newNamespace(t *testing.T, kc *kubetest.Cluster) string {
	t.Helper()
	nsSeq.Lock()
	nsSeq.n++
	name := fmt.Sprintf("w%d-%s", nsSeq.n, strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	nsSeq.Unlock()
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	_, err := kc.Clientset().CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitPods waits until ok holds for the namespace's pods, as a watch sees
// them, and returns them.
func waitPods(t *testing.T, client kubernetes.Interface, ns string, ok func(map[string]*corev1.Pod) bool) map[string]*corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	pods := map[string]*corev1.Pod{}
	lw := cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "pods", ns, fields.Everything())
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{},
		func(store cache.Store) (bool, error) {
			for _, obj := range store.List() {
				p := obj.(*corev1.Pod)
				pods[p.Name] = p
			}
			return ok(pods), nil
		},
		func(ev watch.Event) (bool, error) {
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod {
				return false, nil
			}
			if ev.Type == watch.Deleted {
				delete(pods, p.Name)
			} else {
				pods[p.Name] = p
			}
			return ok(pods), nil
		})
	if err != nil {
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range pods {
				if !yield(n) {
					return
				}
			}
		})
		t.Fatalf("waiting for pods in %s: %v (pods: %v)", ns, err, names)
	}
	return pods
}

// waitPod waits for a pod to exist and satisfy ok.
func waitPod(t *testing.T, client kubernetes.Interface, ns, name string, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	pods := waitPods(t, client, ns, func(m map[string]*corev1.Pod) bool { p := m[name]; return p != nil && ok(p) })
	return pods[name]
}

// waitNoPod waits for a pod not to exist.
func waitNoPod(t *testing.T, client kubernetes.Interface, ns, name string) {
	t.Helper()
	waitPods(t, client, ns, func(m map[string]*corev1.Pod) bool { return m[name] == nil })
}

func exists(*corev1.Pod) bool { return true }

// setStatus changes a pod's status as a kubelet would.
func setStatus(t *testing.T, client kubernetes.Interface, ns, name string, change func(*corev1.PodStatus)) {
	t.Helper()
	pods := client.CoreV1().Pods(ns)
	p, err := pods.Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	change(&p.Status)
	if _, err := pods.UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update status of %s: %v", name, err)
	}
}

func terminatedWorker(reason string, code int32) []corev1.ContainerStatus {
	return []corev1.ContainerStatus{{
		Name: WorkerContainerName, Image: "x", ImageID: "x",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code}},
	}}
}

func TestPodShape(t *testing.T) {
	t.Parallel()
	bn := setup(t, func(c *Config) { c.DefaultImage = "busybox:1" })
	s := testSpec("01JOB-1-7")
	s.JobID = "01JOB"
	s.Labels = map[string]string{"cost-center": "cc-42", "other": "x"}
	s.Secret = "the-worker-credential"
	s.TierIndex = 1
	s.LocatorURL = "http://gateway:7070"
	s.Tier = store.Tier{
		Name: "big", CPU: 1.5, MemoryBytes: 3 << 30, GPU: 1,
		NodeSelector: map[string]string{"haul.dev/gpu-type": "a100", "haul.dev/purchase": "spot"},
		Tolerations: []store.Toleration{
			{Key: "nvidia.com/gpu", Operator: "Exists", Effect: "NoSchedule"},
			{Key: "spot", Value: "true"},
		},
	}
	s.Template = store.WorkerTemplate{
		Image: "ghcr.io/team/sim:3", ServiceAccount: "sim-runner",
		Env:          map[string]string{"B": "2", "A": "1"},
		Volumes:      []json.RawMessage{json.RawMessage(`{"name":"data","configMap":{"name":"scenes"}}`), json.RawMessage(`{"name":"scratch","emptyDir":{"sizeLimit":"1Gi"}}`)},
		VolumeMounts: []json.RawMessage{json.RawMessage(`{"name":"data","mountPath":"/data","readOnly":true}`), json.RawMessage(`{"name":"scratch","mountPath":"/scratch"}`)},
	}
	if err := bn.b.StartWorker(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	pod := waitPod(t, bn.client, bn.ns, "haul-01job-1-7-"+idHash(s.ID), exists)

	wantLabels := map[string]string{
		"app.kubernetes.io/managed-by": "haul", "haul.dev/backend": bn.b.Instance(),
		"haul.dev/worker": "01JOB-1-7", "haul.dev/job": "01JOB", "haul.dev/namespace": "perception",
		"haul.dev/tier": "big", "haul.dev/cost-center": "cc-42",
	}
	if !mapsEqual(pod.Labels, wantLabels) {
		t.Errorf("labels\n got %v\nwant %v", pod.Labels, wantLabels)
	}
	wantAnn := map[string]string{
		"haul.dev/worker-id": "01JOB-1-7", "haul.dev/job-id": "01JOB", "haul.dev/job-name": "resim",
		"haul.dev/tier-name": "big", "haul.dev/memory-bytes": "3221225472", "haul.dev/cpu": "1.5",
	}
	if !mapsEqual(pod.Annotations, wantAnn) {
		t.Errorf("annotations\n got %v\nwant %v", pod.Annotations, wantAnn)
	}
	spec := pod.Spec
	if spec.RestartPolicy != corev1.RestartPolicyNever || spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds != 30 {
		t.Errorf("restart policy %s, grace %v", spec.RestartPolicy, spec.TerminationGracePeriodSeconds)
	}
	if spec.ServiceAccountName != "sim-runner" {
		t.Errorf("service account %q", spec.ServiceAccountName)
	}
	if !mapsEqual(spec.NodeSelector, s.Tier.NodeSelector) {
		t.Errorf("node selector %v", spec.NodeSelector)
	}
	wantTol := []corev1.Toleration{
		{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: "spot", Operator: corev1.TolerationOpEqual, Value: "true"},
	}
	// (The DefaultTolerationSeconds admission plugin adds two more.)
	if len(spec.Tolerations) < 2 || !slices.Equal(spec.Tolerations[:2], wantTol) {
		t.Errorf("tolerations\n got %+v\nwant %+v", spec.Tolerations, wantTol)
	}

	if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
		t.Fatalf("%d init containers and %d containers, want 1 and 1", len(spec.InitContainers), len(spec.Containers))
	}
	init, main := spec.InitContainers[0], spec.Containers[0]
	if init.Name != "install-taskhost" || init.Image != "ghcr.io/haul-dev/taskhost:test" ||
		!slices.Equal(init.Command, []string{"/haul-taskhost", "--install", "/haul/bin/haul-taskhost"}) {
		t.Errorf("init container %s %s %v", init.Name, init.Image, init.Command)
	}
	if main.Name != "worker" || main.Image != "ghcr.io/team/sim:3" || !slices.Equal(main.Command, []string{"/haul/bin/haul-taskhost"}) {
		t.Errorf("container %s %s %v", main.Name, main.Image, main.Command)
	}
	env := map[string]string{}
	for _, e := range main.Env {
		env[e.Name] = e.Value
	}
	wantEnv := map[string]string{
		"HAUL_RUNNER": s.RunnerURL, "HAUL_WORKER_ID": "01JOB-1-7", "HAUL_JOB": "01JOB", "HAUL_BLOB": s.BlobURL,
		"HAUL_TIER": "1", "HAUL_LOCATOR": "http://gateway:7070",
		"HAUL_MEMORY_LIMIT": "3221225472", "HAUL_CPU_LIMIT": "1.5", "HAUL_SPOOL": "/haul/spool", "A": "1", "B": "2",
		"HAUL_WORKER_SECRET": "", // from the worker's Secret
	}
	if !mapsEqual(env, wantEnv) || len(main.Env) != len(wantEnv) {
		t.Errorf("env\n got %v\nwant %v", main.Env, wantEnv)
	}
	// The credential is in a Secret of the worker's own, owned by its pod,
	// and nowhere in the pod.
	for _, e := range main.Env {
		if e.Name != "HAUL_WORKER_SECRET" {
			continue
		}
		if ref := e.ValueFrom; ref == nil || ref.SecretKeyRef == nil || ref.SecretKeyRef.Name != pod.Name || ref.SecretKeyRef.Key != "worker-secret" {
			t.Errorf("HAUL_WORKER_SECRET comes from %+v, want the secretKeyRef %s/worker-secret", e.ValueFrom, pod.Name)
		}
	}
	if raw, _ := json.Marshal(pod); strings.Contains(string(raw), s.Secret) {
		t.Error("the pod object holds the worker's credential")
	}
	var sec *corev1.Secret
	for deadline := time.Now().Add(30 * time.Second); ; {
		got, err := bn.client.CoreV1().Secrets(bn.ns).Get(t.Context(), pod.Name, metav1.GetOptions{})
		if err == nil {
			sec = got
			break
		}
		if !apierrors.IsNotFound(err) || time.Now().After(deadline) {
			t.Fatalf("the worker's secret %s: %v", pod.Name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := string(sec.Data["worker-secret"]); got != s.Secret {
		t.Errorf("secret holds %q, want the worker's credential", got)
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].Kind != "Pod" || sec.OwnerReferences[0].UID != pod.UID {
		t.Errorf("secret owners %+v, want the pod %s (%s)", sec.OwnerReferences, pod.Name, pod.UID)
	}
	if sec.Labels[LabelWorker] != "01JOB-1-7" || sec.Labels[LabelBackend] != bn.b.Instance() {
		t.Errorf("secret labels %v, want the pod's", sec.Labels)
	}
	for name, want := range map[corev1.ResourceName]string{"cpu": "1500m", "memory": "3Gi", "nvidia.com/gpu": "1"} {
		for what, list := range map[string]corev1.ResourceList{"requests": main.Resources.Requests, "limits": main.Resources.Limits} {
			if q, ok := list[name]; !ok || q.Cmp(resource.MustParse(want)) != 0 {
				t.Errorf("worker %s %s = %v, want %s", what, name, list[name], want)
			}
		}
	}
	if _, ok := init.Resources.Limits[GPUResource]; ok {
		t.Errorf("init container asks for a GPU")
	}
	if q := init.Resources.Limits.Memory(); q.Cmp(resource.MustParse("3Gi")) != 0 {
		t.Errorf("init container memory limit %v, want the tier's", q)
	}
	if got := mountsOf(init.VolumeMounts); !slices.Equal(got, []string{"haul-bin:/haul/bin"}) {
		t.Errorf("init container mounts %v", got)
	}
	if got := mountsOf(main.VolumeMounts); !slices.Equal(got, []string{"haul-bin:/haul/bin", "haul-spool:/haul/spool", "data:/data", "scratch:/scratch"}) {
		t.Errorf("worker mounts %v", got)
	}
	if !main.VolumeMounts[2].ReadOnly {
		t.Errorf("the data mount lost readOnly")
	}
	var vols []string
	for _, v := range spec.Volumes {
		vols = append(vols, v.Name)
	}
	if !slices.Equal(vols, []string{"haul-bin", "haul-spool", "data", "scratch"}) {
		t.Errorf("volumes %v", vols)
	}
	if cm := spec.Volumes[2].ConfigMap; cm == nil || cm.Name != "scenes" {
		t.Errorf("data volume %+v, want config map scenes", spec.Volumes[2])
	}
	if ed := spec.Volumes[3].EmptyDir; ed == nil || ed.SizeLimit == nil || ed.SizeLimit.String() != "1Gi" {
		t.Errorf("scratch volume %+v", spec.Volumes[3])
	}
	if pod.Status.QOSClass != corev1.PodQOSGuaranteed {
		t.Errorf("QoS class %s, want Guaranteed", pod.Status.QOSClass)
	}

	// Without a template image or labels: the default image, and the job's
	// namespace as the cost center.
	s2 := testSpec("plain")
	if err := bn.b.StartWorker(t.Context(), s2); err != nil {
		t.Fatal(err)
	}
	p2 := waitPod(t, bn.client, bn.ns, "haul-plain", exists)
	if img := p2.Spec.Containers[0].Image; img != "busybox:1" {
		t.Errorf("image %q, want the default busybox:1", img)
	}
	if cc := p2.Labels[LabelCostCenter]; cc != "perception" {
		t.Errorf("cost center %q, want the namespace perception", cc)
	}
}

func mountsOf(ms []corev1.VolumeMount) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name+":"+m.MountPath)
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestEvents drives pods through what a kubelet, the scheduler or an
// operator would do to them, and checks that each worker's end is reported
// once, as what it was, and that every finished pod is deleted.
func TestEvents(t *testing.T) {
	t.Parallel()
	bn := setup(t, func(c *Config) { c.WatchNodes = true })
	ctx := t.Context()
	pods := bn.client.CoreV1().Pods(bn.ns)

	type step struct {
		id     string
		do     func(name string)
		why    string // prefix of the report
		oom    bool
		noPod  bool // the pod must be gone afterwards
		stayed bool // the pod must still be there (a stopped pod being deleted)
	}
	steps := []step{
		{id: "succeeded", why: "exited", noPod: true, do: func(name string) {
			if err := bn.kc.SetPodPhase(ctx, bn.ns, name, corev1.PodSucceeded); err != nil {
				t.Fatal(err)
			}
		}},
		{id: "oom", why: OOMKilledWhy, oom: true, noPod: true, do: func(name string) {
			setStatus(t, bn.client, bn.ns, name, func(s *corev1.PodStatus) {
				s.Phase = corev1.PodFailed
				s.ContainerStatuses = terminatedWorker("OOMKilled", 137)
			})
		}},
		{id: "failed", why: "pod failed: container worker: exit code 3, Error", noPod: true, do: func(name string) {
			setStatus(t, bn.client, bn.ns, name, func(s *corev1.PodStatus) {
				s.Phase = corev1.PodFailed
				s.ContainerStatuses = terminatedWorker("Error", 3)
			})
		}},
		{id: "evicted", why: "evicted: The node was low on resource: memory.", noPod: true, do: func(name string) {
			setStatus(t, bn.client, bn.ns, name, func(s *corev1.PodStatus) {
				s.Phase, s.Reason, s.Message = corev1.PodFailed, "Evicted", "The node was low on resource: memory."
			})
		}},
		{id: "unknown", why: "node lost: pod phase Unknown on node n-unknown", noPod: true, do: func(name string) {
			if err := bn.kc.BindPod(ctx, bn.ns, name, "n-unknown"); err != nil {
				t.Fatal(err)
			}
			if err := bn.kc.SetPodPhase(ctx, bn.ns, name, corev1.PodUnknown); err != nil {
				t.Fatal(err)
			}
		}},
		{id: "image", why: "cannot start: container worker: ImagePullBackOff", noPod: true, do: func(name string) {
			setStatus(t, bn.client, bn.ns, name, func(s *corev1.PodStatus) {
				s.ContainerStatuses = []corev1.ContainerStatus{{Name: WorkerContainerName, Image: "x",
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "not found"}}}}
			})
		}},
		{id: "deleted", why: "pod deleted", noPod: true, do: func(name string) {
			if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{id: "node-gone", why: "node lost: node n-gone-", noPod: true, do: func(name string) {
			if err := bn.kc.CreateNode(ctx, "n-gone-"+bn.ns, nil, nil); err != nil {
				t.Fatal(err)
			}
			if err := bn.kc.BindPod(ctx, bn.ns, name, "n-gone-"+bn.ns); err != nil {
				t.Fatal(err)
			}
			if err := bn.kc.SetPodPhase(ctx, bn.ns, name, corev1.PodRunning); err != nil {
				t.Fatal(err)
			}
			// The backend must know the pod is on the node before it goes.
			waitFor(t, func() bool { _, ok := bn.b.WorkerNode("node-gone"); return ok })
			if err := bn.client.CoreV1().Nodes().Delete(ctx, "n-gone-"+bn.ns, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{id: "stopped", why: "stopped", noPod: true, do: func(string) {
			if err := bn.b.StopWorker(ctx, "stopped"); err != nil {
				t.Fatal(err)
			}
		}},
		{id: "stopped-running", why: "exited", noPod: true, do: func(name string) {
			// A bound pod being deleted stays until its kubelet says it
			// ended; the worker ends then, not before.
			if err := bn.kc.BindPod(ctx, bn.ns, name, "n-running"); err != nil {
				t.Fatal(err)
			}
			if err := bn.kc.SetPodPhase(ctx, bn.ns, name, corev1.PodRunning); err != nil {
				t.Fatal(err)
			}
			if err := bn.b.StopWorker(ctx, "stopped-running"); err != nil {
				t.Fatal(err)
			}
			waitPod(t, bn.client, bn.ns, name, func(p *corev1.Pod) bool { return p.DeletionTimestamp != nil })
			if n := bn.rec.count()["stopped-running"]; n != 0 {
				t.Errorf("stopped-running reported before its pod ended")
			}
			if err := bn.kc.SetPodPhase(ctx, bn.ns, name, corev1.PodSucceeded); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, st := range steps {
		if err := bn.b.StartWorker(ctx, testSpec(st.id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range steps {
		name := PodName(st.id)
		waitPod(t, bn.client, bn.ns, name, exists)
		st.do(name)
		e := bn.rec.wait(t, st.id)
		if !strings.HasPrefix(e.why, st.why) || e.oom != st.oom {
			t.Errorf("%s: reported %q (OOM %v), want %q (OOM %v)", st.id, e.why, e.oom, st.why, st.oom)
		}
		if st.noPod {
			if st.id == "stopped-running" {
				// Without a kubelet the deletion must be forced.
				_ = pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
			}
			waitNoPod(t, bn.client, bn.ns, name)
		}
	}

	// A last worker's end is reported after every event above has reached
	// the backend (one watch delivers them in order): nothing more may be
	// reported for the workers above.
	if err := bn.b.StartWorker(ctx, testSpec("marker")); err != nil {
		t.Fatal(err)
	}
	waitPod(t, bn.client, bn.ns, PodName("marker"), exists)
	if err := bn.kc.SetPodPhase(ctx, bn.ns, PodName("marker"), corev1.PodSucceeded); err != nil {
		t.Fatal(err)
	}
	bn.rec.wait(t, "marker")
	waitPods(t, bn.client, bn.ns, func(m map[string]*corev1.Pod) bool { return len(m) == 0 })
	bn.b.Stop()
	for id, n := range bn.rec.count() {
		if n != 1 {
			t.Errorf("worker %s: end reported %d times", id, n)
		}
	}
	if got := len(bn.rec.count()); got != len(steps)+1 {
		t.Errorf("%d workers reported, want %d", got, len(steps)+1)
	}
	st := bn.b.Stats()["test"]
	t.Logf("stats: %+v", withoutTimes(st))
	if st.PodsCreated != int64(len(steps)+1) || st.CreateErrors != 0 {
		t.Errorf("stats %+v", withoutTimes(st))
	}
}

func withoutTimes(s ClusterStats) ClusterStats {
	s.CreateTimes = nil
	return s
}

// waitFor waits for cond, checking it whenever the scheduler lets it (for
// state that is only visible by asking).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", waitTimeout)
		}
		<-tick.C
	}
}

func TestStopWorkerBeforeCreation(t *testing.T) {
	t.Parallel()
	// One token, then none for a long time: the second worker stays queued.
	bn := setup(t, func(c *Config) { c.PodCreateQPS, c.PodCreateBurst = 0.001, 1 })
	ctx := t.Context()
	for _, id := range []string{"first", "second"} {
		if err := bn.b.StartWorker(ctx, testSpec(id)); err != nil {
			t.Fatal(err)
		}
	}
	waitPod(t, bn.client, bn.ns, PodName("first"), exists)
	if got := bn.b.Clusters(); got[0].Queued != 1 {
		t.Errorf("clusters %+v: want 1 queued", got)
	}
	if err := bn.b.StopWorker(ctx, "second"); err != nil {
		t.Fatal(err)
	}
	if e := bn.rec.wait(t, "second"); e.why != "stopped before its pod was created" {
		t.Errorf("second: %q", e.why)
	}
	if err := bn.b.StopWorker(ctx, "second"); err != nil {
		t.Errorf("stopping a stopped worker: %v", err)
	}
	if err := bn.b.StopWorker(ctx, "never-started"); err != nil {
		t.Errorf("stopping an unknown worker: %v", err)
	}
	if got := bn.b.Clusters(); got[0].Queued != 0 {
		t.Errorf("clusters %+v: want none queued", got)
	}

	// Stop deletes the pods still there and reports their workers.
	bn.b.Stop()
	if e := bn.rec.wait(t, "first"); !strings.HasPrefix(e.why, "backend stopped") {
		t.Errorf("first: %q", e.why)
	}
	waitNoPod(t, bn.client, bn.ns, PodName("first"))
	if err := bn.b.StartWorker(ctx, testSpec("late")); err == nil || !strings.Contains(err.Error(), ErrStopped.Error()) {
		t.Errorf("StartWorker after Stop: %v", err)
	}
	for id, n := range bn.rec.count() {
		if n != 1 {
			t.Errorf("worker %s: end reported %d times", id, n)
		}
	}
	if st := bn.b.Stats()["test"]; st.PodsCreated != 1 {
		t.Errorf("%d pods created, want 1", st.PodsCreated)
	}
}

func TestBadSpecs(t *testing.T) {
	t.Parallel()
	bn := setup(t, nil)
	ctx := t.Context()

	// Caught before anything is sent: StartWorker says what is wrong.
	s := testSpec("bad-volume")
	s.Template.Volumes = []json.RawMessage{json.RawMessage(`{"name":"data","hostPath":{"path":"/x"},"bogus":1}`)}
	err := bn.b.StartWorker(ctx, s)
	if err == nil || !strings.Contains(err.Error(), `worker template volume 1: unknown field "bogus"`) {
		t.Errorf("StartWorker with a bad volume: %v", err)
	}
	if err := bn.b.StartWorker(ctx, testSpec("dup")); err != nil {
		t.Fatal(err)
	}
	if err := bn.b.StartWorker(ctx, testSpec("dup")); err == nil || !strings.Contains(err.Error(), "already started") {
		t.Errorf("StartWorker twice: %v", err)
	}

	// Caught by the API server's validation: reported through Gone.
	s = testSpec("bad-selector")
	s.Tier.NodeSelector = map[string]string{"not a key!": "x"}
	if err := bn.b.StartWorker(ctx, s); err != nil {
		t.Fatal(err)
	}
	e := bn.rec.wait(t, "bad-selector")
	if !strings.HasPrefix(e.why, "could not create pod in cluster test: ") || !strings.Contains(e.why, "nodeSelector") {
		t.Errorf("bad-selector: %q", e.why)
	}
	s = testSpec("bad-mount")
	s.Template.Volumes = []json.RawMessage{json.RawMessage(`{"name":"data","configMap":{}}`)} // no config map name
	s.Template.VolumeMounts = []json.RawMessage{json.RawMessage(`{"name":"data","mountPath":"/data"}`)}
	if err := bn.b.StartWorker(ctx, s); err != nil {
		t.Fatal(err)
	}
	if e := bn.rec.wait(t, "bad-mount"); !strings.Contains(e.why, "could not create pod") || !strings.Contains(e.why, "volumes") {
		t.Errorf("bad-mount: %q", e.why)
	}
	st := bn.b.Stats()["test"]
	if st.CreateErrors != 2 || st.CreateRetries != 0 {
		t.Errorf("stats %+v: want 2 creation errors, no retries", withoutTimes(st))
	}
}

// flakyTransport answers the first n pod creations with 503, the way an
// overloaded API server (or the load balancer before it) does.
type flakyTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    int
}

func (f *flakyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	fail := r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/pods") && f.n > 0
	if fail {
		f.n--
	}
	f.mu.Unlock()
	if !fail {
		return f.next.RoundTrip(r)
	}
	body := `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"overloaded","reason":"ServiceUnavailable","code":503}`
	return &http.Response{
		StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable", Request: r,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}, nil
}

func TestCreateRetries(t *testing.T) {
	t.Parallel()
	kc := sharedCluster(t)
	flaky := &flakyTransport{n: 2}
	bn := setup(t, func(c *Config) {
		c.RESTConfig = func(ClusterConfig) (*rest.Config, error) {
			rc := kc.RESTConfig()
			rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { flaky.next = rt; return flaky })
			return rc, nil
		}
	})
	if err := bn.b.StartWorker(t.Context(), testSpec("retried")); err != nil {
		t.Fatal(err)
	}
	waitPod(t, bn.client, bn.ns, PodName("retried"), exists)
	// The watch may show the pod before the creating request's reply has
	// been counted.
	st := bn.b.Stats()["test"]
	for deadline := time.Now().Add(30 * time.Second); st.PodsCreated == 0 && time.Now().Before(deadline); st = bn.b.Stats()["test"] {
		time.Sleep(10 * time.Millisecond)
	}
	if st.PodsCreated != 1 || st.CreateRetries != 2 || len(st.CreateTimes) != 3 {
		t.Errorf("stats %+v: want 1 pod created after 2 retries (3 requests)", withoutTimes(st))
	}
	if n := bn.rec.count()["retried"]; n != 0 {
		t.Errorf("retried worker reported as ended")
	}

	// Retries are bounded.
	flaky.mu.Lock()
	flaky.n = 100
	flaky.mu.Unlock()
	if err := bn.b.StartWorker(t.Context(), testSpec("given-up")); err != nil {
		t.Fatal(err)
	}
	if e := bn.rec.wait(t, "given-up"); !strings.Contains(e.why, "could not create pod") || !strings.Contains(e.why, "overloaded") {
		t.Errorf("given-up: %q", e.why)
	}
	st = bn.b.Stats()["test"]
	if st.CreateErrors != 1 || st.CreateRetries != 2+DefaultCreateAttempts-1 {
		t.Errorf("stats %+v", withoutTimes(st))
	}
}
