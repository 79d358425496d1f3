package kubetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
)

// DefaultAgentNode is the node an Agent registers when AgentOptions.Node is
// empty.
const DefaultAgentNode = "kubetest-agent"

// AgentPodIP is the address an Agent reports as every pod's IP and host IP:
// its processes run on the test's machine.
const AgentPodIP = "127.0.0.1"

const (
	// agentWorkers is how many pods an Agent handles at once.
	agentWorkers = 8
	// agentResync is how often the informer replays every pod, a safety net
	// for a pod whose handling failed more often than the queue retries.
	agentResync = 30 * time.Second
	// agentKillGrace is the longest wait between SIGTERM and SIGKILL when a
	// pod is deleted (less if the pod's own grace period is shorter).
	agentKillGrace = 2 * time.Second
	// startErrorExitCode is the exit code reported for a container that
	// could not be started, as container runtimes report it.
	startErrorExitCode = 128
	// oomExitCode is the exit code of a process killed by SIGKILL, which is
	// what the kernel's OOM killer sends.
	oomExitCode = 128 + 9
)

// agentNodeCapacity is the capacity and allocatable of an Agent's node:
// enough for the hundreds of pods of a load test.
var agentNodeCapacity = corev1.ResourceList{
	corev1.ResourceCPU:              resource.MustParse("1000"),
	corev1.ResourceMemory:           resource.MustParse("4Ti"),
	corev1.ResourceEphemeralStorage: resource.MustParse("10Ti"),
	corev1.ResourcePods:             resource.MustParse("10000"),
}

// statusBackoff spaces retries of a status update that conflicted with
// another writer.
var statusBackoff = wait.Backoff{Steps: 10, Duration: 10 * time.Millisecond, Factor: 2, Jitter: 0.1, Cap: time.Second}

// AgentOptions configures Cluster.StartAgent. The zero value is ready to use:
// it binds every pod of every namespace to DefaultAgentNode and runs them.
type AgentOptions struct {
	// Node is the name of the node the agent registers (Ready, with room for
	// thousands of pods) and binds pods to. Empty: DefaultAgentNode. A node
	// that already exists is kept and marked Ready.
	Node string

	// NodeLabels are the labels of the node the agent creates
	// (kubernetes.io/hostname is always set to Node).
	NodeLabels map[string]string

	// MatchNodeSelector makes the agent bind only pods whose
	// spec.nodeSelector its node's labels satisfy, so that several agents
	// can stand for nodes of different kinds. False: the agent binds every
	// pod it watches, whatever its node selector. Affinity, taints and
	// tolerations are never looked at.
	MatchNodeSelector bool

	// Namespace is the namespace whose pods the agent handles; empty: all.
	Namespace string

	// LabelSelector restricts the agent to the pods it matches, for example
	// "app.kubernetes.io/managed-by=haul"; empty: all pods.
	LabelSelector string

	// Commands maps a container's command path (its command[0]) to a local
	// executable, for example "/haul/bin/haul-taskhost" to a binary the test
	// built. A command not in the map is run as given (a name without a
	// slash is looked up in the agent's PATH).
	Commands map[string]string

	// Run makes the agent start each pod's container as a local process.
	// False: pods are bound and marked Running, and nothing runs; they stay
	// Running until deleted (or OOMKill), which suits load tests of hundreds
	// of pods.
	Run bool

	// Dir holds the pods' working directories, <Dir>/<namespace>/<pod UID>,
	// and their logs, <Dir>/<namespace>/<pod UID>.log. Empty: a new
	// temporary directory that Stop removes. A directory given here is
	// created if missing and left in place by Stop.
	Dir string

	// Logger receives the agent's progress messages; nil discards them.
	Logger *slog.Logger
}

