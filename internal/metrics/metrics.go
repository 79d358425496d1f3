// Package metrics is what every haul service exports on /metrics: a
// Registry of its own (never the process-wide default, so tests and
// several services in one process do not collide), the Go runtime and
// process collectors, and typed metric sets with small methods that the
// services call: API (calls by service, method and status code, recorded by
// a Connect interceptor) and Runner (dispatch and commit latency, batch
// sizes, shard ownership, lease renewals, workers and tasks by state,
// attempt outcomes).
//
// Every label takes its values from a fixed list (the procedures a handler
// serves, the task states, the attempt outcomes, the 32 shards); anything
// else is recorded as "other". There are no per-job or per-task labels and
// no exemplars: a deployment runs thousands of jobs and millions of tasks,
// each would be a series that Prometheus keeps for hours after the job is
// gone, and an exemplar carrying a job ID would tie a scrape's size to the
// traffic. Per-job figures are in the store (GetJob, ListTasks); metrics
// answer "is the service healthy", not "where is my job".
//
// A nil *Registry, *API or *Runner does nothing when called, so tests and
// callers that run without metrics pass nil instead of checking.
//
// It imports the Prometheus client, Connect, protobuf reflection and the
// store (for its task states and sentinel errors), never a service package.
package metrics

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// other is the label value recorded for a value outside a label's list.
const other = "other"

// Registry holds one service's (or one process's) metrics and serves them.
// The metric sets are created on first use and shared after that: in
// `haul up`, where the gateway and the runner share a process, both get the
// same API set.
type Registry struct {
	reg *prometheus.Registry

	apiOnce sync.Once
	api     *API

	runnerOnce sync.Once
	runner     *Runner
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors (go_*, process_*).
func NewRegistry() *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return &Registry{reg: reg}
}

// Handler serves the registry in the Prometheus text format (or
// OpenMetrics when the scraper asks for it), for /metrics. A metric that
// fails to collect is left out and counted in
// promhttp_metric_handler_errors_total rather than failing the whole
// scrape. On a nil Registry it answers 404.
func (r *Registry) Handler() http.Handler {
	if r == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "metrics are not enabled on this server", http.StatusNotFound)
		})
	}
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          r.reg,
		EnableOpenMetrics: true,
	})
}

// API returns the registry's API metric set (nil on a nil Registry).
func (r *Registry) API() *API {
	if r == nil {
		return nil
	}
	r.apiOnce.Do(func() {
		r.api = newAPI()
		r.reg.MustRegister(r.api.requests, r.api.seconds)
	})
	return r.api
}

// Runner returns the registry's runner metric set (nil on a nil Registry).
func (r *Registry) Runner() *Runner {
	if r == nil {
		return nil
	}
	r.runnerOnce.Do(func() {
		r.runner = newRunner()
		r.reg.MustRegister(r.runner.collectors()...)
	})
	return r.runner
}

// labelSet is a fixed list of label values with a lookup that maps
// anything else to "other".
type labelSet struct {
	values []string // in the order given, to create their series up front
	known  map[string]struct{}
}

func newLabelSet(values ...string) labelSet {
	s := labelSet{values: values, known: make(map[string]struct{}, len(values))}
	for _, v := range values {
		s.known[v] = struct{}{}
	}
	return s
}

// of returns v when it is in the list, else "other".
func (s labelSet) of(v string) string {
	if _, ok := s.known[v]; ok {
		return v
	}
	return other
}
