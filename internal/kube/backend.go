package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"

	"github.com/haul-dev/haul/internal/placement"
	"github.com/haul-dev/haul/internal/runner"
)

// Defaults for Config.
const (
	DefaultImage             = "debian:bookworm-slim"
	DefaultPodCreateQPS      = 20
	DefaultPodCreateBurst    = 10
	DefaultCreateConcurrency = 4
	DefaultCreateAttempts    = 5
)

// NodePriceAnnotation on a Node is what it costs per hour, for
// WorkerNode (with Config.WatchNodes).
const NodePriceAnnotation = "haul.dev/price-per-hour"

// Errors StartWorker and SetEnabled return; callers may branch on them.
var (
	ErrStopped        = errors.New("kube backend stopped")
	ErrNoCluster      = errors.New("no enabled cluster")
	ErrUnknownCluster = errors.New("unknown cluster")
)

// Config configures a Backend.
type Config struct {
	// Clusters are where workers may run (at least one).
	Clusters []ClusterConfig
	// RunnerCA is the PEM certificate worker pods trust for the runner's
	// TLS certificate besides their image's CAs ("" : the image's only).
	RunnerCA string
	// TaskhostImage is the small image that holds the static taskhost at
	// /haul-taskhost, e.g. "ghcr.io/haul-dev/taskhost:dev" (required).
	TaskhostImage string
	// DefaultImage is the image tasks run in when a job names none
	// (default DefaultImage).
	DefaultImage string
	// PodCreateQPS and PodCreateBurst are the token bucket pod creations go
	// through, per cluster, retries included (defaults 20 and 10).
	PodCreateQPS   float64
	PodCreateBurst int
	// CreateConcurrency is how many creations may be in flight per cluster
	// (default 4), so one slow API response does not hold up the rest.
	CreateConcurrency int
	// CreateAttempts is how many times a creation that fails with a
	// retryable error (429, 5xx, a timeout, a broken connection) is tried
	// in all, with exponential backoff from 250ms (default 5).
	CreateAttempts int
	// Instance is the value of the haul.dev/backend label on this backend's
	// pods: the backend sees only pods with its own value, and deletes
	// those of an earlier backend with the same value when it starts.
	// Default: random. It must be unique among running backends; a stable
	// value (one per runner) lets a restarted runner clean up after itself.
	Instance string
	// SharedClaim names a PersistentVolumeClaim (ReadWriteMany, in the
	// workers' namespace) that every worker pod mounts at SharedPath: the
	// filesystem log store the server also mounts.
	SharedClaim, SharedPath string
	// WorkerEnvSecret names a Secret in the workers' namespace whose keys
	// every worker container gets as environment variables: credentials
	// for an object store (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) where
	// worker pods have no cloud identity of their own (IAM roles for
	// service accounts need none). With an s3:// log store, workers need
	// no shared volume.
	WorkerEnvSecret string
	// WatchNodes also watches Nodes (cluster-wide get/list/watch): a worker
	// whose node is deleted ends at once, and WorkerNode reports nodes.
	WatchNodes bool
	// Prices is a price table by instance type (the autoscaler's, in
	// dollars per hour): a node without the NodePriceAnnotation is priced
	// by its node.kubernetes.io/instance-type label.
	Prices map[string]float64
	Logger *slog.Logger
	// Gone is called once when a worker has ended for any reason but
	// OOMKilled; OOMKilled when Kubernetes killed the worker container for
	// memory (nil: Gone is called instead). Neither is called for a worker
	// whose StartWorker returned an error.
	Gone      func(id, why string)
	OOMKilled func(id, why string)
	// RESTConfig, when set, replaces the kubeconfig and in-cluster lookup
	// (tests pass the test cluster's config).
	RESTConfig func(ClusterConfig) (*rest.Config, error)
}

// ClusterStatus is one cluster as Clusters reports it.
type ClusterStatus struct {
	Name    string
	Enabled bool
	// LivePods are this backend's pods in the informer cache that have not
	// finished; Queued are workers placed in the cluster whose pods are not
	// in the cache yet (waiting, being created, or just created).
	LivePods int
	Queued   int
}

