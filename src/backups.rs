//! Backups over time: the server's scheduled backups (`--backup-dir`), and `tora restore`.
//!
//! A scheduled backup is `tora backup` run by the server: SQLite's online backup into a new
//! file named by its time, checked whole by [`crate::doctor`], and only then counted; a backup
//! that fails its check is deleted and the older ones stay. After a good one, all but the newest
//! `--backup-keep` go. The first one is due `--backup-every` after the newest already in the
//! directory (at once if there is none), so restarting the server neither skips nor repeats
//! one.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};

/// Where, how often and how many (from `tora serve`'s flags).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub dir: PathBuf,
    pub every: Duration,
    pub keep: usize,
    /// The server's `--artifacts-dir`, whose files each backup copies beside it.
    pub artifacts_dir: Option<PathBuf>,
}

const PREFIX: &str = "tora-";
const SUFFIX: &str = ".db";

/// `tora-20261129T142700.123Z.db`: sorts by time as text.
fn name_at(ms: i64) -> String {
    let stamp = crate::time::rfc3339(ms).replace(['-', ':'], "");
    format!("{PREFIX}{stamp}{SUFFIX}")
}

/// The backups in `dir`, oldest first.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(Error::Internal(format!(
                "cannot read {}: {e}",
                dir.display()
            )));
        }
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(PREFIX) && name.ends_with(SUFFIX) {
            out.push(dir.join(&*name));
        }
    }
    out.sort();
    Ok(out)
}

/// The directory for backups, created owner-only: every backup holds the signing secret.
fn ensure_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))
}

/// Checks at start-up that the directory can be made and written, so a typo fails now and not
/// a day later.
pub fn prepare(schedule: &Schedule) -> Result<()> {
    ensure_dir(&schedule.dir)?;
    let probe = schedule.dir.join(".tora-write-test");
    std::fs::write(&probe, b"")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            Error::Internal(format!(
                "--backup-dir {} is not writable: {e}",
                schedule.dir.display()
            ))
        })
}

/// One backup now: written, checked, then the old ones beyond `keep` removed. Returns its path
/// and size.
pub fn take(db: &Path, schedule: &Schedule) -> Result<(PathBuf, u64)> {
    ensure_dir(&schedule.dir)?;
    let dest = schedule.dir.join(name_at(crate::time::now_ms()));
    let bytes = crate::db::backup(db, &dest)?;
    let report = crate::doctor::check(&dest)?;
    if !report.ok() {
        let _ = std::fs::remove_file(&dest);
        return Err(Error::Internal(format!(
            "the backup failed its check and was deleted: {}",
            report.problems.join("; ")
        )));
    }
    if let Some(dir) = &schedule.artifacts_dir {
        crate::artifact_files::backup(&dest, dir, &artifacts_beside(&dest))?;
    }
    let all = list(&schedule.dir)?;
    for old in all.iter().take(all.len().saturating_sub(schedule.keep)) {
        let _ = std::fs::remove_file(old);
        let _ = std::fs::remove_dir_all(artifacts_beside(old));
    }
    Ok((dest, bytes))
}

/// Where a backup's artifact files go: `BACKUP.artifacts/`, as `tora backup` does.
fn artifacts_beside(backup: &Path) -> PathBuf {
    let mut name = backup.as_os_str().to_owned();
    name.push(".artifacts");
    PathBuf::from(name)
}

/// How long until the next backup is due: `every` after the newest one there.
fn due_in(schedule: &Schedule) -> Duration {
    let newest = list(&schedule.dir)
        .ok()
        .and_then(|all| all.last().cloned())
        .and_then(|p| std::fs::metadata(p).ok()?.modified().ok());
    match newest {
        Some(at) => {
            let age = SystemTime::now().duration_since(at).unwrap_or_default();
            schedule.every.saturating_sub(age)
        }
        // None yet: one now, which also shows at once that the directory works.
        None => Duration::ZERO,
    }
}

/// Takes a backup every `schedule.every` until the server stops; a failure is logged and the
/// next one is tried on time.
pub async fn run_forever(db: PathBuf, schedule: Schedule) {
    let mut wait = due_in(&schedule);
    loop {
        tokio::time::sleep(wait).await;
        let started = Instant::now();
        let (db2, schedule2) = (db.clone(), schedule.clone());
        match tokio::task::spawn_blocking(move || take(&db2, &schedule2)).await {
            Ok(Ok((path, bytes))) => tracing::info!(
                file = %path.display(),
                bytes,
                ms = started.elapsed().as_millis() as u64,
                "backup written and checked"
            ),
            Ok(Err(e)) => tracing::error!(
                dir = %schedule.dir.display(),
                cause = e.plain(),
                "backup failed"
            ),
            Err(e) => tracing::error!(cause = %e, "backup task failed"),
        }
        wait = schedule.every.saturating_sub(started.elapsed());
    }
}

/// What `restore` did.
pub struct Restored {
    /// Where the database that was replaced now is (with its -wal and -shm), if there was one.
    pub aside: Option<PathBuf>,
    pub bytes: u64,
    /// Artifact files put in the artifacts directory, and where the one replaced went.
    pub artifacts: Option<(usize, Option<PathBuf>)>,
    /// Artifact files the backup names as files beside it, left alone (no `--artifacts-dir`).
    pub artifacts_left: usize,
}

