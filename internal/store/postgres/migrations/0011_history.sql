-- The history export (package history): batches of finished jobs written
-- to Parquet files named after the batch, and each job's batch.

-- One row per batch; id counts up and is never reused. state is 'writing'
-- until every file of the batch is written, then 'done'. row_counts holds
-- the rows written per table, set when the batch is done.
CREATE TABLE exports (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state       text   NOT NULL,
    created_at  bigint NOT NULL,
    finished_at bigint,
    job_count   bigint NOT NULL,
    row_counts  jsonb  NOT NULL DEFAULT '{}'
);
CREATE INDEX exports_writing ON exports (id) WHERE state = 'writing';

-- The batch that holds the job; NULL while it is not exported.
ALTER TABLE jobs ADD COLUMN export_batch bigint;
-- Finished jobs not yet exported, in export order (finish time, then ID).
CREATE INDEX jobs_unexported ON jobs (finished_at NULLS FIRST, id)
    WHERE export_batch IS NULL AND state IN ('succeeded', 'failed', 'cancelled');
-- The jobs of a batch.
CREATE INDEX jobs_export_batch ON jobs (export_batch, finished_at NULLS FIRST, id) WHERE export_batch IS NOT NULL;
