package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/storesql"
)

// errMissingRows aborts a batch whose updates matched fewer rows than they
// name; Apply then finds which row is missing.
var errMissingRows = errors.New("a row of the batch does not exist")

// Apply writes a batch in one transaction: one UPDATE ... FROM unnest(...)
// for the tasks, one INSERT ... SELECT FROM unnest(...) ON CONFLICT for the
// attempts and one UPDATE for the jobs, sent together in a pipeline. A
// task, attempt's task or job that does not exist fails the whole batch
// with an error wrapping store.ErrNotFound and store.ErrRejected; so does a
// value PostgreSQL refuses (SQLSTATE classes 22 and 23: store.ErrRejected);
// nothing of a failed batch is written. With b.Fence set, the transaction
// starts with a read of the lease (locking its row until the transaction
// ends): a batch of a writer that no longer holds it writes nothing and
// fails with an error wrapping store.ErrFenced. When a batch holds two
// changes of one row, the later one wins.
func (s *Store) Apply(ctx context.Context, b *store.Batch) error {
	if b == nil || b.Empty() {
		return nil
	}
	if err := storesql.CheckBatch(b); err != nil {
		return err
	}
	tasks, attempts, jobs := lastTaskUpdates(b.Tasks), lastAttempts(b.Attempts), lastJobUpdates(b.Jobs)
	attemptArgs, err := attemptColumnsOf(attempts)
	if err != nil {
		return err
	}

	err = s.pool.withTx(ctx, func(tx pgx.Tx) error {
		// The lease first, in a round trip of its own: a writer that lost it
		// touches no row (nor waits on the locks of its successor's writes).
		if err := checkFence(ctx, tx, b.Fence); err != nil {
			return err
		}
		var batch pgx.Batch
		for _, r := range b.Queued {
			batch.Queue(qQueueRange, r.JobID, r.First, r.End)
		}
		if len(tasks) > 0 {
			batch.Queue(qUpdateTasks, taskUpdateColumns(tasks)...)
		}
		if len(attempts) > 0 {
			batch.Queue(qUpsertAttempts, attemptArgs...)
		}
		if len(jobs) > 0 {
			batch.Queue(qUpdateJobs, jobUpdateColumns(jobs)...)
		}
		br := tx.SendBatch(ctx, &batch)
		missing := false
		for _, r := range b.Queued {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			missing = missing || tag.RowsAffected() != int64(r.End-r.First)
		}
		if len(tasks) > 0 {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			missing = missing || tag.RowsAffected() != int64(len(tasks))
		}
		if len(attempts) > 0 {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return err
			}
		}
		jobsShort := false
		if len(jobs) > 0 {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			jobsShort = tag.RowsAffected() != int64(len(jobs))
		}
		if err := br.Close(); err != nil {
			return err
		}
		if jobsShort && !missing {
			// Updates from a run before a retry (JobUpdate.Run) are
			// skipped; only a job that does not exist is missing.
			ids := make([]string, len(jobs))
			for i, u := range jobs {
				ids[i] = u.ID
			}
			var id string
			switch err := tx.QueryRow(ctx, qFirstMissingJob, ids).Scan(&id); {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				return err
			default:
				missing = true
			}
		}
		if missing {
			return errMissingRows
		}
		return nil
	})
	if err == nil {
		return nil
	}
	if errors.Is(err, errMissingRows) || pgCode(err) == foreignKeyViolation {
		// Rolled back; name the first missing row, checking in the order
		// the sqlite driver writes (tasks, attempts, jobs).
		if nf := s.findMissing(ctx, b.Queued, tasks, attempts, jobs); nf != nil {
			return storesql.Reject(nf)
		}
	}
	return fmt.Errorf("apply batch: %w", classify(err))
}

