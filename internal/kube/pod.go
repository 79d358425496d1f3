package kube

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	sigsjson "sigs.k8s.io/json"

	"github.com/haul-dev/haul/internal/runner"
	"github.com/haul-dev/haul/internal/store"
)

// Labels and annotations on worker pods. Label values are made label-safe
// (see LabelValue); the annotations hold the exact values.
const (
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	ManagedBy       = "haul"
	LabelBackend    = "haul.dev/backend" // the Backend instance that owns the pod
	LabelWorker     = "haul.dev/worker"
	LabelJob        = "haul.dev/job"
	LabelNamespace  = "haul.dev/namespace" // the job's haul namespace (team)
	LabelTier       = "haul.dev/tier"
	LabelCostCenter = "haul.dev/cost-center"

	AnnotationWorkerID    = "haul.dev/worker-id"
	AnnotationJobID       = "haul.dev/job-id"
	AnnotationJobName     = "haul.dev/job-name"
	AnnotationTierName    = "haul.dev/tier-name"
	AnnotationMemoryBytes = "haul.dev/memory-bytes"
	AnnotationCPU         = "haul.dev/cpu"

	// CostCenterJobLabel is the job label whose value becomes the pod's
	// cost-center label; without it the job's haul namespace is used.
	CostCenterJobLabel = "cost-center"
)

// The pod's layout.
const (
	InitContainerName   = "install-taskhost"
	WorkerContainerName = "worker"
	// BinVolume is the emptyDir the init container installs the taskhost
	// into, mounted at BinDir in both containers.
	BinVolume    = "haul-bin"
	BinDir       = "/haul/bin"
	TaskhostPath = BinDir + "/haul-taskhost"
	// TaskhostImagePath is where the taskhost image holds the binary.
	TaskhostImagePath = "/haul-taskhost"
	// SpoolVolume is an emptyDir for the taskhost's log spool (HAUL_SPOOL),
	// so images without a writable /tmp work.
	SpoolVolume = "haul-spool"
	SpoolDir    = "/haul/spool"
	// GPUResource is the extended resource GPUs are requested as.
	GPUResource = corev1.ResourceName("nvidia.com/gpu")
	// TerminationGracePeriodSeconds is how long a deleted worker has to
	// stop its tasks before it is killed.
	TerminationGracePeriodSeconds = 30
)

// podParams is what a pod needs besides the worker's spec.
type podParams struct {
	namespace     string
	instance      string
	taskhostImage string
	defaultImage  string
	// sharedClaim, when set, is a PersistentVolumeClaim mounted at
	// sharedPath in every worker (the log store's shared volume).
	sharedClaim, sharedPath string
	// runnerCA is the PEM certificate workers trust for the runner's TLS
	// (public: it goes in the pod spec as HAUL_CA_PEM).
	runnerCA string
	// envSecret, when set, names a Secret (in the workers' namespace)
	// whose keys every worker container gets as environment variables:
	// the object store's credentials where pods have no cloud identity.
	envSecret string
}

// SharedVolume is the name of the volume of Config.SharedClaim.
const SharedVolume = "haul-shared"

// reservedEnv are the variables the backend sets; a template may not.
var reservedEnv = []string{"HAUL_RUNNER", "HAUL_WORKER_ID", "HAUL_JOB", "HAUL_TIER", "HAUL_LOCATOR", "HAUL_BLOB", "HAUL_MEMORY_LIMIT", "HAUL_CPU_LIMIT", "HAUL_SPOOL", WorkerSecretEnv, "HAUL_CA", "HAUL_CA_PEM"}

// The worker's credential (runner.WorkerSpec.Secret) lives in a Secret of
// its own, named like the pod and owned by it (deleted with it), under
// WorkerSecretKey; the worker container reads it into WorkerSecretEnv
// through a secretKeyRef, so that it is in no pod spec, no annotation and
// no log.
const (
	WorkerSecretKey = "worker-secret"
	WorkerSecretEnv = "HAUL_WORKER_SECRET"
)

// workerSecret returns the Secret holding a worker's credential, owned by
// its pod (which must have been created: it needs the pod's UID), with the
// pod's labels so that it is found like the pod.
func workerSecret(pod *corev1.Pod, secret string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      pod.Name,
			Namespace: pod.Namespace,
			Labels:    copyMap(pod.Labels),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
			}},
		},
		Type:      corev1.SecretTypeOpaque,
		Immutable: new(true),
		Data:      map[string][]byte{WorkerSecretKey: []byte(secret)},
	}
}

