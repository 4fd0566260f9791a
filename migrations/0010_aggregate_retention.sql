-- Version 10: retention's aggregate mode (issue 16, item 4). A policy may keep only the block
-- aggregates of old runs' metrics instead of, or before, deleting the runs; delete_after_days
-- becomes optional, so the table is made again (SQLite cannot drop a NOT NULL).
CREATE TABLE retention_new (
    workspace_id         TEXT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    delete_after_days    INTEGER,
    keep_tag             TEXT NOT NULL,
    set_by               TEXT REFERENCES users(id) ON DELETE SET NULL,
    set_at               INTEGER NOT NULL,
    aggregate_after_days INTEGER,
    CHECK (delete_after_days IS NOT NULL OR aggregate_after_days IS NOT NULL)
) WITHOUT ROWID;
INSERT INTO retention_new (workspace_id, delete_after_days, keep_tag, set_by, set_at)
    SELECT workspace_id, delete_after_days, keep_tag, set_by, set_at FROM retention;
DROP TABLE retention;
ALTER TABLE retention_new RENAME TO retention;
-- When the run's metric points were compacted to their aggregates; NULL while they are whole.
ALTER TABLE experiments ADD COLUMN compacted_at INTEGER;
ALTER TABLE series ADD COLUMN compacted_at INTEGER;
-- Compacted series whose chunks are still being deleted, a bounded step at a time.
CREATE TABLE compacting (
    series_id INTEGER PRIMARY KEY REFERENCES series(id) ON DELETE CASCADE
);
