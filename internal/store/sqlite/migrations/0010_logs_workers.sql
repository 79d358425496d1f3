-- Where each attempt's archived log is (issue 15): a byte range of an
-- object in the platform's object store, shared with other attempts of the
-- same worker (a pack) or the attempt's own.
CREATE TABLE log_entries (
    job_id        TEXT    NOT NULL,
    task_idx      INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    object        TEXT    NOT NULL,
    off           INTEGER NOT NULL,
    length        INTEGER NOT NULL,
    stdout_bytes  INTEGER NOT NULL,
    stderr_bytes  INTEGER NOT NULL,
    first_at      INTEGER,
    last_at       INTEGER,
    truncated     INTEGER NOT NULL,
    note          TEXT    NOT NULL,
    destination   TEXT    NOT NULL,
    archive_error TEXT    NOT NULL,
    PRIMARY KEY (job_id, task_idx, attempt)
) STRICT;

-- Each worker's history: what it ran for, where, and how it ended.
CREATE TABLE workers (
    id         TEXT    NOT NULL PRIMARY KEY,
    job_id     TEXT    NOT NULL,
    tier       INTEGER NOT NULL,
    cluster    TEXT    NOT NULL,
    team       TEXT    NOT NULL,
    started_at INTEGER,
    ended_at   INTEGER,
    end_reason TEXT    NOT NULL,
    attempts   INTEGER NOT NULL
) STRICT;
CREATE INDEX workers_job ON workers (job_id, id);
