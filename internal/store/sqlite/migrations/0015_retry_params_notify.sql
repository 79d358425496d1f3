-- Retry, parameters and webhooks (issue 17).
--
-- params: the parameters a job was submitted with (spec params: with
-- --set), a JSON object; NULL for none. Rerun submits the stored spec with
-- them.
ALTER TABLE jobs ADD COLUMN params TEXT;
-- retries: how many times RetryJob ran some of the job's tasks again.
ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;

-- The job's webhook (spec notify:), a JSON object {webhook, on}; NULL for
-- none. Its delivery, one per run of the job (the first run, then each
-- retry): notify_round is the run whose end was handled (delivered, given
-- up or skipped), so a job is due when it is terminal, has a webhook and
-- notify_round < retries + 1, and notify_next_at (the backoff) has passed.
ALTER TABLE jobs ADD COLUMN notify TEXT;
ALTER TABLE jobs ADD COLUMN notify_state TEXT;   -- pending, delivered, failed, skipped
ALTER TABLE jobs ADD COLUMN notify_event TEXT;   -- the job state last delivered for
ALTER TABLE jobs ADD COLUMN notify_round INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN notify_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN notify_error TEXT;
ALTER TABLE jobs ADD COLUMN notify_next_at INTEGER;      -- unix nanos
ALTER TABLE jobs ADD COLUMN notify_delivered_at INTEGER; -- unix nanos

-- The notifier's scan: jobs with a webhook whose latest run's end is not
-- handled yet (only those are in the index).
CREATE INDEX jobs_notify_due_idx ON jobs (notify_next_at) WHERE notify IS NOT NULL AND notify_round <= retries;