// ClusterStats counts what the backend did in one cluster.
type ClusterStats struct {
	PodsCreated   int64
	CreateErrors  int64 // creations given up on (each reported through Gone)
	CreateRetries int64
	PodsDeleted   int64
	DeleteErrors  int64
	// Requests is every HTTP request sent to the API server (lists and
	// watches included), counted by a round-tripper.
	Requests int64
	// CreateTimes are when the token bucket let the most recent creation
	// requests through (at most 4096, oldest first).
	CreateTimes []time.Time
}

// Backend runs workers as pods. Create it with New; it is safe for
// concurrent use.
type Backend struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	clusters []*cluster // sorted by name
	byName   map[string]*cluster

	// ctx ends the creation loops and delete workers; stopCh the informers.
	ctx      context.Context
	cancel   context.CancelFunc
	stopCh   chan struct{}
	createWG sync.WaitGroup
	deleteWG sync.WaitGroup
	stopOnce sync.Once

	mu      sync.Mutex
	workers map[string]*worker // live workers by ID
	stopped bool
}

var (
	_ runner.Backend    = (*Backend)(nil)
	_ runner.NodeInfoer = (*Backend)(nil)
)

type workerState int8

const (
	stQueued   workerState = iota // in its cluster's queue
	stCreating                    // a creation request is in flight
	stBackoff                     // waiting to be queued again after a retryable error
	stCreated                     // the API server has its pod
)

// worker is a live worker. Guarded by Backend.mu.
type worker struct {
	id   string
	pod  string
	cl   *cluster
	spec *corev1.Pod // the pod to create; nil once created
	// secret is the worker's credential, put in a Secret of its own
	// once the pod exists (see workerSecret).
	secret string
	state  workerState
	// attempts counts creation requests sent.
	attempts int
	// seen: the informer has had the pod (it no longer counts as queued).
	seen     bool
	stopping bool // StopWorker was called
	ended    bool
	node     string
}

// New connects to every cluster, waits for their pod caches to fill (ctx
// bounds the wait) and starts the creation loops. Pods left by an earlier
// backend with the same Instance are deleted.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.normalize(); err != nil {
		return nil, fmt.Errorf("kube backend: %w", err)
	}
	bctx, cancel := context.WithCancel(context.Background())
	b := &Backend{
		cfg: cfg, log: cfg.Logger, now: time.Now, byName: map[string]*cluster{},
		ctx: bctx, cancel: cancel, stopCh: make(chan struct{}), workers: map[string]*worker{},
	}
	for _, cc := range cfg.Clusters {
		c, err := b.newCluster(cc)
		if err != nil {
			b.shutdown()
			return nil, fmt.Errorf("kube backend: cluster %s: %w", cc.Name, err)
		}
		b.clusters = append(b.clusters, c)
		b.byName[cc.Name] = c
	}
	slices.SortFunc(b.clusters, func(x, y *cluster) int { return strings.Compare(x.cfg.Name, y.cfg.Name) })
	for _, c := range b.clusters {
		c.factory.Start(b.stopCh)
		if c.nodeFact != nil {
			c.nodeFact.Start(b.stopCh)
		}
	}
	for _, c := range b.clusters {
		if err := c.waitSynced(ctx); err != nil {
			b.shutdown()
			return nil, fmt.Errorf("kube backend: cluster %s: %w", c.cfg.Name, err)
		}
	}
	for _, c := range b.clusters {
		b.createWG.Add(1)
		go b.dispatch(c)
		for range 2 {
			b.deleteWG.Add(1)
			go b.deleteLoop(c)
		}
	}
	if !slices.ContainsFunc(b.clusters, func(c *cluster) bool { return c.enabled }) {
		b.log.Warn("every cluster is disabled: no worker can start until one is enabled", "clusters", b.clusterNames())
	}
	b.log.Info("kube backend ready", "clusters", len(b.clusters), "instance", cfg.Instance,
		"pod_create_qps", cfg.PodCreateQPS, "pod_create_burst", cfg.PodCreateBurst)
	return b, nil
}

