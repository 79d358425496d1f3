-- Who submitted each job (an identity's subject; '' for jobs from before),
-- and the job's secret environment values, as a JSON object: a column of
-- their own that only ListActiveJobs reads (for the runner), so that no
-- read path of the API returns them.
ALTER TABLE jobs ADD COLUMN submitted_by text  NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN secret_env   jsonb NOT NULL DEFAULT 'null';

-- ListJobs of one submitter, newest first.
CREATE INDEX jobs_submitted_by_id ON jobs (submitted_by, id);

-- Tokens the server issued, kept by the SHA-256 of their secret only.
CREATE TABLE tokens (
    id             text COLLATE "C" PRIMARY KEY,
    hash           text    NOT NULL, -- hex SHA-256 of the secret
    subject        text    NOT NULL,
    kind           text    NOT NULL, -- user, service-account
    teams          jsonb   NOT NULL, -- team -> viewer, member or admin
    platform_admin boolean NOT NULL,
    description    text    NOT NULL,
    created_by     text    NOT NULL,
    created_at     bigint, -- Unix nanoseconds; NULL is the zero time
    expires_at     bigint,
    revoked_at     bigint  -- NULL until revoked
);

-- ListTokens of one subject, newest (greatest ID) first.
CREATE INDEX tokens_subject_id ON tokens (subject, id);

-- Every mutating call: who, what, when, from where, how it ended.
CREATE TABLE audit (
    seq      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       bigint NOT NULL, -- Unix nanoseconds
    subject  text   NOT NULL,
    token_id text   NOT NULL,
    action   text   NOT NULL,
    team     text   NOT NULL,
    object   text   NOT NULL,
    remote   text   NOT NULL,
    outcome  text   NOT NULL,
    detail   text   NOT NULL
);

-- ListAudit of one subject or one team, newest first.
CREATE INDEX audit_subject_seq ON audit (subject, seq);
CREATE INDEX audit_team_seq ON audit (team, seq);
