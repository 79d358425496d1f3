-- Memory tiers and usage: the tier each task runs on now, what each
-- attempt used, and each job's requested-versus-used totals. Adding a
-- column with a constant default rewrites no table.

-- A task starts on its first tier (tier) and moves up when it runs out of
-- memory; existing tasks run on their first tier (only those not on tier 0
-- need a new row version).
ALTER TABLE tasks ADD COLUMN run_tier integer NOT NULL DEFAULT 0;
UPDATE tasks SET run_tier = tier WHERE tier <> 0;

ALTER TABLE attempts
    -- How the tier's memory limit was enforced: cgroup-v1, cgroup-v2,
    -- rss-poll, none, or '' when the worker did not say.
    ADD COLUMN enforcement        text             NOT NULL DEFAULT '',
    ADD COLUMN cpu_user_seconds   double precision NOT NULL DEFAULT 0,
    ADD COLUMN cpu_system_seconds double precision NOT NULL DEFAULT 0,
    ADD COLUMN peak_rss_bytes     bigint           NOT NULL DEFAULT 0,
    ADD COLUMN avg_rss_bytes      bigint           NOT NULL DEFAULT 0,
    -- [{index, name, peak_memory_bytes, avg_utilization_percent}]; '[]'
    -- when the attempt used no GPU.
    ADD COLUMN gpus               jsonb            NOT NULL DEFAULT '[]',
    ADD COLUMN gpu_note           text             NOT NULL DEFAULT '';

-- Over a job's finished attempts: memory in byte-seconds and CPU in
-- core-seconds, requested (the tier's) against used.
ALTER TABLE jobs
    ADD COLUMN memory_requested_byte_seconds double precision NOT NULL DEFAULT 0,
    ADD COLUMN memory_used_byte_seconds      double precision NOT NULL DEFAULT 0,
    ADD COLUMN cpu_requested_seconds         double precision NOT NULL DEFAULT 0,
    ADD COLUMN cpu_used_seconds              double precision NOT NULL DEFAULT 0,
    ADD COLUMN peak_rss_bytes                bigint           NOT NULL DEFAULT 0,
    ADD COLUMN oom_attempts                  bigint           NOT NULL DEFAULT 0;
