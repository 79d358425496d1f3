package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/store"
)

func TestPodName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100)
	for _, id := range []string{"j1-0-1", "J1-0-1", "j1_0.1", long, long + "y", "---", "", "ÄÖÜ", "01JD5Z-0-7"} {
		name := PodName(id)
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			t.Errorf("PodName(%q) = %q: %v", id, name, errs)
		}
		if PodName(id) != name {
			t.Errorf("PodName(%q) is not stable", id)
		}
	}
	if got := PodName("j1-0-1"); got != "haul-j1-0-1" {
		t.Errorf("PodName(j1-0-1) = %q, want haul-j1-0-1", got)
	}
	for _, pair := range [][2]string{{"J1-0-1", "j1-0-1"}, {long, long + "y"}, {"a.b", "a_b"}} {
		if PodName(pair[0]) == PodName(pair[1]) {
			t.Errorf("PodName(%q) == PodName(%q)", pair[0], pair[1])
		}
	}
}

func TestLabelValue(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("v", 70)
	for _, s := range []string{"team-a", "Team_A.1", "a/b", long, "-x-", "", "é"} {
		v := LabelValue(s)
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("LabelValue(%q) = %q: %v", s, v, errs)
		}
	}
	if LabelValue("Team_A.1") != "Team_A.1" {
		t.Errorf("LabelValue changed a valid value")
	}
	if LabelValue("a/b") == LabelValue("a:b") {
		t.Errorf("LabelValue(a/b) == LabelValue(a:b)")
	}
}

func testSpec(id string) runner.WorkerSpec {
	return runner.WorkerSpec{
		ID: id, JobID: "job1", JobName: "resim", Namespace: "perception",
		Tier:      store.Tier{Name: "small", CPU: 0.5, MemoryBytes: 256 << 20},
		RunnerURL: "http://runner:7070", BlobURL: "s3://logs",
	}
}

var testParams = podParams{namespace: "w", instance: "i1", taskhostImage: "th:1", defaultImage: "debian:bookworm-slim"}

