package gateway_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/gateway"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/store"
)

const testHistory = "s3://analytics/haul-history"

// retireJobA ends team-a's job, exports it and retires it from the live
// tables, as the history exporter and the retainer would.
func retireJobA(t *testing.T, e *authEnv) time.Time {
	t.Helper()
	ctx := context.Background()
	finished := time.Now().Add(-48 * time.Hour)
	err := e.st.Apply(ctx, &store.Batch{
		Tasks: []store.TaskUpdate{{JobID: e.jobA, Index: 0, State: store.TaskSucceeded, Attempts: 1, StartedAt: finished, FinishedAt: finished}},
		Jobs:  []store.JobUpdate{{ID: e.jobA, State: store.JobSucceeded, Counts: store.TaskCounts{Succeeded: 1}, StartedAt: finished, FinishedAt: finished}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, ok, err := e.st.ClaimExportBatch(ctx, 10, time.Time{})
	if err != nil || !ok {
		t.Fatalf("ClaimExportBatch = %v, %v", ok, err)
	}
	if err := e.st.FinishExportBatch(ctx, b.ID, nil); err != nil {
		t.Fatal(err)
	}
	ids, err := e.st.RetireJobs(ctx, time.Now().Add(-24*time.Hour), 10, testHistory)
	if err != nil || len(ids) != 1 || ids[0] != e.jobA {
		t.Fatalf("RetireJobs = %v, %v; want [%s]", ids, err, e.jobA)
	}
	return finished
}

func TestArchivedJob(t *testing.T) {
	e := newAuthEnv(t, gateway.Config{})
	finished := retireJobA(t, e)
	ctx := context.Background()
	today := time.Now().UTC().Format("2006-01-02")

	for _, role := range []string{"platform-admin", "viewer-a", "member-a"} {
		c := e.client(role)
		resp, err := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: e.jobA}))
		if err != nil {
			t.Fatalf("%s: GetJob(archived) = %v", role, err)
		}
		j := resp.Msg.Job
		if j.Id != e.jobA || j.State != "succeeded" || j.Namespace != "team-a" || j.Name != "confidential-a" || j.TaskCount != 1 ||
			j.Counts.GetSucceeded() != 1 || !j.FinishedAt.AsTime().Equal(finished.Truncate(time.Nanosecond).UTC()) ||
			j.Labels[gateway.ArchivedLabel] != today || j.Labels[gateway.HistoryLabel] != testHistory {
			t.Errorf("%s: GetJob(archived) = %v", role, j)
		}

		// Calls about its tasks say where they went.
		_, err = c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: e.jobA, Key: "work-a"}))
		checkArchived(t, role+": GetTask", err, e.jobA, today)
		_, err = c.ListTasks(ctx, connect.NewRequest(&apiv1.ListTasksRequest{JobId: e.jobA}))
		checkArchived(t, role+": ListTasks", err, e.jobA, today)
		stream, err := c.GetLogs(ctx, connect.NewRequest(&apiv1.GetLogsRequest{JobId: e.jobA, Key: "work-a"}))
		if err == nil {
			for stream.Receive() {
			}
			err = stream.Err()
		}
		checkArchived(t, role+": GetLogs", err, e.jobA, today)
	}

	// Another team's member learns nothing: the words of an unknown job.
	c := e.client("member-b")
	_, errArchived := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: e.jobA}))
	_, errUnknown := c.GetJob(ctx, connect.NewRequest(&apiv1.GetJobRequest{JobId: "1nosuchjob0000"}))
	if connect.CodeOf(errArchived) != connect.CodeNotFound || strings.Replace(errArchived.Error(), e.jobA, "ID", 1) != strings.Replace(errUnknown.Error(), "1nosuchjob0000", "ID", 1) {
		t.Errorf("member-b: GetJob(archived job of team-a) = %v; want what an unknown job gets (%v)", errArchived, errUnknown)
	}
	_, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: e.jobA, Key: "work-a"}))
	if connect.CodeOf(err) != connect.CodeNotFound || strings.Contains(err.Error(), "history") {
		t.Errorf("member-b: GetTask(archived job of team-a) = %v; want not_found", err)
	}
	// Team-b's live job is untouched.
	if _, err := c.GetTask(ctx, connect.NewRequest(&apiv1.GetTaskRequest{JobId: e.jobB, Key: "work-b"})); err != nil {
		t.Errorf("member-b: GetTask(live job) = %v", err)
	}
}

func checkArchived(t *testing.T, what string, err error, id, day string) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeFailedPrecondition {
		t.Errorf("%s = %v; want failed_precondition", what, err)
		return
	}
	for _, want := range []string{"archived on " + day, testHistory, `haul query --from ` + testHistory + ` "SELECT * FROM tasks WHERE job_id = '` + id + `'"`} {
		if !strings.Contains(ce.Message(), want) {
			t.Errorf("%s = %q; want it to say %q", what, ce.Message(), want)
		}
	}
}
