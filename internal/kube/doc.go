// Package kube is haul's Kubernetes worker backend: it runs each worker as a
// pod in one of several clusters, through client-go.
//
// A worker pod installs the taskhost at run time: an init container
// (install-taskhost, the small image Config.TaskhostImage built FROM scratch)
// runs `/haul-taskhost --install /haul/bin/haul-taskhost`, which copies the
// static binary into the emptyDir haul-bin; the main container (worker) runs
// the job's own image, distroless included, with /haul/bin/haul-taskhost as
// its command and its settings in HAUL_* environment variables. Requests
// equal limits (the tier's CPU, memory and GPUs), so pods get the Guaranteed
// QoS class and the kernel enforces the tier's memory.
//
// StartWorker never waits on an API server: it picks the least-loaded
// enabled cluster and queues the pod; each cluster has a creation loop that
// lets pods through a token bucket (Config.PodCreateQPS, PodCreateBurst) to
// a few goroutines that create them, retrying 429s, 5xx and timeouts with
// backoff. Pods are watched, never polled: one shared informer per cluster,
// filtered to the backend's namespace and its own instance label, turns pod
// changes into the runner's callbacks (Config.Gone, Config.OOMKilled), once
// per worker, and deletes every pod that has finished.
//
// Kubernetes objects the backend needs in each cluster: the namespace (it
// does not create it), and for its service account, pods: create, get, list,
// watch, delete; nodes: get, list, watch when Config.WatchNodes is set.
//
// It imports the runner's Backend contract, the store's tier and template
// types, client-go, and gopkg.in/yaml.v3 for the clusters file.
package kube
