-- Leases: one runner at a time dispatches from a store.
CREATE TABLE leases (
    name       text COLLATE "C" PRIMARY KEY,
    holder     text   NOT NULL,
    address    text   NOT NULL,
    expires_at bigint NOT NULL -- Unix nanoseconds
);

-- Requests to cancel single tasks, read by the runner at every scan.
CREATE TABLE task_cancels (
    job_id text COLLATE "C" NOT NULL REFERENCES jobs (id),
    idx    integer NOT NULL,
    PRIMARY KEY (job_id, idx)
);
