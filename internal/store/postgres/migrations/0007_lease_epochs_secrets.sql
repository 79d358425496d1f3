-- Lease epochs: the store counts each lease's tenures (1 when first taken,
-- one more whenever it passes to another holder or is taken after a
-- release), and a fenced write may name the epoch it was prepared under.
-- Every lease stored so far is held (a release used to delete the row), so
-- each is in its first tenure. From now on a release keeps the row, with
-- an empty holder, so that the count goes on.
ALTER TABLE leases ADD COLUMN epoch bigint NOT NULL DEFAULT 1;

-- Values created once per cluster (the key worker credentials and task
-- tokens are derived from): the first process to store one wins, and every
-- process reads that one.
CREATE TABLE secrets (
    name       text COLLATE "C" PRIMARY KEY,
    value      bytea  NOT NULL,
    created_at bigint NOT NULL -- Unix nanoseconds, by the database's clock
);
