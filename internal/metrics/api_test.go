package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
	"github.com/haul-dev/haul/internal/metrics"
)

// jobs answers GetJob for job "ok" and not_found for any other; every
// other method is the generated unimplemented one (GetLogs, a server
// stream, among them).
type jobs struct {
	apiv1connect.UnimplementedJobServiceHandler
}

func (jobs) GetJob(_ context.Context, req *connect.Request[apiv1.GetJobRequest]) (*connect.Response[apiv1.GetJobResponse], error) {
	if req.Msg.JobId != "ok" {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("no such job"))
	}
	return connect.NewResponse(&apiv1.GetJobResponse{}), nil
}

// gate refuses any call without an X-Pass header, as the authentication
// interceptor refuses one without a credential.
type gate struct{}

func (gate) refuse(h http.Header) error {
	if h.Get("X-Pass") == "" {
		return connect.NewError(connect.CodeUnauthenticated, errors.New("no pass"))
	}
	return nil
}

func (g gate) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := g.refuse(req.Header()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (gate) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (g gate) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := g.refuse(conn.RequestHeader()); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

type bundle struct {
	reg    *metrics.Registry
	client apiv1connect.JobServiceClient
}

// setup serves the JobService through interceptor (and the gate behind
// it) over HTTP and returns a client for it.
func setup(t *testing.T, reg *metrics.Registry, interceptor connect.Interceptor) bundle {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(apiv1connect.NewJobServiceHandler(jobs{}, connect.WithInterceptors(interceptor, gate{})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return bundle{reg: reg, client: apiv1connect.NewJobServiceClient(srv.Client(), srv.URL)}
}

// getJob calls GetJob for id, with the gate's header when pass, and
// returns the call's code ("ok" on success).
func (b bundle) getJob(t *testing.T, id string, pass bool) string {
	t.Helper()
	req := connect.NewRequest(&apiv1.GetJobRequest{JobId: id})
	if pass {
		req.Header().Set("X-Pass", "yes")
	}
	_, err := b.client.GetJob(context.Background(), req)
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

// scrape returns the registry's /metrics text.
func scrape(t *testing.T, reg *metrics.Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics answered %d: %s", rec.Code, rec.Body)
	}
	body, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// requireLines fails unless every line is in the exposition text.
func requireLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	have := map[string]bool{}
	for l := range strings.SplitSeq(text, "\n") {
		have[l] = true
	}
	for _, l := range lines {
		if !have[l] {
			t.Errorf("/metrics lacks the line\n\t%s", l)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
}

func TestInterceptorCountsByProcedureAndCode(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry()
	b := setup(t, reg, reg.API().Interceptor(apiv1.File_haul_api_v1_api_proto))

	for _, c := range []struct {
		id   string
		pass bool
		want string
	}{
		{"ok", true, "ok"},
		{"ok", true, "ok"},
		{"missing", true, "not_found"},
		{"ok", false, "unauthenticated"}, // refused by the gate behind the metrics
	} {
		if got := b.getJob(t, c.id, c.pass); got != c.want {
			t.Fatalf("GetJob(%s, pass %v): %s, want %s", c.id, c.pass, got, c.want)
		}
	}
	// A server stream, answered unimplemented by the generated handler.
	req := connect.NewRequest(&apiv1.GetLogsRequest{JobId: "ok"})
	req.Header().Set("X-Pass", "yes")
	stream, err := b.client.GetLogs(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	for stream.Receive() {
	}
	if got := connect.CodeOf(stream.Err()); got != connect.CodeUnimplemented {
		t.Fatalf("GetLogs: %v, want unimplemented", stream.Err())
	}
	stream.Close()

	const job = `service="haul.api.v1.JobService"`
	requireLines(t, scrape(t, reg),
		`haul_api_requests_total{code="ok",method="GetJob",`+job+`} 2`,
		`haul_api_requests_total{code="not_found",method="GetJob",`+job+`} 1`,
		`haul_api_requests_total{code="unauthenticated",method="GetJob",`+job+`} 1`,
		`haul_api_requests_total{code="unimplemented",method="GetLogs",`+job+`} 1`,
		`haul_api_request_seconds_count{method="GetJob",`+job+`} 4`,
		`haul_api_request_seconds_count{method="GetLogs",`+job+`} 1`,
		`# TYPE haul_api_request_seconds histogram`,
		`# TYPE haul_api_requests_total counter`,
	)
	if text := scrape(t, reg); !strings.Contains(text, "go_goroutines ") || !strings.Contains(text, "process_") {
		t.Errorf("/metrics lacks the Go or process collector:\n%s", text)
	}
}

// A procedure outside the services the interceptor was given is recorded
// as service and method "other", so a handler cannot grow the label set.
func TestInterceptorUnknownProcedureIsOther(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry()
	// The interceptor knows the AdminService only; it serves the JobService.
	b := setup(t, reg, reg.API().Interceptor(apiv1.File_haul_api_v1_admin_proto))
	if got := b.getJob(t, "ok", true); got != "ok" {
		t.Fatalf("GetJob: %s", got)
	}
	text := scrape(t, reg)
	requireLines(t, text,
		`haul_api_requests_total{code="ok",method="other",service="other"} 1`,
		`haul_api_request_seconds_count{method="other",service="other"} 1`,
	)
	if strings.Contains(text, "GetJob") || strings.Contains(text, "JobService") {
		t.Errorf("an unknown procedure's name reached a label:\n%s", text)
	}
}

// Without a registry nothing is recorded and calls still go through.
func TestNilRegistryRecordsNothing(t *testing.T) {
	t.Parallel()
	var reg *metrics.Registry
	if reg.API() != nil || reg.Runner() != nil {
		t.Fatal("a nil registry returned a metric set")
	}
	b := setup(t, reg, reg.API().Interceptor(apiv1.File_haul_api_v1_api_proto))
	if got := b.getJob(t, "ok", true); got != "ok" {
		t.Fatalf("GetJob through a nil API's interceptor: %s", got)
	}
	if got := b.getJob(t, "missing", true); got != "not_found" {
		t.Fatalf("GetJob through a nil API's interceptor: %s", got)
	}
	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("a nil registry's /metrics answered %d, want 404", rec.Code)
	}
}

// The registry hands out one API set however often it is asked (the
// gateway and the runner of `haul up` share it), and registering it twice
// would fail.
func TestRegistrySharesSets(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry()
	if reg.API() != reg.API() || reg.Runner() != reg.Runner() {
		t.Fatal("the registry made a second metric set")
	}
	scrape(t, reg)
}
