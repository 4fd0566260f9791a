//! The database file: connection pools, PRAGMAs, migrations, and the only two doors to a
//! connection, [`Db::read`] and [`Db::write`]. Both run their closure on tokio's blocking pool,
//! so a handler never blocks a runtime thread on SQLite.

use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{Error, Result};

/// The schema version this binary writes: `schema.sql` is all of it, for fresh files.
pub const SCHEMA_VERSION: i64 = 2;
const SCHEMA: &str = include_str!("../schema.sql");

/// What brings a file of an older version up to the next one, in order.
const MIGRATIONS: &[(i64, &str)] = &[(2, include_str!("../migrations/0002_batches.sql"))];

/// Set on every connection, in this order: the busy timeout first, so the statements after it
/// already wait for a lock instead of failing; foreign keys are per connection in SQLite and off
/// by default. `synchronous = NORMAL` under WAL survives a killed process (what the durability
/// test checks); only an OS crash or power loss can drop the last commits.
const CONNECTION_PRAGMAS: &str = "
    PRAGMA busy_timeout = 5000;
    PRAGMA foreign_keys = ON;
    PRAGMA synchronous = NORMAL;
    PRAGMA temp_store = MEMORY;
    PRAGMA cache_size = -32000;
";

type Manager = SqliteConnectionManager;

#[derive(Clone)]
pub struct Db {
    /// Many readers: WAL lets them run beside the writer.
    readers: Pool<Manager>,
    /// Exactly one writer, so writes queue here instead of fighting over SQLite's lock.
    writer: Pool<Manager>,
    path: PathBuf,
}

impl Db {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db> {
        let mut conn = open_connection(path)?;
        migrate(&mut conn)?;
        drop(conn);

        let writer = Pool::builder()
            .max_size(1)
            .connection_timeout(Duration::from_secs(60))
            .build(manager(path, false))?;
        let readers = Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(30))
            .build(manager(path, true))?;
        Ok(Db {
            readers,
            writer,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a read-only connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        blocking(move || {
            let conn = pool.get()?;
            f(&conn)
        })
        .await
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction on the single writer connection and
    /// commits if it returns `Ok`. IMMEDIATE takes the write lock up front, so a transaction
    /// never fails half-way with SQLITE_BUSY on its first write.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<T> + Send + 'static,
    {
        let pool = self.writer.clone();
        blocking(move || {
            let mut conn = pool.get()?;
            write_tx(&mut conn, f)
        })
        .await
    }

    /// A read connection for work that streams for a long time (CSV export), used on a
    /// blocking thread by the caller.
    pub fn reader(&self) -> Result<PooledConnection<Manager>> {
        Ok(self.readers.get()?)
    }

    /// Copies the WAL into the main file and truncates it, so the `.db` file alone is complete.
    pub fn checkpoint(&self) -> Result<()> {
        let conn = self.writer.get()?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

pub fn write_tx<T>(conn: &mut Connection, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("database task failed: {e}")))?
}

fn manager(path: &Path, read_only: bool) -> Manager {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    SqliteConnectionManager::file(path)
        .with_flags(flags)
        .with_init(|c| c.execute_batch(CONNECTION_PRAGMAS))
}

/// Opens one read-write connection with the standard PRAGMAs (used by the CLI and by tests).
pub fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.execute_batch(CONNECTION_PRAGMAS)?;
    // WAL is a property of the file: set once, it stays for every later connection.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Internal(format!(
            "could not switch to WAL (got {mode})"
        )));
    }
    Ok(conn)
}

/// Applies `schema.sql` to a fresh database, upgrades a file from an older Tora one version per
/// transaction, and refuses a file from a newer Tora.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Internal(format!(
            "database schema version {version} is newer than this tora understands ({SCHEMA_VERSION}); upgrade tora"
        )));
    }
    if version == 0 {
        write_tx(conn, |tx| {
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            Ok(())
        })?;
        return Ok(());
    }
    for &(to, sql) in MIGRATIONS.iter().filter(|(to, _)| *to > version) {
        write_tx(conn, |tx| {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", to)?;
            Ok(())
        })?;
    }
    Ok(())
}

/// Writes a consistent copy of the live database at `src` to `dest`, which must not exist.
/// The online backup API copies every page inside one read transaction, so a server writing at
/// the same time neither blocks nor tears the copy.
pub fn backup(src: &Path, dest: &Path) -> Result<u64> {
    if !src.exists() {
        return Err(Error::bad_request(format!(
            "no database at {}",
            src.display()
        )));
    }
    // create_new makes the refusal to overwrite atomic, not a check-then-act race.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Conflict(format!(
                "{} already exists; not overwriting it",
                dest.display()
            )),
            _ => Error::Internal(format!("cannot create {}: {e}", dest.display())),
        })?;
    let result = (|| {
        let source = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        source.execute_batch("PRAGMA busy_timeout = 5000;")?;
        let mut target = Connection::open(dest)?;
        {
            use rusqlite::backup::{Backup, StepResult};
            let copy = Backup::new(&source, &mut target)?;
            // -1 copies every page in one step, inside one read transaction: a consistent
            // snapshot. Busy/Locked only means a writer held a lock for a moment; try again.
            let mut attempts = 0;
            while copy.step(-1)? != StepResult::Done {
                attempts += 1;
                if attempts > 600 {
                    return Err(Error::Internal(
                        "the database stayed locked for a minute".into(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // The copy inherits WAL mode; fold it back so the file alone is complete.
        target.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let ok: String = target.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if ok != "ok" {
            return Err(Error::Internal(format!("backup failed its check: {ok}")));
        }
        Ok(std::fs::metadata(dest)?.len())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

#[cfg(test)]
pub fn memory() -> Connection {
    let mut conn = Connection::open_in_memory().expect("in-memory sqlite");
    conn.execute_batch(CONNECTION_PRAGMAS).expect("pragmas");
    migrate(&mut conn).expect("schema applies");
    conn
}
