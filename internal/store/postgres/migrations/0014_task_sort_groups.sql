-- Task sorting and the job graph by group.
--
-- A task's last finished attempt's run time and peak memory, written by
-- Apply with the task's end (in the statement that ends it): duration_ms
-- is -1 until the task has ended having run, peak_rss 0. ListTasks sorts
-- ended tasks by them through the partial indexes below, which hold only
-- ended tasks: creating a job (every task at -1) writes no entry in them.
ALTER TABLE tasks ADD COLUMN duration_ms bigint NOT NULL DEFAULT -1;
ALTER TABLE tasks ADD COLUMN peak_rss bigint NOT NULL DEFAULT 0;

-- Tasks that ended before this migration: their run time from their
-- times, their peak memory from their last attempt.
UPDATE tasks t SET
    duration_ms = greatest(0, (t.finished_at - t.started_at) / 1000000),
    peak_rss = coalesce((SELECT a.peak_rss_bytes FROM attempts a
        WHERE a.job_id = t.job_id AND a.task_idx = t.idx AND a.number = t.attempts), 0)
WHERE t.state IN ('succeeded', 'failed', 'upstream_failed', 'cancelled')
  AND t.started_at IS NOT NULL AND t.finished_at IS NOT NULL;

-- ListTasks sorted by duration or peak memory (queries repeat the
-- predicate duration_ms >= 0 so that the planner can use these).
CREATE INDEX tasks_job_duration_idx ON tasks (job_id, duration_ms, idx) WHERE duration_ms >= 0;
CREATE INDEX tasks_job_peak_rss_idx ON tasks (job_id, peak_rss, idx) WHERE duration_ms >= 0;

-- The job's graph by group (store.Job.Groups), a JSON array of {name,
-- first, count, parents}; NULL for a job stored without one. Read only by
-- JobGroups.
ALTER TABLE jobs ADD COLUMN "groups" jsonb;
