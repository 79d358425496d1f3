package kubetest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// agentEnv is what an agent test needs: a namespace of its own in the
// shared cluster, an agent for it, and the pod events in it.
type agentEnv struct {
	c      *Cluster
	ns     string
	agent  *Agent
	events <-chan *corev1.Pod
	seen   map[string]map[corev1.PodPhase]*corev1.Pod // by pod name, first event in each phase
}

// setupAgent creates namespace ns and starts an agent on node ns for the
// pods labelled managed-by=haul in it.
func setupAgent(t *testing.T, c *Cluster, ns string, o AgentOptions) *agentEnv {
	t.Helper()
	ctx := t.Context()
	if _, err := c.Clientset().CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	events := watchPods(t, c.Clientset(), ns)
	if o.Node == "" {
		o.Node = ns
	}
	o.Namespace = ns
	o.LabelSelector = "app.kubernetes.io/managed-by=haul"
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	a, err := c.StartAgent(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			a.mu.Lock()
			keys := slices.Sorted(maps.Keys(a.runs))
			a.mu.Unlock()
			for _, key := range keys {
				ns, name, _ := strings.Cut(key, "/")
				t.Logf("log of pod %s:\n%s", key, a.PodLog(ns, name))
			}
		}
		a.Stop()
	})
	return &agentEnv{c: c, ns: ns, agent: a, events: events, seen: map[string]map[corev1.PodPhase]*corev1.Pod{}}
}

// workerPod returns a pod shaped like haul's worker pods, running command.
func workerPod(name string, command ...string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "haul"},
		},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{{
				Name:    "install-taskhost",
				Image:   "example.invalid/haul:1",
				Command: []string{"/no/such/installer"},
			}},
			Containers: []corev1.Container{{
				Name:    "worker",
				Image:   "example.invalid/haul:1",
				Command: command,
			}},
		},
	}
}

func (e *agentEnv) create(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if _, err := e.c.Clientset().CoreV1().Pods(e.ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
}

// waitPhase returns the first event that showed the pod in phase, waiting
// for it if none has yet. Events of other pods read meanwhile are kept for
// later calls.
func (e *agentEnv) waitPhase(t *testing.T, name string, phase corev1.PodPhase) *corev1.Pod {
	t.Helper()
	if p := e.seen[name][phase]; p != nil {
		return p
	}
	return waitPod(t, e.events, name+" "+string(phase), func(p *corev1.Pod) bool {
		if e.seen[p.Name] == nil {
			e.seen[p.Name] = map[corev1.PodPhase]*corev1.Pod{}
		}
		if e.seen[p.Name][p.Status.Phase] == nil {
			e.seen[p.Name][p.Status.Phase] = p
		}
		return p.Name == name && p.Status.Phase == phase
	})
}

// waitGone waits until the pod no longer exists.
func (e *agentEnv) waitGone(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), eventTimeout)
	defer cancel()
	pods := e.c.Clientset().CoreV1().Pods(e.ns)
	w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// Checked after the watch starts, so the deletion cannot fall between.
	if _, err := pods.Get(ctx, name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return
	}
	for ev := range w.ResultChan() {
		if ev.Type == watch.Deleted {
			return
		}
	}
	t.Fatalf("pod %s still exists after %v", name, eventTimeout)
}

func mainStatus(t *testing.T, p *corev1.Pod) corev1.ContainerStatus {
	t.Helper()
	if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].Name != "worker" {
		t.Fatalf("pod %s container statuses = %+v, want one for worker", p.Name, p.Status.ContainerStatuses)
	}
	return p.Status.ContainerStatuses[0]
}

func terminated(t *testing.T, p *corev1.Pod) *corev1.ContainerStateTerminated {
	t.Helper()
	st := mainStatus(t, p)
	if st.State.Terminated == nil {
		t.Fatalf("pod %s (%s): worker state = %+v, want terminated", p.Name, p.Status.Phase, st.State)
	}
	return st.State.Terminated
}

