-- Version 2: idempotency keys of columnar batches (POST /api/experiments/{id}/points).
CREATE TABLE batches (
    experiment_id INTEGER NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    batch_id      TEXT NOT NULL,
    PRIMARY KEY (experiment_id, batch_id)
) WITHOUT ROWID;
