-- Version 5: files kept with a run (artifacts), stored in the database in chunks.
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
