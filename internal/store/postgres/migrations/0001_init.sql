-- haul's live tables on PostgreSQL.
--
-- Times are Unix nanoseconds (bigint), as in the sqlite driver, so both
-- drivers return the same instants to the nanosecond; NULL is the zero
-- time (not yet started, not yet finished). JSON columns hold what
-- encoding/json writes: 'null' for a nil map or list, '{}' or '[]' for an
-- empty one. IDs and keys use the "C" collation: IDs sort bytewise (they
-- encode creation time) and glob classes work on code points, whatever
-- the database's default collation.

CREATE TABLE jobs (
    id                    text COLLATE "C" PRIMARY KEY,
    name                  text    NOT NULL,
    namespace             text    NOT NULL,
    labels                jsonb   NOT NULL,
    env                   jsonb   NOT NULL,
    tiers                 jsonb   NOT NULL, -- [{name, cpu, memory_bytes, gpu}]
    max_workers           integer NOT NULL,
    state                 text    NOT NULL,
    task_count            bigint  NOT NULL,
    cancel_requested      boolean NOT NULL DEFAULT false,
    count_blocked         bigint  NOT NULL DEFAULT 0,
    count_queued          bigint  NOT NULL DEFAULT 0,
    count_running         bigint  NOT NULL DEFAULT 0,
    count_succeeded       bigint  NOT NULL DEFAULT 0,
    count_failed          bigint  NOT NULL DEFAULT 0,
    count_upstream_failed bigint  NOT NULL DEFAULT 0,
    count_cancelled       bigint  NOT NULL DEFAULT 0,
    created_at            bigint,
    started_at            bigint,
    finished_at           bigint,
    spec                  bytea
);

-- ListJobs by namespace, newest (greatest ID) first.
CREATE INDEX jobs_namespace_id ON jobs (namespace, id);
-- ListActiveJobs.
CREATE INDEX jobs_active_id ON jobs (id) WHERE state IN ('pending', 'running');

CREATE TABLE tasks (
    job_id      text COLLATE "C" NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx         integer NOT NULL,
    key         text COLLATE "C" NOT NULL,
    argv        jsonb   NOT NULL,
    env         jsonb   NOT NULL,
    cwd         text    NOT NULL,
    after_deps  jsonb   NOT NULL, -- the task's `after` list as written
    tier        integer NOT NULL,
    retries     integer NOT NULL,
    timeout_ms  bigint  NOT NULL,
    state       text    NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    exit_code   integer NOT NULL DEFAULT 0,
    reason      text    NOT NULL DEFAULT '',
    started_at  bigint,
    finished_at bigint,
    PRIMARY KEY (job_id, idx),
    UNIQUE (job_id, key)
);

-- ListTasks filtered by state, in index order.
CREATE INDEX tasks_job_state_idx ON tasks (job_id, state, idx);

CREATE TABLE attempts (
    job_id      text COLLATE "C" NOT NULL,
    task_idx    integer NOT NULL,
    number      integer NOT NULL,
    tier        integer NOT NULL,
    worker_id   text    NOT NULL,
    state       text    NOT NULL,
    exit_code   integer NOT NULL,
    signal      integer NOT NULL,
    reason      text    NOT NULL,
    message     text    NOT NULL,
    started_at  bigint,
    finished_at bigint,
    PRIMARY KEY (job_id, task_idx, number),
    FOREIGN KEY (job_id, task_idx) REFERENCES tasks (job_id, idx) ON DELETE CASCADE
);
