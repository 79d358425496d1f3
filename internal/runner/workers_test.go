package runner_test

import (
	"context"
	"testing"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// TestWorkerRecords: every worker a job used has a record in the store,
// ended with its reason, and the attempts they ran add up to the job's.
func TestWorkerRecords(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, `
name: records
tasks:
  - key: "t-{i}"
    foreach: {range: [0, 30]}
    command: [sh, -c, 'echo {i}']
`)
	if j := b.waitDone(t, id); j.State != store.JobSucceeded {
		t.Fatalf("job %s", j.State)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ws, err := b.st.ListWorkers(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		var attempts int64
		ended := 0
		for _, w := range ws {
			attempts += w.Attempts
			if !w.EndedAt.IsZero() && w.EndReason != "" && !w.StartedAt.IsZero() && w.Team == "default" {
				ended++
			}
		}
		if len(ws) > 0 && ended == len(ws) && attempts == 30 {
			t.Logf("%d workers ran 30 attempts: %+v", len(ws), ws[0])
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker records %+v: want every worker ended, 30 attempts in all", ws)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
