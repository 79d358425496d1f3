package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/bearer"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
)

// TestOnePortThreeProtocols checks that the gateway answers gRPC (over
// HTTP/2 without TLS), gRPC-Web, the Connect protocol and plain JSON over
// HTTP/1.1 on the same address.
func TestOnePortThreeProtocols(t *testing.T) {
	t.Parallel()
	s := startUp(t, freePort(t), t.TempDir(), "")
	spec := []byte("name: proto\ntasks:\n  - {key: a, command: [\"true\"]}\n")
	ctx := context.Background()

	h2c := bearer.Client(&http.Client{Transport: &http.Transport{
		Protocols: func() *http.Protocols { p := new(http.Protocols); p.SetUnencryptedHTTP2(true); return p }(),
	}}, s.token)
	clients := map[string]apiv1connect.JobServiceClient{
		"grpc":     apiv1connect.NewJobServiceClient(h2c, s.url(), connect.WithGRPC()),
		"grpc-web": apiv1connect.NewJobServiceClient(s.httpClient(), s.url(), connect.WithGRPCWeb()),
		"connect":  apiv1connect.NewJobServiceClient(s.httpClient(), s.url()),
	}
	var id string
	for name, c := range clients {
		resp, err := c.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Spec: spec}))
		if err != nil {
			t.Fatalf("%s: SubmitJob: %v", name, err)
		}
		id = resp.Msg.JobId
		got, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
		if err != nil || got.Msg.Job.Id != id {
			t.Fatalf("%s: GetJob: %v %v", name, got, err)
		}
		if _, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: "nope"})); connect.CodeOf(err) != connect.CodeNotFound {
			t.Fatalf("%s: GetJob(unknown) = %v, want NotFound", name, err)
		}
	}

	// Plain JSON over HTTP/1.1, as curl would send it.
	resp, err := s.httpClient().Post(s.url()+"/haul.api.v1.JobService/GetJob", "application/json", strings.NewReader(`{"job_id":"`+id+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		Job struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"job"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &out) != nil || out.Job.ID != id {
		t.Fatalf("JSON GetJob: %d %s", resp.StatusCode, body)
	}
	// A bad spec is a clear InvalidArgument naming the problem.
	resp2, err := s.httpClient().Post(s.url()+"/haul.api.v1.JobService/SubmitJob", "application/json",
		strings.NewReader(`{"spec":"`+b64("name: x\ntasks:\n  - {key: a, command: []}\n")+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	body, _ = io.ReadAll(resp2.Body)
	if resp2.StatusCode != 400 || !strings.Contains(string(body), "invalid_argument") || !strings.Contains(string(body), "command") {
		t.Fatalf("bad spec over JSON: %d %s", resp2.StatusCode, body)
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