// Agent stands in for the scheduler and the kubelet of one node: it binds
// pending pods to its node and, if asked to, runs their container as a local
// process and reports the process's life in the pod's status. Its methods are
// safe for concurrent use.
//
// What a pod gets, compared with a real kubelet:
//   - Init containers are never run; they are reported as terminated with
//     reason Completed and exit code 0 once the pod is Running.
//   - Only the first container of spec.containers runs. Any other
//     container is reported with the first one's state (running, then
//     terminated with exit code 0).
//   - No image, volume, probe, resource limit or security context is
//     applied: the process runs as the test binary's user in its own
//     process group, in a fresh working directory (container workingDir is
//     ignored), with the container's command and args ($(VAR) references
//     expanded) and exactly the container's environment (env and envFrom,
//     with valueFrom for fields, resources, config maps and secrets) plus the
//     agent's PATH, unless the container sets PATH itself.
//   - Pods are never restarted, whatever their restartPolicy: exit code 0
//     makes the pod Succeeded, anything else Failed.
//   - A container whose environment names a config map or secret that
//     does not exist waits for it, as a kubelet does, for 30 seconds after
//     the pod's creation.
//   - A container that cannot start (no command, unknown executable,
//     unresolvable environment) makes the pod Failed, with the container
//     terminated with reason StartError and exit code 128, and the error in
//     the pod's status message and log.
//   - Deleting a pod kills its process group (SIGTERM, SIGKILL after at most
//     two seconds) and then removes the pod object (grace period 0), with no
//     final status written.
type Agent struct {
	cluster   *Cluster
	client    kubernetes.Interface
	node      string
	run       bool
	commands  map[string]string
	dir       string
	removeDir bool
	log       *slog.Logger
	selector  labels.Selector // the pods' node selector must match it; nil: bind all
	nodeLabel labels.Set

	ctx     context.Context // cancelled by Stop
	cancel  context.CancelFunc
	factory informers.SharedInformerFactory
	lister  corelisters.PodLister
	queue   workqueue.TypedRateLimitingInterface[string]
	workers sync.WaitGroup
	waiters sync.WaitGroup // one per started process

	mu      sync.Mutex
	runs    map[string]*podRun // by namespace/name
	stopped bool

	stopOnce sync.Once
}

// killCause says why the agent killed a process, which decides who writes the
// pod's final status.
type killCause int

const (
	notKilled         killCause = iota
	killedForDeletion           // the pod is going away: no status
	killedForOOM                // OOMKill writes the status
	killedForStop               // the agent stops: no status
)

func (c killCause) String() string {
	switch c {
	case killedForDeletion:
		return "pod deleted"
	case killedForOOM:
		return "OOMKill"
	case killedForStop:
		return "agent stopped"
	}
	return "not killed"
}

// podRun is what the agent did for one pod.
type podRun struct {
	namespace, name string
	uid             types.UID
	containerID     string
	logPath         string // empty when nothing ran
	proc            *os.Process
	started         chan struct{} // closed once the Running status is written, or given up on
	done            chan struct{} // closed when proc has exited; nil when proc is nil

	// Guarded by Agent.mu.
	exited   bool // proc has exited and exitCode is set
	exitCode int
	killed   killCause
	finished bool // a final status is written or being written (OOMKill)
}

// StartAgent registers the agent's node and starts handling pods; it returns
// once the agent has seen every existing pod it watches. ctx bounds the start
// only: the agent runs until Stop, which the caller must call (for example
// with t.Cleanup, after Start's, so that the agent stops first).
func (c *Cluster) StartAgent(ctx context.Context, o AgentOptions) (_ *Agent, err error) {
	a, err := newAgent(c, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.Stop()
		}
	}()
	if err := a.ensureNode(ctx); err != nil {
		return nil, err
	}

	informer := a.factory.Core().V1().Pods()
	a.lister = informer.Lister()
	enqueue := func(obj any) {
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		if err != nil {
			a.log.Warn("kubetest agent: pod key", "err", err)
			return
		}
		a.queue.Add(key)
	}
	if _, err := informer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}); err != nil {
		return nil, fmt.Errorf("start agent: add pod event handler: %w", err)
	}
	a.factory.Start(a.ctx.Done())
	for typ, ok := range a.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("start agent: informer for %v did not sync: %w", typ, context.Cause(ctx))
		}
	}
	for range agentWorkers {
		a.workers.Go(a.work)
	}
	a.log.Info("kubetest agent started", "node", a.node, "run", a.run, "dir", a.dir)
	return a, nil
}

// newAgent checks the options and builds an agent that does nothing yet.
func newAgent(c *Cluster, o AgentOptions) (*Agent, error) {
	node := o.Node
	if node == "" {
		node = DefaultAgentNode
	}
	if errs := validation.IsDNS1123Subdomain(node); len(errs) > 0 {
		return nil, fmt.Errorf("start agent: node name %q: %s", node, strings.Join(errs, "; "))
	}
	if o.Namespace != "" {
		if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
			return nil, fmt.Errorf("start agent: namespace %q: %s", o.Namespace, strings.Join(errs, "; "))
		}
	}
	if _, err := labels.Parse(o.LabelSelector); err != nil {
		return nil, fmt.Errorf("start agent: label selector %q: %w", o.LabelSelector, err)
	}
	for from, to := range o.Commands {
		if from == "" || to == "" {
			return nil, fmt.Errorf("start agent: command mapping %q -> %q: both sides must be non-empty", from, to)
		}
	}
	nodeLabels := labels.Set(maps.Clone(o.NodeLabels))
	if nodeLabels == nil {
		nodeLabels = labels.Set{}
	}
	nodeLabels[corev1.LabelHostname] = node
	if errs := validateLabels(nodeLabels); len(errs) > 0 {
		return nil, fmt.Errorf("start agent: node labels: %s", strings.Join(errs, "; "))
	}

	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		cluster:   c,
		client:    c.clientset,
		node:      node,
		run:       o.Run,
		commands:  maps.Clone(o.Commands),
		dir:       o.Dir,
		log:       log.With("node", node),
		nodeLabel: nodeLabels,
		runs:      make(map[string]*podRun),
	}
	if o.MatchNodeSelector {
		a.selector = labels.SelectorFromSet(nodeLabels)
	}
	if a.dir == "" {
		dir, err := os.MkdirTemp("", "kubetest-agent-")
		if err != nil {
			return nil, fmt.Errorf("start agent: create directory: %w", err)
		}
		a.dir, a.removeDir = dir, true
	} else if err := os.MkdirAll(a.dir, 0o755); err != nil {
		return nil, fmt.Errorf("start agent: create directory: %w", err)
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	selector := o.LabelSelector
	a.factory = informers.NewSharedInformerFactoryWithOptions(a.client, agentResync,
		informers.WithNamespace(o.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = selector }))
	a.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](10*time.Millisecond, 5*time.Second),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubetest-agent-" + node})
	return a, nil
}

