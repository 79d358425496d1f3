-- Accounting: how long a job's workers lived and what they cost.
ALTER TABLE jobs ADD COLUMN worker_seconds double precision NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cost_usd double precision NOT NULL DEFAULT 0;
