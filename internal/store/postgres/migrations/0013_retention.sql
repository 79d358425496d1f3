-- Retention (package retention): finished jobs whose rows the history
-- export holds leave the live tables; one summary row per job stays here,
-- so that asking for the job still answers and says where its history is.
-- A job with both a jobs row and a job_archive row is being retired (the
-- archive row is written first, then the job's rows are deleted in bounded
-- batches, then the jobs row): the next retirement pass finishes it.
CREATE TABLE job_archive (
    id                    text COLLATE "C" PRIMARY KEY,
    name                  text             NOT NULL,
    namespace             text             NOT NULL,
    labels                jsonb            NOT NULL,
    state                 text             NOT NULL,
    task_count            bigint           NOT NULL,
    count_blocked         bigint           NOT NULL,
    count_queued          bigint           NOT NULL,
    count_running         bigint           NOT NULL,
    count_succeeded       bigint           NOT NULL,
    count_failed          bigint           NOT NULL,
    count_upstream_failed bigint           NOT NULL,
    count_cancelled       bigint           NOT NULL,
    cost_usd              double precision NOT NULL,
    worker_seconds        double precision NOT NULL,
    created_at            bigint, -- Unix nanoseconds; NULL is the zero time
    started_at            bigint,
    finished_at           bigint,
    submitted_by          text             NOT NULL,
    export_batch          bigint           NOT NULL,
    archived_at           bigint           NOT NULL,
    history               text             NOT NULL, -- where the history export lives
    retired_at            bigint                     -- NULL while the job is being retired
);

-- ListArchivedJobs by namespace, newest (greatest ID) first.
CREATE INDEX job_archive_namespace_id ON job_archive (namespace, id);
-- Jobs still being retired, which the next pass finishes first.
CREATE INDEX job_archive_retiring ON job_archive (id) WHERE retired_at IS NULL;
