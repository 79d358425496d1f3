package kube

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/placement"
)

func TestLoadClusters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "clusters.yaml")
	data := `clusters:
  - name: east
    kubeconfig: east.kubeconfig
    context: batch
  - name: west
    kubeconfig: /etc/haul/west.kubeconfig
    namespace: batch-workers
    enabled: false
  - name: here
    in_cluster: true
    enabled: true
    capacity: cpu=64,memory=256Gi,gpu/a100=8
    pods_per_second: 20
    labels: {cloud.example/gpu-type: [a100, h100]}
`
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadClusters(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []ClusterConfig{
		{Name: "east", Kubeconfig: filepath.Join(dir, "east.kubeconfig"), Context: "batch", Namespace: DefaultNamespace, Enabled: true},
		{Name: "west", Kubeconfig: "/etc/haul/west.kubeconfig", Namespace: "batch-workers", Enabled: false},
		{Name: "here", InCluster: true, Namespace: DefaultNamespace, Enabled: true,
			Capacity:      placement.Resources{MilliCPU: 64000, Memory: 256 << 30, GPU: map[string]int64{"a100": 8}},
			PodsPerSecond: 20, Labels: map[string][]string{"cloud.example/gpu-type": {"a100", "h100"}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LoadClusters:\n got %+v\nwant %+v", got, want)
	}
}

func TestLoadClustersMissingFile(t *testing.T) {
	t.Parallel()
	_, err := LoadClusters(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("error %v does not name the missing file", err)
	}
}

func TestParseClustersErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, yaml, want string }{
		{"empty", "", "empty file"},
		{"no clusters", "clusters: []\n", "no clusters"},
		{"unknown field", "clusters:\n  - name: a\n    in_cluster: true\n    kubconfig: x\n", "field kubconfig not found"},
		{"unknown top field", "cluster:\n  - name: a\n", "field cluster not found"},
		{"no name", "clusters:\n  - in_cluster: true\n", "cluster 1: no name"},
		{"bad name", "clusters:\n  - name: a b\n    in_cluster: true\n", `name "a b"`},
		{"bad capacity", "clusters:\n  - name: a\n    in_cluster: true\n    capacity: cpu=lots\n", "cluster 1 (a): capacity"},
		{"negative budget", "clusters:\n  - name: a\n    in_cluster: true\n    pods_per_second: -1\n", "pods_per_second -1"},
		{"duplicate", "clusters:\n  - {name: a, in_cluster: true}\n  - {name: a, kubeconfig: k}\n", `clusters 1 and 2 are both named "a"`},
		{"neither", "clusters:\n  - name: a\n", "neither kubeconfig nor in_cluster"},
		{"both", "clusters:\n  - {name: a, in_cluster: true, kubeconfig: k}\n", "both kubeconfig and in_cluster"},
		{"context in cluster", "clusters:\n  - {name: a, in_cluster: true, context: c}\n", "context is set but in_cluster"},
		{"bad namespace", "clusters:\n  - {name: a, in_cluster: true, namespace: Not_OK}\n", `namespace "Not_OK"`},
		{"bad enabled", "clusters:\n  - {name: a, in_cluster: true, enabled: maybe}\n", "maybe"},
		{"two documents", "clusters:\n  - {name: a, in_cluster: true}\n---\nclusters: []\n", "more than one YAML document"},
		{"not a list", "clusters: a\n", "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseClusters([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseClusters(%q) = %v, want an error containing %q", tc.yaml, err, tc.want)
			}
		})
	}
}

func FuzzParseClusters(f *testing.F) {
	f.Add([]byte("clusters:\n  - {name: a, in_cluster: true}\n"))
	f.Add([]byte("clusters:\n  - name: a\n    kubeconfig: k\n    enabled: false\n"))
	f.Add([]byte("clusters: [{name: a}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cs, err := ParseClusters(data)
		if err != nil {
			return
		}
		if len(cs) == 0 {
			t.Fatal("no error and no clusters")
		}
		for _, c := range cs {
			if c.Name == "" || c.Namespace == "" || c.InCluster == (c.Kubeconfig != "") {
				t.Fatalf("accepted a bad cluster: %+v", c)
			}
		}
	})
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	ok := []ClusterConfig{{Name: "a", InCluster: true}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no clusters", Config{TaskhostImage: "t"}, "no clusters"},
		{"no taskhost image", Config{Clusters: ok}, "no taskhost image"},
		{"bad cluster", Config{Clusters: []ClusterConfig{{Name: "a"}}, TaskhostImage: "t"}, "neither kubeconfig nor in_cluster"},
		{"negative qps", Config{Clusters: ok, TaskhostImage: "t", PodCreateQPS: -1}, "pod create QPS"},
		{"negative burst", Config{Clusters: ok, TaskhostImage: "t", PodCreateBurst: -1}, "pod create burst"},
		{"bad instance", Config{Clusters: ok, TaskhostImage: "t", Instance: "a b"}, `instance "a b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
