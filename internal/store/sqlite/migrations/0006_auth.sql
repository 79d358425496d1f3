-- Who submitted each job (an identity's subject; '' for jobs from before),
-- and the job's secret environment values, as a JSON object: a column of
-- their own that only ListActiveJobs reads (for the runner), so that no
-- read path of the API returns them.
ALTER TABLE jobs ADD COLUMN submitted_by TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN secret_env   TEXT NOT NULL DEFAULT 'null';

-- ListJobs of one submitter, newest first.
CREATE INDEX jobs_submitted_by_id ON jobs (submitted_by, id);

-- Tokens the server issued, kept by the SHA-256 of their secret only.
CREATE TABLE tokens (
    id             TEXT    NOT NULL PRIMARY KEY,
    hash           TEXT    NOT NULL, -- hex SHA-256 of the secret
    subject        TEXT    NOT NULL,
    kind           TEXT    NOT NULL, -- user, service-account
    teams          TEXT    NOT NULL, -- JSON object: team -> viewer, member or admin
    platform_admin INTEGER NOT NULL,
    description    TEXT    NOT NULL,
    created_by     TEXT    NOT NULL,
    created_at     INTEGER, -- Unix nanoseconds; NULL is the zero time
    expires_at     INTEGER,
    revoked_at     INTEGER  -- NULL until revoked
) STRICT;

-- ListTokens of one subject, newest (greatest ID) first.
CREATE INDEX tokens_subject_id ON tokens (subject, id);

-- Every mutating call: who, what, when, from where, how it ended. seq
-- increases (AUTOINCREMENT: never reused, even after the newest is gone).
CREATE TABLE audit (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL, -- Unix nanoseconds
    subject  TEXT    NOT NULL,
    token_id TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    team     TEXT    NOT NULL,
    object   TEXT    NOT NULL,
    remote   TEXT    NOT NULL,
    outcome  TEXT    NOT NULL,
    detail   TEXT    NOT NULL
) STRICT;

-- ListAudit of one subject or one team, newest first.
CREATE INDEX audit_subject_seq ON audit (subject, seq);
CREATE INDEX audit_team_seq ON audit (team, seq);
