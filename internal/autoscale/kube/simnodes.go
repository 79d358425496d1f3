package kube

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/haul-dev/haul/internal/autoscale"
)

// SimNodes is the `sim` provider on a real cluster: a launch creates Node
// objects labelled with their launch config, with the config's capacity and
// taints, Ready after BootDelay; a termination deletes them. It lets the
// whole autoscaler run against a Kubernetes API server with no cloud (tests,
// demonstrations, kwok-style clusters). Capacity is unlimited unless
// Available caps it.
type SimNodes struct {
	Client      kubernetes.Interface
	ConfigLabel string
	BootDelay   time.Duration
	// Available, when set, caps how many nodes of a config one launch gets:
	// a way to exercise the capacity-short path.
	Available func(config string) int
	Clock     func() time.Time
}

var _ autoscale.Provider = (*SimNodes)(nil)

// Launch creates up to count Node objects of cfg.
func (s *SimNodes) Launch(ctx context.Context, cfg autoscale.LaunchConfig, count int) ([]autoscale.Instance, error) {
	if s.Available != nil {
		count = min(count, s.Available(cfg.Name))
	}
	label := s.ConfigLabel
	if label == "" {
		label = DefaultConfigLabel
	}
	now := time.Now
	if s.Clock != nil {
		now = s.Clock
	}
	var out []autoscale.Instance
	for range count {
		name := nodeName(cfg.Name)
		lbls := map[string]string{label: LabelValue(cfg.Name), "node.kubernetes.io/instance-type": cfg.InstanceType,
			"topology.kubernetes.io/zone": cfg.Zone, "haul.dev/purchase": string(cfg.Purchase)}
		maps.Copy(lbls, cfg.Labels)
		if cfg.Capacity.GPUType != "" {
			lbls[GPUTypeLabel] = cfg.Capacity.GPUType
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls, Annotations: map[string]string{DefaultConfigLabel: cfg.Name}},
		}
		for _, t := range cfg.Taints {
			node.Spec.Taints = append(node.Spec.Taints, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
		}
		created, err := s.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return out, fmt.Errorf("sim: create node for %s: %w", cfg.Name, err)
		}
		ready := func(ctx context.Context) error {
			created.Status.Capacity = ResourceList(cfg.Capacity)
			created.Status.Allocatable = ResourceList(cfg.Capacity)
			created.Status.Conditions = []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "SimulatedBoot",
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
			}}
			_, err := s.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
			return err
		}
		if s.BootDelay <= 0 {
			if err := ready(ctx); err != nil {
				return out, fmt.Errorf("sim: mark node %s ready: %w", name, err)
			}
		} else {
			time.AfterFunc(s.BootDelay, func() { _ = ready(context.Background()) })
		}
		out = append(out, autoscale.Instance{ID: name, Config: cfg.Name, LaunchedAt: now()})
	}
	return out, nil
}

// Terminate deletes the nodes; ones already gone are fine.
func (s *SimNodes) Terminate(ctx context.Context, ids []string) error {
	var errs []error
	for _, id := range ids {
		err := s.Client.CoreV1().Nodes().Delete(ctx, id, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("sim: delete node %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// Prices: simulated prices do not move.
func (s *SimNodes) Prices(context.Context, []autoscale.LaunchConfig) (map[string]float64, error) {
	return nil, nil
}

// nodeName makes a DNS-1123 node name from a config name and a random suffix.
func nodeName(config string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	base := LabelValue(strings.ToLower(config))
	base = strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, base), "-.")
	if len(base) > 50 {
		base = base[:50]
	}
	return base + "-" + hex.EncodeToString(b[:])
}

// LabelValue is how a launch config's name appears in the node label that
// ties a node to it: characters a label value cannot hold become '_'.
func LabelValue(config string) string {
	v := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, config)
	if len(v) > 63 {
		v = v[:63]
	}
	return strings.Trim(v, "-_.")
}
