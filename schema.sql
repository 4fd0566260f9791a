-- Tora schema, version 10: the whole current layout, applied once to a fresh database, then
-- PRAGMA user_version = 10. A file made by an older Tora is brought here by migrations/NNNN_*.sql
-- (plus the Rust steps in db.rs), applied in order; schema.sql and the migrations must agree.
-- Times are unix milliseconds. Public ids are UUID text; the point tables use numeric ids only,
-- because they are the ones that grow to 100 million points.

-- Server-wide settings that must survive a copy of the file, such as the token-signing secret.
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash      TEXT NOT NULL,
    disabled           INTEGER NOT NULL DEFAULT 0,
    -- set once the address is proven: a mailed confirmation link was opened, or an admin made
    -- or vouched for the account (`tora user add`, `tora user confirm`). Only then do
    -- invitations addressed to it count.
    email_confirmed_at INTEGER,
    created_at         INTEGER NOT NULL
);

-- Single-use e-mail confirmation tokens, stored as SHA-256 hashes; made only when the server
-- can mail them.
CREATE TABLE confirmations (
    token_hash BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Refresh tokens, stored as SHA-256 hashes. A login is a family; every refresh rotates the
-- token inside its family, and a reused (already rotated) token revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_family ON refresh_tokens(family);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);

-- API keys, stored as SHA-256 hashes: keys carry 238 random bits, so a slow hash adds nothing.
CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    key_hash   BLOB NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used  INTEGER,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX api_keys_user ON api_keys(user_id);

CREATE TABLE roles (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
INSERT INTO roles (id, name) VALUES (1, 'OWNER'), (2, 'EDITOR'), (3, 'VIEWER');

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    -- set for the workspace an experiment lands in when the client names none
    personal_of TEXT UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
);

-- A workspace's retention policy, set by an OWNER (schema 7; schema 10 added the aggregate
-- mode): runs whose last activity is older than delete_after_days are deleted, and those older
-- than aggregate_after_days keep only their metrics' aggregates (series_blocks, series_units,
-- the summary; their chunks go), unless tagged keep_tag. Either may be NULL, not both.
CREATE TABLE retention (
    workspace_id         TEXT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    delete_after_days    INTEGER,
    keep_tag             TEXT NOT NULL,
    set_by               TEXT REFERENCES users(id) ON DELETE SET NULL,
    set_at               INTEGER NOT NULL,
    aggregate_after_days INTEGER,
    CHECK (delete_after_days IS NOT NULL OR aggregate_after_days IS NOT NULL)
) WITHOUT ROWID;

CREATE TABLE workspace_members (
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role_id      INTEGER NOT NULL REFERENCES roles(id),
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
) WITHOUT ROWID;
CREATE INDEX workspace_members_user ON workspace_members(user_id);

-- Pending invitations. Each is a single-use link: token_hash is the SHA-256 of the secret in
-- it, shown once to the OWNER who invited (NULL only for invitations older than links). It is
-- also addressed to an e-mail: an account whose address is proven (users.email_confirmed_at)
-- may answer it without the link. Answering deletes the row; past expires_at it counts for
-- nothing. Both columns are nullable only because ALTER TABLE added them (migration 0003).
CREATE TABLE invitations (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    email        TEXT NOT NULL COLLATE NOCASE,
    role_id      INTEGER NOT NULL REFERENCES roles(id),
    invited_by   TEXT REFERENCES users(id) ON DELETE SET NULL,
    created_at   INTEGER NOT NULL,
    token_hash   BLOB,
    expires_at   INTEGER,
    UNIQUE (workspace_id, email)
);
CREATE INDEX invitations_email ON invitations(email);
CREATE UNIQUE INDEX invitations_token ON invitations(token_hash) WHERE token_hash IS NOT NULL;

