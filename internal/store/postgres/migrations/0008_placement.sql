-- Placement (design note 010): the clusters workers run in, each team's
-- quota, and one reservation per worker from its start until it exits.
-- Times are Unix nanoseconds; JSON columns hold what encoding/json writes.

CREATE TABLE clusters (
    name               text COLLATE "C" PRIMARY KEY,
    state              text   NOT NULL, -- enabled, disabled or draining
    capacity           jsonb  NOT NULL, -- placement.Resources
    labels             jsonb  NOT NULL, -- label -> values; 'null': not known
    pods_per_second    float8 NOT NULL,
    price_per_cpu_hour float8 NOT NULL,
    price_per_gib_hour float8 NOT NULL,
    price_per_gpu_hour jsonb  NOT NULL, -- GPU type -> price
    updated_at         bigint NOT NULL  -- by the database's clock
);

CREATE TABLE quotas (
    team       text COLLATE "C" PRIMARY KEY,
    limits     jsonb   NOT NULL, -- placement.Resources across all clusters
    clusters   jsonb   NOT NULL, -- cluster -> placement.Resources; 'null': no split
    lend       boolean NOT NULL,
    updated_at bigint  NOT NULL  -- by the database's clock
);

-- A reservation holds at most one GPU type: gpu_type is '' without GPUs.
CREATE TABLE reservations (
    id         text COLLATE "C" PRIMARY KEY,
    team       text COLLATE "C" NOT NULL,
    job        text COLLATE "C" NOT NULL,
    cluster    text COLLATE "C" NOT NULL,
    milli_cpu  bigint  NOT NULL,
    memory     bigint  NOT NULL,
    gpu_type   text COLLATE "C" NOT NULL,
    gpu_count  bigint  NOT NULL,
    borrowed   boolean NOT NULL,
    reclaim    boolean NOT NULL,
    holder     text COLLATE "C" NOT NULL,
    created    bigint, -- NULL: not known
    expires_at bigint  NOT NULL
);
CREATE INDEX reservations_expires_at ON reservations (expires_at);
CREATE INDEX reservations_team ON reservations (team);
CREATE INDEX reservations_cluster ON reservations (cluster);
CREATE INDEX reservations_holder ON reservations (holder);
CREATE INDEX reservations_job ON reservations (job);
CREATE INDEX reservations_borrowed ON reservations (id) WHERE borrowed;

-- Store.Place locks this one row (SELECT ... FOR UPDATE) for the length of
-- its transaction, so that placements run one after another.
CREATE TABLE placement_lock (
    id integer PRIMARY KEY CHECK (id = 1)
);
INSERT INTO placement_lock (id) VALUES (1);

-- Room kept for a team owed it while borrowed workers give it back
-- (placement.Claim); the next Place deletes it at expires_at.
CREATE TABLE placement_claims (
    id         text COLLATE "C" PRIMARY KEY,
    team       text COLLATE "C" NOT NULL,
    job        text COLLATE "C" NOT NULL,
    cluster    text COLLATE "C" NOT NULL,
    resources  jsonb  NOT NULL, -- placement.Resources
    expires_at bigint NOT NULL
);
