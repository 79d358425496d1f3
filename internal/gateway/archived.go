package gateway

// Retired jobs (package retention): a finished job whose rows the history
// export holds may leave the live tables, keeping one row in job_archive.
// Asking for such a job still answers:
//
//   - GetJob answers from the archive row: the Job message with the
//     fields the archive keeps (id, name, team, labels, state, task count
//     and counts, times, worker seconds, cost, submitted by), labelled
//     ArchivedLabel (the day it was archived) and HistoryLabel (where its
//     history is). The API's Job has no field that says a job is archived;
//     the labels carry it until one is added.
//   - Every call about the job's tasks (ListTasks, GetTask, GetLogs,
//     CancelTask, Why) and CancelJob fail with failed_precondition, saying
//     when the job was archived, where its history is, and the `haul
//     query` that reads its tasks from there.
//
// Both are decided by the same team-visibility rule as a live job: a
// caller who may not see the job's team is told the job does not exist.

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"connectrpc.com/connect"

	"github.com/haul-dev/haul/internal/auth"
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/store"
)

// Labels GetJob adds to an archived job.
const (
	// ArchivedLabel holds the day the job left the live store (UTC,
	// YYYY-MM-DD).
	ArchivedLabel = "haul.dev/archived"
	// HistoryLabel holds where the job's history is (the history export's
	// location, as `haul query --from` takes it); absent when the
	// retainer was not told.
	HistoryLabel = "haul.dev/history"
)

// ArchivedError is the error (under the connect error) of a call about a
// retired job: Job is its archive row.
type ArchivedError struct {
	Job *store.ArchivedJob
}

func (e *ArchivedError) Error() string {
	a := e.Job
	msg := fmt.Sprintf("job %s was archived on %s after its export (history batch %d): its tasks, attempts and logs are no longer in the live store",
		a.ID, a.ArchivedAt.UTC().Format("2006-01-02"), a.ExportBatch)
	if a.History == "" {
		return msg + "; they are in the history export (ask an operator where it is), readable with " + queryHint("HISTORY", a.ID)
	}
	return fmt.Sprintf("%s; its history is at %s, readable with %s", msg, a.History, queryHint(a.History, a.ID))
}

func queryHint(from, id string) string {
	return fmt.Sprintf(`haul query --from %s "SELECT * FROM tasks WHERE job_id = '%s'"`, from, id)
}

// archivedOf returns the archive row an error of job carries, or nil.
func archivedOf(err error) *store.ArchivedJob {
	var ae *ArchivedError
	if errors.As(err, &ae) {
		return ae.Job
	}
	return nil
}

// archivedJob is job's answer for an ID the live store does not hold: nil
// when the archive has no such job either (the caller answers not_found),
// else the error to answer: not_found for a caller who may not see the
// job's team (authorizeJob's rule), failed_precondition wrapping an
// ArchivedError otherwise.
func (g *Gateway) archivedJob(ctx context.Context, id string) error {
	a, err := g.cfg.Store.GetArchivedJob(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return storeError(err, "job", id)
	}
	if err := g.authorizeJob(ctx, auth.ReadJob, &store.Job{ID: a.ID, Namespace: a.Namespace}); err != nil {
		return err
	}
	return connect.NewError(connect.CodeFailedPrecondition, &ArchivedError{Job: a})
}

// ArchivedJobProto converts an archive row to the API's Job, labelled as
// archived (ArchivedLabel, HistoryLabel).
func ArchivedJobProto(a *store.ArchivedJob) *apiv1.Job {
	labels := make(map[string]string, len(a.Labels)+2)
	maps.Copy(labels, a.Labels)
	labels[ArchivedLabel] = a.ArchivedAt.UTC().Format("2006-01-02")
	if a.History != "" {
		labels[HistoryLabel] = a.History
	}
	return &apiv1.Job{
		Id: a.ID, Name: a.Name, Namespace: a.Namespace, Labels: labels, State: string(a.State),
		TaskCount: a.TaskCount, WorkerSeconds: a.WorkerSeconds, EstimatedCostUsd: a.CostUSD,
		SubmittedBy: a.SubmittedBy,
		CreatedAt:   ts(a.CreatedAt), StartedAt: ts(a.StartedAt), FinishedAt: ts(a.FinishedAt),
		Counts: countsProto(a.Counts),
	}
}