// validateLabels returns what is wrong with a set of labels.
func validateLabels(set labels.Set) []string {
	var errs []string
	for k, v := range set {
		for _, e := range validation.IsQualifiedName(k) {
			errs = append(errs, fmt.Sprintf("key %q: %s", k, e))
		}
		for _, e := range validation.IsValidLabelValue(v) {
			errs = append(errs, fmt.Sprintf("value %q of %q: %s", v, k, e))
		}
	}
	return errs
}

// ensureNode creates the agent's node, Ready, or marks an existing one Ready.
func (a *Agent) ensureNode(ctx context.Context) error {
	err := a.cluster.CreateNode(ctx, a.node, a.nodeLabel, agentNodeCapacity)
	if err == nil || !apierrors.IsAlreadyExists(err) {
		return err
	}
	nodes := a.client.CoreV1().Nodes()
	err = retry.RetryOnConflict(statusBackoff, func() error {
		n, err := nodes.Get(ctx, a.node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		ready := corev1.NodeCondition{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "set by kubetest agent", LastHeartbeatTime: now, LastTransitionTime: now,
		}
		found := false
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeReady {
				n.Status.Conditions[i], found = ready, true
			}
		}
		if !found {
			n.Status.Conditions = append(n.Status.Conditions, ready)
		}
		if len(n.Status.Allocatable) == 0 {
			n.Status.Capacity = agentNodeCapacity.DeepCopy()
			n.Status.Allocatable = agentNodeCapacity.DeepCopy()
		}
		_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("mark existing node %s ready: %w", a.node, err)
	}
	return nil
}

// Stop stops handling pods, kills every process the agent started (SIGKILL
// to each process group) and waits for them, then removes the agent's
// directory if StartAgent created it. Pods keep their last status. It is
// idempotent.
func (a *Agent) Stop() {
	a.stopOnce.Do(func() {
		a.cancel()
		a.queue.ShutDown()
		a.factory.Shutdown()
		a.workers.Wait()

		a.mu.Lock()
		a.stopped = true
		var live []*podRun
		for _, r := range a.runs {
			if r.proc != nil && !r.exited {
				if r.killed == notKilled {
					r.killed = killedForStop
				}
				live = append(live, r)
			}
		}
		a.mu.Unlock()
		for _, r := range live {
			if err := killGroup(r.proc); err != nil && !errors.Is(err, syscall.ESRCH) {
				a.log.Warn("kubetest agent: kill", "pod", r.namespace+"/"+r.name, "err", err)
			}
		}
		a.waiters.Wait()
		if a.removeDir {
			if err := os.RemoveAll(a.dir); err != nil {
				a.log.Warn("kubetest agent: remove directory", "dir", a.dir, "err", err)
			}
		}
	})
}

// Processes returns how many of the agent's processes are alive.
func (a *Agent) Processes() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, r := range a.runs {
		if r.proc != nil && !r.exited {
			n++
		}
	}
	return n
}

// PodLog returns the combined standard output and error of the pod's
// process so far, with any start error; empty when the agent ran nothing
// for the pod (or the pod is unknown to it). Meant for debugging tests.
func (a *Agent) PodLog(namespace, pod string) string {
	a.mu.Lock()
	r := a.runs[namespace+"/"+pod]
	a.mu.Unlock()
	if r == nil || r.logPath == "" {
		return ""
	}
	data, err := os.ReadFile(r.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", r.logPath, err)
	}
	return string(data)
}

