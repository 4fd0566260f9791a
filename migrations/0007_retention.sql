-- Schema 7: a workspace's retention policy, set by an OWNER: runs whose last activity is older
-- than delete_after_days are deleted, unless tagged keep_tag.
CREATE TABLE retention (
    workspace_id      TEXT PRIMARY KEY REFERENCES workspaces(id) ON DELETE CASCADE,
    delete_after_days INTEGER NOT NULL,
    keep_tag          TEXT NOT NULL,
    set_by            TEXT REFERENCES users(id) ON DELETE SET NULL,
    set_at            INTEGER NOT NULL
) WITHOUT ROWID;
