-- Memory tiers and usage: the tier each task runs on now, what each
-- attempt used, and each job's requested-versus-used totals.

-- A task starts on its first tier (tier) and moves up when it runs out of
-- memory; existing tasks run on their first tier.
ALTER TABLE tasks ADD COLUMN run_tier INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET run_tier = tier WHERE tier <> 0;

-- How the tier's memory limit was enforced: cgroup-v1, cgroup-v2, rss-poll,
-- none, or '' when the worker did not say.
ALTER TABLE attempts ADD COLUMN enforcement TEXT NOT NULL DEFAULT '';
ALTER TABLE attempts ADD COLUMN cpu_user_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN cpu_system_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN peak_rss_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN avg_rss_bytes INTEGER NOT NULL DEFAULT 0;
-- JSON array of {index, name, peak_memory_bytes, avg_utilization_percent};
-- '[]' when the attempt used no GPU.
ALTER TABLE attempts ADD COLUMN gpus TEXT NOT NULL DEFAULT '[]';
ALTER TABLE attempts ADD COLUMN gpu_note TEXT NOT NULL DEFAULT '';

-- Over a job's finished attempts: memory in byte-seconds and CPU in
-- core-seconds, requested (the tier's) against used.
ALTER TABLE jobs ADD COLUMN memory_requested_byte_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN memory_used_byte_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cpu_requested_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cpu_used_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN peak_rss_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN oom_attempts INTEGER NOT NULL DEFAULT 0;