// OOMKill simulates the kernel's OOM killer: it sends SIGKILL to the pod's
// process group, waits for the process to exit, and writes the pod's final
// status: phase Failed, first container terminated with reason OOMKilled and
// exit code 137. With Run false there is no process and only the status is
// written. It fails if the agent has not started the pod or the pod has
// already finished.
func (a *Agent) OOMKill(ctx context.Context, namespace, pod string) error {
	key := namespace + "/" + pod
	a.mu.Lock()
	r := a.runs[key]
	switch {
	case r == nil:
		a.mu.Unlock()
		return fmt.Errorf("oom-kill pod %s: the agent on node %s has not started it", key, a.node)
	case r.exited:
		a.mu.Unlock()
		return fmt.Errorf("oom-kill pod %s: its process already exited with code %d", key, r.exitCode)
	case r.finished || r.killed != notKilled:
		a.mu.Unlock()
		return fmt.Errorf("oom-kill pod %s: it has already finished or is being killed", key)
	}
	r.finished = true
	r.killed = killedForOOM
	a.mu.Unlock()

	if r.proc != nil {
		if err := killGroup(r.proc); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("oom-kill pod %s: %w", key, err)
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			return fmt.Errorf("oom-kill pod %s: wait for the process: %w", key, ctx.Err())
		}
	}
	select {
	case <-r.started:
	case <-ctx.Done():
		return fmt.Errorf("oom-kill pod %s: wait for its Running status: %w", key, ctx.Err())
	}
	err := a.updateStatus(ctx, r, func(p *corev1.Pod) bool {
		setTerminated(p, r.containerID, oomExitCode, "OOMKilled", "", true)
		return true
	})
	if err != nil {
		return fmt.Errorf("oom-kill pod %s: write status: %w", key, err)
	}
	a.log.Info("kubetest agent: pod OOM-killed", "pod", key)
	return nil
}

// work handles queued pods until the queue shuts down.
func (a *Agent) work() {
	for {
		key, quit := a.queue.Get()
		if quit {
			return
		}
		if err := a.sync(key); err != nil && a.ctx.Err() == nil {
			a.log.Warn("kubetest agent: handle pod (will retry)", "pod", key, "err", err)
			a.queue.AddRateLimited(key)
		} else {
			a.queue.Forget(key)
		}
		a.queue.Done(key)
	}
}

// sync brings the pod named key one step closer to what the agent wants for
// it: bound, started, or gone.
func (a *Agent) sync(key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("bad pod key %q: %w", key, err)
	}
	pod, err := a.lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		a.killOther(key, "", agentKillGrace) // the pod is gone
		return nil
	}
	if err != nil {
		return err
	}
	if pod.Spec.NodeName != "" && pod.Spec.NodeName != a.node {
		return nil
	}
	a.killOther(key, pod.UID, agentKillGrace) // a former pod of the same name
	switch {
	case pod.DeletionTimestamp != nil:
		return a.finalize(key, pod)
	case pod.Spec.NodeName == "":
		return a.bind(pod)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return nil
	}
	a.mu.Lock()
	r := a.runs[key]
	a.mu.Unlock()
	if r != nil && r.uid == pod.UID {
		return nil // started already
	}
	return a.start(key, pod)
}

// bind binds pod to the agent's node, if its node selector allows.
func (a *Agent) bind(pod *corev1.Pod) error {
	if a.selector != nil && !labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(a.nodeLabel) {
		return nil
	}
	err := a.cluster.BindPod(a.ctx, pod.Namespace, pod.Name, a.node)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // bound by someone else, or gone: the next event says which
	}
	if err == nil {
		a.log.Debug("kubetest agent: bound pod", "pod", pod.Namespace+"/"+pod.Name)
	}
	return err
}

// killOther kills the process run for key unless it belongs to the pod with
// UID keep, giving it grace between SIGTERM and SIGKILL.
func (a *Agent) killOther(key string, keep types.UID, grace time.Duration) {
	a.mu.Lock()
	r := a.runs[key]
	a.mu.Unlock()
	if r != nil && r.uid != keep {
		a.kill(r, killedForDeletion, grace)
	}
}

// kill ends r's process group: SIGTERM, then SIGKILL after grace (at once
// when grace is zero), and waits for the process to exit.
func (a *Agent) kill(r *podRun, cause killCause, grace time.Duration) {
	a.mu.Lock()
	if r.proc == nil || r.exited {
		a.mu.Unlock()
		return
	}
	if r.killed == notKilled {
		r.killed = cause
	}
	a.mu.Unlock()
	if grace > 0 {
		if err := terminateGroup(r.proc); err == nil {
			timer := time.NewTimer(grace)
			select {
			case <-r.done:
			case <-timer.C:
			}
			timer.Stop()
		}
	}
	select {
	case <-r.done:
	default:
		_ = killGroup(r.proc) // an error means the group has gone already
		<-r.done
	}
}