func (cfg *Config) normalize() error {
	if len(cfg.Clusters) == 0 {
		return errors.New("no clusters")
	}
	cs := slices.Clone(cfg.Clusters)
	for i := range cs {
		if err := cs[i].normalize(); err != nil {
			return fmt.Errorf("cluster %d (%s): %w", i+1, cs[i].Name, err)
		}
	}
	if err := checkUnique(cs); err != nil {
		return err
	}
	cfg.Clusters = cs
	if cfg.SharedClaim != "" && !strings.HasPrefix(cfg.SharedPath, "/") {
		return fmt.Errorf("shared claim %q: mount path %q is not absolute", cfg.SharedClaim, cfg.SharedPath)
	}
	if cfg.TaskhostImage == "" {
		return errors.New("no taskhost image (the image holding /haul-taskhost)")
	}
	if cfg.DefaultImage == "" {
		cfg.DefaultImage = DefaultImage
	}
	switch {
	case cfg.PodCreateQPS == 0:
		cfg.PodCreateQPS = DefaultPodCreateQPS
	case !(cfg.PodCreateQPS > 0) || cfg.PodCreateQPS > 1e6:
		return fmt.Errorf("pod create QPS %v: want a positive number", cfg.PodCreateQPS)
	}
	switch {
	case cfg.PodCreateBurst == 0:
		cfg.PodCreateBurst = DefaultPodCreateBurst
	case cfg.PodCreateBurst < 0:
		return fmt.Errorf("pod create burst %d: want a positive number", cfg.PodCreateBurst)
	}
	if cfg.CreateConcurrency <= 0 {
		cfg.CreateConcurrency = DefaultCreateConcurrency
	}
	if cfg.CreateAttempts <= 0 {
		cfg.CreateAttempts = DefaultCreateAttempts
	}
	if cfg.Instance == "" {
		var r [5]byte
		_, _ = rand.Read(r[:])
		cfg.Instance = hex.EncodeToString(r[:])
	}
	if errs := validation.IsValidLabelValue(cfg.Instance); len(errs) > 0 || cfg.Instance == "" {
		return fmt.Errorf("instance %q is not a label value: %s", cfg.Instance, strings.Join(errs, "; "))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Gone == nil {
		cfg.Gone = func(string, string) {}
	}
	if cfg.OOMKilled == nil {
		cfg.OOMKilled = cfg.Gone
	}
	return nil
}

// Instance returns the value of the haul.dev/backend label on this
// backend's pods.
func (b *Backend) Instance() string { return b.cfg.Instance }

// StartWorker queues the worker's pod for creation in the cluster
// placement chose (WorkerSpec.Cluster), or, for a spec without one, in
// the least-loaded enabled cluster; it does not wait for the API server. Errors
// are for a spec that cannot make a valid pod (a bad template volume, a bad
// toleration...), a worker ID already live, no enabled cluster, and a
// stopped backend; a pod that cannot be created later is reported through
// Config.Gone.
func (b *Backend) StartWorker(_ context.Context, s runner.WorkerSpec) error {
	pod, err := buildPod(s, podParams{
		instance: b.cfg.Instance, taskhostImage: b.cfg.TaskhostImage, defaultImage: b.cfg.DefaultImage,
		sharedClaim: b.cfg.SharedClaim, sharedPath: b.cfg.SharedPath, runnerCA: b.cfg.RunnerCA, envSecret: b.cfg.WorkerEnvSecret,
	})
	if err != nil {
		return err
	}
	b.mu.Lock()
	switch {
	case b.stopped:
		b.mu.Unlock()
		return fmt.Errorf("worker %s: %w", s.ID, ErrStopped)
	case b.workers[s.ID] != nil:
		b.mu.Unlock()
		return fmt.Errorf("worker %s: already started", s.ID)
	}
	w := &worker{id: s.ID, pod: pod.Name, spec: pod, secret: s.Secret}
	var c *cluster
	if s.Cluster != "" {
		// Placement chose the cluster (and checked its state in the
		// store): the pod goes there.
		if c = b.byName[s.Cluster]; c == nil {
			b.mu.Unlock()
			return fmt.Errorf("worker %s: %w %q (placement chose it; this backend does not reach it)", s.ID, ErrUnknownCluster, s.Cluster)
		}
		b.enqueue(w, c)
	} else if c = b.place(w, nil); c == nil {
		names := b.clusterNames()
		b.mu.Unlock()
		return fmt.Errorf("worker %s: %w: every cluster is disabled (%s)", s.ID, ErrNoCluster, names)
	}
	b.workers[s.ID] = w
	b.mu.Unlock()
	b.log.Debug("worker queued", "worker", s.ID, "pod", pod.Name, "cluster", c.cfg.Name)
	return nil
}

// place puts a worker that is not in any queue into the queue of the
// least-loaded enabled cluster other than not: fewest live pods in the
// informer cache plus workers not in it yet; ties go to the first by name.
// It returns the cluster, or nil when none is enabled. Call with b.mu held.
func (b *Backend) place(w *worker, not *cluster) *cluster {
	var best *cluster
	bestLoad := 0
	for _, c := range b.clusters {
		if !c.enabled || c == not {
			continue
		}
		if load := len(c.live) + c.pending; best == nil || load < bestLoad {
			best, bestLoad = c, load
		}
	}
	if best == nil {
		return nil
	}
	b.enqueue(w, best)
	return best
}

// enqueue puts a worker in cluster c's creation queue. Call with b.mu
// held.
func (b *Backend) enqueue(w *worker, c *cluster) {
	w.cl = c
	w.state = stQueued
	w.spec.Namespace = c.cfg.Namespace
	c.queue = append(c.queue, w)
	c.pending++
	c.kick()
}

// unbounded is the capacity placement assumes for a cluster whose
// capacity is neither configured nor observed: large enough never to
// bind, small enough that sums over many clusters do not overflow.
var unbounded = placement.Resources{MilliCPU: 1 << 40, Memory: 1 << 56}

// PlacementClusters describes the backend's clusters for placement: the
// capacity from the clusters file, else the sum of the nodes' allocatable
// CPU, memory and nvidia.com/gpu (by the node label GPUTypeLabel) when
// nodes are watched, else unbounded.
func (b *Backend) PlacementClusters() []runner.BackendCluster {
	out := make([]runner.BackendCluster, 0, len(b.clusters))
	for _, c := range b.clusters {
		pc := placement.Cluster{Name: c.cfg.Name, State: placement.Enabled, Capacity: c.cfg.Capacity,
			Labels: c.cfg.Labels, PodsPerSecond: c.cfg.PodsPerSecond}
		if !c.cfg.Enabled {
			pc.State = placement.Disabled
		}
		if pc.Capacity.IsZero() && c.nodes != nil {
			pc.Capacity = nodeCapacity(c.nodes.GetStore().List())
		}
		if pc.Capacity.IsZero() {
			b.log.Warn("cluster capacity unknown (no capacity in the clusters file, nodes not watched): placement treats it as unbounded; set it with haul cluster register", "cluster", c.cfg.Name)
			pc.Capacity = unbounded
		}
		out = append(out, runner.BackendCluster{Cluster: pc})
	}
	return out
}

// GPUTypeLabel is the node label whose value names the type of the node's
// GPUs ("a100"); nodes without it count their GPUs as the generic "gpu".
const GPUTypeLabel = "haul.dev/gpu-type"

// nodeCapacity sums the allocatable resources of nodes that accept pods.
func nodeCapacity(objs []any) placement.Resources {
	var r placement.Resources
	for _, o := range objs {
		n, ok := o.(*corev1.Node)
		if !ok || n.Spec.Unschedulable {
			continue
		}
		a := n.Status.Allocatable
		add := placement.Resources{MilliCPU: a.Cpu().MilliValue(), Memory: a.Memory().Value()}
		if g, ok := a[corev1.ResourceName("nvidia.com/gpu")]; ok && g.Value() > 0 {
			typ := n.Labels[GPUTypeLabel]
			if typ == "" {
				typ = "gpu"
			}
			add.GPU = map[string]int64{typ: g.Value()}
		}
		r = r.Add(add)
	}
	return r
}

// clusterNames lists the clusters' names.
func (b *Backend) clusterNames() string {
	names := make([]string, len(b.clusters))
	for i, c := range b.clusters {
		names[i] = c.cfg.Name
	}
	return strings.Join(names, ", ")
}

// end marks a worker over and forgets it, so that nothing reports it again.
// It returns false if it was over already. Call with b.mu held.
func (b *Backend) end(w *worker) bool {
	if w.ended {
		return false
	}
	if !w.seen {
		w.cl.pending--
	}
	if w.state == stQueued {
		w.cl.queue = slices.DeleteFunc(w.cl.queue, func(x *worker) bool { return x == w })
	}
	b.forget(w)
	return true
}

// forget marks a worker over and drops it. Call with b.mu held.
func (b *Backend) forget(w *worker) {
	w.ended = true
	w.spec = nil
	delete(b.workers, w.id)
}

// report calls the runner's callback for a worker that ended. Call without
// b.mu held.
func (b *Backend) report(id string, oom bool, why string) {
	if oom {
		b.log.Warn("worker OOMKilled", "worker", id, "why", why)
		b.cfg.OOMKilled(id, why)
		return
	}
	b.log.Debug("worker gone", "worker", id, "why", why)
	b.cfg.Gone(id, why)
}

// StopWorker deletes the worker's pod (the taskhost gets SIGTERM and the
// pod's grace period); its end is reported when the pod has finished or
// gone. A worker whose pod is not created yet is dropped from its queue and
// reported at once. An unknown worker is not an error.
func (b *Backend) StopWorker(ctx context.Context, id string) error {
	b.mu.Lock()
	w := b.workers[id]
	if w == nil {
		b.mu.Unlock()
		return nil
	}
	w.stopping = true
	switch w.state {
	case stQueued, stBackoff:
		b.end(w)
		b.mu.Unlock()
		b.report(id, false, "stopped before its pod was created")
		return nil
	case stCreating:
		// The creation's outcome decides (see finishCreate).
		b.mu.Unlock()
		return nil
	}
	c, name := w.cl, w.pod
	b.mu.Unlock()
	gone, err := b.deletePod(ctx, c, deleteReq{name: name})
	if err != nil {
		return fmt.Errorf("stop worker %s: delete pod %s/%s in cluster %s: %w", id, c.cfg.Namespace, name, c.cfg.Name, err)
	}
	if gone {
		// The pod was gone already: no event may come for it.
		b.mu.Lock()
		ended := b.end(w)
		b.mu.Unlock()
		if ended {
			b.report(id, false, "stopped (its pod was gone already)")
		}
	}
	return nil
}

// SetEnabled enables or disables a cluster. A disabled cluster gets no new
// workers; its running workers finish, and its workers whose pods are not
// being created yet move to another enabled cluster (or end, reported
// through Gone, when there is none).
func (b *Backend) SetEnabled(name string, enabled bool) error {
	c := b.byName[name]
	if c == nil {
		return fmt.Errorf("%w %q", ErrUnknownCluster, name)
	}
	b.mu.Lock()
	if c.enabled == enabled || b.stopped {
		c.enabled = enabled
		b.mu.Unlock()
		return nil
	}
	c.enabled = enabled
	var dropped []string
	if !enabled {
		moving := c.queue
		c.queue = nil
		for _, w := range moving {
			c.pending--
			if b.place(w, c) == nil {
				b.forget(w) // in no queue, and no longer counted
				dropped = append(dropped, w.id)
			}
		}
	}
	b.mu.Unlock()
	b.log.Info("cluster enabled changed", "cluster", name, "enabled", enabled, "workers_dropped", len(dropped))
	for _, id := range dropped {
		b.report(id, false, "stopped before its pod was created: cluster "+name+" was disabled and no other cluster is enabled")
	}
	return nil
}

// Clusters reports every cluster, sorted by name.
func (b *Backend) Clusters() []ClusterStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ClusterStatus, len(b.clusters))
	for i, c := range b.clusters {
		out[i] = ClusterStatus{Name: c.cfg.Name, Enabled: c.enabled, LivePods: len(c.live), Queued: c.pending}
	}
	return out
}