// buildPod returns the pod that runs the worker. Its errors name what in the
// spec is wrong.
func buildPod(s runner.WorkerSpec, p podParams) (*corev1.Pod, error) {
	if s.ID == "" {
		return nil, errors.New("worker spec has no ID")
	}
	if s.JobID == "" {
		return nil, fmt.Errorf("worker %s: spec has no job ID", s.ID)
	}
	if math.IsNaN(s.Tier.CPU) || math.IsInf(s.Tier.CPU, 0) || s.Tier.CPU < 0 {
		return nil, fmt.Errorf("worker %s: tier %q: bad CPU %v", s.ID, s.Tier.Name, s.Tier.CPU)
	}
	if s.Tier.MemoryBytes < 0 {
		return nil, fmt.Errorf("worker %s: tier %q: negative memory %d", s.ID, s.Tier.Name, s.Tier.MemoryBytes)
	}
	if s.Tier.GPU < 0 {
		return nil, fmt.Errorf("worker %s: tier %q: negative GPU count %d", s.ID, s.Tier.Name, s.Tier.GPU)
	}
	vols, mounts, err := templateVolumes(s.Template)
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", s.ID, err)
	}
	if p.sharedClaim != "" {
		vols = append(vols, corev1.Volume{Name: SharedVolume, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: p.sharedClaim}}})
		mounts = append(mounts, corev1.VolumeMount{Name: SharedVolume, MountPath: p.sharedPath})
	}
	tolerations, err := podTolerations(s.Tier.Tolerations)
	if err != nil {
		return nil, fmt.Errorf("worker %s: tier %q: %w", s.ID, s.Tier.Name, err)
	}
	env, err := podEnv(s, p)
	if err != nil {
		return nil, fmt.Errorf("worker %s: %w", s.ID, err)
	}
	image := s.Template.Image
	if image == "" {
		image = p.defaultImage
	}
	if strings.TrimSpace(image) != image || image == "" {
		return nil, fmt.Errorf("worker %s: bad image %q", s.ID, image)
	}

	tierLabel := s.Tier.Name
	if tierLabel == "" {
		tierLabel = strconv.Itoa(int(s.TierIndex))
	}
	costCenter := s.Labels[CostCenterJobLabel]
	if costCenter == "" {
		costCenter = s.Namespace
	}
	labels := map[string]string{
		LabelManagedBy:  ManagedBy,
		LabelBackend:    p.instance,
		LabelWorker:     LabelValue(s.ID),
		LabelJob:        LabelValue(s.JobID),
		LabelNamespace:  LabelValue(s.Namespace),
		LabelTier:       LabelValue(tierLabel),
		LabelCostCenter: LabelValue(costCenter),
	}
	cpu := strconv.FormatFloat(s.Tier.CPU, 'g', -1, 64)
	annotations := map[string]string{
		AnnotationWorkerID:    s.ID,
		AnnotationJobID:       s.JobID,
		AnnotationJobName:     s.JobName,
		AnnotationTierName:    s.Tier.Name,
		AnnotationMemoryBytes: strconv.FormatInt(s.Tier.MemoryBytes, 10),
		AnnotationCPU:         cpu,
	}

	res := tierResources(s.Tier, true)
	binMount := corev1.VolumeMount{Name: BinVolume, MountPath: BinDir}
	grace := int64(TerminationGracePeriodSeconds)
	noLinks := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        PodName(s.ID),
			Namespace:   p.namespace,
			Labels:      labels,
			Annotations: annotations,
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			ServiceAccountName:            s.Template.ServiceAccount,
			NodeSelector:                  nodeSelector(s.Tier),
			Tolerations:                   tolerations,
			// Thousands of services in a namespace would otherwise become
			// thousands of environment variables in every task.
			EnableServiceLinks: &noLinks,
			InitContainers: []corev1.Container{{
				Name:    InitContainerName,
				Image:   p.taskhostImage,
				Command: []string{TaskhostImagePath, "--install", TaskhostPath},
				// The same resources as the worker: the pod's effective
				// request stays the tier's, and its QoS class Guaranteed.
				Resources:                tierResources(s.Tier, false),
				VolumeMounts:             []corev1.VolumeMount{binMount},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Containers: []corev1.Container{{
				Name:                     WorkerContainerName,
				Image:                    image,
				Command:                  []string{TaskhostPath},
				Env:                      env,
				EnvFrom:                  envFrom(p.envSecret),
				Resources:                res,
				VolumeMounts:             append([]corev1.VolumeMount{binMount, {Name: SpoolVolume, MountPath: SpoolDir}}, mounts...),
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Volumes: append([]corev1.Volume{
				{Name: BinVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: SpoolVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			}, vols...),
		},
	}
	return pod, nil
}

// envFrom is the worker container's envFrom: the Secret's keys, or none.
func envFrom(secret string) []corev1.EnvFromSource {
	if secret == "" {
		return nil
	}
	return []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}}
}