// finalize kills the process of a pod being deleted and removes the pod
// object, as a kubelet does once the containers have stopped.
func (a *Agent) finalize(key string, pod *corev1.Pod) error {
	a.mu.Lock()
	r := a.runs[key]
	a.mu.Unlock()
	if r != nil && r.uid == pod.UID {
		grace := agentKillGrace
		if s := pod.DeletionGracePeriodSeconds; s != nil && time.Duration(*s)*time.Second < grace {
			grace = max(time.Duration(*s)*time.Second, 0)
		}
		a.kill(r, killedForDeletion, grace)
	}
	uid := pod.UID
	err := a.client.CoreV1().Pods(pod.Namespace).Delete(a.ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64(0)),
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s: %w", key, err)
	}
	a.log.Debug("kubetest agent: deleted pod", "pod", key)
	return nil
}

// configWait is how long after its creation a pod whose environment names
// a config map or secret that does not exist yet waits for it (its
// creator may make it just after the pod, as the kube backend does with a
// worker's credential) before it fails.
const configWait = 30 * time.Second

// start starts the pod's first container (or, with Run false, pretends to)
// and writes the Running status.
func (a *Agent) start(key string, pod *corev1.Pod) error {
	r := &podRun{
		namespace:   pod.Namespace,
		name:        pod.Name,
		uid:         pod.UID,
		containerID: "kubetest://" + string(pod.UID),
		started:     make(chan struct{}),
	}
	defer close(r.started)
	if !a.run {
		a.mu.Lock()
		if a.stopped {
			a.mu.Unlock()
			return nil
		}
		a.runs[key] = r
		a.mu.Unlock()
		return a.writeRunning(r, pod)
	}

	ctr := &pod.Spec.Containers[0]
	podDir := filepath.Join(a.dir, pod.Namespace, string(pod.UID))
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		return fmt.Errorf("pod %s: create working directory: %w", key, err)
	}
	r.logPath = podDir + ".log"
	logFile, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pod %s: create log: %w", key, err)
	}
	defer logFile.Close() // the child has its own descriptor

	argv, env, err := a.commandLine(a.ctx, pod, ctr)
	if apierrors.IsNotFound(err) && time.Since(pod.CreationTimestamp.Time) < configWait {
		// A config map or secret the environment names is not there yet:
		// a kubelet keeps the container waiting (CreateContainerConfigError)
		// and tries again; so does the agent, for configWait.
		return fmt.Errorf("pod %s: %w (waiting for it to be created)", key, err)
	}
	if err == nil {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		cmd.Dir = podDir
		cmd.Stdout = logFile
		cmd.Stderr = logFile
		cmd.SysProcAttr = sysProcAttr()
		a.mu.Lock()
		if a.stopped {
			a.mu.Unlock()
			return nil
		}
		if err = spawn(cmd); err == nil {
			r.proc = cmd.Process
			r.done = make(chan struct{})
			r.containerID = fmt.Sprintf("kubetest://%d", cmd.Process.Pid)
			a.waiters.Add(1)
			go a.wait(cmd, r)
		}
		a.runs[key] = r
		a.mu.Unlock()
		if err != nil {
			err = fmt.Errorf("start %q: %w", argv[0], err)
		}
	}
	if err != nil {
		a.mu.Lock()
		a.runs[key] = r
		r.finished = true
		a.mu.Unlock()
		msg := fmt.Sprintf("kubetest agent: container %s: %v", ctr.Name, err)
		fmt.Fprintln(logFile, msg)
		a.log.Info("kubetest agent: pod failed to start", "pod", key, "err", err)
		err := a.updateStatus(a.ctx, r, func(p *corev1.Pod) bool {
			if podDone(p) {
				return false
			}
			setTerminated(p, r.containerID, startErrorExitCode, "StartError", msg, false)
			p.Status.Message = msg
			return true
		})
		if err != nil && !apierrors.IsNotFound(err) {
			a.log.Warn("kubetest agent: write start error", "pod", key, "err", err)
		}
		return nil
	}
	a.log.Debug("kubetest agent: started pod", "pod", key, "pid", r.proc.Pid, "argv", argv)
	return a.writeRunning(r, pod)
}

// writeRunning writes the status of a pod whose container has started;
// cached is the informer's copy of the pod.
func (a *Agent) writeRunning(r *podRun, cached *corev1.Pod) error {
	err := a.updateStatusFrom(a.ctx, r, cached, func(p *corev1.Pod) bool {
		if podDone(p) || p.DeletionTimestamp != nil {
			return false
		}
		setRunning(p, r.containerID)
		return true
	})
	if err != nil && !apierrors.IsNotFound(err) {
		// The run is recorded, so the pod is not started again; say so.
		a.log.Warn("kubetest agent: write Running status", "pod", r.namespace+"/"+r.name, "err", err)
	}
	return nil
}