CREATE TABLE experiments (
    id           INTEGER PRIMARY KEY,
    uuid         TEXT NOT NULL UNIQUE,
    workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    created_by   TEXT REFERENCES users(id) ON DELETE SET NULL,
    name         TEXT NOT NULL,
    description  TEXT,
    hyperparams  TEXT NOT NULL DEFAULT '[]',  -- JSON [{key, value}], in the client's order
    tags         TEXT NOT NULL DEFAULT '[]',  -- JSON [string]
    next_seq     INTEGER NOT NULL DEFAULT 1,  -- the id the next stored log gets
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    -- The run's state is derived from these when read (src/run_state.rs), never stored.
    heartbeat_at INTEGER,                     -- its client's last heartbeat; NULL = never sent one
    ended_at     INTEGER,                     -- set with end_state when its client ended it
    end_state    TEXT CHECK (end_state IN ('finished', 'failed')),
    metadata     TEXT NOT NULL DEFAULT '{}',  -- JSON object from the client (git, host, command...)
    run_group    TEXT,                        -- the group it belongs to (a sweep, CV folds); NULL = none
    -- when retention compacted its metrics to aggregates (their raw points are gone); NULL = whole
    compacted_at INTEGER
);
CREATE INDEX experiments_workspace ON experiments(workspace_id, created_at);
CREATE INDEX experiments_group ON experiments(workspace_id, run_group COLLATE NOCASE);
-- Run tables sorted by name or last update walk these and stop after the page.
CREATE INDEX experiments_name ON experiments(workspace_id, name COLLATE NOCASE);
CREATE INDEX experiments_updated ON experiments(workspace_id, updated_at);

-- One row per (experiment, kind, name): the log table refers to it by number, so a metric's
-- name is stored once, not once per point. kind: 0 = metric, 1 = result. The summary columns are
-- kept current at ingest, so run tables never scan the log table.
CREATE TABLE series (
    id            INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    kind          INTEGER NOT NULL CHECK (kind IN (0, 1)),
    name          TEXT NOT NULL,
    count         INTEGER NOT NULL DEFAULT 0,
    nonfinite     INTEGER NOT NULL DEFAULT 0,  -- points that were NaN or +-Inf
    first_step    INTEGER,
    last_step     INTEGER,
    last_value    REAL,                        -- at the highest step (metrics) / latest (results); NULL = NaN
    min_value     REAL,                        -- over finite values
    max_value     REAL,
    -- 1 while every point arrived at a step >= the previous one: only then do the blocks below
    -- cover the series in order (a late, lower step falls back to reading raw points).
    ordered       INTEGER NOT NULL DEFAULT 1,
    updated_at    INTEGER,
    -- A metric's last step-ordered unit and how many there are (src/store/units.rs); NULL for
    -- results and for metrics without points.
    open_unit     BLOB,
    -- When retention deleted this metric's raw points (its chunks), keeping the summary above,
    -- its blocks' aggregates and its units; NULL while every point is stored. Set with
    -- experiments.compacted_at.
    compacted_at  INTEGER,
    UNIQUE (experiment_id, kind, name)
);
-- A run's last point (max(updated_at) of its series) is one probe: run lists select it per row.
CREATE INDEX series_last_point ON series(experiment_id, updated_at);
-- Sorting and filtering runs on a result's or metric's last value walks this in value order.
CREATE INDEX series_value ON series(kind, name, last_value, experiment_id);

-- Each series cut into blocks of 128 consecutive points (in arrival order), with the block's
-- extent and aggregates; the points themselves are in `chunks`. A chart of a 1M-point series
-- reads ~8k block rows instead of 1M points; min/max per block mean a spike is never averaged
-- away. The last block of a series is open (count < 128) and grows with each batch. first/last
-- step and t are the least and greatest in the block (the same as first and last while a series
-- arrives in step order). min_seq/max_seq let a live stream that reconnects find the points it
-- missed without scanning the whole series.
CREATE TABLE series_blocks (
    series_id  INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
    block      INTEGER NOT NULL,
    first_step INTEGER NOT NULL,
    last_step  INTEGER NOT NULL,
    first_t    INTEGER NOT NULL,
    last_t     INTEGER NOT NULL,
    min_value  REAL,
    max_value  REAL,
    last_value REAL,                           -- NULL when the block's last point is non-finite
    last_finite REAL,                          -- the last finite value in the block
    count      INTEGER NOT NULL,
    nonfinite  INTEGER NOT NULL,
    min_seq    INTEGER NOT NULL,
    max_seq    INTEGER NOT NULL,
    PRIMARY KEY (series_id, block)
) WITHOUT ROWID;

