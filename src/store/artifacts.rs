//! Artifacts: files kept with a run, stored in chunks. An upload is a *staged* row (path NULL)
//! that grows a chunk per short write transaction; [`publish`] then gives it its path in one
//! transaction, replacing a file at the same path. Readers only ever see published rows.

use crate::sql::{Connection, OptionalExtension, params};

use crate::error::Result;

/// Bytes per chunk row: big enough that a 1 GiB file is 4,096 rows, small enough that a read
/// or a write of one is short and a download holds only one at a time.
pub const CHUNK: usize = 256 << 10;

#[derive(Debug, Clone)]
pub struct Artifact {
    pub id: i64,
    pub path: String,
    pub size: i64,
    pub sha256: Vec<u8>,
    pub created_at: i64,
    /// The bytes are the file named by `id` in `--artifacts-dir`, not chunk rows.
    pub external: bool,
}

fn artifact(r: &crate::sql::Row) -> crate::sql::Result<Artifact> {
    Ok(Artifact {
        id: r.get(0)?,
        path: r.get(1)?,
        size: r.get(2)?,
        sha256: r.get(3)?,
        created_at: r.get(4)?,
        external: r.get(5)?,
    })
}

/// Starts an upload: an empty staged row, invisible to readers. `external`: its bytes go to a
/// file in `--artifacts-dir` instead of chunk rows.
pub fn stage(conn: &Connection, experiment: i64, now: i64, external: bool) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "INSERT INTO artifacts (experiment_id, path, size, created_at, external)
               VALUES (?1, NULL, 0, ?2, ?3) RETURNING id",
        )?
        .query_row(params![experiment, now, external], |r| r.get(0))?)
}

/// Counts `bytes` more to a staged upload whose bytes go to a file.
pub fn grow(conn: &Connection, staged: i64, bytes: i64) -> Result<()> {
    conn.prepare_cached("UPDATE artifacts SET size = size + ?2 WHERE id = ?1 AND path IS NULL")?
        .execute(params![staged, bytes])?;
    Ok(())
}

/// Every row's id, staged ones included: what files in `--artifacts-dir` may stay.
pub fn all_ids(conn: &Connection) -> Result<std::collections::HashSet<i64>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM artifacts")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// The ids of published files kept in `--artifacts-dir` (what a backup copies).
pub fn external_ids(conn: &Connection) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM artifacts WHERE external = 1 AND path IS NOT NULL ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// Appends chunk `seq` to a staged upload.
pub fn append(conn: &Connection, staged: i64, seq: i64, data: &[u8]) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO artifact_chunks (artifact_id, seq, data) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![staged, seq, data])?;
    conn.prepare_cached("UPDATE artifacts SET size = size + ?2 WHERE id = ?1 AND path IS NULL")?
        .execute(params![staged, data.len() as i64])?;
    Ok(())
}

/// Bytes held by a workspace's files, uploads in progress included.
pub fn workspace_bytes(conn: &Connection, workspace: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT coalesce(sum(a.size), 0) FROM artifacts a
               JOIN experiments e ON e.id = a.experiment_id WHERE e.workspace_id = ?1",
        )?
        .query_row([workspace], |r| r.get(0))?)
}

/// Published files of a run.
pub fn count(conn: &Connection, experiment: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM artifacts WHERE experiment_id = ?1 AND path IS NOT NULL",
        )?
        .query_row([experiment], |r| r.get(0))?)
}

/// Gives a staged upload its path and digest. A file already at that path is unpublished
/// (see [`unpublish`]): its id comes back with the new file, for the caller to [`purge`].
pub fn publish(
    conn: &Connection,
    experiment: i64,
    staged: i64,
    path: &str,
    sha256: &[u8],
    now: i64,
) -> Result<(Artifact, Option<i64>)> {
    let replaced = unpublish(conn, experiment, path)?;
    conn.prepare_cached(
        "UPDATE artifacts SET path = ?2, sha256 = ?3, created_at = ?4 WHERE id = ?1 AND path IS NULL",
    )?
    .execute(params![staged, path, sha256, now])?;
    let file = get_by_id(conn, staged)?.ok_or_else(|| {
        crate::error::Error::Internal(format!("staged upload {staged} vanished before publishing"))
    })?;
    Ok((file, replaced))
}