// wait waits for r's process to exit and writes the pod's final status,
// unless the agent killed the process.
func (a *Agent) wait(cmd *exec.Cmd, r *podRun) {
	defer a.waiters.Done()
	err := cmd.Wait()
	code := exitCode(cmd.ProcessState, err)
	// What the process left in its group ends with it, as in a container.
	// (The group's ID cannot have been reused while members remain.)
	_ = killGroup(r.proc)
	a.mu.Lock()
	r.exited, r.exitCode = true, code
	cause := r.killed
	if cause == notKilled {
		r.finished = true
	}
	a.mu.Unlock()
	close(r.done)
	<-r.started
	if cause != notKilled {
		a.appendLog(r, "kubetest agent: process killed (%s), exit code %d", cause, code)
		return
	}
	a.appendLog(r, "kubetest agent: process exited with code %d", code)
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	err = a.updateStatus(a.ctx, r, func(p *corev1.Pod) bool {
		if podDone(p) {
			return false
		}
		setTerminated(p, r.containerID, int32(code), reason, "", false)
		return true
	})
	if err != nil && !apierrors.IsNotFound(err) && a.ctx.Err() == nil {
		a.log.Warn("kubetest agent: write final status", "pod", r.namespace+"/"+r.name, "err", err)
	}
	a.log.Debug("kubetest agent: pod finished", "pod", r.namespace+"/"+r.name, "exit", code)
}