// nodeSelector is the tier's node selector, with the GPU type's label
// (GPUTypeLabel) for a tier that names a GPU type, unless the selector
// names that label itself.
func nodeSelector(t store.Tier) map[string]string {
	sel := copyMap(t.NodeSelector)
	if t.GPU > 0 && t.GPUType != "" {
		if _, ok := sel[GPUTypeLabel]; !ok {
			if sel == nil {
				sel = map[string]string{}
			}
			sel[GPUTypeLabel] = t.GPUType
		}
	}
	return sel
}

// tierResources returns requests equal to limits: the tier's CPU and
// memory, and its GPUs when withGPU is set.
func tierResources(t store.Tier, withGPU bool) corev1.ResourceRequirements {
	list := corev1.ResourceList{}
	if t.CPU > 0 {
		list[corev1.ResourceCPU] = *resource.NewMilliQuantity(max(1, int64(math.Round(t.CPU*1000))), resource.DecimalSI)
	}
	if t.MemoryBytes > 0 {
		list[corev1.ResourceMemory] = *resource.NewQuantity(t.MemoryBytes, resource.BinarySI)
	}
	if withGPU && t.GPU > 0 {
		list[GPUResource] = *resource.NewQuantity(int64(t.GPU), resource.DecimalSI)
	}
	if len(list) == 0 {
		return corev1.ResourceRequirements{}
	}
	return corev1.ResourceRequirements{Requests: list, Limits: list.DeepCopy()}
}

func podEnv(s runner.WorkerSpec, p podParams) ([]corev1.EnvVar, error) {
	env := []corev1.EnvVar{
		{Name: "HAUL_RUNNER", Value: s.RunnerURL},
		{Name: "HAUL_WORKER_ID", Value: s.ID},
		{Name: "HAUL_JOB", Value: s.JobID},
		{Name: "HAUL_TIER", Value: strconv.Itoa(int(s.TierIndex))},
		{Name: "HAUL_BLOB", Value: s.BlobURL},
		{Name: "HAUL_MEMORY_LIMIT", Value: strconv.FormatInt(s.Tier.MemoryBytes, 10)},
		{Name: "HAUL_CPU_LIMIT", Value: strconv.FormatFloat(s.Tier.CPU, 'g', -1, 64)},
		{Name: "HAUL_SPOOL", Value: SpoolDir},
	}
	if s.LocatorURL != "" {
		env = append(env, corev1.EnvVar{Name: "HAUL_LOCATOR", Value: s.LocatorURL})
	}
	if p.runnerCA != "" {
		env = append(env, corev1.EnvVar{Name: "HAUL_CA_PEM", Value: p.runnerCA})
	}
	if s.Secret != "" {
		env = append(env, corev1.EnvVar{Name: WorkerSecretEnv, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: PodName(s.ID)}, Key: WorkerSecretKey},
		}})
	}
	keys := make([]string, 0, len(s.Template.Env))
	for k := range s.Template.Env {
		if slices.Contains(reservedEnv, k) {
			return nil, fmt.Errorf("worker template env: %s is set by haul", k)
		}
		if k == "" {
			return nil, errors.New("worker template env: empty variable name")
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, corev1.EnvVar{Name: k, Value: s.Template.Env[k]})
	}
	return env, nil
}

func podTolerations(ts []store.Toleration) ([]corev1.Toleration, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	out := make([]corev1.Toleration, 0, len(ts))
	for i, t := range ts {
		op := corev1.TolerationOperator(t.Operator)
		switch op {
		case "":
			op = corev1.TolerationOpEqual
		case corev1.TolerationOpEqual, corev1.TolerationOpExists:
		default:
			return nil, fmt.Errorf("toleration %d: operator %q: want Equal or Exists", i+1, t.Operator)
		}
		if op == corev1.TolerationOpExists && t.Value != "" {
			return nil, fmt.Errorf("toleration %d: operator Exists takes no value (got %q)", i+1, t.Value)
		}
		eff := corev1.TaintEffect(t.Effect)
		switch eff {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			return nil, fmt.Errorf("toleration %d: effect %q: want NoSchedule, PreferNoSchedule, NoExecute or nothing", i+1, t.Effect)
		}
		out = append(out, corev1.Toleration{Key: t.Key, Operator: op, Value: t.Value, Effect: eff})
	}
	return out, nil
}

