-- Version 4: a run's state. Nothing here stores a state: it is derived when read from these
-- times (src/run_state.rs). A run made before this version has no heartbeat, so once quiet for
-- 5 minutes it reads as finished, as a run of a client without heartbeats does.
ALTER TABLE experiments ADD COLUMN heartbeat_at INTEGER;
ALTER TABLE experiments ADD COLUMN ended_at INTEGER;
ALTER TABLE experiments ADD COLUMN end_state TEXT CHECK (end_state IN ('finished', 'failed'));
ALTER TABLE experiments ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