-- Hyperparameters again, one row each, so the experiment list can filter and sort on them in
-- SQL (the JSON text in experiments keeps the client's order for display).
CREATE TABLE experiment_hyperparams (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    value,                                     -- as sent: number, text, 0/1 for booleans, NULL
    PRIMARY KEY (experiment_id, key)
) WITHOUT ROWID;
CREATE INDEX experiment_hyperparams_key ON experiment_hyperparams(key, value);

-- Every logged point, packed: one row per block of series_blocks, holding that block's (up to)
-- 128 points in the format of src/store/packed.rs, whose first byte is its version (2: a
-- Gorilla-style bit stream of step/seq deltas of deltas, t deltas and value XORs, then the
-- clients' msg_ids if any; 1, still read: varint deltas and the value's 8 bytes a point). A
-- point costs 1-8 bytes in a buffer instead of a B-tree row of its own (47 bytes), and is
-- several times faster to write. The rowid is series_id * 2^32 + block, so a block's points are found without
-- a second index and a series' blocks are one rowid range.
CREATE TABLE chunks (
    id   INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);

-- chunks has no series_id column to cascade on, so deleting a series (and so an experiment)
-- removes its rowid range here.
CREATE TRIGGER series_chunks_gone AFTER DELETE ON series BEGIN
    DELETE FROM chunks WHERE id BETWEEN old.id * 4294967296 AND old.id * 4294967296 + 4294967295;
END;

-- A metric series in step order, as aggregates only (src/store/units.rs): level-0 units hold
-- whole steps in ascending, disjoint ranges (one per 128 points while steps arrive in order;
-- a step logged again is folded into the unit that holds it), level l unit j aggregates level-0
-- units j*4^l .. (j+1)*4^l. Closed units packed 32 to a row of 64-byte records; the rowid is
-- series_id * 2^32 + level * 2^27 + part. A chart by step reads these, so its cost follows the
-- buckets drawn, not the points stored, whether or not the steps arrived in order.
CREATE TABLE series_units (
    id   INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);

CREATE TRIGGER series_units_gone AFTER DELETE ON series BEGIN
    DELETE FROM series_units WHERE id BETWEEN old.id * 4294967296 AND old.id * 4294967296 + 4294967295;
END;

-- Compacted series whose chunks the retention pass is still deleting, a bounded number per
-- write transaction (src/retention.rs); a row goes once the series has no chunk left.
CREATE TABLE compacting (
    series_id INTEGER PRIMARY KEY REFERENCES series(id) ON DELETE CASCADE
);

-- Idempotency keys of columnar batches (POST /api/experiments/{id}/points): a batch whose id is
-- here was stored whole, in the transaction that added the id, so a resend is skipped whole.
CREATE TABLE batches (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    batch_id      TEXT NOT NULL,
    PRIMARY KEY (experiment_id, batch_id)
) WITHOUT ROWID;

-- The rare log metadata beyond {"type": ...}, kept out of the hot table.
CREATE TABLE log_metadata (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    metadata      TEXT NOT NULL,
    PRIMARY KEY (experiment_id, seq)
) WITHOUT ROWID;

-- Files kept with a run (artifacts). An upload arrives as a staged row (path NULL) whose chunks
-- are written in short transactions; publishing gives it its path in one transaction, replacing
-- a file at the same path. Deleting a run deletes its files (cascade), and SQLite reuses the
-- freed pages. Chunks are 256 KiB (src/store/artifacts.rs).
CREATE TABLE artifacts (
    id            INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    path          TEXT,              -- NULL while its upload is still arriving (staged)
    size          INTEGER NOT NULL,  -- bytes so far while staged
    sha256        BLOB,              -- set when published
    external      INTEGER NOT NULL DEFAULT 0,  -- 1: the bytes are a file in --artifacts-dir
    created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX artifacts_path ON artifacts(experiment_id, path);
CREATE TABLE artifact_chunks (
    artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    data        BLOB NOT NULL,
    UNIQUE (artifact_id, seq)
);
