package kube

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/haul-dev/haul/internal/autoscale"
	"github.com/haul-dev/haul/internal/kubetest"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func workerPod(name string, cpu, mem string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"haul.dev/worker": "true"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "worker", Image: "haul-worker",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
			}},
		}}},
	}
}

// eventually polls cond (the informers catch up asynchronously) until it
// holds or 30 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func nodeCount(t *testing.T, client kubernetes.Interface) map[string]int {
	t.Helper()
	nodes, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: DefaultConfigLabel})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, n := range nodes.Items {
		out[n.Labels[DefaultConfigLabel]]++
	}
	return out
}

// TestControllerAgainstAPIServer runs the autoscaler against a real
// Kubernetes API server with the sim provider (launches are Node objects):
// it scales up for pending worker pods with the cheapest fitting configs,
// reports demand beyond the node limit as shortfall, and after the grace
// period removes idle nodes but never one running a worker pod.
func TestControllerAgainstAPIServer(t *testing.T) {
	t.Parallel()
	cluster := kubetest.Start(t)
	client := cluster.Clientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cfg := autoscale.Config{
		Configs: []autoscale.LaunchConfig{
			{Name: "small/z1/on-demand", InstanceType: "small", Zone: "z1", Purchase: autoscale.OnDemand,
				Capacity: autoscale.Resources{MilliCPU: 2000, MemoryBytes: 4 << 30}, PricePerHour: 0.10},
			{Name: "big/z1/on-demand", InstanceType: "big", Zone: "z1", Purchase: autoscale.OnDemand,
				Capacity: autoscale.Resources{MilliCPU: 8000, MemoryBytes: 32 << 30}, PricePerHour: 0.50},
		},
		Limits:         autoscale.Limits{MaxNodes: 2},
		ScaleDownGrace: time.Minute,
		Interval:       30 * time.Second,
	}
	ns := "work"
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := client.CoreV1().Pods(ns)
	for i := range 3 {
		if _, err := pods.Create(ctx, workerPod(fmt.Sprintf("small-%d", i), "1", "1Gi"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pods.Create(ctx, workerPod("big-0", "4", "20Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pod that is not a worker is not the autoscaler's demand.
	other := workerPod("not-a-worker", "64", "1Ti")
	other.Labels = nil
	if _, err := pods.Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	source, err := NewSource(client, "", "", cfg.Configs)
	if err != nil {
		t.Fatal(err)
	}
	if err := source.Start(ctx); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Now()}
	ctl, err := NewController(cfg, &SimNodes{Client: client}, source, nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() ([]autoscale.Pod, []autoscale.Node) {
		p, n, _, err := source.Snapshot(clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return p, n
	}
	eventually(t, "4 pending worker pods", func() bool { p, _ := snapshot(); return len(p) == 4 })

	// Scale up: the 20 GiB pod needs a big node, which has room for the
	// three 1-CPU pods too: one $0.50 node beats adding small ones.
	small, big := LabelValue("small/z1/on-demand"), LabelValue("big/z1/on-demand")
	step := func() {
		t.Helper()
		clock.Advance(30 * time.Second)
		if err := ctl.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	readyNodes := func(want int) {
		t.Helper()
		eventually(t, fmt.Sprintf("%d ready nodes in the informer", want), func() bool {
			_, n := snapshot()
			ready := 0
			for _, x := range n {
				if x.Ready {
					ready++
				}
			}
			return ready == want
		})
	}
	addPods := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := pods.Create(ctx, workerPod(fmt.Sprintf("small-%d", i), "1", "1Gi"), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, fmt.Sprintf("%d pending worker pods", to+1), func() bool { p, _ := snapshot(); return len(p) == to+1 })
	}
	step()
	if got := nodeCount(t, client); got[big] != 1 || got[small] != 0 {
		t.Fatalf("nodes after scale-up: %v, want one big node", got)
	}
	readyNodes(1)
	if st := ctl.Status(); len(st.Shortfall) != 0 || st.SpendPerHour != 0.5 || len(st.Launched) != 1 {
		t.Fatalf("status after scale-up: %+v", st)
	}

	// Two more pods (none is placed: there is no scheduler): one fits the
	// big node's last free CPU, the other gets the cheapest node that fits.
	addPods(3, 5)
	step()
	if got := nodeCount(t, client); got[big] != 1 || got[small] != 1 {
		t.Fatalf("nodes after the second step: %v, want one big and one small", got)
	}
	readyNodes(2)

	// Three more: one fits the small node's room, two would need a third
	// node, which the limit of 2 forbids: shortfall, reported by reason.
	addPods(5, 8)
	step()
	st := ctl.Status()
	if len(st.Shortfall) != 1 || st.Shortfall[0].Reason != autoscale.ReasonGlobalMaxNodes || st.Shortfall[0].Pods != 2 {
		t.Fatalf("shortfall beyond max nodes: %+v", st.Shortfall)
	}
	if got := nodeCount(t, client); got[big]+got[small] != 2 {
		t.Fatalf("the node limit was broken: %v", got)
	}

	// Scale down: one pod runs on the big node; every other pod goes away.
	// After the grace period the idle small node goes, the busy one stays.
	var busyNode string
	for _, n := range func() []autoscale.Node { _, n := snapshot(); return n }() {
		if n.Config == "big/z1/on-demand" {
			busyNode = n.ID
			break
		}
	}
	if err := pods.Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: "small-0"}, Target: corev1.ObjectReference{Kind: "Node", Name: busyNode}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := pods.Get(ctx, "small-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"small-1", "small-2", "small-3", "small-4", "small-5", "small-6", "small-7", "big-0"} {
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "no pending worker pods and one busy node", func() bool {
		p, n := snapshot()
		busy := 0
		for _, x := range n {
			busy += x.WorkerPods
		}
		return len(p) == 0 && busy == 1
	})
	step() // the idle node is noticed
	clock.Advance(2 * time.Minute)
	step() // past the grace period
	eventually(t, "the idle node removed", func() bool {
		n := nodeCount(t, client)
		return n[small] == 0 && n[big] == 1
	})
	if _, err := client.CoreV1().Nodes().Get(ctx, busyNode, metav1.GetOptions{}); err != nil {
		t.Fatalf("the node running a worker pod was removed: %v", err)
	}
}

// TestShortLaunchMarksCapacityLimited has the sim provider deliver none of
// the cheapest config: the controller reports it short, the planner marks
// it, and the next-best config is launched at the next step.
func TestShortLaunchMarksCapacityLimited(t *testing.T) {
	t.Parallel()
	cluster := kubetest.Start(t)
	client := cluster.Clientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := autoscale.Config{Configs: []autoscale.LaunchConfig{
		{Name: "cheap", InstanceType: "c", Purchase: autoscale.Spot, Capacity: autoscale.Resources{MilliCPU: 2000, MemoryBytes: 4 << 30}, PricePerHour: 0.05},
		{Name: "dear", InstanceType: "d", Purchase: autoscale.OnDemand, Capacity: autoscale.Resources{MilliCPU: 2000, MemoryBytes: 4 << 30}, PricePerHour: 0.20},
	}}
	if _, err := client.CoreV1().Pods("default").Create(ctx, workerPod("w", "1", "1Gi"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	source, err := NewSource(client, "", "", cfg.Configs)
	if err != nil {
		t.Fatal(err)
	}
	if err := source.Start(ctx); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Now()}
	sim := &SimNodes{Client: client, Available: func(c string) int {
		if c == "cheap" {
			return 0
		}
		return 100
	}}
	ctl, err := NewController(cfg, sim, source, nil, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pending pod", func() bool { p, _, _, _ := source.Snapshot(clock.Now()); return len(p) == 1 })
	if err := ctl.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if st := ctl.Status(); len(st.CapacityLimited) != 1 || st.CapacityLimited[0] != "cheap" {
		t.Fatalf("after a launch of cheap that got nothing: capacity-limited %v", st.CapacityLimited)
	}
	clock.Advance(30 * time.Second)
	if err := ctl.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if got := nodeCount(t, client); got["dear"] != 1 || got["cheap"] != 0 {
		t.Fatalf("nodes: %v, want one of the next-best config", got)
	}
}
