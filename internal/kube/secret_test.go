package kube

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// refuseSecrets answers every Secret creation 403 Forbidden, as an API
// server does for a backend whose Role lacks secrets/create.
type refuseSecrets struct{ next http.RoundTripper }

func (f refuseSecrets) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/secrets") {
		return f.next.RoundTrip(r)
	}
	body := `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"secrets is forbidden: cannot create resource \"secrets\"","reason":"Forbidden","code":403}`
	return &http.Response{
		StatusCode: http.StatusForbidden, Status: "403 Forbidden", Request: r,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}, nil
}

// TestWorkerSecretRefused: a worker whose credential's Secret cannot be
// created cannot start: it is reported failed, naming the Secret, and its
// pod is deleted (not left waiting for a Secret that will not come).
func TestWorkerSecretRefused(t *testing.T) {
	t.Parallel()
	kc := sharedCluster(t)
	bn := setup(t, func(c *Config) {
		c.RESTConfig = func(ClusterConfig) (*rest.Config, error) {
			rc := kc.RESTConfig()
			rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return refuseSecrets{next: rt} })
			return rc, nil
		}
	})
	s := testSpec("no-secret")
	s.Secret = "the-worker-credential"
	if err := bn.b.StartWorker(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	e := bn.rec.wait(t, "no-secret")
	if !strings.Contains(e.why, "Secret could not be") || !strings.Contains(e.why, "forbidden") || strings.Contains(e.why, s.Secret) {
		t.Errorf("worker ended: %q; want the Secret named and the refusal, not the credential", e.why)
	}
	waitNoPod(t, bn.client, bn.ns, PodName("no-secret"))
	if n := bn.rec.count()["no-secret"]; n != 1 {
		t.Errorf("worker reported ended %d times, want once", n)
	}
	if st := bn.b.Stats()["test"]; st.CreateRetries != 0 {
		t.Errorf("stats %+v: a refused Secret is not retried", withoutTimes(st))
	}
}
