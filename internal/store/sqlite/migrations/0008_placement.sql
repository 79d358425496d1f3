-- Placement (design note 010): the clusters workers run in, each team's
-- quota, and one reservation per worker from its start until it exits.
-- Times are Unix nanoseconds; JSON columns hold what encoding/json writes;
-- booleans are 0 or 1. Place serialises through the single writer, so no
-- lock table is needed here.

CREATE TABLE clusters (
    name               TEXT    NOT NULL PRIMARY KEY,
    state              TEXT    NOT NULL, -- enabled, disabled or draining
    capacity           TEXT    NOT NULL, -- JSON placement.Resources
    labels             TEXT    NOT NULL, -- JSON label -> values; 'null': not known
    pods_per_second    REAL    NOT NULL,
    price_per_cpu_hour REAL    NOT NULL,
    price_per_gib_hour REAL    NOT NULL,
    price_per_gpu_hour TEXT    NOT NULL, -- JSON GPU type -> price
    updated_at         INTEGER NOT NULL  -- by the database's clock
) STRICT;

CREATE TABLE quotas (
    team       TEXT    NOT NULL PRIMARY KEY,
    limits     TEXT    NOT NULL, -- JSON placement.Resources across all clusters
    clusters   TEXT    NOT NULL, -- JSON cluster -> placement.Resources; 'null': no split
    lend       INTEGER NOT NULL,
    updated_at INTEGER NOT NULL  -- by the database's clock
) STRICT;

-- A reservation holds at most one GPU type: gpu_type is '' without GPUs.
CREATE TABLE reservations (
    id         TEXT    NOT NULL PRIMARY KEY,
    team       TEXT    NOT NULL,
    job        TEXT    NOT NULL,
    cluster    TEXT    NOT NULL,
    milli_cpu  INTEGER NOT NULL,
    memory     INTEGER NOT NULL,
    gpu_type   TEXT    NOT NULL,
    gpu_count  INTEGER NOT NULL,
    borrowed   INTEGER NOT NULL,
    reclaim    INTEGER NOT NULL,
    holder     TEXT    NOT NULL,
    created    INTEGER, -- NULL: not known
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX reservations_expires_at ON reservations (expires_at);
CREATE INDEX reservations_team ON reservations (team);
CREATE INDEX reservations_cluster ON reservations (cluster);
CREATE INDEX reservations_holder ON reservations (holder);
CREATE INDEX reservations_job ON reservations (job);
CREATE INDEX reservations_borrowed ON reservations (id) WHERE borrowed;

-- Room kept for a team owed it while borrowed workers give it back
-- (placement.Claim); the next Place deletes it at expires_at.
CREATE TABLE placement_claims (
    id         TEXT    NOT NULL PRIMARY KEY,
    team       TEXT    NOT NULL,
    job        TEXT    NOT NULL,
    cluster    TEXT    NOT NULL,
    resources  TEXT    NOT NULL, -- placement.Resources as JSON
    expires_at INTEGER NOT NULL
) STRICT;