// Stats reports what the backend did in each cluster, by cluster name.
func (b *Backend) Stats() map[string]ClusterStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]ClusterStats, len(b.clusters))
	for _, c := range b.clusters {
		s := c.stats
		s.Requests = c.requests.Load()
		s.CreateTimes = c.createTimes.list()
		out[c.cfg.Name] = s
	}
	return out
}

// WorkerNode describes the node a worker's pod runs on: its allocatable
// CPU and memory, and its price from the NodePriceAnnotation, else from
// Config.Prices by the node's instance type. It needs
// Config.WatchNodes and a pod bound to a node.
func (b *Backend) WorkerNode(id string) (runner.NodeInfo, bool) {
	b.mu.Lock()
	w := b.workers[id]
	var c *cluster
	var node string
	if w != nil {
		c, node = w.cl, w.node
	}
	b.mu.Unlock()
	if c == nil || node == "" || c.nodes == nil {
		return runner.NodeInfo{}, false
	}
	obj, ok, err := c.nodes.GetStore().GetByKey(node)
	if err != nil || !ok {
		return runner.NodeInfo{}, false
	}
	n, ok := obj.(*corev1.Node)
	if !ok {
		return runner.NodeInfo{}, false
	}
	info := runner.NodeInfo{
		CPU:         n.Status.Allocatable.Cpu().AsApproximateFloat64(),
		MemoryBytes: n.Status.Allocatable.Memory().Value(),
	}
	if p, err := strconv.ParseFloat(n.Annotations[NodePriceAnnotation], 64); err == nil && p >= 0 {
		info.PricePerHour = p
	} else if p, ok := b.cfg.Prices[n.Labels[corev1.LabelInstanceTypeStable]]; ok {
		info.PricePerHour = p
	}
	return info, true
}

