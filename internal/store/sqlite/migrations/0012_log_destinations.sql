-- Teams' log destinations (issue 15): the bucket and prefix a team's logs
-- are copied to, and the credentials an admin configured for it (never
-- shown back).
CREATE TABLE log_destinations (
    team              TEXT   NOT NULL PRIMARY KEY,
    url               TEXT   NOT NULL,
    access_key_id     TEXT   NOT NULL,
    secret_access_key TEXT   NOT NULL,
    session_token     TEXT   NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;

-- Where a job's logs are copied when it ends ('' : nowhere).
ALTER TABLE jobs ADD COLUMN log_destination TEXT NOT NULL DEFAULT '';
CREATE INDEX jobs_log_destination ON jobs (finished_at, id) WHERE log_destination <> '';

-- The copy of each job's logs to its destination: pending, done, or
-- failed (tried again until it gives up), with the last error.
CREATE TABLE log_archives (
    job_id      TEXT   NOT NULL PRIMARY KEY,
    destination TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    tries       INTEGER NOT NULL,
    error       TEXT   NOT NULL,
    objects     INTEGER NOT NULL,
    next_at     INTEGER,
    updated_at  INTEGER NOT NULL
) STRICT;
