package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/haul-dev/haul/internal/kubetest"
	"github.com/haul-dev/haul/internal/runner"
)

// TestPlacement runs one backend on two clusters, reached through their
// kubeconfig files: new workers go to the least-loaded enabled cluster.
func TestPlacement(t *testing.T) {
	t.Parallel()
	ka := sharedCluster(t)
	kb := kubetest.Start(t)
	ns := newNamespace(t, ka)
	if _, err := kb.Clientset().CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	clusters := []ClusterConfig{
		{Name: "b", Kubeconfig: kb.Kubeconfig(), Context: kubetest.KubeconfigContext, Namespace: ns, Enabled: true},
		{Name: "a", Kubeconfig: ka.Kubeconfig(), Context: kubetest.KubeconfigContext, Namespace: ns, Enabled: true},
	}
	newBackend := func(qps float64, burst int) *Backend {
		ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
		defer cancel()
		b, err := New(ctx, Config{
			Clusters: clusters, TaskhostImage: "th:1", PodCreateQPS: qps, PodCreateBurst: burst,
			Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
			Gone:   func(id, why string) { rec.add(ending{id: id, why: why}) },
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop)
		return b
	}
	b := newBackend(1000, 100)
	ctx := t.Context()
	start := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			if err := b.StartWorker(ctx, testSpec(id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	podsIn := func(kc *kubetest.Cluster, want ...string) {
		t.Helper()
		var names []string
		for _, id := range want {
			names = append(names, PodName(id))
		}
		slices.Sort(names)
		waitPods(t, kc.Clientset(), ns, func(m map[string]*corev1.Pod) bool {
			var got []string
			for n, p := range m {
				if p.Labels[LabelBackend] == b.Instance() {
					got = append(got, n)
				}
			}
			slices.Sort(got)
			return slices.Equal(got, names)
		})
	}
	loads := func(a, bb int) {
		t.Helper()
		waitFor(t, func() bool {
			cs := b.Clusters()
			return cs[0].LivePods == a && cs[1].LivePods == bb && cs[0].Queued == 0 && cs[1].Queued == 0
		})
	}

	// Alternating, the tie going to the first by name.
	start("p0", "p1", "p2", "p3", "p4", "p5")
	podsIn(ka, "p0", "p2", "p4")
	podsIn(kb, "p1", "p3", "p5")
	if got := b.Clusters(); got[0].Name != "a" || got[1].Name != "b" || !got[0].Enabled || !got[1].Enabled {
		t.Errorf("clusters %+v", got)
	}

	// A disabled cluster gets nothing new; its running workers stay.
	if err := b.SetEnabled("a", false); err != nil {
		t.Fatal(err)
	}
	start("q0", "q1", "q2", "q3")
	podsIn(kb, "p1", "p3", "p5", "q0", "q1", "q2", "q3")
	podsIn(ka, "p0", "p2", "p4")
	loads(3, 7)
	if got := b.Clusters(); got[0].Enabled {
		t.Errorf("clusters %+v: a is enabled", got)
	}

	// Enabled again, it is the least loaded and takes new workers until it
	if err := b.SetEnabled("a", true); err != nil {
		t.Fatal(err)
	}
	// is not (at 7 against 7, the tie goes to a).
	start("r0", "r1", "r2", "r3", "r4")
	podsIn(ka, "p0", "p2", "p4", "r0", "r1", "r2", "r3", "r4")
	podsIn(kb, "p1", "p3", "p5", "q0", "q1", "q2", "q3")

	// Finished pods no longer count.
	for _, id := range []string{"q0", "q1", "q2", "q3"} {
		if err := kb.SetPodPhase(ctx, ns, PodName(id), corev1.PodSucceeded); err != nil {
			t.Fatal(err)
		}
	}
	podsIn(kb, "p1", "p3", "p5")
	loads(8, 3)
	start("s0")
	podsIn(kb, "p1", "p3", "p5", "s0")

	// No enabled cluster: StartWorker says so.
	for _, name := range []string{"a", "b"} {
		if err := b.SetEnabled(name, false); err != nil {
			t.Fatal(err)
		}
	}
	err := b.StartWorker(ctx, testSpec("nowhere"))
	if !errors.Is(err, ErrNoCluster) || !strings.Contains(err.Error(), "every cluster is disabled (a, b)") {
		t.Errorf("StartWorker with every cluster disabled: %v", err)
	}
	if err := b.SetEnabled("c", true); !errors.Is(err, ErrUnknownCluster) {
		t.Errorf("SetEnabled(c) = %v, want ErrUnknownCluster", err)
	}
	t.Logf("stats: a %+v, b %+v", withoutTimes(b.Stats()["a"]), withoutTimes(b.Stats()["b"]))

	// A second backend whose buckets hold one token each: workers queued in
	// a cluster move when it is disabled, and end when no cluster is left.
	b2 := newBackend(0.001, 1)
	for _, id := range []string{"m0", "m1", "m2", "m3"} {
		if err := b2.StartWorker(ctx, testSpec(id)); err != nil {
			t.Fatal(err)
		}
	}
	// m0 and m2 in a, m1 and m3 in b; m0 and m1 created at once.
	waitFor(t, func() bool {
		s, cs := b2.Stats(), b2.Clusters()
		return s["a"].PodsCreated == 1 && s["b"].PodsCreated == 1 && cs[0].Queued == 1 && cs[1].Queued == 1
	})
	if err := b2.SetEnabled("a", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { cs := b2.Clusters(); return cs[0].Queued == 0 && cs[1].Queued == 2 })
	if got := b2.Clusters(); got[1].LivePods != 1 {
		t.Errorf("clusters %+v", got)
	}
	if err := b2.SetEnabled("b", false); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"m2", "m3"} {
		if e := rec.wait(t, id); !strings.HasPrefix(e.why, "stopped before its pod was created: cluster ") {
			t.Errorf("%s: %q", id, e.why)
		}
	}
}

// TestCreateRate creates 60 workers with a bucket of 20 per second and a
// burst of 5: in no interval may more pods be created than the bucket
// allows. It reports the rate it measured and the API requests per worker.
func TestCreateRate(t *testing.T) {
	t.Parallel()
	const (
		n     = 60
		qps   = 20.0
		burst = 5
	)
	bn := setup(t, func(c *Config) { c.PodCreateQPS, c.PodCreateBurst = qps, burst })
	ctx := t.Context()
	before := bn.b.Stats()["test"].Requests
	var ids []string
	for i := range n {
		id := fmt.Sprintf("rate-%02d", i)
		ids = append(ids, id)
		if err := bn.b.StartWorker(ctx, testSpec(id)); err != nil {
			t.Fatal(err)
		}
	}
	pods := waitPods(t, bn.client, bn.ns, func(m map[string]*corev1.Pod) bool { return len(m) == n })

	// The bucket's times: any i..j holds at most burst + qps·(t_j - t_i).
	times := bn.b.Stats()["test"].CreateTimes
	if len(times) != n {
		t.Fatalf("%d creation times, want %d", len(times), n)
	}
	for i := range times {
		for j := i; j < len(times); j++ {
			allowed := burst + qps*times[j].Sub(times[i]).Seconds() + 1e-6
			if float64(j-i+1) > allowed {
				t.Fatalf("creations %d..%d: %d in %v, the bucket allows %.2f", i, j, j-i+1, times[j].Sub(times[i]), allowed)
			}
		}
	}
	// The API server's clock, to the second: the pods created within
	// seconds s..s+k took less than k+1 seconds.
	var created []time.Time
	for _, p := range pods {
		created = append(created, p.CreationTimestamp.Time)
	}
	slices.SortFunc(created, func(x, y time.Time) int { return x.Compare(y) })
	for i := range created {
		for j := i; j < len(created); j++ {
			k := created[j].Sub(created[i]).Seconds()
			if allowed := burst + qps*(k+1); float64(j-i+1) > allowed {
				t.Fatalf("the API server stamped %d pods within %v s, the bucket allows %.0f", j-i+1, k+1, allowed)
			}
		}
	}
	span := times[n-1].Sub(times[0])
	t.Logf("created %d pods in %v: %.1f per second after the burst of %d (bucket: %v per second)",
		n, span.Round(time.Millisecond), float64(n-burst)/span.Seconds(), burst, qps)

	// Every worker ends; every pod goes.
	for _, id := range ids {
		if err := bn.kc.SetPodPhase(ctx, bn.ns, PodName(id), corev1.PodSucceeded); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		if e := bn.rec.wait(t, id); e.why != "exited" {
			t.Errorf("%s: %q", id, e.why)
		}
	}
	waitPods(t, bn.client, bn.ns, func(m map[string]*corev1.Pod) bool { return len(m) == 0 })
	waitFor(t, func() bool { return bn.b.Stats()["test"].PodsDeleted == n })
	st := bn.b.Stats()["test"]
	t.Logf("API requests: %d for %d workers (%.2f per worker: create and delete; the informer's list and watch were %d before)",
		st.Requests-before, n, float64(st.Requests-before)/n, before)
	if st.PodsCreated != n || st.CreateErrors != 0 || st.DeleteErrors != 0 {
		t.Errorf("stats %+v", withoutTimes(st))
	}
}

// TestOrphans: a backend deletes the pods of an earlier backend with its
// instance label when it starts, and leaves other backends' pods alone.
func TestOrphans(t *testing.T) {
	t.Parallel()
	instance := fmt.Sprintf("orphans-%d", time.Now().UnixNano())
	var ns string
	pod := func(name, inst string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{LabelManagedBy: ManagedBy, LabelBackend: inst},
				Annotations: map[string]string{AnnotationWorkerID: name}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "x"}}},
		}
	}
	bn := setup(t, func(c *Config) {
		c.Instance = instance
		ns = c.Clusters[0].Namespace
		pods := sharedCluster(t).Clientset().CoreV1().Pods(ns)
		for _, p := range []*corev1.Pod{pod("left-over", instance), pod("someone-elses", "other")} {
			if _, err := pods.Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	})
	waitNoPod(t, bn.client, ns, "left-over")
	if _, err := bn.client.CoreV1().Pods(ns).Get(t.Context(), "someone-elses", metav1.GetOptions{}); err != nil {
		t.Errorf("another backend's pod: %v", err)
	}
	if n := len(bn.rec.count()); n != 0 {
		t.Errorf("%d workers reported for pods this backend did not start", n)
	}
}