// templateVolumes decodes the template's volumes and mounts, strictly: an
// unknown field is an error, not silently dropped.
func templateVolumes(t store.WorkerTemplate) ([]corev1.Volume, []corev1.VolumeMount, error) {
	var vols []corev1.Volume
	names := map[string]bool{BinVolume: true, SpoolVolume: true}
	for i, raw := range t.Volumes {
		var v corev1.Volume
		if err := decodeStrict(raw, &v); err != nil {
			return nil, nil, fmt.Errorf("worker template volume %d: %w", i+1, err)
		}
		if v.Name == "" {
			return nil, nil, fmt.Errorf("worker template volume %d: no name", i+1)
		}
		if errs := validation.IsDNS1123Label(v.Name); len(errs) > 0 {
			return nil, nil, fmt.Errorf("worker template volume %d: name %q: %s", i+1, v.Name, strings.Join(errs, "; "))
		}
		if names[v.Name] {
			if v.Name == BinVolume || v.Name == SpoolVolume {
				return nil, nil, fmt.Errorf("worker template volume %d: name %q is used by haul", i+1, v.Name)
			}
			return nil, nil, fmt.Errorf("worker template volume %d: name %q used twice", i+1, v.Name)
		}
		names[v.Name] = true
		vols = append(vols, v)
	}
	var mounts []corev1.VolumeMount
	for i, raw := range t.VolumeMounts {
		var m corev1.VolumeMount
		if err := decodeStrict(raw, &m); err != nil {
			return nil, nil, fmt.Errorf("worker template volume mount %d: %w", i+1, err)
		}
		switch {
		case m.Name == "":
			return nil, nil, fmt.Errorf("worker template volume mount %d: no name", i+1)
		case m.Name == BinVolume || m.Name == SpoolVolume || !names[m.Name]:
			return nil, nil, fmt.Errorf("worker template volume mount %d: no template volume is named %q", i+1, m.Name)
		case !strings.HasPrefix(m.MountPath, "/"):
			return nil, nil, fmt.Errorf("worker template volume mount %d (%s): mount path %q is not absolute", i+1, m.Name, m.MountPath)
		case m.MountPath == "/haul" || strings.HasPrefix(m.MountPath, "/haul/"):
			return nil, nil, fmt.Errorf("worker template volume mount %d (%s): mount path %q is under /haul, which haul uses", i+1, m.Name, m.MountPath)
		}
		mounts = append(mounts, m)
	}
	return vols, mounts, nil
}

// decodeStrict decodes one Kubernetes object as the API server does: field
// names are case-sensitive, and unknown or repeated fields are errors.
func decodeStrict(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return errors.New("empty")
	}
	strict, err := sigsjson.UnmarshalStrict(raw, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// PodName is the name of a worker's pod: "haul-" and the worker ID when that
// is a DNS-1123 label of at most 63 characters; otherwise the ID made
// lowercase, with other characters replaced by '-', cut short, and a hash
// of the exact ID appended, so that the name is stable and distinct IDs
// get distinct names.
func PodName(id string) string {
	const prefix = "haul-"
	if name := prefix + id; len(validation.IsDNS1123Label(name)) == 0 {
		return name
	}
	s := []byte(strings.ToLower(id))
	for i, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			s[i] = '-'
		}
	}
	const room = validation.DNS1123LabelMaxLength - len(prefix) - 1 - 8
	body := strings.Trim(string(s[:min(len(s), room)]), "-")
	if body == "" {
		return prefix + idHash(id)
	}
	return prefix + body + "-" + idHash(id)
}

// LabelValue makes s usable as a label value: s itself when it is one;
// otherwise s with other characters replaced by '-', cut short, with a
// hash of s appended.
func LabelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '-'
		}
	}
	const room = validation.LabelValueMaxLength - 1 - 8
	body := strings.Trim(string(b[:min(len(b), room)]), "-_.")
	if body == "" {
		return idHash(s)
	}
	return body + "-" + idHash(s)
}

func idHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

func copyMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