/// Puts `backup` in place as the database `db`: refuses a backup that is not complete and
/// intact or is from a newer Tora, and a database a server is using; moves the current file
/// (with its -wal and -shm, which belong to it) aside to `DB.replaced-TIME`; copies the backup
/// in under a temporary name and renames it, so `db` is never half-written.
///
/// With `artifacts_dir` (the server's `--artifacts-dir`), the files the backup names are put
/// back from `BACKUP.artifacts/` the same way: copied in first, the directory they replace
/// moved aside.
pub fn restore(backup: &Path, db: &Path, artifacts_dir: Option<&Path>) -> Result<Restored> {
    let report = crate::doctor::check(backup)?;
    if !report.ok() {
        return Err(Error::bad_request(format!(
            "{} is not a complete, intact Tora database ({}); nothing was changed",
            backup.display(),
            report.problems.join("; ")
        )));
    }
    if crate::db::in_use(db)? {
        return Err(Error::Conflict(format!(
            "a tora serve is using {}; stop it first (nothing was changed)",
            db.display()
        )));
    }
    let external = crate::artifact_files::external_count(backup)?;
    let files = artifacts_beside(backup);
    let staged_files = match artifacts_dir {
        Some(dir) if external > 0 => {
            if !files.is_dir() {
                return Err(Error::bad_request(format!(
                    "{} names {external} artifact files kept beside it, but {} is not there; nothing was changed",
                    backup.display(),
                    files.display()
                )));
            }
            let staging = with_suffix(dir, ".restoring");
            let _ = std::fs::remove_dir_all(&staging);
            let (copied, _, missing) = crate::artifact_files::backup(backup, &files, &staging)?;
            if missing > 0 {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(Error::bad_request(format!(
                    "{missing} of the artifact files {} names are missing from {}; nothing was changed",
                    backup.display(),
                    files.display()
                )));
            }
            Some((dir, staging, copied))
        }
        _ => None,
    };
    let staging = with_suffix(db, ".restoring");
    let _ = std::fs::remove_file(&staging);
    let bytes = copy_with_progress(backup, &staging)?;
    let stamp = name_at(crate::time::now_ms())
        .trim_start_matches(PREFIX)
        .trim_end_matches(SUFFIX)
        .to_string();
    let aside = if db.exists() {
        let aside = with_suffix(db, &format!(".replaced-{stamp}"));
        for suffix in ["-wal", "-shm", ""] {
            let from = with_suffix(db, suffix);
            if from.exists() {
                std::fs::rename(&from, with_suffix(&aside, suffix)).map_err(|e| {
                    Error::Internal(format!("cannot move {} aside: {e}", from.display()))
                })?;
            }
        }
        Some(aside)
    } else {
        // A -wal or -shm with no database is left from something else: never replay it.
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(db, suffix));
        }
        None
    };
    std::fs::rename(&staging, db)
        .map_err(|e| Error::Internal(format!("cannot put the backup at {}: {e}", db.display())))?;
    let artifacts = match staged_files {
        Some((dir, staging, copied)) => {
            let replaced = if dir.exists() {
                let aside = with_suffix(dir, &format!(".replaced-{stamp}"));
                std::fs::rename(dir, &aside).map_err(|e| {
                    Error::Internal(format!("cannot move {} aside: {e}", dir.display()))
                })?;
                Some(aside)
            } else {
                None
            };
            std::fs::rename(&staging, dir).map_err(|e| {
                Error::Internal(format!("cannot put the files at {}: {e}", dir.display()))
            })?;
            Some((copied, replaced))
        }
        None => None,
    };
    Ok(Restored {
        aside,
        bytes,
        artifacts,
        artifacts_left: if artifacts_dir.is_none() { external } else { 0 },
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Copies `from` to a new owner-only file `to` and syncs it, drawing a progress line on
/// stderr when that is a terminal.
fn copy_with_progress(from: &Path, to: &Path) -> Result<u64> {
    let mut src = std::fs::File::open(from)
        .map_err(|e| Error::Internal(format!("cannot read {}: {e}", from.display())))?;
    let total = src.metadata()?.len();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut dst = options
        .open(to)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", to.display())))?;
    let progress = Progress::new(total);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
        done += n as u64;
        progress.show(done);
    }
    dst.sync_all()?;
    progress.finish();
    Ok(done)
}

/// A one-line progress display on a terminal's stderr; silent otherwise (scripts, logs).
pub struct Progress {
    total: u64,
    on: bool,
}

impl Progress {
    pub fn new(total: u64) -> Progress {
        Progress {
            total,
            // Small files finish before a line is worth drawing.
            on: std::io::stderr().is_terminal() && total > 64 << 20,
        }
    }

    pub fn show(&self, done: u64) {
        if self.on && done % (16 << 20) < (1 << 20) {
            eprint!(
                "\r{:>3}%  {} of {} MiB",
                done * 100 / self.total.max(1),
                done >> 20,
                self.total >> 20
            );
        }
    }

    pub fn finish(&self) {
        if self.on {
            eprintln!("\r100%  {0} of {0} MiB", self.total >> 20);
        }
    }
}