// TestWorkerNodePrice: a worker's node is priced by its annotation, else
// by the price table for its instance type; a node with neither costs 0.
// The backend describes its cluster to placement with the capacity of its
// nodes when the clusters file gives none.
func TestWorkerNodePrice(t *testing.T) {
	t.Parallel()
	bn := setup(t, func(c *Config) {
		c.WatchNodes = true
		c.Prices = map[string]float64{"m5.large": 0.096}
	})
	ctx := t.Context()
	node := func(name string, labels map[string]string, annotation string) {
		t.Helper()
		full := name + "-" + bn.ns
		if err := bn.kc.CreateNode(ctx, full, labels, corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi")}); err != nil {
			t.Fatal(err)
		}
		if annotation != "" {
			n, err := bn.client.CoreV1().Nodes().Get(ctx, full, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			n.Annotations = map[string]string{NodePriceAnnotation: annotation}
			if _, err := bn.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	node("annotated", map[string]string{corev1.LabelInstanceTypeStable: "m5.large"}, "0.5")
	node("typed", map[string]string{corev1.LabelInstanceTypeStable: "m5.large"}, "")
	node("unknown", map[string]string{corev1.LabelInstanceTypeStable: "x9.huge"}, "")
	for _, id := range []string{"annotated", "typed", "unknown"} {
		if err := bn.b.StartWorker(ctx, testSpec(id)); err != nil {
			t.Fatal(err)
		}
		name := PodName(id)
		waitPod(t, bn.client, bn.ns, name, exists)
		if err := bn.kc.BindPod(ctx, bn.ns, name, id+"-"+bn.ns); err != nil {
			t.Fatal(err)
		}
	}
	for id, want := range map[string]float64{"annotated": 0.5, "typed": 0.096, "unknown": 0} {
		var info runner.NodeInfo
		waitFor(t, func() bool {
			var ok bool
			info, ok = bn.b.WorkerNode(id)
			return ok
		})
		if info.PricePerHour != want {
			t.Errorf("worker on node %s: price %v, want %v", id, info.PricePerHour, want)
		}
	}
	pc := bn.b.PlacementClusters()
	if len(pc) != 1 || pc[0].Capacity.MilliCPU < 6000 || pc[0].Capacity.Memory < 24<<30 {
		t.Errorf("placement clusters %+v: want one with at least the three nodes' 6 cores and 24Gi", pc)
	}
}
