package chaos

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
)

// TestLogsThroughGateways reads a task's log through the production
// topology (gateways behind a proxy, runners elsewhere): while the task
// runs, the gateway asks the runner that owns the job for its live copy
// (RunnerService.Live); once it ended, the gateway reads the archived
// entry. Both are the task's output byte for byte.
func TestLogsThroughGateways(t *testing.T) {
	h := setup(t, 4*time.Second, 4)
	ctx := t.Context()
	api := apiClient(h.proxy.url(), h.token)
	script := fmt.Sprintf(`i=0; while [ $i -lt 100 ]; do echo "before $i"; i=$((i+1)); done; %s; echo after`, waitGate(h.gates, 7))
	resp, err := api.SubmitJob(ctx, connect.NewRequest(&apiv1.SubmitJobRequest{Filename: "logs.yaml",
		Spec: []byte(fmt.Sprintf("name: logs\ntasks:\n  - key: talk\n    command: [sh, -c, %q]\n", script))}))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Msg.JobId
	var before strings.Builder
	for i := range 100 {
		fmt.Fprintf(&before, "before %d\n", i)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := readLog(ctx, api, id, "talk")
		if err == nil && out == before.String() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the running task's output through a gateway: %q, %v", out, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := openGate(h.gates, 7); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(2 * time.Minute)
	for {
		j, err := api.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: id}))
		if err == nil && j.Msg.Job.State == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job did not succeed: %v %v", j, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := readLog(ctx, api, id, "talk"); err != nil || out != before.String()+"after\n" {
		t.Fatalf("the ended task's log: %q, %v", out, err)
	}
}

func readLog(ctx context.Context, api apiv1connect.JobServiceClient, job, key string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := api.GetLogs(cctx, connect.NewRequest(&apiv1.GetLogsRequest{JobId: job, Key: key}))
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for st.Receive() {
		for _, c := range st.Msg().Chunks {
			out.Write(c.Data)
		}
	}
	return out.String(), st.Err()
}
