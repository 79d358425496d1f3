package kube

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
)

const (
	// resync re-delivers every cached pod to the handlers now and then (no
	// API request), so a finished pod whose deletion failed is tried again.
	resync = 10 * time.Minute
	// requestTimeout bounds one create or delete request.
	requestTimeout = 30 * time.Second
	// createTimesKept is how many creation times Stats keeps per cluster.
	createTimesKept = 4096
	// deleteAttempts is how many times a pod deletion is tried.
	deleteAttempts = 6
	nodeIndex      = "node"
	userAgent      = "haul-kube-backend"
)

// cluster is one Kubernetes cluster: its client, informers, creation queue
// and counters.
type cluster struct {
	cfg      ClusterConfig
	client   kubernetes.Interface
	factory  informers.SharedInformerFactory // pods of this backend, in cfg.Namespace
	pods     cache.SharedIndexInformer
	nodeFact informers.SharedInformerFactory // nil unless Config.WatchNodes
	nodes    cache.SharedIndexInformer
	limiter  *rate.Limiter // pod creations
	wake     chan struct{} // the queue may have grown
	deletes  workqueue.TypedRateLimitingInterface[deleteReq]
	requests atomic.Int64

	// Guarded by Backend.mu.
	enabled bool
	queue   []*worker
	// pending counts live workers placed here whose pods the informer has
	// not had yet; live holds the names of cached pods not finished.
	pending     int
	live        map[string]struct{}
	stats       ClusterStats // Requests and CreateTimes are filled in by Stats
	createTimes timeRing
}

// deleteReq asks for a pod's deletion: uid, if set, is a precondition;
// force deletes with no grace period.
type deleteReq struct {
	name  string
	uid   types.UID
	force bool
}

func (b *Backend) newCluster(cc ClusterConfig) (*cluster, error) {
	c := &cluster{cfg: cc, enabled: cc.Enabled, live: map[string]struct{}{}, wake: make(chan struct{}, 1)}
	rc, err := b.restConfig(cc)
	if err != nil {
		return nil, err
	}
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &countingTransport{next: rt, n: &c.requests} })
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c.client = client
	c.limiter = rate.NewLimiter(rate.Limit(b.cfg.PodCreateQPS), b.cfg.PodCreateBurst)

	selector := labels.Set{LabelManagedBy: ManagedBy, LabelBackend: b.cfg.Instance}.String()
	c.factory = informers.NewSharedInformerFactoryWithOptions(client, resync,
		informers.WithNamespace(cc.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	c.pods = c.factory.Core().V1().Pods().Informer()
	if err := c.pods.AddIndexers(cache.Indexers{nodeIndex: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	if _, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { b.onPod(c, obj, false) },
		UpdateFunc: func(_, obj any) { b.onPod(c, obj, false) },
		DeleteFunc: func(obj any) { b.onPod(c, obj, true) },
	}); err != nil {
		return nil, fmt.Errorf("pod informer: %w", err)
	}
	if b.cfg.WatchNodes {
		c.nodeFact = informers.NewSharedInformerFactory(client, resync)
		c.nodes = c.nodeFact.Core().V1().Nodes().Informer()
		if _, err := c.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
			DeleteFunc: func(obj any) { b.onNodeDeleted(c, obj) },
		}); err != nil {
			return nil, fmt.Errorf("node informer: %w", err)
		}
	}
	c.deletes = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[deleteReq](250*time.Millisecond, 30*time.Second),
		workqueue.TypedRateLimitingQueueConfig[deleteReq]{})
	return c, nil
}

// restConfig returns how to reach a cluster, with the backend's user agent
// and, where the config sets no client-side limit, one well above the pod
// creation rate (client-go's default, 5 per second, would throttle it).
func (b *Backend) restConfig(cc ClusterConfig) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	switch {
	case b.cfg.RESTConfig != nil:
		rc, err = b.cfg.RESTConfig(cc)
	case cc.InCluster:
		rc, err = rest.InClusterConfig()
	default:
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: cc.Kubeconfig}
		overrides := &clientcmd.ConfigOverrides{CurrentContext: cc.Context}
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("client config: %w", err)
	}
	if rc == nil {
		return nil, errors.New("client config: none")
	}
	rc = rest.CopyConfig(rc)
	if rc.QPS == 0 && rc.RateLimiter == nil {
		rc.QPS = float32(max(50, 4*b.cfg.PodCreateQPS))
		rc.Burst = max(100, 4*b.cfg.PodCreateBurst)
	}
	return rest.AddUserAgent(rc, userAgent), nil
}