func TestBuildPodErrors(t *testing.T) {
	t.Parallel()
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	for _, tc := range []struct {
		name   string
		change func(*runner.WorkerSpec)
		want   string
	}{
		{"no id", func(s *runner.WorkerSpec) { s.ID = "" }, "no ID"},
		{"no job", func(s *runner.WorkerSpec) { s.JobID = "" }, "no job ID"},
		{"negative memory", func(s *runner.WorkerSpec) { s.Tier.MemoryBytes = -1 }, "negative memory"},
		{"bad cpu", func(s *runner.WorkerSpec) { s.Tier.CPU = -2 }, "bad CPU"},
		{"volume unknown field", func(s *runner.WorkerSpec) {
			s.Template.Volumes = []json.RawMessage{raw(`{"name":"data","hostpath":{"path":"/x"}}`)}
		}, `worker template volume 1: unknown field "hostpath"`},
		{"volume not json", func(s *runner.WorkerSpec) { s.Template.Volumes = []json.RawMessage{raw(`{name: data`)} }, "worker template volume 1"},
		{"volume no name", func(s *runner.WorkerSpec) {
			s.Template.Volumes = []json.RawMessage{raw(`{"emptyDir":{}}`)}
		}, "worker template volume 1: no name"},
		{"volume reserved name", func(s *runner.WorkerSpec) {
			s.Template.Volumes = []json.RawMessage{raw(`{"name":"haul-bin","emptyDir":{}}`)}
		}, `"haul-bin" is used by haul`},
		{"volume twice", func(s *runner.WorkerSpec) {
			s.Template.Volumes = []json.RawMessage{raw(`{"name":"a","emptyDir":{}}`), raw(`{"name":"a","emptyDir":{}}`)}
		}, `"a" used twice`},
		{"mount of nothing", func(s *runner.WorkerSpec) {
			s.Template.VolumeMounts = []json.RawMessage{raw(`{"name":"data","mountPath":"/data"}`)}
		}, `worker template volume mount 1: no template volume is named "data"`},
		{"mount under /haul", func(s *runner.WorkerSpec) {
			s.Template.Volumes = []json.RawMessage{raw(`{"name":"data","emptyDir":{}}`)}
			s.Template.VolumeMounts = []json.RawMessage{raw(`{"name":"data","mountPath":"/haul/bin"}`)}
		}, "under /haul"},
		{"mount relative", func(s *runner.WorkerSpec) {
			s.Template.Volumes = []json.RawMessage{raw(`{"name":"data","emptyDir":{}}`)}
			s.Template.VolumeMounts = []json.RawMessage{raw(`{"name":"data","mountPath":"data"}`)}
		}, "not absolute"},
		{"reserved env", func(s *runner.WorkerSpec) { s.Template.Env = map[string]string{"HAUL_RUNNER": "x"} }, "HAUL_RUNNER is set by haul"},
		{"bad toleration", func(s *runner.WorkerSpec) {
			s.Tier.Tolerations = []store.Toleration{{Key: "k", Operator: "Maybe"}}
		}, `operator "Maybe"`},
		{"bad effect", func(s *runner.WorkerSpec) {
			s.Tier.Tolerations = []store.Toleration{{Key: "k", Effect: "Never"}}
		}, `effect "Never"`},
		{"bad image", func(s *runner.WorkerSpec) { s.Template.Image = " x" }, "bad image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := testSpec("w1")
			tc.change(&s)
			_, err := buildPod(s, testParams)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("buildPod = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestBuildPodDefaults(t *testing.T) {
	t.Parallel()
	s := testSpec("w1")
	s.Tier = store.Tier{} // no name, no resources
	s.TierIndex = 2
	pod, err := buildPod(s, testParams)
	if err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.Containers[0]
	if c.Image != "debian:bookworm-slim" {
		t.Errorf("image %q, want the default", c.Image)
	}
	if len(c.Resources.Limits) != 0 || len(c.Resources.Requests) != 0 {
		t.Errorf("resources %v for a tier with none", c.Resources)
	}
	if pod.Labels[LabelTier] != "2" || pod.Labels[LabelCostCenter] != "perception" {
		t.Errorf("labels %v: want tier 2 (its index) and cost center perception (the namespace)", pod.Labels)
	}
}

func TestPodOutcome(t *testing.T) {
	t.Parallel()
	term := func(name, reason string, code int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: reason, ExitCode: code}}}
	}
	for _, tc := range []struct {
		name   string
		status corev1.PodStatus
		want   outcome
	}{
		{"pending", corev1.PodStatus{Phase: corev1.PodPending}, outcome{}},
		{"running", corev1.PodStatus{Phase: corev1.PodRunning}, outcome{}},
		{"succeeded", corev1.PodStatus{Phase: corev1.PodSucceeded}, outcome{ended: true, why: "exited", remove: true}},
		{"oom", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{term("worker", "OOMKilled", 137)}},
			outcome{ended: true, oom: true, why: OOMKilledWhy, remove: true}},
		{"exit code", corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{term("worker", "Error", 3)}},
			outcome{ended: true, why: "pod failed: container worker: exit code 3, Error", remove: true}},
		{"init failed", corev1.PodStatus{Phase: corev1.PodFailed, InitContainerStatuses: []corev1.ContainerStatus{term("install-taskhost", "Error", 2)}},
			outcome{ended: true, why: "pod failed: init container install-taskhost: exit code 2, Error", remove: true}},
		{"evicted", corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted", Message: "low on memory"},
			outcome{ended: true, why: "evicted: low on memory", remove: true}},
		{"unknown", corev1.PodStatus{Phase: corev1.PodUnknown},
			outcome{ended: true, why: "node lost: pod phase Unknown", remove: true, force: true}},
		{"image pull", corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "worker", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "no such image"}}}}},
			outcome{ended: true, why: "cannot start: container worker: ImagePullBackOff: no such image", remove: true, force: true}},
		{"image pull once", corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "worker", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}},
			outcome{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := podOutcome(&corev1.Pod{Status: tc.status})
			if got != tc.want {
				t.Errorf("podOutcome = %+v, want %+v", got, tc.want)
			}
		})
	}
	if o := deletedOutcome(&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, false); o.why != "pod deleted" || !o.ended {
		t.Errorf("deleted running pod: %+v", o)
	}
	if o := deletedOutcome(&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, true); o.why != "stopped" {
		t.Errorf("deleted stopping pod: %+v", o)
	}
	if o := deletedOutcome(&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}, false); o.why != "exited" || o.remove {
		t.Errorf("deleted succeeded pod: %+v", o)
	}
}

