package kube

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// OOMKilledWhy is what Config.OOMKilled is told when Kubernetes killed the
// worker container for using more memory than its limit.
const OOMKilledWhy = "OOMKilled by Kubernetes at its tier's limit"

// outcome is what a pod's state means for its worker.
type outcome struct {
	ended bool   // the worker is over
	oom   bool   // ...because its container was killed for memory
	why   string // for the runner's log and the attempts it loses
	// remove: the pod should be deleted now that the worker is over;
	// force: with no grace period (the node is gone or the pod never ran).
	remove, force bool
}

// fatalWaiting are the reasons a container waits that will not resolve by
// themselves; a worker stuck in one of them will never start.
var fatalWaiting = map[string]bool{
	"ErrImagePull":               false, // may be transient; ImagePullBackOff follows if not
	"ImagePullBackOff":           true,
	"InvalidImageName":           true,
	"ErrImageNeverPull":          true,
	"CreateContainerConfigError": true,
}

// podOutcome reads a pod's status. It does no I/O.
func podOutcome(pod *corev1.Pod) outcome {
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		return outcome{ended: true, why: "exited", remove: true}
	case corev1.PodFailed:
		if pod.Status.Reason == "Evicted" {
			return outcome{ended: true, why: "evicted: " + orNone(pod.Status.Message), remove: true}
		}
		if t := terminated(pod.Status.ContainerStatuses, WorkerContainerName); t != nil && t.Reason == "OOMKilled" {
			return outcome{ended: true, oom: true, why: OOMKilledWhy, remove: true}
		}
		return outcome{ended: true, why: "pod failed: " + failure(pod), remove: true}
	case corev1.PodUnknown:
		why := "node lost: pod phase Unknown"
		if pod.Spec.NodeName != "" {
			why += " on node " + pod.Spec.NodeName
		}
		if pod.Status.Message != "" {
			why += ": " + pod.Status.Message
		}
		return outcome{ended: true, why: why, remove: true, force: true}
	case corev1.PodPending, "":
		for _, group := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
			for _, cs := range group {
				if w := cs.State.Waiting; w != nil && fatalWaiting[w.Reason] {
					why := fmt.Sprintf("cannot start: container %s: %s", cs.Name, w.Reason)
					if w.Message != "" {
						why += ": " + w.Message
					}
					return outcome{ended: true, why: why, remove: true, force: true}
				}
			}
		}
	}
	return outcome{}
}

// deletedOutcome is what a pod's deletion means: its last state if that
// already ended the worker (the update may not have been seen), otherwise
// the pod was deleted under a live worker.
func deletedOutcome(pod *corev1.Pod, stopping bool) outcome {
	if pod != nil {
		if o := podOutcome(pod); o.ended {
			o.remove = false
			return o
		}
	}
	if stopping {
		return outcome{ended: true, why: "stopped"}
	}
	return outcome{ended: true, why: "pod deleted"}
}

func terminated(statuses []corev1.ContainerStatus, name string) *corev1.ContainerStateTerminated {
	for _, cs := range statuses {
		if cs.Name == name {
			return cs.State.Terminated
		}
	}
	return nil
}

// failure describes why a Failed pod failed: the pod's reason and message,
// then the first container that ended badly, init container first.
func failure(pod *corev1.Pod) string {
	var parts []string
	if pod.Status.Reason != "" {
		parts = append(parts, pod.Status.Reason)
	}
	if pod.Status.Message != "" {
		parts = append(parts, pod.Status.Message)
	}
	describe := func(kind string, statuses []corev1.ContainerStatus) bool {
		for _, cs := range statuses {
			t := cs.State.Terminated
			if t == nil || t.ExitCode == 0 && t.Reason != "OOMKilled" {
				continue
			}
			s := fmt.Sprintf("%s %s: exit code %d", kind, cs.Name, t.ExitCode)
			if t.Signal != 0 {
				s += fmt.Sprintf(", signal %d", t.Signal)
			}
			if t.Reason != "" {
				s += ", " + t.Reason
			}
			if m := strings.TrimSpace(t.Message); m != "" {
				s += ": " + truncate(m, 512)
			}
			parts = append(parts, s)
			return true
		}
		return false
	}
	if !describe("init container", pod.Status.InitContainerStatuses) {
		describe("container", pod.Status.ContainerStatuses)
	}
	if len(parts) == 0 {
		return "no reason given"
	}
	return strings.Join(parts, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "no message"
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