// findMissing returns an error wrapping store.ErrNotFound for the first row
// of the batch that does not exist, or nil if it cannot find one.
func (s *Store) findMissing(ctx context.Context, ranges []store.QueuedRange, tasks []store.TaskUpdate, attempts []store.Attempt, jobs []store.JobUpdate) error {
	var found error
	_ = s.pool.withConn(ctx, func(c *pgx.Conn) error {
		for _, r := range ranges {
			var n int64
			if err := c.QueryRow(ctx, qCountRange, r.JobID, r.First, r.End).Scan(&n); err == nil && n != int64(r.End-r.First) {
				found = fmt.Errorf("apply batch: queued tasks %d..%d of job %s: %d of them: %w", r.First, r.End-1, r.JobID, n, store.ErrNotFound)
				return nil
			}
		}
		firstMissingTask := func(jobIDs []string, idxs []int32) (int, bool) {
			var id string
			var idx int32
			err := c.QueryRow(ctx, qFirstMissingTask, jobIDs, idxs).Scan(&id, &idx)
			if err != nil {
				return 0, false
			}
			for i := range jobIDs {
				if jobIDs[i] == id && idxs[i] == idx {
					return i, true
				}
			}
			return 0, false
		}
		if len(tasks) > 0 {
			ids, idxs := make([]string, len(tasks)), make([]int32, len(tasks))
			for i, u := range tasks {
				ids[i], idxs[i] = u.JobID, u.Index
			}
			if i, ok := firstMissingTask(ids, idxs); ok {
				found = fmt.Errorf("apply batch: task %d of job %s: %w", idxs[i], ids[i], store.ErrNotFound)
				return nil
			}
		}
		if len(attempts) > 0 {
			ids, idxs := make([]string, len(attempts)), make([]int32, len(attempts))
			for i, a := range attempts {
				ids[i], idxs[i] = a.JobID, a.TaskIndex
			}
			if i, ok := firstMissingTask(ids, idxs); ok {
				a := attempts[i]
				found = fmt.Errorf("apply batch: attempt %d of task %d of job %s: %w", a.Number, a.TaskIndex, a.JobID, store.ErrNotFound)
				return nil
			}
		}
		if len(jobs) > 0 {
			ids := make([]string, len(jobs))
			for i, u := range jobs {
				ids[i] = u.ID
			}
			var id string
			if err := c.QueryRow(ctx, qFirstMissingJob, ids).Scan(&id); err == nil {
				found = fmt.Errorf("apply batch: job %s: %w", id, store.ErrNotFound)
			}
		}
		return nil
	})
	return found
}

// lastTaskUpdates drops all but the last update of each task: one
// statement cannot update a row twice.
func lastTaskUpdates(us []store.TaskUpdate) []store.TaskUpdate {
	type key struct {
		job string
		idx int32
	}
	at := make(map[key]int, len(us))
	out := make([]store.TaskUpdate, 0, len(us))
	for _, u := range us {
		k := key{u.JobID, u.Index}
		if i, ok := at[k]; ok {
			out[i] = u
			continue
		}
		at[k] = len(out)
		out = append(out, u)
	}
	return out
}

// lastAttempts drops all but the last version of each attempt: ON
// CONFLICT DO UPDATE cannot touch a row twice in one statement.
func lastAttempts(as []store.Attempt) []store.Attempt {
	type key struct {
		job     string
		idx, no int32
	}
	at := make(map[key]int, len(as))
	out := make([]store.Attempt, 0, len(as))
	for _, a := range as {
		k := key{a.JobID, a.TaskIndex, a.Number}
		if i, ok := at[k]; ok {
			out[i] = a
			continue
		}
		at[k] = len(out)
		out = append(out, a)
	}
	return out
}

// lastJobUpdates drops all but the last update of each job.
func lastJobUpdates(us []store.JobUpdate) []store.JobUpdate {
	at := make(map[string]int, len(us))
	out := make([]store.JobUpdate, 0, len(us))
	for _, u := range us {
		if i, ok := at[u.ID]; ok {
			out[i] = u
			continue
		}
		at[u.ID] = len(out)
		out = append(out, u)
	}
	return out
}

// taskUpdateColumns returns the arguments of qUpdateTasks.
func taskUpdateColumns(us []store.TaskUpdate) []any {
	n := len(us)
	var (
		jobIDs, states, reasons = make([]string, n), make([]string, n), make([]string, n)
		idxs, attempts, exits   = make([]int32, n), make([]int32, n), make([]int32, n)
		runTiers                = make([]int32, n)
		starts, finishes        = make([]*int64, n), make([]*int64, n)
		durations, peaks        = make([]*int64, n), make([]*int64, n)
	)
	for i := range us {
		u := &us[i]
		jobIDs[i], idxs[i], states[i], attempts[i], exits[i], reasons[i] = u.JobID, u.Index, string(u.State), u.Attempts, u.ExitCode, u.Reason
		starts[i], finishes[i], runTiers[i] = storesql.Nanos(u.StartedAt), storesql.Nanos(u.FinishedAt), u.RunTier
		durations[i], peaks[i] = storesql.TaskEnd(u)
	}
	return []any{jobIDs, idxs, states, attempts, exits, reasons, starts, finishes, runTiers, durations, peaks}
}