func TestAgent(t *testing.T) {
	t.Parallel()
	c := Start(t)

	t.Run("exit codes", func(t *testing.T) {
		t.Parallel()
		e := setupAgent(t, c, "exit-codes", AgentOptions{Run: true})
		e.create(t, workerPod("fails", "sh", "-c", "echo hi; exit 3"))
		e.create(t, workerPod("succeeds", "sh", "-c", "echo fine"))

		running := e.waitPhase(t, "fails", corev1.PodRunning)
		if running.Spec.NodeName != "exit-codes" || running.Status.PodIP != AgentPodIP || running.Status.StartTime == nil {
			t.Errorf("running pod: node %q, IP %q, start time %v", running.Spec.NodeName, running.Status.PodIP, running.Status.StartTime)
		}
		if st := mainStatus(t, running); st.State.Running == nil || !st.Ready {
			t.Errorf("running pod: worker status %+v, want running and ready", st)
		}
		if ics := running.Status.InitContainerStatuses; len(ics) != 1 || ics[0].State.Terminated == nil ||
			ics[0].State.Terminated.Reason != "Completed" || ics[0].State.Terminated.ExitCode != 0 {
			t.Errorf("running pod: init container statuses %+v, want install-taskhost Completed", ics)
		}
		if !podCondition(running, corev1.PodReady) {
			t.Errorf("running pod conditions %+v, want Ready", running.Status.Conditions)
		}

		failed := e.waitPhase(t, "fails", corev1.PodFailed)
		if term := terminated(t, failed); term.ExitCode != 3 || term.Reason != "Error" || term.FinishedAt.IsZero() {
			t.Errorf("failed pod: worker terminated %+v, want exit code 3, reason Error, finishedAt", term)
		}
		if log := e.agent.PodLog(e.ns, "fails"); !strings.Contains(log, "hi\n") {
			t.Errorf("log of the failed pod = %q, want hi", log)
		}

		succeeded := e.waitPhase(t, "succeeds", corev1.PodSucceeded)
		if term := terminated(t, succeeded); term.ExitCode != 0 || term.Reason != "Completed" {
			t.Errorf("succeeded pod: worker terminated %+v, want exit code 0, reason Completed", term)
		}
		if podCondition(succeeded, corev1.PodReady) {
			t.Errorf("succeeded pod is still Ready: %+v", succeeded.Status.Conditions)
		}
		if n := e.agent.Processes(); n != 0 {
			t.Errorf("Processes() = %d after both pods ended, want 0", n)
		}
	})

	t.Run("environment and commands", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		e := setupAgent(t, c, "environment", AgentOptions{
			Run: true,
			Dir: dir,
			Commands: map[string]string{"/haul/bin/haul-taskhost": writeScript(t, `
echo "args=$*"
echo "runner=$HAUL_RUNNER job=$HAUL_JOB combined=$COMBINED escaped=$ESCAPED"
echo "pod=$POD_NAME ns=$POD_NS ip=$POD_IP node=$NODE tier=$TIER"
echo "cpu=$CPU_LIMIT mem=$MEMORY_LIMIT conf=$FROM_CONFIG prefixed=$CFG_colour"
echo "home=${HOME-unset} path-set=${PATH:+yes}"
echo "cwd=$(pwd)"
`)},
		})
		ctx := t.Context()
		if _, err := c.Clientset().CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "settings"},
			Data:       map[string]string{"colour": "green"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := workerPod("env", "/haul/bin/haul-taskhost")
		pod.Labels["haul.dev/tier"] = "small"
		w := &pod.Spec.Containers[0]
		w.Args = []string{"--job", "$(HAUL_JOB)", "$$(HAUL_JOB)"}
		w.Resources.Limits = corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("1500m"),
			corev1.ResourceMemory: resource.MustParse("256Mi"),
		}
		field := func(path string) *corev1.EnvVarSource {
			return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
		}
		w.EnvFrom = []corev1.EnvFromSource{{Prefix: "CFG_", ConfigMapRef: &corev1.ConfigMapEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}
		w.Env = []corev1.EnvVar{
			{Name: "HAUL_RUNNER", Value: "http://127.0.0.1:9"},
			{Name: "HAUL_JOB", Value: "job-7"},
			{Name: "COMBINED", Value: "$(HAUL_JOB)-x"},
			{Name: "ESCAPED", Value: "$$(HAUL_JOB)"},
			{Name: "POD_NAME", ValueFrom: field("metadata.name")},
			{Name: "POD_NS", ValueFrom: field("metadata.namespace")},
			{Name: "POD_IP", ValueFrom: field("status.podIP")},
			{Name: "NODE", ValueFrom: field("spec.nodeName")},
			{Name: "TIER", ValueFrom: field("metadata.labels['haul.dev/tier']")},
			{Name: "CPU_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.cpu"}}},
			{Name: "MEMORY_LIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
				Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}},
			{Name: "FROM_CONFIG", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}, Key: "colour"}}},
		}
		e.create(t, pod)
		done := e.waitPhase(t, "env", corev1.PodSucceeded)
		log := e.agent.PodLog(e.ns, "env")
		for _, want := range []string{
			"args=--job job-7 $(HAUL_JOB)\n",
			"runner=http://127.0.0.1:9 job=job-7 combined=job-7-x escaped=$(HAUL_JOB)\n",
			"pod=env ns=environment ip=127.0.0.1 node=environment tier=small\n",
			"cpu=2 mem=256 conf=green prefixed=green\n",
			"home=unset path-set=yes\n",
			"cwd=" + filepath.Join(dir, e.ns, string(done.UID)) + "\n",
		} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
	})

	t.Run("start error", func(t *testing.T) {
		t.Parallel()
		e := setupAgent(t, c, "start-error", AgentOptions{Run: true})
		e.create(t, workerPod("missing", "/no/such/binary"))
		failed := e.waitPhase(t, "missing", corev1.PodFailed)
		if term := terminated(t, failed); term.ExitCode != 128 || term.Reason != "StartError" || !strings.Contains(term.Message, "/no/such/binary") {
			t.Errorf("worker terminated %+v, want StartError 128 naming the binary", term)
		}
		if log := e.agent.PodLog(e.ns, "missing"); !strings.Contains(log, "/no/such/binary") {
			t.Errorf("log = %q, want the start error", log)
		}
	})

	t.Run("delete kills", func(t *testing.T) {
		t.Parallel()
		e := setupAgent(t, c, "delete", AgentOptions{Run: true})
		e.create(t, workerPod("sleeper", "sleep", "60"))
		e.waitPhase(t, "sleeper", corev1.PodRunning)
		if n := e.agent.Processes(); n != 1 {
			t.Fatalf("Processes() = %d with the pod running, want 1", n)
		}
		if err := c.Clientset().CoreV1().Pods(e.ns).Delete(t.Context(), "sleeper", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitGone(t, "sleeper")
		if n := e.agent.Processes(); n != 0 {
			t.Errorf("Processes() = %d after the pod was deleted, want 0", n)
		}
	})

	t.Run("OOMKill", func(t *testing.T) {
		t.Parallel()
		e := setupAgent(t, c, "oom", AgentOptions{Run: true})
		ctx := t.Context()
		e.create(t, workerPod("hog", "sh", "-c", "sleep 60 & wait"))
		e.waitPhase(t, "hog", corev1.PodRunning)
		if err := e.agent.OOMKill(ctx, e.ns, "hog"); err != nil {
			t.Fatal(err)
		}
		if n := e.agent.Processes(); n != 0 {
			t.Errorf("Processes() = %d after OOMKill, want 0", n)
		}
		failed := e.waitPhase(t, "hog", corev1.PodFailed)
		if term := terminated(t, failed); term.ExitCode != 137 || term.Reason != "OOMKilled" {
			t.Errorf("worker terminated %+v, want OOMKilled 137", term)
		}
		if err := e.agent.OOMKill(ctx, e.ns, "hog"); err == nil {
			t.Error("second OOMKill of the same pod: no error")
		}
		if err := e.agent.OOMKill(ctx, e.ns, "no-such-pod"); err == nil {
			t.Error("OOMKill of an unknown pod: no error")
		}
	})

	t.Run("node selectors", func(t *testing.T) {
		t.Parallel()
		e := setupAgent(t, c, "tiers", AgentOptions{
			Node: "small-node", NodeLabels: map[string]string{"haul.dev/tier": "small"}, MatchNodeSelector: true,
		})
		big, err := c.StartAgent(t.Context(), AgentOptions{
			Node: "big-node", NodeLabels: map[string]string{"haul.dev/tier": "big"}, MatchNodeSelector: true,
			Namespace: e.ns, LabelSelector: "app.kubernetes.io/managed-by=haul",
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(big.Stop)
		for _, tier := range []string{"small", "big"} {
			pod := workerPod("on-"+tier, "true")
			pod.Spec.NodeSelector = map[string]string{"haul.dev/tier": tier}
			e.create(t, pod)
		}
		for _, tier := range []string{"small", "big"} {
			p := e.waitPhase(t, "on-"+tier, corev1.PodRunning)
			if p.Spec.NodeName != tier+"-node" {
				t.Errorf("pod with node selector tier=%s bound to %s", tier, p.Spec.NodeName)
			}
		}
	})

	t.Run("many pods without running them", func(t *testing.T) {
		t.Parallel()
		e := setupAgent(t, c, "load", AgentOptions{})
		node, err := c.Clientset().CoreV1().Nodes().Get(t.Context(), "load", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if q := node.Status.Allocatable[corev1.ResourcePods]; !nodeReady(node) || q.Value() < 1000 {
			t.Errorf("node: ready %v, allocatable pods %s; want ready with room for 1000", nodeReady(node), q.String())
		}

		const n = 200
		createMany(t, e, n)
		running := map[string]bool{}
		waitPod(t, e.events, fmt.Sprintf("all %d Running", n), func(p *corev1.Pod) bool {
			if p.Status.Phase == corev1.PodRunning && p.Spec.NodeName == "load" {
				running[p.Name] = true
			}
			return len(running) == n
		})
		if got := e.agent.Processes(); got != 0 {
			t.Errorf("Processes() = %d with Run false, want 0", got)
		}
		if log := e.agent.PodLog(e.ns, "pod-0"); log != "" {
			t.Errorf("PodLog with Run false = %q, want empty", log)
		}
		if err := e.agent.OOMKill(t.Context(), e.ns, "pod-0"); err != nil {
			t.Fatal(err)
		}
		if term := terminated(t, e.waitPhase(t, "pod-0", corev1.PodFailed)); term.Reason != "OOMKilled" {
			t.Errorf("OOM-killed pod without a process: worker terminated %+v", term)
		}

		// Deleting them all: the agent finalizes every deletion.
		ctx := t.Context()
		pods := c.Clientset().CoreV1().Pods(e.ns)
		if err := pods.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(ctx, eventTimeout)
		defer cancel()
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		left := len(list.Items)
		w, err := pods.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		for left > 0 {
			ev, ok := <-w.ResultChan()
			if !ok {
				break
			}
			if ev.Type == watch.Deleted {
				left--
			}
		}
		if left != 0 {
			t.Errorf("%d pods still exist %v after deleting them all", left, eventTimeout)
		}
	})

	t.Run("bad options", func(t *testing.T) {
		t.Parallel()
		for name, o := range map[string]AgentOptions{
			"node name":      {Node: "Not_A_Node"},
			"label selector": {LabelSelector: "a in (b"},
			"namespace":      {Namespace: "UPPER"},
			"empty command":  {Commands: map[string]string{"": "/bin/true"}},
			"node label":     {NodeLabels: map[string]string{"bad key!": "x"}},
		} {
			if a, err := c.StartAgent(t.Context(), o); err == nil {
				a.Stop()
				t.Errorf("%s: no error", name)
			}
		}
	})
}

// createMany creates pods pod-0 … pod-<n-1> from a few goroutines.
func createMany(t *testing.T, e *agentEnv, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	const creators = 8
	for k := range creators {
		wg.Go(func() {
			for i := k; i < n; i += creators {
				_, err := e.c.Clientset().CoreV1().Pods(e.ns).Create(t.Context(),
					workerPod(fmt.Sprintf("pod-%d", i), "/haul/bin/haul-taskhost"), metav1.CreateOptions{})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create pod: %v", err)
	}
}

// writeScript writes a shell script and returns its path.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func podCondition(p *corev1.Pod, typ corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func TestExpandVars(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"A": "1", "B": "two"}
	for in, want := range map[string]string{
		"":             "",
		"plain":        "plain",
		"$(A)":         "1",
		"x$(A)y$(B)z":  "x1ytwoz",
		"$(C)":         "$(C)",
		"$$(A)":        "$(A)",
		"$$":           "$",
		"cost $5":      "cost $5",
		"end$":         "end$",
		"$(A":          "$(A",
		"$(A)$(A)$$$$": "11$$",
	} {
		if got := expandVars(in, vars); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}