func TestRetryable(t *testing.T) {
	t.Parallel()
	gr := schema.GroupResource{Resource: "pods"}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{apierrors.NewTooManyRequests("slow down", 1), true},
		{apierrors.NewInternalError(errors.New("etcd")), true},
		{apierrors.NewServiceUnavailable("later"), true},
		{apierrors.NewServerTimeout(gr, "create", 1), true},
		{apierrors.NewTimeoutError("took too long", 1), true},
		{fmt.Errorf("create: %w", context.DeadlineExceeded), true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{apierrors.NewAlreadyExists(gr, "p"), false},
		{apierrors.NewForbidden(gr, "p", errors.New("quota")), false},
		{apierrors.NewBadRequest("no"), false},
		{apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "x"), false},
		{context.Canceled, false},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestSharedClaimMountedInEveryWorker(t *testing.T) {
	t.Parallel()
	p := testParams
	p.sharedClaim, p.sharedPath = "haul-blobs", "/var/lib/haul/blobs"
	pod, err := buildPod(runner.WorkerSpec{ID: "j-0-1", JobID: "j", Namespace: "team", Tier: store.Tier{Name: "small", CPU: 1, MemoryBytes: 1 << 30}}, p)
	if err != nil {
		t.Fatal(err)
	}
	var claim string
	for _, v := range pod.Spec.Volumes {
		if v.Name == SharedVolume && v.PersistentVolumeClaim != nil {
			claim = v.PersistentVolumeClaim.ClaimName
		}
	}
	var path string
	for _, m := range pod.Spec.Containers[0].VolumeMounts {
		if m.Name == SharedVolume {
			path = m.MountPath
		}
	}
	if claim != "haul-blobs" || path != "/var/lib/haul/blobs" {
		t.Fatalf("shared volume: claim %q at %q, want haul-blobs at /var/lib/haul/blobs", claim, path)
	}
}

// A server with TLS hands worker pods its certificate to trust, in the
// clear (it is public), and a template may not override it.
func TestPodTrustsTheRunnerCA(t *testing.T) {
	t.Parallel()
	p := testParams
	p.runnerCA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	pod, err := buildPod(runner.WorkerSpec{ID: "j-0-1", JobID: "j", Namespace: "team"}, p)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range pod.Spec.Containers[0].Env {
		found = found || e.Name == "HAUL_CA_PEM" && e.Value == p.runnerCA
	}
	if !found {
		t.Fatalf("worker env %v: want HAUL_CA_PEM with the certificate", pod.Spec.Containers[0].Env)
	}
	s := runner.WorkerSpec{ID: "j-0-2", JobID: "j", Namespace: "team", Template: store.WorkerTemplate{Env: map[string]string{"HAUL_CA_PEM": "x"}}}
	if _, err := buildPod(s, p); err == nil || !strings.Contains(err.Error(), "HAUL_CA_PEM") {
		t.Fatalf("a template setting HAUL_CA_PEM: %v, want refused", err)
	}
}

// A worker pod tells the taskhost its tier and, when the runner has one,
// where to ask for its job's runner after a failover; a template may set
// neither.
func TestPodTierAndLocator(t *testing.T) {
	t.Parallel()
	envOf := func(pod *corev1.Pod) map[string]string {
		m := map[string]string{}
		for _, e := range pod.Spec.Containers[0].Env {
			m[e.Name] = e.Value
		}
		return m
	}
	s := testSpec("w1")
	s.TierIndex = 3
	s.LocatorURL = "http://gateway:7070"
	pod, err := buildPod(s, testParams)
	if err != nil {
		t.Fatal(err)
	}
	if env := envOf(pod); env["HAUL_TIER"] != "3" || env["HAUL_LOCATOR"] != "http://gateway:7070" {
		t.Errorf("worker env %v: want HAUL_TIER=3 and HAUL_LOCATOR=http://gateway:7070", env)
	}
	s.LocatorURL = ""
	s.TierIndex = 0
	pod, err = buildPod(s, testParams)
	if err != nil {
		t.Fatal(err)
	}
	env := envOf(pod)
	if _, ok := env["HAUL_LOCATOR"]; ok || env["HAUL_TIER"] != "0" {
		t.Errorf("worker env %v: want HAUL_TIER=0 and no HAUL_LOCATOR", env)
	}
	for _, name := range []string{"HAUL_TIER", "HAUL_LOCATOR"} {
		s := testSpec("w2")
		s.Template.Env = map[string]string{name: "x"}
		if _, err := buildPod(s, testParams); err == nil || !strings.Contains(err.Error(), name+" is set by haul") {
			t.Errorf("a template setting %s: %v, want refused", name, err)
		}
	}
}

// TestPodGPUType: a tier that names a GPU type selects nodes of that type
// by GPUTypeLabel (the label placement counts GPUs by), unless its own
// selector names the label; a tier without GPUs or a type adds nothing.
func TestPodGPUType(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		tier store.Tier
		want map[string]string
	}{
		{"typed", store.Tier{GPU: 2, GPUType: "a100", NodeSelector: map[string]string{"zone": "a"}},
			map[string]string{"zone": "a", GPUTypeLabel: "a100"}},
		{"own label", store.Tier{GPU: 1, GPUType: "a100", NodeSelector: map[string]string{GPUTypeLabel: "a100-80gb"}},
			map[string]string{GPUTypeLabel: "a100-80gb"}},
		{"untyped", store.Tier{GPU: 1}, nil},
		{"no gpu", store.Tier{GPUType: "t4"}, nil},
	} {
		s := testSpec("w-" + strings.ReplaceAll(tc.name, " ", "-"))
		s.Tier = tc.tier
		pod, err := buildPod(s, testParams)
		if err != nil {
			t.Fatal(err)
		}
		if got := pod.Spec.NodeSelector; !maps.Equal(got, tc.want) {
			t.Errorf("%s: node selector %v, want %v", tc.name, got, tc.want)
		}
		if tc.tier.GPU > 0 {
			if q := pod.Spec.Containers[0].Resources.Limits[GPUResource]; q.Value() != int64(tc.tier.GPU) {
				t.Errorf("%s: GPU limit %v, want %d", tc.name, q.String(), tc.tier.GPU)
			}
		}
	}
}