/// Takes the file at `path` out of sight (its row back to staged, path NULL) and returns its
/// id, so its chunks can go in short transactions ([`purge`]) instead of one long one.
pub fn unpublish(conn: &Connection, experiment: i64, path: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "UPDATE artifacts SET path = NULL WHERE experiment_id = ?1 AND path = ?2 RETURNING id",
        )?
        .query_row(params![experiment, path], |r| r.get(0))
        .optional()?)
}

/// Deletes up to `limit` chunks of an unpublished file, then, once none are left, its row.
/// Returns whether anything is left to delete.
pub fn purge(conn: &Connection, staged: i64, limit: i64) -> Result<bool> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM artifact_chunks WHERE artifact_id = ?1 AND seq IN
               (SELECT seq FROM artifact_chunks WHERE artifact_id = ?1 ORDER BY seq LIMIT ?2)",
        )?
        .execute(params![staged, limit])?;
    if deleted as i64 == limit {
        return Ok(true);
    }
    discard(conn, staged)?;
    Ok(false)
}

fn get_by_id(conn: &Connection, id: i64) -> Result<Option<Artifact>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, path, size, sha256, created_at, external FROM artifacts WHERE id = ?1 AND path IS NOT NULL",
        )?
        .query_row([id], artifact)
        .optional()?)
}

/// Drops a staged upload and its chunks (an upload that failed or was abandoned).
pub fn discard(conn: &Connection, staged: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM artifacts WHERE id = ?1 AND path IS NULL")?
        .execute([staged])?;
    Ok(())
}

/// Drops every staged upload: at start-up, what a stopped server left half-written.
pub fn discard_all_staged(conn: &Connection) -> Result<usize> {
    Ok(conn.execute("DELETE FROM artifacts WHERE path IS NULL", [])?)
}

/// A run's published files, by path.
pub fn list(conn: &Connection, experiment: i64) -> Result<Vec<Artifact>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, path, size, sha256, created_at, external FROM artifacts
          WHERE experiment_id = ?1 AND path IS NOT NULL ORDER BY path",
    )?;
    let rows = stmt.query_map([experiment], artifact)?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

pub fn get(conn: &Connection, experiment: i64, path: &str) -> Result<Option<Artifact>> {
    Ok(conn
        .prepare_cached(
            "SELECT id, path, size, sha256, created_at, external FROM artifacts
              WHERE experiment_id = ?1 AND path = ?2",
        )?
        .query_row(params![experiment, path], artifact)
        .optional()?)
}

/// Chunk `seq` of a file, if the file (still) has it.
pub fn chunk(conn: &Connection, artifact: i64, seq: i64) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT data FROM artifact_chunks WHERE artifact_id = ?1 AND seq = ?2")?
        .query_row(params![artifact, seq], |r| r.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_upload_is_invisible_until_published_and_replaces_the_old_file() {
        let conn = crate::db::memory();
        let exp = crate::store::test_experiment(&conn);
        let s = stage(&conn, exp.rowid, 1, false).unwrap();
        append(&conn, s, 0, b"hello ").unwrap();
        append(&conn, s, 1, b"world").unwrap();
        assert!(list(&conn, exp.rowid).unwrap().is_empty());
        assert_eq!(workspace_bytes(&conn, &exp.workspace_id).unwrap(), 11);
        let (a, replaced) = publish(&conn, exp.rowid, s, "out/a.txt", &[1; 32], 2).unwrap();
        assert_eq!(replaced, None);
        assert_eq!((a.size, a.path.as_str()), (11, "out/a.txt"));
        let s2 = stage(&conn, exp.rowid, 3, false).unwrap();
        append(&conn, s2, 0, b"new").unwrap();
        let (_, replaced) = publish(&conn, exp.rowid, s2, "out/a.txt", &[2; 32], 4).unwrap();
        assert_eq!(replaced, Some(a.id));
        let all = list(&conn, exp.rowid).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].size, 3);
        // The old file's two chunks go one transaction at a time, then its row.
        assert!(purge(&conn, a.id, 1).unwrap());
        assert!(purge(&conn, a.id, 1).unwrap());
        assert!(!purge(&conn, a.id, 1).unwrap());
        assert_eq!(
            chunk(&conn, a.id, 0).unwrap(),
            None,
            "the old chunks are gone"
        );
        let chunks: i64 = conn
            .query_row("SELECT count(*) FROM artifact_chunks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(chunks, 1);
        let s3 = stage(&conn, exp.rowid, 5, false).unwrap();
        append(&conn, s3, 0, b"x").unwrap();
        discard(&conn, s3).unwrap();
        assert_eq!(workspace_bytes(&conn, &exp.workspace_id).unwrap(), 3);
    }
}