// appendLog adds a line of the agent's own to the pod's log.
func (a *Agent) appendLog(r *podRun, format string, args ...any) {
	if r.logPath == "" {
		return
	}
	f, err := os.OpenFile(r.logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	fmt.Fprintf(f, format+"\n", args...)
	f.Close()
}

// exitCode returns a process's exit code as a container runtime reports it:
// 128 plus the signal number for a process killed by a signal.
func exitCode(state *os.ProcessState, waitErr error) int {
	if state == nil {
		if waitErr != nil {
			return startErrorExitCode
		}
		return 0
	}
	if code := state.ExitCode(); code >= 0 {
		return code
	}
	if ws, ok := state.Sys().(interface {
		Signaled() bool
		Signal() syscall.Signal
	}); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return startErrorExitCode
}

// updateStatus applies mutate to the current pod r ran for and writes its
// status, retrying on conflicts. It does nothing when the pod has been
// replaced by another of the same name or mutate returns false.
func (a *Agent) updateStatus(ctx context.Context, r *podRun, mutate func(*corev1.Pod) bool) error {
	return a.updateStatusFrom(ctx, r, nil, mutate)
}

// updateStatusFrom is updateStatus starting from cached, a recent copy of
// the pod (from the informer), which saves a read when it is current.
func (a *Agent) updateStatusFrom(ctx context.Context, r *podRun, cached *corev1.Pod, mutate func(*corev1.Pod) bool) error {
	pods := a.client.CoreV1().Pods(r.namespace)
	return retry.RetryOnConflict(statusBackoff, func() error {
		p := cached
		cached = nil
		if p != nil {
			p = p.DeepCopy()
		} else {
			var err error
			if p, err = pods.Get(ctx, r.name, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		if p.UID != r.uid || !mutate(p) {
			return nil
		}
		_, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
}

// podDone reports whether the pod is in a terminal phase.
func podDone(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// setRunning sets the status of a pod whose containers run.
func setRunning(p *corev1.Pod, containerID string) {
	now := metav1.Now()
	s := &p.Status
	s.Phase = corev1.PodRunning
	setAddresses(s)
	if s.StartTime == nil {
		s.StartTime = &now
	}
	s.InitContainerStatuses = initStatuses(p, now)
	s.ContainerStatuses = make([]corev1.ContainerStatus, len(p.Spec.Containers))
	for i, c := range p.Spec.Containers {
		s.ContainerStatuses[i] = corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ContainerID: fmt.Sprintf("%s-%d", containerID, i),
			Ready:       true,
			Started:     new(true),
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}
	}
	for _, typ := range []corev1.PodConditionType{
		corev1.PodScheduled, corev1.PodReadyToStartContainers, corev1.PodInitialized,
		corev1.ContainersReady, corev1.PodReady,
	} {
		setCondition(s, typ, corev1.ConditionTrue, "", now)
	}
}

// setTerminated sets the final status of a pod whose first container ended
// with code; the other containers end with it, with code 0. force writes it
// even over a terminal status.
func setTerminated(p *corev1.Pod, containerID string, code int32, reason, message string, force bool) {
	if podDone(p) && !force {
		return
	}
	now := metav1.Now()
	s := &p.Status
	s.Phase = corev1.PodSucceeded
	if code != 0 {
		s.Phase = corev1.PodFailed
	}
	setAddresses(s)
	if s.StartTime == nil {
		s.StartTime = &now
	}
	if len(s.InitContainerStatuses) != len(p.Spec.InitContainers) {
		s.InitContainerStatuses = initStatuses(p, now)
	}
	old := map[string]corev1.ContainerStatus{}
	for _, cs := range s.ContainerStatuses {
		old[cs.Name] = cs
	}
	s.ContainerStatuses = make([]corev1.ContainerStatus, len(p.Spec.Containers))
	for i, c := range p.Spec.Containers {
		startedAt := now
		if prev, ok := old[c.Name]; ok && prev.State.Running != nil {
			startedAt = prev.State.Running.StartedAt
		}
		t := &corev1.ContainerStateTerminated{
			ExitCode: 0, Reason: "Completed", StartedAt: startedAt, FinishedAt: now,
			ContainerID: fmt.Sprintf("%s-%d", containerID, i),
		}
		if i == 0 {
			t.ExitCode, t.Reason, t.Message = code, reason, message
		}
		s.ContainerStatuses[i] = corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ContainerID: t.ContainerID,
			Started:     new(false),
			State:       corev1.ContainerState{Terminated: t},
		}
	}
	setCondition(s, corev1.PodScheduled, corev1.ConditionTrue, "", now)
	setCondition(s, corev1.PodReadyToStartContainers, corev1.ConditionFalse, "", now)
	setCondition(s, corev1.PodInitialized, corev1.ConditionTrue, "", now)
	setCondition(s, corev1.ContainersReady, corev1.ConditionFalse, "PodCompleted", now)
	setCondition(s, corev1.PodReady, corev1.ConditionFalse, "PodCompleted", now)
}

// setAddresses sets the pod's and host's IPs to AgentPodIP.
func setAddresses(s *corev1.PodStatus) {
	s.HostIP, s.PodIP = AgentPodIP, AgentPodIP
	s.HostIPs = []corev1.HostIP{{IP: AgentPodIP}}
	s.PodIPs = []corev1.PodIP{{IP: AgentPodIP}}
}

// initStatuses reports every init container as having completed.
func initStatuses(p *corev1.Pod, now metav1.Time) []corev1.ContainerStatus {
	if len(p.Spec.InitContainers) == 0 {
		return nil
	}
	out := make([]corev1.ContainerStatus, len(p.Spec.InitContainers))
	for i, c := range p.Spec.InitContainers {
		id := fmt.Sprintf("kubetest://%s-init-%d", p.UID, i)
		out[i] = corev1.ContainerStatus{
			Name:        c.Name,
			Image:       c.Image,
			ContainerID: id,
			Ready:       true,
			Started:     new(false),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now, ContainerID: id,
			}},
		}
	}
	return out
}

// setCondition sets a pod condition, keeping its transition time when the
// status does not change.
func setCondition(s *corev1.PodStatus, typ corev1.PodConditionType, status corev1.ConditionStatus, reason string, now metav1.Time) {
	c := corev1.PodCondition{Type: typ, Status: status, Reason: reason, LastProbeTime: metav1.Time{}, LastTransitionTime: now}
	for i := range s.Conditions {
		if s.Conditions[i].Type == typ {
			if s.Conditions[i].Status == status {
				c.LastTransitionTime = s.Conditions[i].LastTransitionTime
			}
			s.Conditions[i] = c
			return
		}
	}
	s.Conditions = append(s.Conditions, c)
}

// commandLine returns the argv and environment of a container's process.
func (a *Agent) commandLine(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container) (argv, env []string, err error) {
	if len(ctr.Command) == 0 {
		return nil, nil, errors.New("no command: the agent has no images, so it cannot run an image's entrypoint; set the container's command")
	}
	vars, env, err := a.containerEnv(ctx, pod, ctr)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range ctr.Command {
		argv = append(argv, expandVars(s, vars))
	}
	for _, s := range ctr.Args {
		argv = append(argv, expandVars(s, vars))
	}
	if local, ok := a.commands[argv[0]]; ok {
		argv[0] = local
	}
	return argv, env, nil
}

// containerEnv resolves a container's environment as the kubelet does:
// envFrom first, then env, each value's $(VAR) references expanded with the
// variables before it. It returns the variables and the process environment
// (the agent's PATH first, so that the container's own PATH wins).
func (a *Agent) containerEnv(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container) (map[string]string, []string, error) {
	vars := map[string]string{}
	env := []string{"PATH=" + os.Getenv("PATH")}
	set := func(k, v string) {
		vars[k] = v
		env = append(env, k+"="+v)
	}
	for _, from := range ctr.EnvFrom {
		data, err := a.envSource(ctx, pod.Namespace, from)
		if err != nil {
			return nil, nil, err
		}
		for _, k := range slices.Sorted(maps.Keys(data)) {
			set(from.Prefix+k, data[k])
		}
	}
	for _, e := range ctr.Env {
		if e.ValueFrom == nil {
			set(e.Name, expandVars(e.Value, vars))
			continue
		}
		v, ok, err := a.envValueFrom(ctx, pod, ctr, e.ValueFrom)
		if err != nil {
			return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
		}
		if ok {
			set(e.Name, v)
		}
	}
	return vars, env, nil
}

// envSource reads the config map or secret an envFrom entry names; a
// missing optional one gives nothing.
func (a *Agent) envSource(ctx context.Context, ns string, from corev1.EnvFromSource) (map[string]string, error) {
	switch {
	case from.ConfigMapRef != nil:
		cm, err := a.client.CoreV1().ConfigMaps(ns).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && ptrTrue(from.ConfigMapRef.Optional) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("envFrom config map %s: %w", from.ConfigMapRef.Name, err)
		}
		return cm.Data, nil
	case from.SecretRef != nil:
		s, err := a.client.CoreV1().Secrets(ns).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && ptrTrue(from.SecretRef.Optional) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("envFrom secret %s: %w", from.SecretRef.Name, err)
		}
		data := make(map[string]string, len(s.Data))
		for k, v := range s.Data {
			data[k] = string(v)
		}
		return data, nil
	}
	return nil, errors.New("envFrom entry names neither a config map nor a secret")
}