// waitSynced waits for the cluster's caches to fill.
func (c *cluster) waitSynced(ctx context.Context) error {
	synced := []cache.InformerSynced{c.pods.HasSynced}
	what := fmt.Sprintf("list and watch pods in namespace %s", c.cfg.Namespace)
	if c.nodes != nil {
		synced = append(synced, c.nodes.HasSynced)
		what += " and nodes"
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("caches did not fill (can the backend reach the API server and %s?): %w", what, context.Cause(ctx))
	}
	return nil
}

func (c *cluster) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// dispatch is a cluster's creation loop: for each queued worker, a free
// creation slot, then a token, then the request, in a goroutine of its own.
// A token is taken only when a slot is free, so the requests go out at the
// token bucket's pace even when the API server is slow.
func (b *Backend) dispatch(c *cluster) {
	defer b.createWG.Done()
	slots := make(chan struct{}, b.cfg.CreateConcurrency)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case slots <- struct{}{}:
		case <-b.ctx.Done():
			return
		}
		for {
			b.mu.Lock()
			n := len(c.queue)
			b.mu.Unlock()
			if n > 0 {
				break
			}
			select {
			case <-c.wake:
			case <-b.ctx.Done():
				return
			}
		}
		now := b.now()
		at := now.Add(c.limiter.ReserveN(now, 1).DelayFrom(now))
		if d := at.Sub(now); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-b.ctx.Done():
				timer.Stop()
				return
			}
		}
		b.mu.Lock()
		if len(c.queue) == 0 { // stopped or moved meanwhile; the token is lost
			b.mu.Unlock()
			<-slots
			continue
		}
		w := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		w.state = stCreating
		w.attempts++
		pod := w.spec
		c.createTimes.add(at)
		b.mu.Unlock()
		b.createWG.Add(1)
		go func() {
			defer func() { <-slots; b.createWG.Done() }()
			b.create(c, w, pod)
		}()
	}
}

// create sends one creation request and acts on its outcome.
func (b *Backend) create(c *cluster, w *worker, pod *corev1.Pod) {
	ctx, cancel := context.WithTimeout(b.ctx, requestTimeout)
	created, err := c.client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// An earlier attempt may have succeeded after all.
		created, err = b.adopt(ctx, c, pod)
	}
	cancel()

	b.mu.Lock()
	seen := w.seen
	b.mu.Unlock()
	if err != nil && seen && b.ctx.Err() == nil {
		// The response was an error (a timeout, say), yet the informer has
		// the pod: it was created.
		ctx, cancel := context.WithTimeout(b.ctx, requestTimeout)
		created, err = b.adopt(ctx, c, pod)
		cancel()
	}
	if err == nil && w.secret != "" {
		if serr := b.createSecret(c, created, w.secret); serr != nil {
			// The worker cannot start without its credential: its pod
			// goes, and the worker fails (not retried: %v, not %w).
			c.deletes.Add(deleteReq{name: created.Name, uid: created.UID})
			err = fmt.Errorf("pod %s was created but its credential's Secret could not be: %v", created.Name, serr)
		}
	}

	b.mu.Lock()
	if err == nil {
		c.stats.PodsCreated++
	}
	switch {
	case w.ended:
		// The informer saw the pod end first.
		b.mu.Unlock()
		return
	case err == nil:
		w.state, w.spec = stCreated, nil
		if !w.stopping {
			b.mu.Unlock()
			return
		}
		b.end(w)
		b.mu.Unlock()
		r := deleteReq{name: w.pod}
		if created != nil {
			r.uid = created.UID
		}
		c.deletes.Add(r)
		b.report(w.id, false, "stopped as its pod was created")
		return
	case b.ctx.Err() != nil:
		// Stopping: Stop reports the worker.
		b.mu.Unlock()
		return
	case retryable(err) && w.attempts < b.cfg.CreateAttempts && !w.stopping:
		c.stats.CreateRetries++
		w.state = stBackoff
		delay := backoff(w.attempts)
		b.mu.Unlock()
		b.log.Warn("create worker pod: retrying", "worker", w.id, "cluster", c.cfg.Name, "attempt", w.attempts, "in", delay, "err", err)
		time.AfterFunc(delay, func() { b.requeue(w) })
		return
	}
	c.stats.CreateErrors++
	stopping := w.stopping
	b.end(w)
	b.mu.Unlock()
	if stopping {
		b.report(w.id, false, "stopped before its pod was created")
		return
	}
	b.log.Error("create worker pod", "worker", w.id, "cluster", c.cfg.Name, "attempts", w.attempts, "err", err)
	b.report(w.id, false, fmt.Sprintf("could not create pod in cluster %s: %v", c.cfg.Name, err))
}

