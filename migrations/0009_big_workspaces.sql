-- Version 9: run tables over 100,000 runs and runs with 10,000 metrics (issue 15).
-- A run's last point (max(updated_at) of its series) is one index probe, not a scan of its
-- series: run lists select it for every row, and the state: filter for every run.
CREATE INDEX series_last_point ON series(experiment_id, updated_at);
-- Sorting and filtering on a result's or a metric's last value walks the matching series in
-- value order (experiment_id last, the tie-break), instead of looking each run up and sorting.
CREATE INDEX series_value ON series(kind, name, last_value, experiment_id);
-- Sorting a workspace's runs by name or by last update walks an index and stops after the page.
CREATE INDEX experiments_name ON experiments(workspace_id, name COLLATE NOCASE);
CREATE INDEX experiments_updated ON experiments(workspace_id, updated_at);
