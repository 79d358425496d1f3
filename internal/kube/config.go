package kube

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/haul-dev/haul/internal/placement"
	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultNamespace is the Kubernetes namespace worker pods go to when a
// cluster names none.
const DefaultNamespace = "haul-workers"

// ClusterConfig says how to reach one Kubernetes cluster and where its
// worker pods go.
type ClusterConfig struct {
	// Name identifies the cluster in haul (placement, SetEnabled, logs).
	Name string `yaml:"name"`
	// Kubeconfig is the path of a kubeconfig file; Context picks one of its
	// contexts (empty: its current context). A relative path in a clusters
	// file is relative to that file's folder.
	Kubeconfig string `yaml:"kubeconfig"`
	Context    string `yaml:"context"`
	// InCluster uses the service account of the pod haul runs in, instead
	// of a kubeconfig.
	InCluster bool `yaml:"in_cluster"`
	// Namespace is where worker pods go (default DefaultNamespace). It must
	// exist.
	Namespace string `yaml:"namespace"`
	// Enabled clusters get new workers. In a clusters file it is true
	// when absent; in Go its zero value, false, means disabled. With
	// placement, this is the state the cluster's record starts with; the
	// record in the store decides after that (haul cluster enable,
	// disable, drain).
	Enabled bool `yaml:"enabled"`
	// Capacity is what haul's workers may hold in the cluster, for
	// placement ("cpu=64,memory=256Gi,gpu/a100=8" in a file). Zero: the
	// sum of the nodes' allocatable when nodes are watched, else unbounded.
	Capacity placement.Resources `yaml:"-"`
	// PodsPerSecond is the cluster API's budget for pod creations, shown
	// in haul cluster list and the placement simulation (0: not set).
	PodsPerSecond float64 `yaml:"pods_per_second"`
	// Labels are the node label values present in the cluster, for
	// matching tiers' node selectors (empty: any selector matches).
	Labels map[string][]string `yaml:"labels"`
}

// clusterYAML is ClusterConfig as written in a file: Enabled is a pointer
// so that an absent field can mean true.
type clusterYAML struct {
	Name       string `yaml:"name"`
	Kubeconfig string `yaml:"kubeconfig"`
	Context    string `yaml:"context"`
	InCluster  bool   `yaml:"in_cluster"`
	Namespace  string `yaml:"namespace"`
	Enabled    *bool  `yaml:"enabled"`
	Capacity   string `yaml:"capacity"`
	// Pods per second and node labels, as in ClusterConfig.
	PodsPerSecond float64             `yaml:"pods_per_second"`
	Labels        map[string][]string `yaml:"labels"`
}

type clustersFile struct {
	Clusters []clusterYAML `yaml:"clusters"`
}

// LoadClusters reads a clusters file:
//
//	clusters:
//	  - name: us-east-1a
//	    kubeconfig: /etc/haul/us-east-1a.kubeconfig
//	    context: batch            # optional
//	    namespace: haul-workers   # optional (the default)
//	    capacity: cpu=512,memory=2Ti,gpu/a100=16   # optional (placement)
//	    pods_per_second: 20       # optional: the API's pod-creation budget
//	    labels: {cloud.example/gpu-type: [a100]}  # optional: node labels
//	  - name: local
//	    in_cluster: true
//	    enabled: false            # optional; true when absent
//
// Relative kubeconfig paths are resolved against the file's folder.
func LoadClusters(path string) ([]ClusterConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("clusters file: %w", err)
	}
	cs, err := ParseClusters(data)
	if err != nil {
		return nil, fmt.Errorf("clusters file %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for i := range cs {
		if cs[i].Kubeconfig != "" && !filepath.IsAbs(cs[i].Kubeconfig) {
			cs[i].Kubeconfig = filepath.Join(dir, cs[i].Kubeconfig)
		}
	}
	return cs, nil
}

// ParseClusters parses the contents of a clusters file (see LoadClusters)
// and checks it; relative kubeconfig paths are left as written.
func ParseClusters(data []byte) ([]ClusterConfig, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f clustersFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file: want a list under \"clusters:\"")
		}
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document: want one with a list under \"clusters:\"")
	}
	if len(f.Clusters) == 0 {
		return nil, errors.New("no clusters: want at least one under \"clusters:\"")
	}
	out := make([]ClusterConfig, 0, len(f.Clusters))
	for i, y := range f.Clusters {
		c := ClusterConfig{
			Name: y.Name, Kubeconfig: y.Kubeconfig, Context: y.Context,
			InCluster: y.InCluster, Namespace: y.Namespace, Enabled: y.Enabled == nil || *y.Enabled,
			PodsPerSecond: y.PodsPerSecond, Labels: y.Labels,
		}
		if y.Capacity != "" {
			r, err := placement.ParseResources(y.Capacity)
			if err != nil {
				return nil, fmt.Errorf("cluster %d (%s): capacity: %w", i+1, y.Name, err)
			}
			c.Capacity = r
		}
		if y.PodsPerSecond < 0 {
			return nil, fmt.Errorf("cluster %d (%s): pods_per_second %v: want 0 or more", i+1, y.Name, y.PodsPerSecond)
		}
		if err := c.normalize(); err != nil {
			if c.Name != "" {
				return nil, fmt.Errorf("cluster %d (%s): %w", i+1, c.Name, err)
			}
			return nil, fmt.Errorf("cluster %d: %w", i+1, err)
		}
		out = append(out, c)
	}
	if err := checkUnique(out); err != nil {
		return nil, err
	}
	return out, nil
}

// normalize fills in defaults and checks the cluster's fields.
func (c *ClusterConfig) normalize() error {
	c.Name = strings.TrimSpace(c.Name)
	if c.Name == "" {
		return errors.New("no name")
	}
	if len(c.Name) > 63 || strings.ContainsFunc(c.Name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	}) {
		return fmt.Errorf("name %q: want at most 63 letters, digits, '-', '_' or '.'", c.Name)
	}
	switch {
	case c.InCluster && c.Kubeconfig != "":
		return errors.New("both kubeconfig and in_cluster: choose one")
	case c.InCluster && c.Context != "":
		return errors.New("context is set but in_cluster uses no kubeconfig")
	case !c.InCluster && c.Kubeconfig == "":
		return errors.New("neither kubeconfig nor in_cluster: say how to reach the cluster")
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", c.Namespace, strings.Join(errs, "; "))
	}
	return nil
}

func checkUnique(cs []ClusterConfig) error {
	seen := make(map[string]int, len(cs))
	for i, c := range cs {
		if j, ok := seen[c.Name]; ok {
			return fmt.Errorf("clusters %d and %d are both named %q", j+1, i+1, c.Name)
		}
		seen[c.Name] = i
	}
	return nil
}
