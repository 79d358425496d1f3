-- Leases: one runner at a time dispatches from a store.
CREATE TABLE leases (
    name       TEXT    NOT NULL PRIMARY KEY,
    holder     TEXT    NOT NULL,
    address    TEXT    NOT NULL,
    expires_at INTEGER NOT NULL -- Unix nanoseconds
) STRICT;

-- Requests to cancel single tasks, read by the runner at every scan.
CREATE TABLE task_cancels (
    job_id       TEXT    NOT NULL REFERENCES jobs (id),
    idx          INTEGER NOT NULL,
    PRIMARY KEY (job_id, idx)
) STRICT;
