package metrics

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// API counts and times the calls a Connect handler serves:
//
//	haul_api_requests_total{service,method,code}  counter
//	haul_api_request_seconds{service,method}      histogram
//
// service is the protobuf service's full name (haul.api.v1.JobService),
// method the procedure's last path element (SubmitJob), code the Connect
// status code's name ("ok" for success, "unauthenticated", "internal", …).
// For a server stream (GetLogs) the time is the whole stream's.
type API struct {
	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

// apiSecondsBuckets reach from a cached read (1 ms) to a long log stream
// (5 min).
var apiSecondsBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

func newAPI() *API {
	return &API{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "haul_api_requests_total",
			Help: "API calls served, by service, method and Connect status code (ok on success).",
		}, []string{"service", "method", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "haul_api_request_seconds",
			Help:    "Time to serve an API call (a server stream: until it ends), by service and method.",
			Buckets: apiSecondsBuckets,
		}, []string{"service", "method"}),
	}
}

// procedure is the labels of one procedure.
type procedure struct{ service, method string }

var otherProcedure = procedure{service: other, method: other}

// Interceptor returns a Connect interceptor that records every call a
// handler serves, unary or streaming. It knows the procedures of every
// service declared in files (the generated File_… descriptors); a call of
// any other procedure is recorded with service and method "other", so that
// the number of series stays bounded whatever the handler is given.
//
// Install it first (outermost) in connect.WithInterceptors, before the
// authentication interceptor, so that calls refused there are counted
// under their code (unauthenticated, permission_denied, unavailable).
// Client-side calls pass through unrecorded. On a nil API the interceptor
// records nothing.
func (a *API) Interceptor(files ...protoreflect.FileDescriptor) connect.Interceptor {
	known := map[string]procedure{}
	for _, f := range files {
		services := f.Services()
		for i := range services.Len() {
			sd := services.Get(i)
			methods := sd.Methods()
			for j := range methods.Len() {
				md := methods.Get(j)
				known["/"+string(sd.FullName())+"/"+string(md.Name())] = procedure{service: string(sd.FullName()), method: string(md.Name())}
			}
		}
	}
	return &apiInterceptor{api: a, known: known}
}

type apiInterceptor struct {
	api   *API
	known map[string]procedure // read-only after construction
}

func (i *apiInterceptor) labels(proc string) procedure {
	if p, ok := i.known[proc]; ok {
		return p
	}
	return otherProcedure
}

// record counts one call of proc that took d and ended with err.
func (i *apiInterceptor) record(proc string, d time.Duration, err error) {
	p := i.labels(proc)
	i.api.requests.WithLabelValues(p.service, p.method, codeOf(err)).Inc()
	i.api.seconds.WithLabelValues(p.service, p.method).Observe(d.Seconds())
}

// codeOf is the name of the Connect code a handler's error is answered
// with: connect turns a bare context error into canceled or
// deadline_exceeded and any other non-Connect error into unknown.
func codeOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, new(*connect.Error)):
		return connect.CodeOf(err).String()
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled.String()
	case errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded.String()
	}
	return connect.CodeUnknown.String()
}

func (i *apiInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	if i.api == nil {
		return next
	}
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			return next(ctx, req)
		}
		start := time.Now()
		resp, err := next(ctx, req)
		i.record(req.Spec().Procedure, time.Since(start), err)
		return resp, err
	}
}

func (i *apiInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i *apiInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	if i.api == nil {
		return next
	}
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		i.record(conn.Spec().Procedure, time.Since(start), err)
		return err
	}
}