// Stop ends the backend: workers whose pods were not created end at once,
// the pods of the others are deleted (best effort, for at most 10 seconds),
// every live worker is reported through Gone, and the informers stop. It is
// idempotent.
func (b *Backend) Stop() {
	b.stopOnce.Do(func() {
		b.mu.Lock()
		b.stopped = true
		b.mu.Unlock()
		b.cancel() // creation loops, and requests in flight
		b.createWG.Wait()

		b.mu.Lock()
		type ended struct {
			id, why string
			c       *cluster
			pod     string
			sent    bool
		}
		var list []ended
		for _, w := range b.workers {
			e := ended{id: w.id, c: w.cl, pod: w.pod, sent: w.attempts > 0, why: "backend stopped before its pod was created"}
			if w.state == stCreated {
				e.why = "backend stopped: pod deleted"
			}
			list = append(list, e)
		}
		for _, w := range b.workers {
			b.end(w)
		}
		b.mu.Unlock()
		slices.SortFunc(list, func(x, y ended) int { return strings.Compare(x.id, y.id) })

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, e := range list {
			if !e.sent {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if _, err := b.deletePod(ctx, e.c, deleteReq{name: e.pod}); err != nil {
					b.log.Warn("delete worker pod at stop", "cluster", e.c.cfg.Name, "pod", e.pod, "err", err)
				}
			}()
		}
		wg.Wait()
		cancel()
		for _, e := range list {
			b.report(e.id, false, e.why)
		}
		b.shutdown()
	})
}

// shutdown stops the delete workers and the informers.
func (b *Backend) shutdown() {
	b.cancel()
	for _, c := range b.clusters {
		c.deletes.ShutDown()
	}
	b.deleteWG.Wait()
	close(b.stopCh)
	for _, c := range b.clusters {
		c.factory.Shutdown()
		if c.nodeFact != nil {
			c.nodeFact.Shutdown()
		}
	}
}
