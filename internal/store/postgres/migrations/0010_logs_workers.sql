-- Where each attempt's archived log is (issue 15): a byte range of an
-- object in the platform's object store, shared with other attempts of the
-- same worker (a pack) or the attempt's own.
CREATE TABLE log_entries (
    job_id        TEXT    NOT NULL,
    task_idx      INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    object        TEXT    NOT NULL,
    off           BIGINT  NOT NULL,
    length        BIGINT  NOT NULL,
    stdout_bytes  BIGINT  NOT NULL,
    stderr_bytes  BIGINT  NOT NULL,
    first_at      BIGINT,
    last_at       BIGINT,
    truncated     BOOLEAN NOT NULL,
    note          TEXT    NOT NULL,
    destination   TEXT    NOT NULL,
    archive_error TEXT    NOT NULL,
    PRIMARY KEY (job_id, task_idx, attempt)
);

-- Each worker's history: what it ran for, where, and how it ended.
CREATE TABLE workers (
    id         TEXT    NOT NULL PRIMARY KEY,
    job_id     TEXT    NOT NULL,
    tier       INTEGER NOT NULL,
    cluster    TEXT    NOT NULL,
    team       TEXT    NOT NULL,
    started_at BIGINT,
    ended_at   BIGINT,
    end_reason TEXT    NOT NULL,
    attempts   BIGINT  NOT NULL
);
CREATE INDEX workers_job ON workers (job_id, id);
