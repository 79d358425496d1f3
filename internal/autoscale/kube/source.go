// Package kube connects haul's autoscaler to a Kubernetes cluster: a Source
// that watches worker pods and nodes through shared informers and turns them
// into the planner's demand and supply, a Controller that runs the planner
// every interval and carries out its plan through a Provider, and SimNodes,
// the `sim` provider whose launches are Node objects in the cluster. It
// imports client-go and the autoscale contract.
package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/haul-dev/haul/internal/autoscale"
)

// Defaults for the labels that tie the cluster to the autoscaler.
const (
	DefaultWorkerSelector = "haul.dev/worker"
	DefaultConfigLabel    = "haul.dev/launch-config"
	// GPUTypeLabel is the node label (and node-selector key) naming a GPU model.
	GPUTypeLabel = "haul.dev/gpu-type"
	// GPUResource is the extended resource worker pods request GPUs with.
	GPUResource = corev1.ResourceName("nvidia.com/gpu")
)

// Source turns worker pods and nodes, watched through informers, into the
// planner's view: pending pods (demand) and nodes with their free capacity
// (supply). Nodes map to launch configs by a label.
type Source struct {
	client      kubernetes.Interface
	configLabel string
	pods        listersv1.PodLister
	nodes       listersv1.NodeLister
	factories   []informers.SharedInformerFactory
	synced      []cache.InformerSynced

	// byLabel maps a config label value (LabelValue of its name) back to
	// the config's name.
	byLabel map[string]string

	mu        sync.Mutex
	idleSince map[string]time.Time // node name → when it was last seen without worker pods
}

// NewSource prepares informers on worker pods (selected by workerSelector)
// and on nodes carrying configLabel, whose value is LabelValue of one of
// configs' names; Start runs them.
func NewSource(client kubernetes.Interface, workerSelector, configLabel string, configs []autoscale.LaunchConfig) (*Source, error) {
	if workerSelector == "" {
		workerSelector = DefaultWorkerSelector
	}
	if configLabel == "" {
		configLabel = DefaultConfigLabel
	}
	if _, err := labels.Parse(workerSelector); err != nil {
		return nil, fmt.Errorf("worker selector %q: %w", workerSelector, err)
	}
	podFactory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = workerSelector }))
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = configLabel }))
	s := &Source{
		client:      client,
		configLabel: configLabel,
		pods:        podFactory.Core().V1().Pods().Lister(),
		nodes:       nodeFactory.Core().V1().Nodes().Lister(),
		factories:   []informers.SharedInformerFactory{podFactory, nodeFactory},
		idleSince:   map[string]time.Time{},
		byLabel:     map[string]string{},
	}
	for _, c := range configs {
		s.byLabel[LabelValue(c.Name)] = c.Name
	}
	s.synced = []cache.InformerSynced{
		podFactory.Core().V1().Pods().Informer().HasSynced,
		nodeFactory.Core().V1().Nodes().Informer().HasSynced,
	}
	return s, nil
}

// Start runs the informers until ctx ends and waits for their first sync.
func (s *Source) Start(ctx context.Context) error {
	for _, f := range s.factories {
		f.Start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return fmt.Errorf("watch worker pods and nodes: %w", context.Cause(ctx))
	}
	return nil
}

