// Package kubee2e runs haul end to end on the kube backend: a haul server
// (gateway, runner, kube backend) in this process, two real Kubernetes API
// servers (internal/kubetest), and on each a test node agent that stands in
// for the kubelet, running every worker pod's taskhost — the real static
// haul-taskhost binary, built once per test run — as a local process with
// the pod's env. Real tasks run through real Kubernetes objects.
package kubee2e

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/haul-dev/haul/internal/blob"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/kube"
	"github.com/haul-dev/haul/internal/kubetest"
	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/server"
	"github.com/haul-dev/haul/internal/store"
)

var httpClient = http.DefaultClient

const (
	workerNS     = "haul-workers"
	taskhostPath = "/haul/bin/haul-taskhost"
	selector     = "app.kubernetes.io/managed-by=haul"
)

var taskhostBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "haul-kubee2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	taskhostBin = filepath.Join(dir, "haul-taskhost")
	build := exec.Command("go", "build", "-o", taskhostBin, "github.com/haul-dev/haul/cmd/haul-taskhost")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build haul-taskhost:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// site is one cluster with its node agent.
type site struct {
	name    string
	cluster *kubetest.Cluster
	agent   *kubetest.Agent
}

func startSite(t *testing.T, name string, run bool) *site {
	t.Helper()
	c := kubetest.Start(t)
	ctx := context.Background()
	if _, err := c.Clientset().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: workerNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a, err := c.StartAgent(ctx, kubetest.AgentOptions{
		Node: "node-" + name, Namespace: workerNS, LabelSelector: selector,
		Commands: map[string]string{taskhostPath: taskhostBin}, Run: run, Dir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return &site{name: name, cluster: c, agent: a}
}

// deployment is a haul server on the kube backend over some sites.
type deployment struct {
	srv   *server.Server
	api   apiv1connect.JobServiceClient
	admin apiv1connect.AdminServiceClient
	sites []*site
}

// deployOptions vary a deployment: each cluster's capacity for placement
// (by site name; absent: none configured, so the backend falls back on
// the nodes or treats the cluster as unbounded), the runner's worker cap
// (0: 8) and the runner's tuning.
type deployOptions struct {
	capacity   map[string]placement.Resources
	maxWorkers int
	runner     runner.Config
	// blob is the log store's URL ("": a folder in the data directory);
	// envSecret the Secret worker pods get their environment from.
	blob, envSecret string
	blobStore       blob.Store
}

func deploy(t *testing.T, sites ...*site) *deployment {
	t.Helper()
	return deployWith(t, deployOptions{}, sites...)
}

func deployWith(t *testing.T, o deployOptions, sites ...*site) *deployment {
	t.Helper()
	var clusters []kube.ClusterConfig
	for _, s := range sites {
		clusters = append(clusters, kube.ClusterConfig{Name: s.name, Kubeconfig: s.cluster.Kubeconfig(), Namespace: workerNS, Enabled: true,
			Capacity: o.capacity[s.name]})
	}
	ctx := context.Background()
	srv, err := server.Open(ctx, server.Options{
		Listen: "127.0.0.1:0", DataDir: t.TempDir(), MaxWorkers: cmp.Or(o.maxWorkers, 8), Runner: o.runner, BlobURL: o.blob, Blob: o.blobStore,
		Kube: &kube.Config{Clusters: clusters, TaskhostImage: "ghcr.io/haul-dev/taskhost:test", PodCreateQPS: 50, PodCreateBurst: 10,
			WorkerEnvSecret: o.envSecret},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		srv.Stop()
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	hc := server.WithBearer(httpClient, srv.AdminToken())
	return &deployment{srv: srv, api: apiv1connect.NewJobServiceClient(hc, srv.URL()),
		admin: apiv1connect.NewAdminServiceClient(hc, srv.URL()), sites: sites}
}

// setClusterState sets a cluster's state through the admin API, as an
// operator would (haul cluster disable), and returns when the call did.
func (d *deployment) setClusterState(t *testing.T, name string, state placement.ClusterState) {
	t.Helper()
	resp, err := d.admin.SetClusterState(context.Background(), connect.NewRequest(&apiv1.SetClusterStateRequest{Name: name, State: string(state)}))
	if err != nil {
		t.Fatalf("set cluster %s %s: %v", name, state, err)
	}
	if got := resp.Msg.Cluster.GetState(); got != string(state) {
		t.Fatalf("set cluster %s %s: the answer says %q", name, state, got)
	}
}

func (d *deployment) submit(t *testing.T, spec string) string {
	t.Helper()
	resp, err := d.api.SubmitJob(context.Background(), connect.NewRequest(&apiv1.SubmitJobRequest{Spec: []byte(spec), Filename: "job.yaml"}))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return resp.Msg.JobId
}

func (d *deployment) waitJob(t *testing.T, id string) *apiv1.Job {
	t.Helper()
	var j *apiv1.Job
	waitFor(t, 3*time.Minute, "job "+id+" to end", func() bool {
		resp, err := d.api.GetJob(context.Background(), connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
		if err != nil {
			return false
		}
		j = resp.Msg.Job
		return j.State == "succeeded" || j.State == "failed" || j.State == "cancelled"
	})
	return j
}

func (d *deployment) task(t *testing.T, job, key string) *apiv1.GetTaskResponse {
	t.Helper()
	resp, err := d.api.GetTask(context.Background(), connect.NewRequest(&apiv1.GetTaskRequest{JobId: job, Key: key}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg
}

// runningPod waits until the task's current attempt runs and returns the
// site and name of the worker pod it runs in.
func (d *deployment) runningPod(t *testing.T, job, key string, attempt int32) (*site, string) {
	t.Helper()
	var worker string
	waitFor(t, 2*time.Minute, fmt.Sprintf("%s attempt %d to run", key, attempt), func() bool {
		r := d.task(t, job, key)
		n := len(r.Attempts)
		if n < int(attempt) || r.Attempts[attempt-1].State != "running" {
			return false
		}
		worker = r.Attempts[attempt-1].WorkerId
		return true
	})
	for _, s := range d.sites {
		pods, err := s.cluster.Clientset().CoreV1().Pods(workerNS).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Annotations["haul.dev/worker-id"] == worker {
				return s, p.Name
			}
		}
	}
	t.Fatalf("no pod for worker %s", worker)
	return nil, ""
}

// noPodsLeft waits until no worker pod remains on any site.
func (d *deployment) noPodsLeft(t *testing.T) {
	t.Helper()
	waitFor(t, time.Minute, "every worker pod to be gone", func() bool {
		for _, s := range d.sites {
			pods, err := s.cluster.Clientset().CoreV1().Pods(workerNS).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
			if err != nil || len(pods.Items) > 0 {
				return false
			}
		}
		return true
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// firstAttemptHangs is a task that sleeps on its first attempt and
// succeeds at once on the next: the test kills its worker meanwhile.
const firstAttemptHangs = `[sh, -c, 'if [ "$HAUL_ATTEMPT" = 1 ]; then sleep 120; fi; echo attempt $HAUL_ATTEMPT']`

func TestKube(t *testing.T) {
	t.Parallel()
	a, b := startSite(t, "a", true), startSite(t, "b", true)
	d := deploy(t, a, b)

	t.Run("DAG", func(t *testing.T) {
		id := d.submit(t, `
name: dag
tasks:
  - key: split
    command: [sh, -c, 'echo split']
  - key: "sim-{i}"
    foreach: {range: [0, 6]}
    command: [sh, -c, 'echo sim {i} on $HOSTNAME']
    after: [split]
  - key: report
    command: [sh, -c, 'echo report']
    after: ["sim-*"]
`)
		j := d.waitJob(t, id)
		if j.State != "succeeded" || j.Counts.Succeeded != 8 {
			t.Fatalf("job %s with counts %v, want 8 succeeded", j.State, j.Counts)
		}
		r := d.task(t, id, "report")
		if len(r.Attempts) != 1 || r.Attempts[0].WorkerId == "" {
			t.Fatalf("report attempts %v", r.Attempts)
		}
		created := int64(0)
		for _, st := range d.srv.Kube().Stats() {
			created += st.PodsCreated
		}
		if created == 0 {
			t.Fatal("no worker pod was created: the job did not run on Kubernetes")
		}
		if log := r.Attempts[0].Message; log != "" {
			t.Logf("report: %s", log)
		}
		d.noPodsLeft(t)
	})

	t.Run("PodDeletedMidTask", func(t *testing.T) {
		id := d.submit(t, `
name: deleted
retries: 0
tasks:
  - key: victim
    command: `+firstAttemptHangs+`
`)
		s, pod := d.runningPod(t, id, "victim", 1)
		if err := s.cluster.Clientset().CoreV1().Pods(workerNS).Delete(context.Background(), pod, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		j := d.waitJob(t, id)
		r := d.task(t, id, "victim")
		if j.State != "succeeded" || len(r.Attempts) != 2 || r.Attempts[0].State != "lost" || r.Attempts[1].State != "succeeded" {
			t.Fatalf("job %s; attempts %v: want a lost attempt, then a success (retries: 0 — a lost attempt uses none)", j.State, r.Attempts)
		}
		if r.Attempts[0].WorkerId == r.Attempts[1].WorkerId {
			t.Errorf("the retry ran on the deleted worker %s", r.Attempts[0].WorkerId)
		}
		d.noPodsLeft(t)
	})

	t.Run("OOMKilledMovesUpATier", func(t *testing.T) {
		id := d.submit(t, `
name: oom
retries: 0
workers:
  - {name: small, memory: 256Mi}
  - {name: big, memory: 2Gi}
tasks:
  - key: hungry
    command: `+firstAttemptHangs+`
`)
		s, pod := d.runningPod(t, id, "hungry", 1)
		p, err := s.cluster.Clientset().CoreV1().Pods(workerNS).Get(context.Background(), pod, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if lim := p.Spec.Containers[0].Resources.Limits.Memory().Value(); lim != 256<<20 {
			t.Errorf("worker pod memory limit %d, want the small tier's 256 MiB", lim)
		}
		if err := s.agent.OOMKill(context.Background(), workerNS, pod); err != nil {
			t.Fatal(err)
		}
		j := d.waitJob(t, id)
		r := d.task(t, id, "hungry")
		if j.State != "succeeded" || len(r.Attempts) != 2 {
			t.Fatalf("job %s, attempts %v: want an oom attempt then a success", j.State, r.Attempts)
		}
		if a := r.Attempts[0]; !a.Oom || a.Tier != "small" || a.Enforcement != "container" {
			t.Errorf("attempt 1 %v: want oom on tier small, enforced by the container", a)
		}
		if a := r.Attempts[1]; a.State != "succeeded" || a.Tier != "big" {
			t.Errorf("attempt 2 %v: want a success on tier big", a)
		}
		d.noPodsLeft(t)
	})

	t.Run("DisabledClusterGetsNoWorkers", func(t *testing.T) {
		// The store's cluster record decides where workers go: disable it
		// through the API, as haul cluster disable does.
		kb := d.srv.Kube()
		d.setClusterState(t, "a", placement.Disabled)
		defer d.setClusterState(t, "a", placement.Enabled)
		before := kb.Stats()
		id := d.submit(t, `
name: disabled
max_workers: 4
tasks:
  - key: "w-{i}"
    foreach: {range: [0, 8]}
    command: [sleep, "1"]
`)
		if j := d.waitJob(t, id); j.State != "succeeded" {
			t.Fatalf("job %s", j.State)
		}
		after := kb.Stats()
		if n := after["a"].PodsCreated - before["a"].PodsCreated; n != 0 {
			t.Errorf("disabled cluster a got %d new worker pods", n)
		}
		if n := after["b"].PodsCreated - before["b"].PodsCreated; n == 0 {
			t.Errorf("cluster b got no worker pods")
		}
		d.noPodsLeft(t)
	})
}

// TestCreationRateUnderLoad asks the kube backend for 500 workers at once,
// as the runner does for a job that needs 500, and checks that pod creation
// never outruns the configured rate. The node agent binds and marks the
// pods Running without starting processes. It logs the measured pods/s and
// API requests per worker (docs/benchmarks.md).
func TestCreationRateUnderLoad(t *testing.T) {
	t.Parallel()
	s := startSite(t, "load", false)
	const workers, qps, burst = 500, 100.0, 20
	ended := make(chan string, workers)
	kb, err := kube.New(context.Background(), kube.Config{
		Clusters:      []kube.ClusterConfig{{Name: "load", Kubeconfig: s.cluster.Kubeconfig(), Namespace: workerNS, Enabled: true}},
		TaskhostImage: "ghcr.io/haul-dev/taskhost:test", PodCreateQPS: qps, PodCreateBurst: burst,
		Gone: func(id, why string) { ended <- id + ": " + why }, OOMKilled: func(id, why string) { ended <- id + ": " + why },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kb.Stop)
	base := kb.Stats()["load"].Requests
	start := time.Now()
	ids := make([]string, workers)
	for i := range ids {
		ids[i] = fmt.Sprintf("load-job-0-%d", i)
		if err := kb.StartWorker(context.Background(), workerSpec(ids[i])); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	waitFor(t, 2*time.Minute, "500 worker pods Running", func() bool {
		pods, err := s.cluster.Clientset().CoreV1().Pods(workerNS).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == workers
	})
	elapsed := time.Since(start)
	st := kb.Stats()["load"]
	if st.PodsCreated != workers || st.CreateErrors != 0 {
		t.Fatalf("created %d pods with %d errors, want %d and 0", st.PodsCreated, st.CreateErrors, workers)
	}
	times := slices.Clone(st.CreateTimes)
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	// Token bucket: in any window from one creation to a later one, at most
	// burst + qps·window creations (plus one for the window's own start).
	for i := range times {
		for j := i + 1; j < len(times); j++ {
			window := times[j].Sub(times[i]).Seconds()
			if allowed := float64(burst) + qps*window + 1; float64(j-i+1) > allowed+1e-9 {
				t.Fatalf("%d creations in %.3fs: more than burst %d + %.0f/s allows", j-i+1, window, burst, qps)
			}
		}
	}
	span := times[len(times)-1].Sub(times[0]).Seconds()
	requests := st.Requests - base
	t.Logf("%d pods created in %.2fs of creation (%.1f pods/s, limit %.0f/s burst %d); all Running after %.2fs; %d API requests, %.2f per worker",
		workers, span, float64(workers-1)/span, qps, burst, elapsed.Seconds(), requests, float64(requests)/workers)
	if per := float64(requests) / workers; per > 1.5 {
		t.Errorf("%.2f API requests per worker to create it; want about 1 (the watch is shared)", per)
	}
	for _, id := range ids {
		if err := kb.StopWorker(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 2*time.Minute, "every worker reported gone", func() bool { return len(ended) == workers })
	waitFor(t, time.Minute, "no pods left", func() bool {
		pods, err := s.cluster.Clientset().CoreV1().Pods(workerNS).List(ctx, metav1.ListOptions{LabelSelector: selector})
		return err == nil && len(pods.Items) == 0
	})
}

func workerSpec(id string) runner.WorkerSpec {
	return runner.WorkerSpec{ID: id, JobID: "load-job", JobName: "load", Namespace: "perf", TierIndex: 0,
		Tier: store.Tier{Name: "small", CPU: 0.1, MemoryBytes: 64 << 20}, RunnerURL: "http://127.0.0.1:1", BlobURL: "file:///tmp/none"}
}