// attemptColumnsOf returns the arguments of qUpsertAttempts.
func attemptColumnsOf(as []store.Attempt) ([]any, error) {
	n := len(as)
	var (
		jobIDs, workers, states, reasons, messages = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		idxs, numbers, tiers, exits, signals       = make([]int32, n), make([]int32, n), make([]int32, n), make([]int32, n), make([]int32, n)
		starts, finishes                           = make([]*int64, n), make([]*int64, n)
		enforcements, gpus, gpuNotes               = make([]string, n), make([]string, n), make([]string, n)
		cpuUser, cpuSystem                         = make([]float64, n), make([]float64, n)
		peakRSS, avgRSS                            = make([]int64, n), make([]int64, n)
	)
	for i := range as {
		a := &as[i]
		jobIDs[i], idxs[i], numbers[i], tiers[i], workers[i], states[i] = a.JobID, a.TaskIndex, a.Number, a.Tier, a.WorkerID, string(a.State)
		exits[i], signals[i], reasons[i], messages[i] = a.ExitCode, a.Signal, a.Reason, a.Message
		starts[i], finishes[i] = storesql.Nanos(a.StartedAt), storesql.Nanos(a.FinishedAt)
		u := &a.Usage
		enforcements[i], cpuUser[i], cpuSystem[i], peakRSS[i], avgRSS[i], gpuNotes[i] = a.Enforcement, u.CPUUserSeconds, u.CPUSystemSeconds, u.PeakRSSBytes, u.AvgRSSBytes, u.GPUNote
		b, err := storesql.EncodeGPUs(u.GPUs)
		if err != nil {
			return nil, fmt.Errorf("apply batch: attempt %d of task %d of job %s: %w", a.Number, a.TaskIndex, a.JobID, err)
		}
		gpus[i] = string(b)
	}
	return []any{jobIDs, idxs, numbers, tiers, workers, states, exits, signals, reasons, messages, starts, finishes,
		enforcements, cpuUser, cpuSystem, peakRSS, avgRSS, gpus, gpuNotes}, nil
}

// jobUpdateColumns returns the arguments of qUpdateJobs.
func jobUpdateColumns(us []store.JobUpdate) []any {
	n := len(us)
	ids, states := make([]string, n), make([]string, n)
	var counts [7][]int64
	for c := range counts {
		counts[c] = make([]int64, n)
	}
	starts, finishes := make([]*int64, n), make([]*int64, n)
	workerSeconds, costs := make([]float64, n), make([]float64, n)
	memRequested, memUsed, cpuRequested, cpuUsed := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	peakRSS, ooms := make([]int64, n), make([]int64, n)
	runs := make([]int32, n)
	for i, u := range us {
		runs[i] = u.Run
		ids[i], states[i] = u.ID, string(u.State)
		workerSeconds[i], costs[i] = u.WorkerSeconds, u.CostUSD
		ju := &u.Usage
		memRequested[i], memUsed[i], cpuRequested[i], cpuUsed[i] = ju.MemoryRequestedByteSeconds, ju.MemoryUsedByteSeconds, ju.CPURequestedSeconds, ju.CPUUsedSeconds
		peakRSS[i], ooms[i] = ju.PeakRSSBytes, ju.OOMAttempts
		c := u.Counts
		for k, v := range []int64{c.Blocked, c.Queued, c.Running, c.Succeeded, c.Failed, c.UpstreamFailed, c.Cancelled} {
			counts[k][i] = v
		}
		starts[i], finishes[i] = storesql.Nanos(u.StartedAt), storesql.Nanos(u.FinishedAt)
	}
	return []any{ids, states, counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], counts[6], starts, finishes, workerSeconds, costs,
		memRequested, memUsed, cpuRequested, cpuUsed, peakRSS, ooms, runs}
}