// adopt accepts an existing pod of the same name if it is this worker's.
func (b *Backend) adopt(ctx context.Context, c *cluster, pod *corev1.Pod) (*corev1.Pod, error) {
	got, err := c.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("pod %s exists, and reading it failed: %w", pod.Name, err)
	}
	if got.Labels[LabelBackend] != b.cfg.Instance || got.Annotations[AnnotationWorkerID] != pod.Annotations[AnnotationWorkerID] {
		return nil, fmt.Errorf("pod %s/%s already exists and is another's (worker %q, backend %q)",
			pod.Namespace, pod.Name, got.Annotations[AnnotationWorkerID], got.Labels[LabelBackend])
	}
	return got, nil
}

// createSecret creates the Secret holding a worker's credential, owned by
// its pod, retrying what may succeed if tried again. A Secret of that name
// already there is an earlier try's that went through.
func (b *Backend) createSecret(c *cluster, pod *corev1.Pod, secret string) error {
	s := workerSecret(pod, secret)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(b.ctx, requestTimeout)
		_, err := c.client.CoreV1().Secrets(pod.Namespace).Create(ctx, s, metav1.CreateOptions{})
		cancel()
		if err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
		if !retryable(err) || attempt >= b.cfg.CreateAttempts || b.ctx.Err() != nil {
			return fmt.Errorf("create secret %s/%s: %w", s.Namespace, s.Name, err)
		}
		b.log.Warn("create worker secret: retrying", "pod", pod.Name, "cluster", c.cfg.Name, "attempt", attempt, "err", err)
		t := time.NewTimer(backoff(attempt))
		select {
		case <-t.C:
		case <-b.ctx.Done():
			t.Stop()
			return fmt.Errorf("create secret %s/%s: %w", s.Namespace, s.Name, b.ctx.Err())
		}
	}
}

// requeue puts a worker back at the head of its cluster's queue after a
// backoff, or in another cluster's if its own was disabled meanwhile.
func (b *Backend) requeue(w *worker) {
	b.mu.Lock()
	if w.ended || w.state != stBackoff || b.stopped {
		b.mu.Unlock()
		return
	}
	c := w.cl
	if c.enabled {
		w.state = stQueued
		c.queue = slices.Insert(c.queue, 0, w)
		b.mu.Unlock()
		c.kick()
		return
	}
	if !w.seen {
		c.pending--
	}
	if b.place(w, c) != nil {
		b.mu.Unlock()
		return
	}
	b.forget(w)
	b.mu.Unlock()
	b.report(w.id, false, "stopped before its pod was created: cluster "+c.cfg.Name+" was disabled and no other cluster is enabled")
}

// backoff is the wait before creation attempt n+1: 250ms doubling, at most
// 8s, with ±20% jitter so that retries from many workers spread out.
func backoff(n int) time.Duration {
	d := min(250*time.Millisecond<<min(n-1, 5), 8*time.Second)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// retryable reports whether a failed request may succeed if tried again:
// the server was overloaded, failed or timed out, or the connection broke.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		code := st.Status().Code
		return code == http.StatusTooManyRequests || code >= 500 ||
			apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err)
}

// deletePod deletes a pod; gone reports that it was not there (or that
// another pod has its name now).
func (b *Backend) deletePod(ctx context.Context, c *cluster, r deleteReq) (gone bool, err error) {
	var opts metav1.DeleteOptions
	if r.uid != "" {
		opts.Preconditions = &metav1.Preconditions{UID: &r.uid}
	}
	if r.force {
		zero := int64(0)
		opts.GracePeriodSeconds = &zero
	}
	err = c.client.CoreV1().Pods(c.cfg.Namespace).Delete(ctx, r.name, opts)
	switch {
	case err == nil:
		b.mu.Lock()
		c.stats.PodsDeleted++
		b.mu.Unlock()
		return false, nil
	case apierrors.IsNotFound(err), r.uid != "" && apierrors.IsConflict(err):
		return true, nil
	}
	b.mu.Lock()
	c.stats.DeleteErrors++
	b.mu.Unlock()
	return false, err
}

// deleteLoop deletes the pods put in the cluster's delete queue, retrying
// failures with backoff.
func (b *Backend) deleteLoop(c *cluster) {
	defer b.deleteWG.Done()
	for {
		r, shutdown := c.deletes.Get()
		if shutdown {
			return
		}
		ctx, cancel := context.WithTimeout(b.ctx, requestTimeout)
		_, err := b.deletePod(ctx, c, r)
		cancel()
		switch {
		case err == nil || b.ctx.Err() != nil:
			c.deletes.Forget(r)
		case c.deletes.NumRequeues(r) < deleteAttempts-1:
			c.deletes.AddRateLimited(r)
		default:
			c.deletes.Forget(r)
			b.log.Error("delete worker pod: giving up", "cluster", c.cfg.Name, "pod", r.name, "err", err)
		}
		c.deletes.Done(r)
	}
}

