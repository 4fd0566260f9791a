//! `--artifacts-dir`: artifacts kept as files instead of chunk rows. A file is named by its
//! row's id (never by anything a client sent), created owner-only in an owner-only directory,
//! written only while its upload is staged and never changed once published. Rows go away by
//! SQL (a deleted file, run, workspace or account cascades), so files are removed by
//! [`sweep`]: whatever is in the directory with no row is deleted.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::db::Db;
use crate::error::{Error, Result};

/// How often the directory is swept for files whose rows are gone, besides after each delete
/// or replacement through the artifact API.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

pub struct ArtifactDir {
    root: PathBuf,
    /// Wakes the sweeper early.
    wake: Notify,
}

impl ArtifactDir {
    /// Opens (creating, owner-only) the directory.
    pub fn open(root: &Path) -> Result<Arc<ArtifactDir>> {
        create_private_dir(root)?;
        Ok(Arc::new(ArtifactDir {
            root: root.to_path_buf(),
            wake: Notify::new(),
        }))
    }

    pub fn path_of(&self, id: i64) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// Creates the file of upload `id`, owner-only; it must not exist yet.
    pub fn create(&self, id: i64) -> Result<std::fs::File> {
        private_options()
            .write(true)
            .create_new(true)
            .open(self.path_of(id))
            .map_err(|e| Error::Internal(format!("cannot create artifact file {id}: {e}")))
    }

    pub fn open_file(&self, id: i64) -> Result<std::fs::File> {
        std::fs::File::open(self.path_of(id))
            .map_err(|e| Error::Internal(format!("cannot open artifact file {id}: {e}")))
    }

    /// Asks the sweeper to run now.
    pub fn sweep_soon(&self) {
        self.wake.notify_one();
    }

    /// Sweeps every [`SWEEP_EVERY`], or sooner when asked, until the process ends.
    pub async fn sweep_forever(self: Arc<Self>, db: Db) {
        loop {
            if let Err(e) = sweep(&self, &db).await {
                tracing::error!(cause = %e, "sweeping the artifacts directory");
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = self.wake.notified() => {}
            }
        }
    }
}

/// Deletes the files with no row. The directory is listed before the rows are read: a file
/// created after the listing is not looked at, and one listed was made after its (staged) row,
/// so an upload in progress keeps its file.
pub async fn sweep(dir: &Arc<ArtifactDir>, db: &Db) -> Result<usize> {
    let listing = {
        let root = dir.root.clone();
        tokio::task::spawn_blocking(move || list_ids(&root))
            .await
            .map_err(|e| Error::Internal(format!("sweep task: {e}")))??
    };
    if listing.is_empty() {
        return Ok(0);
    }
    let keep: HashSet<i64> = db.read(crate::store::artifacts::all_ids).await?;
    let gone: Vec<i64> = listing
        .into_iter()
        .filter(|id| !keep.contains(id))
        .collect();
    let dir = dir.clone();
    tokio::task::spawn_blocking(move || {
        let mut removed = 0;
        for id in gone {
            match std::fs::remove_file(dir.path_of(id)) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::error!(cause = %e, file = id, "cannot remove an artifact file"),
            }
        }
        removed
    })
    .await
    .map_err(|e| Error::Internal(format!("sweep task: {e}")))
}

/// The ids named by the directory's files (other names are left alone).
fn list_ids(root: &Path) -> Result<Vec<i64>> {
    let entries = std::fs::read_dir(root)
        .map_err(|e| Error::Internal(format!("cannot list {}: {e}", root.display())))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()))
        .collect())
}

/// Copies the published files a backup's database names from `src` into `dest` (created,
/// owner-only, must not exist). Returns (files copied, bytes, files missing: deleted since the
/// database was copied).
pub fn backup(backup_db: &Path, src: &Path, dest: &Path) -> Result<(usize, u64, usize)> {
    let conn = crate::sql::Connection::from(rusqlite::Connection::open_with_flags(
        backup_db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?);
    let ids = crate::store::artifacts::external_ids(&conn)?;
    if dest.exists() {
        return Err(Error::Conflict(format!(
            "{} already exists; not overwriting it",
            dest.display()
        )));
    }
    create_private_dir(dest)?;
    let (mut copied, mut bytes, mut missing) = (0, 0, 0);
    for id in ids {
        let from = src.join(id.to_string());
        let mut input = match std::fs::File::open(&from) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing += 1;
                continue;
            }
            Err(e) => {
                return Err(Error::Internal(format!(
                    "cannot read {}: {e}",
                    from.display()
                )));
            }
        };
        let mut output = private_options()
            .write(true)
            .create_new(true)
            .open(dest.join(id.to_string()))
            .map_err(|e| Error::Internal(format!("cannot create a copy of {id}: {e}")))?;
        bytes += std::io::copy(&mut input, &mut output)
            .map_err(|e| Error::Internal(format!("cannot copy {}: {e}", from.display())))?;
        output
            .sync_all()
            .map_err(|e| Error::Internal(format!("cannot sync a copy of {id}: {e}")))?;
        copied += 1;
    }
    Ok((copied, bytes, missing))
}

/// Published files kept in an artifacts directory, as the database at `db` lists them.
pub fn external_count(db: &Path) -> Result<usize> {
    let conn = crate::sql::Connection::from(rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?);
    Ok(crate::store::artifacts::external_ids(&conn)?.len())
}

fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

fn create_private_dir(root: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(root)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", root.display())))?;
    // An existing directory too: the files are the run's data.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            Error::Internal(format!("cannot make {} owner-only: {e}", root.display()))
        })?;
    }
    Ok(())
}
