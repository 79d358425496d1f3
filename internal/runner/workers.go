package runner

import (
	"context"
	"time"

	"github.com/haul-dev/haul/internal/store"
)

// Worker records.
//
// Each worker's history (its job, tier, cluster, start, end, why it ended
// and how many attempts it ran) goes to the store's workers table: once
// when the runner starts it, and again when it ends. Records are queued
// (bounded: a full queue drops records and says so) and written in
// batches by one goroutine, never under a shard's lock. An adopted
// worker's record keeps the start its first runner wrote.

// workerRecordQueue bounds the records waiting to be written.
const workerRecordQueue = 8192

// recordWorker queues a worker record; it never blocks.
func (r *Runner) recordWorker(rec store.WorkerRecord) {
	select {
	case r.workerRecs <- rec:
	default:
		r.log.Warn("worker records queue full; a record is dropped", "worker", rec.ID, "job", rec.JobID)
	}
}

// workerRecord is w's record as of now: ended when end is not zero.
func (s *shard) workerRecord(w *worker, end time.Time, why string) store.WorkerRecord {
	rec := store.WorkerRecord{ID: w.id, JobID: w.job, Tier: w.tier, Cluster: w.cluster, StartedAt: w.started,
		EndedAt: end, EndReason: why, Attempts: w.attempts}
	if jr := s.jobs[w.job]; jr != nil {
		rec.Team = jr.job.Namespace
	}
	return rec
}

// writeWorkerRecords writes queued records in batches until ctx ends, then
// what is queued, briefly.
func (r *Runner) writeWorkerRecords(ctx context.Context) {
	var batch []store.WorkerRecord
	flush := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		var err error
		for try := range 3 {
			if err = r.cfg.Store.PutWorkers(ctx, batch); err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
		}
		if err != nil {
			r.log.Warn("worker records not stored", "n", len(batch), "err", err)
		}
		batch = batch[:0]
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case rec := <-r.workerRecs:
			batch = append(batch, rec)
			if len(batch) >= 500 {
				flush(ctx)
			}
		case <-t.C:
			flush(ctx)
		case <-ctx.Done():
			for {
				select {
				case rec := <-r.workerRecs:
					batch = append(batch, rec)
					continue
				default:
				}
				break
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			flush(cctx)
			cancel()
			return
		}
	}
}
