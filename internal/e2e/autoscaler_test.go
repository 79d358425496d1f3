package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/haul-dev/haul/internal/kubetest"
)

// TestAutoscalerCommand runs `haul autoscaler` with the sim provider against
// a real Kubernetes API server: a pending worker pod gets a Node of the
// cheapest config that fits, and `haul cluster status -o json` reports it.
func TestAutoscalerCommand(t *testing.T) {
	t.Parallel()
	cluster := kubetest.Start(t)
	client := cluster.Clientset()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "w-0", Labels: map[string]string{"haul.dev/worker": "true"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "haul-worker",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("3"), corev1.ResourceMemory: resource.MustParse("6Gi")}}}}},
	}
	if _, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "autoscaler.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
interval: 1s
limits: {max_nodes: 5, max_spend_per_hour: 10}
provider: {type: sim}
kubernetes: {kubeconfig: %s}
launch_configs:
  - {name: small/z1/on-demand, instance_type: small, capacity: {cpu: "2", memory: 4Gi}, price_per_hour: 0.1}
  - {name: medium/z1/on-demand, instance_type: medium, capacity: {cpu: "4", memory: 8Gi}, price_per_hour: 0.2}
  - {name: large/z1/on-demand, instance_type: large, capacity: {cpu: "8", memory: 16Gi}, price_per_hour: 0.4}
`, cluster.Kubeconfig())), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	var out bytes.Buffer
	cmd := exec.Command(haulBin, "autoscaler", "--config", cfg, "--listen", addr, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })

	// The 3-CPU pod fits medium (the cheapest that fits) and large.
	deadline := time.Now().Add(60 * time.Second)
	for {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "haul.dev/launch-config"})
		if err == nil && len(nodes.Items) > 0 {
			if len(nodes.Items) != 1 || nodes.Items[0].Labels["haul.dev/launch-config"] != "medium_z1_on-demand" {
				t.Fatalf("nodes: %v", nodes.Items)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no node launched after 60s; autoscaler output:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var st struct {
		Nodes        map[string]struct{ Ready int } `json:"nodes"`
		SpendPerHour float64                        `json:"spend_per_hour"`
	}
	for {
		r := haul(t, nil, "cluster", "status", "--autoscaler", "http://"+addr, "-o", "json")
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &st) == nil && st.Nodes["medium/z1/on-demand"].Ready == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster status never showed the node: %d %s %s", r.code, r.stdout, r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st.SpendPerHour != 0.2 {
		t.Fatalf("spend %v, want 0.2", st.SpendPerHour)
	}
	r := haul(t, nil, "cluster", "status", "--autoscaler", "http://"+addr)
	if r.code != 0 || !strings.Contains(r.stdout, "medium/z1/on-demand") || !strings.Contains(r.stdout, "shortfall:") {
		t.Fatalf("cluster status text: %d %s %s", r.code, r.stdout, r.stderr)
	}
}
