-- haul's live tables on SQLite.
--
-- Times are Unix nanoseconds; NULL is the zero time (not yet started,
-- not yet finished). JSON columns hold what encoding/json writes: 'null'
-- for a nil map or list, '{}' or '[]' for an empty one.

CREATE TABLE jobs (
    id                    TEXT    NOT NULL PRIMARY KEY,
    name                  TEXT    NOT NULL,
    namespace             TEXT    NOT NULL,
    labels                TEXT    NOT NULL, -- JSON object
    env                   TEXT    NOT NULL, -- JSON object
    tiers                 TEXT    NOT NULL, -- JSON array of {name, cpu, memory_bytes, gpu}
    max_workers           INTEGER NOT NULL,
    state                 TEXT    NOT NULL,
    task_count            INTEGER NOT NULL,
    cancel_requested      INTEGER NOT NULL DEFAULT 0,
    count_blocked         INTEGER NOT NULL DEFAULT 0,
    count_queued          INTEGER NOT NULL DEFAULT 0,
    count_running         INTEGER NOT NULL DEFAULT 0,
    count_succeeded       INTEGER NOT NULL DEFAULT 0,
    count_failed          INTEGER NOT NULL DEFAULT 0,
    count_upstream_failed INTEGER NOT NULL DEFAULT 0,
    count_cancelled       INTEGER NOT NULL DEFAULT 0,
    created_at            INTEGER,
    started_at            INTEGER,
    finished_at           INTEGER,
    spec                  BLOB
) STRICT;

-- ListJobs by namespace, newest (greatest ID) first.
CREATE INDEX jobs_namespace_id ON jobs (namespace, id);
-- ListActiveJobs.
CREATE INDEX jobs_active_id ON jobs (id) WHERE state IN ('pending', 'running');

CREATE TABLE tasks (
    job_id      TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    key         TEXT    NOT NULL,
    argv        TEXT    NOT NULL, -- JSON array
    env         TEXT    NOT NULL, -- JSON object
    cwd         TEXT    NOT NULL,
    after_deps  TEXT    NOT NULL, -- JSON array: the task's `after` list as written
    tier        INTEGER NOT NULL,
    retries     INTEGER NOT NULL,
    timeout_ms  INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    exit_code   INTEGER NOT NULL DEFAULT 0,
    reason      TEXT    NOT NULL DEFAULT '',
    started_at  INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (job_id, idx),
    UNIQUE (job_id, key)
) STRICT, WITHOUT ROWID;

-- ListTasks filtered by state, in index order.
CREATE INDEX tasks_job_state_idx ON tasks (job_id, state, idx);

CREATE TABLE attempts (
    job_id      TEXT    NOT NULL,
    task_idx    INTEGER NOT NULL,
    number      INTEGER NOT NULL,
    tier        INTEGER NOT NULL,
    worker_id   TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    exit_code   INTEGER NOT NULL,
    signal      INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    PRIMARY KEY (job_id, task_idx, number),
    FOREIGN KEY (job_id, task_idx) REFERENCES tasks (job_id, idx) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
