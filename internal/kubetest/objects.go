package kubetest

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// CreateNode creates a Node with the given labels and marks it as a kubelet
// would: status Ready, with capacity and allocatable set to capacity (through
// the status subresource, which is the only way to set a node's status).
func (c *Cluster) CreateNode(ctx context.Context, name string, labels map[string]string, capacity corev1.ResourceList) error {
	if name == "" {
		return errors.New("create node: empty name")
	}
	for res, q := range capacity {
		if q.Sign() < 0 {
			return fmt.Errorf("create node %s: negative capacity %s for %s", name, q.String(), res)
		}
	}
	nodes := c.clientset.CoreV1().Nodes()
	node, err := nodes.Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	now := metav1.Now()
	node.Status.Capacity = capacity.DeepCopy()
	node.Status.Allocatable = capacity.DeepCopy()
	node.Status.Phase = corev1.NodeRunning
	node.Status.Conditions = []corev1.NodeCondition{{
		Type:               corev1.NodeReady,
		Status:             corev1.ConditionTrue,
		Reason:             "KubeletReady",
		Message:            "set by kubetest",
		LastHeartbeatTime:  now,
		LastTransitionTime: now,
	}}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}}
	if _, err := nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set status of node %s: %w", name, err)
	}
	return nil
}

// BindPod assigns a pod to a node through the pods/binding subresource, as
// the scheduler does. The node need not exist.
func (c *Cluster) BindPod(ctx context.Context, namespace, pod, node string) error {
	if namespace == "" || pod == "" || node == "" {
		return fmt.Errorf("bind pod %q in namespace %q to node %q: namespace, pod and node must not be empty", pod, namespace, node)
	}
	err := c.clientset.CoreV1().Pods(namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: namespace},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("bind pod %s/%s to node %s: %w", namespace, pod, node, err)
	}
	return nil
}

// SetPodPhase sets a pod's status.phase, as a kubelet would, through the
// status subresource (retrying on update conflicts). Going to Running also
// sets status.startTime if unset. Nothing checks that the transition makes
// sense (the API server accepts Succeeded -> Running).
func (c *Cluster) SetPodPhase(ctx context.Context, namespace, pod string, phase corev1.PodPhase) error {
	if namespace == "" || pod == "" {
		return fmt.Errorf("set phase of pod %q in namespace %q: namespace and pod must not be empty", pod, namespace)
	}
	switch phase {
	case corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown:
	default:
		return fmt.Errorf("set phase of pod %s/%s: unknown phase %q (want Pending, Running, Succeeded, Failed or Unknown)", namespace, pod, phase)
	}
	pods := c.clientset.CoreV1().Pods(namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := pods.Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Status.Phase = phase
		if phase == corev1.PodRunning && p.Status.StartTime == nil {
			now := metav1.Now()
			p.Status.StartTime = &now
		}
		_, err = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("set phase of pod %s/%s to %s: %w", namespace, pod, phase, err)
	}
	return nil
}
