-- Version 6: runs in groups (a sweep, a cross-validation's folds, a resumed job's attempts).
-- NULL: the run is in no group. The index serves `group:NAME` (case-insensitive) in a workspace.
ALTER TABLE experiments ADD COLUMN run_group TEXT;
CREATE INDEX experiments_group ON experiments(workspace_id, run_group COLLATE NOCASE);
