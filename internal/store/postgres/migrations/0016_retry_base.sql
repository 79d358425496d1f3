-- Retry (issue 17): the attempts a task had started when the job's latest
-- retry ran it again. The runner counts only the failures of later
-- attempts against the task's retries, so a retried task gets its full
-- retries again while its attempt numbers continue.
ALTER TABLE tasks ADD COLUMN retry_base INTEGER NOT NULL DEFAULT 0;
