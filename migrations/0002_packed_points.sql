-- Version 2: points packed 128 to a row (chunks) instead of a row each (logs), and the
-- idempotency keys of columnar batches. db.rs then moves every point of `logs` into `chunks`
-- (rebuilding series_blocks, which now covers every series) and drops `logs`.
CREATE TABLE batches (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    batch_id      TEXT NOT NULL,
    PRIMARY KEY (experiment_id, batch_id)
) WITHOUT ROWID;

CREATE TABLE chunks (
    id   INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);

CREATE TRIGGER series_chunks_gone AFTER DELETE ON series BEGIN
    DELETE FROM chunks WHERE id BETWEEN old.id * 4294967296 AND old.id * 4294967296 + 4294967295;
END;
