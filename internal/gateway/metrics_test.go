package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/gateway"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/metrics"
)

// With Config.Metrics the gateway's interceptor counts every call under
// the code it was answered with, calls its authentication refused and
// calls its authorization denied included.
func TestInterceptorCountsRefusedCalls(t *testing.T) {
	t.Parallel()
	reg := metrics.NewRegistry()
	e := newAuthEnv(t, gateway.Config{Metrics: reg.API()})
	ctx := context.Background()
	e.tokens["garbage"] = "let-me-in"

	for _, c := range []struct {
		role   string
		cancel bool // CancelJob instead of GetJob
		want   connect.Code
	}{
		{"viewer-a", false, 0},
		{"anonymous", false, connect.CodeUnauthenticated},
		{"garbage", false, connect.CodeUnauthenticated},
		{"viewer-a", true, connect.CodePermissionDenied},
	} {
		var err error
		if c.cancel {
			_, err = e.client(c.role).CancelJob(ctx, connect.NewRequest(&apiv1.CancelJobRequest{JobId: e.jobA}))
		} else {
			_, err = e.client(c.role).GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: e.jobA}))
		}
		if (c.want == 0 && err != nil) || (c.want != 0 && connect.CodeOf(err) != c.want) {
			t.Fatalf("%s (cancel %v): %v, want code %v", c.role, c.cancel, err, c.want)
		}
	}

	rec := httptest.NewRecorder()
	reg.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	lines := map[string]bool{}
	for l := range strings.SplitSeq(rec.Body.String(), "\n") {
		lines[l] = true
	}
	const svc = `service="haul.api.v1.JobService"`
	for _, want := range []string{
		`haul_api_requests_total{code="ok",method="GetJob",` + svc + `} 1`,
		`haul_api_requests_total{code="unauthenticated",method="GetJob",` + svc + `} 2`,
		`haul_api_requests_total{code="permission_denied",method="CancelJob",` + svc + `} 1`,
		`haul_api_request_seconds_count{method="GetJob",` + svc + `} 3`,
	} {
		if !lines[want] {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", rec.Body)
	}
}