// Snapshot is the planner's view of the cluster at now. Instances maps each
// node to the provider's instance ID (from spec.providerID, or its name).
func (s *Source) Snapshot(now time.Time) (pending []autoscale.Pod, nodes []autoscale.Node, instances map[string]string, err error) {
	pods, err := s.pods.List(labels.Everything())
	if err != nil {
		return nil, nil, nil, err
	}
	used := map[string]autoscale.Resources{}
	workers := map[string]int{}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.DeletionTimestamp != nil {
			continue
		}
		req := podRequests(p)
		if p.Spec.NodeName == "" {
			if p.Status.Phase == corev1.PodPending {
				pending = append(pending, autoscale.Pod{
					ID: p.Namespace + "/" + p.Name, Requests: req,
					NodeSelector: p.Spec.NodeSelector, Tolerations: tolerations(p.Spec.Tolerations),
					PendingSince: p.CreationTimestamp.Time,
				})
			}
			continue
		}
		u := used[p.Spec.NodeName]
		u.MilliCPU += req.MilliCPU
		u.MemoryBytes += req.MemoryBytes
		u.GPU += req.GPU
		used[p.Spec.NodeName] = u
		workers[p.Spec.NodeName]++
	}
	sort.Slice(pending, func(i, j int) bool { return pending[i].ID < pending[j].ID })

	list, err := s.nodes.List(labels.Everything())
	if err != nil {
		return nil, nil, nil, err
	}
	instances = map[string]string{}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, n := range list {
		if n.DeletionTimestamp != nil {
			continue
		}
		seen[n.Name] = true
		alloc := nodeResources(n.Status.Allocatable)
		u := used[n.Name]
		node := autoscale.Node{
			ID: n.Name, Config: s.byLabel[n.Labels[s.configLabel]], Ready: nodeReady(n),
			LaunchedAt: n.CreationTimestamp.Time, WorkerPods: workers[n.Name],
			Free: autoscale.Resources{
				MilliCPU: max(0, alloc.MilliCPU-u.MilliCPU), MemoryBytes: max(0, alloc.MemoryBytes-u.MemoryBytes),
				GPU: max(0, alloc.GPU-u.GPU), GPUType: n.Labels[GPUTypeLabel],
			},
		}
		if node.WorkerPods > 0 {
			delete(s.idleSince, n.Name)
		} else {
			if _, ok := s.idleSince[n.Name]; !ok {
				s.idleSince[n.Name] = now
			}
			node.IdleSince = s.idleSince[n.Name]
		}
		nodes = append(nodes, node)
		instances[n.Name] = instanceID(n)
	}
	for name := range s.idleSince {
		if !seen[name] {
			delete(s.idleSince, name)
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	return pending, nodes, instances, nil
}

// instanceID is the provider's ID of a node's machine: the last part of
// spec.providerID (aws:///us-east-1a/i-0abc → i-0abc), else the node name.
func instanceID(n *corev1.Node) string {
	if id := n.Spec.ProviderID; id != "" {
		return id[strings.LastIndex(id, "/")+1:]
	}
	return n.Name
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podRequests sums the requests of a pod's containers; an init container
// needs at most its own request at a time, so the pod needs the larger of
// the two, as the Kubernetes scheduler computes it.
func podRequests(p *corev1.Pod) autoscale.Resources {
	var sum autoscale.Resources
	for _, c := range p.Spec.Containers {
		r := nodeResources(c.Resources.Requests)
		sum.MilliCPU += r.MilliCPU
		sum.MemoryBytes += r.MemoryBytes
		sum.GPU += r.GPU
	}
	for _, c := range p.Spec.InitContainers {
		r := nodeResources(c.Resources.Requests)
		sum.MilliCPU = max(sum.MilliCPU, r.MilliCPU)
		sum.MemoryBytes = max(sum.MemoryBytes, r.MemoryBytes)
		sum.GPU = max(sum.GPU, r.GPU)
	}
	if sum.GPU > 0 {
		sum.GPUType = p.Spec.NodeSelector[GPUTypeLabel]
	}
	return sum
}

func nodeResources(l corev1.ResourceList) autoscale.Resources {
	var r autoscale.Resources
	if q, ok := l[corev1.ResourceCPU]; ok {
		r.MilliCPU = q.MilliValue()
	}
	if q, ok := l[corev1.ResourceMemory]; ok {
		r.MemoryBytes = q.Value()
	}
	if q, ok := l[GPUResource]; ok {
		r.GPU = int32(q.Value())
	}
	return r
}

// ResourceList is the Kubernetes form of a capacity.
func ResourceList(r autoscale.Resources) corev1.ResourceList {
	l := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewMilliQuantity(r.MilliCPU, resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(r.MemoryBytes, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
	}
	if r.GPU > 0 {
		l[GPUResource] = *resource.NewQuantity(int64(r.GPU), resource.DecimalSI)
	}
	return l
}

func tolerations(ts []corev1.Toleration) []autoscale.Toleration {
	out := make([]autoscale.Toleration, 0, len(ts))
	for _, t := range ts {
		out = append(out, autoscale.Toleration{Key: t.Key, Operator: string(t.Operator), Value: t.Value, Effect: string(t.Effect)})
	}
	return out
}
