-- Accounting: how long a job's workers lived and what they cost.
ALTER TABLE jobs ADD COLUMN worker_seconds REAL NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
