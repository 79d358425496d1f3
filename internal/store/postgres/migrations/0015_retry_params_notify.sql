-- Retry, parameters and webhooks (issue 17). See the SQLite migration of
-- the same number for what each column means.
ALTER TABLE jobs ADD COLUMN params jsonb;
ALTER TABLE jobs ADD COLUMN retries integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN notify jsonb;
ALTER TABLE jobs ADD COLUMN notify_state text;
ALTER TABLE jobs ADD COLUMN notify_event text;
ALTER TABLE jobs ADD COLUMN notify_round integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN notify_attempts integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN notify_error text;
ALTER TABLE jobs ADD COLUMN notify_next_at bigint;      -- unix nanos, as the other times
ALTER TABLE jobs ADD COLUMN notify_delivered_at bigint;
CREATE INDEX jobs_notify_due_idx ON jobs (notify_next_at) WHERE notify IS NOT NULL AND notify_round <= retries;
