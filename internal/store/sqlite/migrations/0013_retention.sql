-- Retention (package retention): finished jobs whose rows the history
-- export holds leave the live tables; one summary row per job stays here,
-- so that asking for the job still answers and says where its history is.
-- A job with both a jobs row and a job_archive row is being retired (the
-- archive row is written first, then the job's rows are deleted in bounded
-- batches, then the jobs row): the next retirement pass finishes it.
CREATE TABLE job_archive (
    id                    TEXT    NOT NULL PRIMARY KEY,
    name                  TEXT    NOT NULL,
    namespace             TEXT    NOT NULL,
    labels                TEXT    NOT NULL, -- JSON object
    state                 TEXT    NOT NULL,
    task_count            INTEGER NOT NULL,
    count_blocked         INTEGER NOT NULL,
    count_queued          INTEGER NOT NULL,
    count_running         INTEGER NOT NULL,
    count_succeeded       INTEGER NOT NULL,
    count_failed          INTEGER NOT NULL,
    count_upstream_failed INTEGER NOT NULL,
    count_cancelled       INTEGER NOT NULL,
    cost_usd              REAL    NOT NULL,
    worker_seconds        REAL    NOT NULL,
    created_at            INTEGER, -- Unix nanoseconds; NULL is the zero time
    started_at            INTEGER,
    finished_at           INTEGER,
    submitted_by          TEXT    NOT NULL,
    export_batch          INTEGER NOT NULL,
    archived_at           INTEGER NOT NULL,
    history               TEXT    NOT NULL, -- where the history export lives
    retired_at            INTEGER           -- NULL while the job is being retired
) STRICT;

-- ListArchivedJobs by namespace, newest (greatest ID) first.
CREATE INDEX job_archive_namespace_id ON job_archive (namespace, id);
-- Jobs still being retired, which the next pass finishes first.
CREATE INDEX job_archive_retiring ON job_archive (id) WHERE retired_at IS NULL;