func ptrTrue(b *bool) bool { return b != nil && *b }

// envValueFrom resolves a valueFrom; ok is false for a missing optional key.
func (a *Agent) envValueFrom(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container, from *corev1.EnvVarSource) (v string, ok bool, err error) {
	switch {
	case from.FieldRef != nil:
		v, err := a.fieldValue(pod, from.FieldRef.FieldPath)
		return v, err == nil, err
	case from.ResourceFieldRef != nil:
		v, err := resourceValue(pod, ctr, from.ResourceFieldRef)
		return v, err == nil, err
	case from.ConfigMapKeyRef != nil:
		ref := from.ConfigMapKeyRef
		cm, err := a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && ptrTrue(ref.Optional) {
			return "", false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("config map %s: %w", ref.Name, err)
		}
		v, found := cm.Data[ref.Key]
		if !found && !ptrTrue(ref.Optional) {
			return "", false, fmt.Errorf("config map %s has no key %q", ref.Name, ref.Key)
		}
		return v, found, nil
	case from.SecretKeyRef != nil:
		ref := from.SecretKeyRef
		s, err := a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && ptrTrue(ref.Optional) {
			return "", false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("secret %s: %w", ref.Name, err)
		}
		b, found := s.Data[ref.Key]
		if !found && !ptrTrue(ref.Optional) {
			return "", false, fmt.Errorf("secret %s has no key %q", ref.Name, ref.Key)
		}
		return string(b), found, nil
	}
	return "", false, errors.New("valueFrom of a kind the kubetest agent does not support")
}

// fieldValue resolves a fieldRef's path.
func (a *Agent) fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return a.node, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs":
		return AgentPodIP, nil
	}
	for prefix, m := range map[string]map[string]string{
		"metadata.labels['":      pod.Labels,
		"metadata.annotations['": pod.Annotations,
	} {
		if rest, ok := strings.CutPrefix(path, prefix); ok {
			if key, ok := strings.CutSuffix(rest, "']"); ok {
				return m[key], nil
			}
		}
	}
	return "", fmt.Errorf("fieldRef %q is not supported by the kubetest agent", path)
}

// resourceValue resolves a resourceFieldRef as the kubelet does: the
// quantity divided by the divisor, rounded up; a limit not set is the node's
// allocatable.
func resourceValue(pod *corev1.Pod, ctr *corev1.Container, ref *corev1.ResourceFieldSelector) (string, error) {
	if ref.ContainerName != "" {
		ctr = nil
		for i := range pod.Spec.Containers {
			if pod.Spec.Containers[i].Name == ref.ContainerName {
				ctr = &pod.Spec.Containers[i]
			}
		}
		if ctr == nil {
			return "", fmt.Errorf("resourceFieldRef names container %q, which the pod does not have", ref.ContainerName)
		}
	}
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", fmt.Errorf("resourceFieldRef %q is not supported by the kubetest agent", ref.Resource)
	}
	res := corev1.ResourceName(name)
	var q resource.Quantity
	if kind == "limits" {
		var set bool
		if q, set = ctr.Resources.Limits[res]; !set {
			q = agentNodeCapacity[res]
		}
	} else {
		q = ctr.Resources.Requests[res]
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if res == corev1.ResourceCPU {
		return fmt.Sprint(int64(math.Ceil(float64(q.MilliValue()) / float64(divisor.MilliValue())))), nil
	}
	return fmt.Sprint(int64(math.Ceil(float64(q.Value()) / float64(divisor.Value())))), nil
}

// expandVars replaces $(NAME) in s with the variable's value, as Kubernetes
// does in env values, commands and args: an undefined variable is left as
// written and $$ stands for $.
func expandVars(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			ref := s[i : i+3+end]
			if v, ok := vars[s[i+2:i+2+end]]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(ref)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