// onPod turns a change of one of the backend's pods into the worker's end,
// once, and deletes pods that are over.
func (b *Backend) onPod(c *cluster, obj any, deleted bool) {
	pod := podOf(obj)
	if pod == nil {
		return
	}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	finished := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
	if deleted || finished {
		delete(c.live, pod.Name)
	} else {
		c.live[pod.Name] = struct{}{}
	}
	w := b.workers[pod.Annotations[AnnotationWorkerID]]
	if w != nil && (w.cl != c || w.pod != pod.Name) {
		w = nil
	}
	var o outcome
	var del *deleteReq
	switch {
	case w != nil:
		b.seen(w)
		w.node = pod.Spec.NodeName
		if deleted {
			o = deletedOutcome(pod, w.stopping)
		} else {
			o = podOutcome(pod)
		}
		if o.ended {
			b.end(w)
			if o.remove && pod.DeletionTimestamp == nil {
				del = &deleteReq{name: pod.Name, uid: pod.UID, force: o.force}
			}
		}
	case !deleted && pod.DeletionTimestamp == nil:
		// No live worker has this pod: its worker was reported already
		// and it finished since, or it is left from an earlier backend
		// or a lost creation attempt. It goes.
		del = &deleteReq{name: pod.Name, uid: pod.UID, force: finished}
		if !finished {
			b.log.Info("deleting a worker pod no live worker has", "cluster", c.cfg.Name, "pod", pod.Name, "worker", pod.Annotations[AnnotationWorkerID])
		}
	}
	b.mu.Unlock()
	if del != nil {
		c.deletes.Add(*del)
	}
	if o.ended {
		b.report(w.id, o.oom, o.why)
	}
}

// seen records that the informer has a worker's pod: the pod exists, even
// if the creation request that made it has not returned (or failed). Call
// with b.mu held.
func (b *Backend) seen(w *worker) {
	if w.seen {
		return
	}
	w.seen = true
	w.cl.pending--
	switch w.state {
	case stQueued:
		w.cl.queue = slices.DeleteFunc(w.cl.queue, func(x *worker) bool { return x == w })
		w.state, w.spec = stCreated, nil
	case stBackoff:
		w.state, w.spec = stCreated, nil
	}
}

// onNodeDeleted ends the workers whose pods were bound to a deleted node:
// no kubelet will ever report them.
func (b *Backend) onNodeDeleted(c *cluster, obj any) {
	var name string
	switch n := obj.(type) {
	case *corev1.Node:
		name = n.Name
	case cache.DeletedFinalStateUnknown:
		node, ok := n.Obj.(*corev1.Node)
		if !ok {
			return
		}
		name = node.Name
	default:
		return
	}
	objs, err := c.pods.GetIndexer().ByIndex(nodeIndex, name)
	if err != nil {
		b.log.Warn("pods of deleted node", "cluster", c.cfg.Name, "node", name, "err", err)
		return
	}
	var ended []string
	var dels []deleteReq
	b.mu.Lock()
	for _, obj := range objs {
		pod, ok := obj.(*corev1.Pod)
		if !ok || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		dels = append(dels, deleteReq{name: pod.Name, uid: pod.UID, force: true})
		w := b.workers[pod.Annotations[AnnotationWorkerID]]
		if w != nil && w.cl == c && w.pod == pod.Name && !b.stopped {
			b.seen(w)
			b.end(w)
			ended = append(ended, w.id)
		}
	}
	b.mu.Unlock()
	for _, d := range dels {
		c.deletes.Add(d)
	}
	for _, id := range ended {
		b.report(id, false, "node lost: node "+name+" was deleted")
	}
}

func podOf(obj any) *corev1.Pod {
	switch p := obj.(type) {
	case *corev1.Pod:
		return p
	case cache.DeletedFinalStateUnknown:
		pod, _ := p.Obj.(*corev1.Pod)
		return pod
	}
	return nil
}

// countingTransport counts the requests sent through it.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}

// WrappedRoundTripper lets client-go see through the wrapper.
func (t *countingTransport) WrappedRoundTripper() http.RoundTripper { return t.next }

// timeRing keeps the latest createTimesKept times.
type timeRing struct {
	buf  []time.Time
	next int
}

func (r *timeRing) add(t time.Time) {
	if len(r.buf) < createTimesKept {
		r.buf = append(r.buf, t)
		return
	}
	r.buf[r.next] = t
	r.next = (r.next + 1) % createTimesKept
}

func (r *timeRing) list() []time.Time {
	return append(slices.Clone(r.buf[r.next:]), r.buf[:r.next]...)
}
