//! The database file: connection pools, PRAGMAs, migrations, and the only two doors to a
//! connection, [`Db::read`] and [`Db::write`]. Both run their closure on tokio's blocking pool,
//! so a handler never blocks a runtime thread on SQLite.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::OpenFlags;

use crate::sql::{Connection, Transaction, TransactionBehavior};

use crate::error::{Error, Result};

/// The schema version this binary writes: `schema.sql` is all of it, for fresh files.
pub const SCHEMA_VERSION: i64 = 10;
const SCHEMA: &str = include_str!("../schema.sql");

/// A migration: the version it brings a file to, its SQL, then a Rust step for what SQL alone
/// cannot do.
type Migration = (i64, &'static str, fn(&Connection) -> Result<()>);

/// What brings a file of an older version up to the next one, in order.
const MIGRATIONS: &[Migration] = &[
    (
        2,
        include_str!("../migrations/0002_packed_points.sql"),
        crate::store::logs::pack_v1_logs,
    ),
    (
        3,
        include_str!("../migrations/0003_invitation_links.sql"),
        sql_only,
    ),
    (
        4,
        include_str!("../migrations/0004_run_state.sql"),
        sql_only,
    ),
    (
        5,
        include_str!("../migrations/0005_artifacts.sql"),
        sql_only,
    ),
    (6, include_str!("../migrations/0006_groups.sql"), sql_only),
    (
        7,
        include_str!("../migrations/0007_retention.sql"),
        sql_only,
    ),
    (
        8,
        include_str!("../migrations/0008_series_units.sql"),
        crate::store::units::build_all,
    ),
    (
        9,
        include_str!("../migrations/0009_big_workspaces.sql"),
        sql_only,
    ),
    (
        10,
        include_str!("../migrations/0010_aggregate_retention.sql"),
        sql_only,
    ),
];

/// The Rust step of a migration that SQL does whole.
fn sql_only(_: &Connection) -> Result<()> {
    Ok(())
}

/// Set on every connection, in this order: the busy timeout first, so the statements after it
/// already wait for a lock instead of failing; foreign keys are per connection in SQLite and off
/// by default. `synchronous = NORMAL` under WAL survives a killed process (what the durability
/// test checks); only an OS crash or power loss can drop the last commits. SQLite folds the WAL
/// into the main file every 1,000 pages (its default `wal_autocheckpoint`) and reuses it from
/// the start; `journal_size_limit` then cuts the file back to 64 MiB, so a burst does not leave
/// a big WAL behind for good ([`crate::wal`] keeps it empty while the server is idle).
const CONNECTION_PRAGMAS: &str = "
    PRAGMA busy_timeout = 5000;
    PRAGMA foreign_keys = ON;
    PRAGMA synchronous = NORMAL;
    PRAGMA temp_store = MEMORY;
    PRAGMA cache_size = -32000;
    PRAGMA journal_size_limit = 67108864;
";

/// r2d2's manager for either engine, handing out the layer's [`Connection`].
pub enum Manager {
    Sqlite(SqliteConnectionManager),
    Postgres {
        manager: r2d2_postgres::PostgresConnectionManager<crate::sql::pg_url::Tls>,
        /// Set on each new connection: `SET statement_timeout` for readers (the budget that
        /// SQLite's progress handler keeps there).
        init: &'static str,
    },
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = crate::sql::Error;

    fn connect(&self) -> std::result::Result<Connection, crate::sql::Error> {
        match self {
            Manager::Sqlite(m) => Ok(Connection::Sqlite(m.connect()?)),
            Manager::Postgres { manager, init } => {
                let mut client = manager.connect()?;
                client.batch_execute(init)?;
                Ok(Connection::postgres(client))
            }
        }
    }

    fn is_valid(&self, conn: &mut Connection) -> std::result::Result<(), crate::sql::Error> {
        match (self, conn) {
            (Manager::Sqlite(m), Connection::Sqlite(c)) => Ok(m.is_valid(c)?),
            (Manager::Postgres { .. }, Connection::Postgres(c)) => {
                c.client().simple_query("")?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        match conn {
            Connection::Sqlite(c) => matches!(self, Manager::Sqlite(m) if m.has_broken(c)),
            Connection::Postgres(c) => c.client().is_closed(),
        }
    }
}

/// The PostgreSQL schema (v9) for a fresh database: `schema_postgres.sql`.
const SCHEMA_POSTGRES: &str = include_str!("../schema_postgres.sql");
/// The transaction-level advisory lock under which an empty PostgreSQL database gets its
/// tables (not [`crate::migrate::ADVISORY_LOCK`], which servers hold shared for their life).
const SCHEMA_LOCK: i64 = 0x746f_7273; // "tors"

const STATEMENT_CACHE: usize = 128;

/// The longest one [`Db::read`] may run. A request shaped to make SQLite work hard (a filter
/// over thousands of runs, a huge range) is interrupted here, the client gets a 503 that says
/// so, and the connection goes back to the pool.
pub const QUERY_BUDGET: Duration = Duration::from_secs(5);
/// SQLite calls the budget check every this many virtual-machine steps (a few microseconds).
const BUDGET_CHECK_EVERY: i32 = 1000;
/// Read connections. Long responses never hold one while waiting on a client, so a few serve
/// many.
const READERS: u32 = 8;
/// Read connections for paged downloads and stream replays only. However many downloads run
/// (at most `server::MAX_DOWNLOADS`, each reading a page at a time), they wait for each other
/// here and never for the readers that every other request uses.
const DOWNLOAD_READERS: u32 = 2;
/// How long a request waits for a free reader before it gets a 503.
const READER_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Db {
    /// Many readers: WAL lets them run beside the writer.
    readers: Pool<Manager>,
    /// A few more, for the pages of long downloads.
    downloads: Pool<Manager>,
    /// Exactly one writer, so writes queue here instead of fighting over SQLite's lock.
    writer: Pool<Manager>,
    path: PathBuf,
    /// PostgreSQL (true) or a SQLite file (false).
    postgres: bool,
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
            .max_size(READERS)
            .connection_timeout(READER_WAIT)
            .build(manager(path, true))?;
        let downloads = Pool::builder()
            .max_size(DOWNLOAD_READERS)
            .connection_timeout(READER_WAIT)
            .build(manager(path, true))?;
        Ok(Db {
            readers,
            downloads,
            writer,
            path: path.to_path_buf(),
            postgres: false,
        })
    }

    /// Opens the PostgreSQL database at `url` (postgres://...), applying
    /// `schema_postgres.sql` to an empty one and refusing one of another schema version. The
    /// same pools as a file's: readers (each statement stopped at [`QUERY_BUDGET`]), the
    /// download readers, and one writer, so writes keep their one-at-a-time order.
    pub fn open_postgres(url: &str) -> Result<Db> {
        let target = crate::sql::pg_url::parse(url).map_err(Error::bad_request)?;
        // On a thread of its own: the blocking client runs a small runtime of its own, which
        // tokio refuses to start on a thread that drives async tasks (the caller's may).
        std::thread::scope(|s| {
            s.spawn(|| {
                let client = target.open("PostgreSQL").map_err(Error::Internal)?;
                migrate(&mut Connection::postgres(client))
            })
            .join()
            .map_err(|_| Error::Internal("opening the PostgreSQL database panicked".into()))?
        })?;
        let manager = |init: &'static str| Manager::Postgres {
            manager: r2d2_postgres::PostgresConnectionManager::new(
                target.config.clone(),
                target.tls.clone(),
            ),
            init,
        };
        const READER_INIT: &str = "SET statement_timeout = 5000";
        let writer = Pool::builder()
            .max_size(1)
            .connection_timeout(Duration::from_secs(60))
            .build(manager(""))?;
        let readers = Pool::builder()
            .max_size(READERS)
            .connection_timeout(READER_WAIT)
            .build(manager(READER_INIT))?;
        let downloads = Pool::builder()
            .max_size(DOWNLOAD_READERS)
            .connection_timeout(READER_WAIT)
            .build(manager(READER_INIT))?;
        Ok(Db {
            readers,
            downloads,
            writer,
            path: PathBuf::new(),
            postgres: true,
        })
    }

    /// The database file (empty for a PostgreSQL database).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is a PostgreSQL database (no file of its own to watch).
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// Runs `f` on a read-only connection, within [`QUERY_BUDGET`].
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        read_on(self.readers.clone(), crate::telemetry::Pool::Read, f).await
    }

    /// Like [`Db::read`], then `after` with what `f` read, on the same blocking thread once the
    /// connection is back in its pool (see [`Db::read_page_then`]).
    pub async fn read_then<T, U, F, A>(&self, f: F, after: A) -> Result<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        A: FnOnce(T) -> U + Send + 'static,
    {
        let pool = self.readers.clone();
        blocking(move || Ok(after(read_with(&pool, crate::telemetry::Pool::Read, f)?))).await
    }

    /// Like [`Db::read`], on the connections kept for the pages of long downloads.
    pub async fn read_page<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        read_on(self.downloads.clone(), crate::telemetry::Pool::Page, f).await
    }

    /// Like [`Db::read_page`], then `after` with what `f` read, on the same blocking thread
    /// once the connection is back in its pool: a download renders its page without holding a
    /// reader, and without a second hop between threads (on a busy machine each hop is a wait
    /// for a CPU).
    pub async fn read_page_then<T, U, F, A>(&self, f: F, after: A) -> Result<U>
    where
        T: Send + 'static,
        U: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
        A: FnOnce(T) -> U + Send + 'static,
    {
        let pool = self.downloads.clone();
        blocking(move || Ok(after(read_with(&pool, crate::telemetry::Pool::Page, f)?))).await
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
            let mut conn = acquire(&pool, crate::telemetry::Pool::Write)?;
            write_tx(&mut conn, f)
        })
        .await
    }

    /// Like [`Db::write`], then runs `after` with the result once the transaction has
    /// committed, while this call still holds the one writer: what `after` does (publishing a
    /// batch to live streams) happens in commit order.
    pub async fn write_then<T, F, A>(&self, f: F, after: A) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction) -> Result<T> + Send + 'static,
        A: FnOnce(&T) + Send + 'static,
    {
        let pool = self.writer.clone();
        blocking(move || {
            let mut conn = acquire(&pool, crate::telemetry::Pool::Write)?;
            let out = write_tx(&mut conn, f)?;
            after(&out);
            Ok(out)
        })
        .await
    }

    /// Copies the WAL into the main file and truncates it, so the `.db` file alone is complete.
    /// Fails, saying why, if the checkpoint could not finish: SQLite reports that (a reader
    /// still on an old snapshot, the WAL not truncated) in the row, not as an error.
    pub fn checkpoint(&self) -> Result<()> {
        let pooled = self.writer.get()?;
        let Some(conn) = pooled.sqlite() else {
            return Ok(());
        };
        let (busy, log, done): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        if busy != 0 || log != done {
            return Err(Error::Internal(format!(
                "the WAL checkpoint did not finish ({done} of {log} pages copied{})",
                if busy != 0 {
                    ", blocked by a reader"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    /// Gives up to `pages` free pages back to the filesystem (`PRAGMA incremental_vacuum`) in
    /// one short write, if the file frees pages incrementally and has more than `at_least`
    /// free; the pages it freed (0 when there was nothing worth doing). `None` when the writer
    /// is busy: the server is not idle.
    pub fn reclaim(&self, at_least: i64, pages: i64) -> Result<Option<i64>> {
        let Some(mut conn) = self.writer.try_get() else {
            return Ok(None);
        };
        if conn.sqlite().is_none() {
            return Ok(Some(0));
        }
        let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        if mode != 2 || free <= at_least {
            return Ok(Some(0));
        }
        write_tx(&mut conn, |tx| {
            // The pragma frees one page per step of its statement: step it to the end.
            let mut stmt = tx.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
            Ok(())
        })?;
        let left: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        Ok(Some(free - left))
    }

    /// One checkpoint attempt for [`crate::wal`]: folds the WAL into the main file and
    /// truncates it, waiting at most `wait` for readers still on the WAL. `None` when the
    /// writer is busy (a write is under way, so the server is not idle); else whether every
    /// frame reached the main file, which makes the `.db` file alone complete even when a reader
    /// kept the WAL from being truncated.
    pub fn fold_wal(&self, wait: Duration) -> Result<Option<bool>> {
        let Some(pooled) = self.writer.try_get() else {
            return Ok(None);
        };
        // Only SQLite keeps a WAL file beside the database.
        let Some(conn) = pooled.sqlite() else {
            return Ok(Some(true));
        };
        conn.busy_timeout(wait)?;
        let row = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        conn.busy_timeout(Duration::from_secs(5))?;
        let (log, done) = row?;
        Ok(Some(log == done))
    }
}

/// A connection from `pool`, the wait counted for `/metrics`.
fn acquire(
    pool: &Pool<Manager>,
    which: crate::telemetry::Pool,
) -> Result<r2d2::PooledConnection<Manager>> {
    let asked = Instant::now();
    let conn = pool.get();
    crate::telemetry::note_acquire(which, asked.elapsed());
    Ok(conn?)
}

/// Runs `f` on a connection from `pool`, within [`QUERY_BUDGET`].
async fn read_on<T, F>(pool: Pool<Manager>, which: crate::telemetry::Pool, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    blocking(move || read_with(&pool, which, f)).await
}

/// Runs `f` on a connection from `pool`, within [`QUERY_BUDGET`], on the calling thread; the
/// connection goes back to the pool before this returns.
fn read_with<T>(
    pool: &Pool<Manager>,
    which: crate::telemetry::Pool,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let conn = acquire(pool, which)?;
    let deadline = Instant::now() + QUERY_BUDGET;
    match &*conn {
        Connection::Sqlite(c) => {
            c.progress_handler(BUDGET_CHECK_EVERY, Some(move || Instant::now() > deadline))?;
            let out = f(&conn);
            c.progress_handler(0, None::<fn() -> bool>)?;
            out
        }
        // PostgreSQL stops a statement past its budget itself (`statement_timeout`). The read
        // is one transaction: it sees one snapshot, and its long queries read a page at a time
        // through cursors (sql::pg), which only a transaction has.
        Connection::Postgres(_) => {
            let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Deferred)?;
            f(&tx)
        }
    }
}

pub fn write_tx<T>(conn: &mut Connection, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
    let done = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    })();
    // What /api/health says about writes: the last one's fate (a refusal for a full disk, until
    // one commits again).
    match &done {
        Ok(_) => crate::telemetry::note_write(true),
        Err(Error::StorageFull(_)) => crate::telemetry::note_write(false),
        Err(_) => {}
    }
    done
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
    Manager::Sqlite(
        SqliteConnectionManager::file(path)
            .with_flags(flags)
            .with_init(|c| {
                // Every store statement is cached (parsing one cost more than running it); room
                // for all of them, so a busy endpoint never evicts another's.
                c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                c.execute_batch(CONNECTION_PRAGMAS)
            }),
    )
}

/// Opens one read-write connection with the standard PRAGMAs (used by the CLI and by tests).
/// A new database file is created owner-only, whatever the umask: it holds the token-signing
/// secret. SQLite gives its `-wal` and `-shm` files the database file's mode.
pub fn open_connection(path: &Path) -> Result<Connection> {
    create_private(path)?;
    let conn = rusqlite::Connection::open(path)?;
    // Before anything changes the file (WAL below is written into its header): a file from a
    // newer Tora is left exactly as it was.
    refuse_newer(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)?;
    // A new file frees the pages of deleted rows back to the filesystem bit by bit (the server
    // does it when idle: `Db::reclaim`). Only an empty file can take the setting without a
    // VACUUM (`tora vacuum` converts an older one), and only before WAL is written into it.
    let empty: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if empty == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    conn.execute_batch(CONNECTION_PRAGMAS)?;
    // WAL is a property of the file: set once, it stays for every later connection.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Internal(format!(
            "could not switch to WAL (got {mode})"
        )));
    }
    Ok(Connection::Sqlite(conn))
}

/// The file's schema version, or an error saying to upgrade Tora if it is newer than this one.
fn refuse_newer(version: i64) -> Result<i64> {
    if version > SCHEMA_VERSION {
        return Err(Error::Internal(format!(
            "database schema version {version} is newer than this tora understands ({SCHEMA_VERSION}); upgrade tora"
        )));
    }
    Ok(version)
}

/// Applies `schema.sql` to a fresh database, upgrades a file from an older Tora one version per
/// transaction, and refuses a file from a newer Tora.
/// The version `schema.sql` and the migrations record: SQLite's `PRAGMA user_version`.
fn schema_version(conn: &Connection) -> Result<i64> {
    match conn {
        Connection::Sqlite(c) => Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?),
        Connection::Postgres(_) => {
            let exists: i64 = conn.query_row(
                "SELECT count(*) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = 'schema_version'",
                [],
                |r| r.get(0),
            )?;
            if exists == 0 {
                return Ok(0);
            }
            Ok(conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0))?)
        }
    }
}

fn set_schema_version(conn: &Connection, version: i64) -> Result<()> {
    match conn {
        Connection::Sqlite(c) => Ok(c.pragma_update(None, "user_version", version)?),
        Connection::Postgres(_) => {
            conn.execute("UPDATE schema_version SET version = ?1", [version])?;
            Ok(())
        }
    }
}

pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version = refuse_newer(schema_version(conn)?)?;
    if version == 0 && conn.sqlite().is_none() {
        // Servers started together on an empty database: one makes the tables (a lock held
        // until its transaction ends), the others wait for it and then find them made.
        return write_tx(conn, |tx| {
            tx.execute_batch(&format!("SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))?;
            if schema_version(tx)? == 0 {
                tx.execute_batch(SCHEMA_POSTGRES)?;
            }
            Ok(())
        });
    }
    if version < SCHEMA_VERSION && conn.sqlite().is_none() {
        return Err(Error::Internal(format!(
            "this PostgreSQL database has schema version {version}; this tora needs {SCHEMA_VERSION} and has no PostgreSQL migrations yet"
        )));
    }
    if version == 0 {
        write_tx(conn, |tx| {
            tx.execute_batch(SCHEMA)?;
            set_schema_version(tx, SCHEMA_VERSION)?;
            Ok(())
        })?;
        return Ok(());
    }
    for &(to, sql, step) in MIGRATIONS.iter().filter(|(to, ..)| *to > version) {
        eprintln!("upgrading the database to schema version {to}");
        write_tx(conn, |tx| {
            tx.execute_batch(sql)?;
            step(tx)?;
            set_schema_version(tx, to)?;
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
    // create_new makes the refusal to overwrite atomic, not a check-then-act race; the copy
    // holds the signing secret, so it is owner-only like the database.
    private_options()
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
        let source = rusqlite::Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        source.execute_batch("PRAGMA busy_timeout = 5000;")?;
        let mut target = rusqlite::Connection::open(dest)?;
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

/// What `tora vacuum` found and did.
pub struct Vacuumed {
    pub before: u64,
    pub after: u64,
    /// Free pages (bytes) inside the file before: what a vacuum gives back.
    pub reclaimable: u64,
    /// Whether the file frees pages incrementally now (it was converted if it did not).
    pub incremental: bool,
}

/// `tora vacuum`: rewrites a database file that no server is using so it holds no free pages
/// and gives the pages of later deletions back by itself (auto_vacuum = INCREMENTAL, which an
/// older file only takes through a VACUUM). With `dry_run`, only measures. Needs free space
/// about the file's size for the rewrite, checked first.
pub fn vacuum(path: &Path, dry_run: bool) -> Result<Vacuumed> {
    if !path.exists() {
        return Err(Error::NotFound(format!(
            "no database at {}",
            path.display()
        )));
    }
    if in_use(path)? {
        return Err(Error::Conflict(format!(
            "a tora serve is using {}: stop it first (the server gives free pages back by itself once the file has been vacuumed once)",
            path.display()
        )));
    }
    let mut conn = open_connection(path)?;
    migrate(&mut conn)?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    let before = std::fs::metadata(path)?.len();
    let reclaimable = (free * page_size) as u64;
    if dry_run {
        return Ok(Vacuumed {
            before,
            after: before - reclaimable,
            reclaimable,
            incremental: mode == 2,
        });
    }
    if let Some(space) = space(path)
        && space.free < before.saturating_add(64 << 20)
    {
        return Err(Error::StorageFull(format!(
            "vacuuming {} rewrites it: it needs about {} MiB free beside it, and {} MiB are",
            path.display(),
            before >> 20,
            space.free >> 20
        )));
    }
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    drop(conn);
    Ok(Vacuumed {
        before,
        after: std::fs::metadata(path)?.len(),
        reclaimable,
        incremental: mode == 2,
    })
}

/// Marks `path` (created owner-only if new) as served by this process until it exits: an exclusive `flock` on the database
/// file, which a second `tora serve` or `tora restore` on the same file finds taken. (SQLite's
/// own locks are `fcntl` byte ranges, a separate table on Linux, so this does not touch them.)
/// The descriptor is leaked on purpose: closing any descriptor of a file drops the process's
/// `fcntl` locks on it, SQLite's included, so it must stay open as long as the process.
pub fn hold_for_serving(path: &Path) -> Result<()> {
    check_writable(path)?;
    create_private(path)?;
    match try_lock(path)? {
        Some(file) => {
            std::mem::forget(file);
            Ok(())
        }
        None => Err(Error::Conflict(format!(
            "another tora serve is using {}; stop it first, or give this one its own --db",
            path.display()
        ))),
    }
}

/// One connection to the PostgreSQL database at `url` (`shown` names it in messages), for the
/// admin commands; not for a thread that drives async tasks (the blocking client refuses).
pub fn connect_postgres(url: &str, shown: &str) -> Result<Connection> {
    let target =
        crate::sql::pg_url::parse(url).map_err(|e| Error::bad_request(format!("{shown}: {e}")))?;
    let client = target.open(shown).map_err(Error::bad_request)?;
    Ok(Connection::postgres(client))
}

/// The `application_name` of the connection holding a server's shared advisory lock.
pub const SERVING_LOCK_NAME: &str = "tora serve lock";

/// How often the connection holding the serving lock is checked (one `SELECT 1`).
const SERVING_LOCK_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Marks the PostgreSQL database at `url` as served by this process until it exits: the
/// shared advisory lock [`crate::migrate::ADVISORY_LOCK`] on a connection of its own (not from
/// a pool), which any number of servers share and `tora migrate` (which takes it exclusively)
/// finds taken. Refuses while a migrate holds it.
///
/// The lock lives only as long as its connection. A thread checks that connection every
/// second; if PostgreSQL dropped it (a restart, a failover, an operator's
/// `pg_terminate_backend`), it connects again and takes the lock again, retrying while the
/// database is unreachable. Should a migrate have taken the lock meanwhile, serving beside it
/// would write into (or under) a copy in progress: the returned receiver then gets the reason,
/// and the server stops.
pub fn hold_postgres_for_serving(
    url: &str,
    shown: &str,
) -> Result<tokio::sync::oneshot::Receiver<String>> {
    let mut target =
        crate::sql::pg_url::parse(url).map_err(|e| Error::bad_request(format!("{shown}: {e}")))?;
    target.config.application_name(SERVING_LOCK_NAME);
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
    let shown = shown.to_string();
    // A thread of its own: the blocking client refuses to run on a thread driving async tasks.
    std::thread::Builder::new()
        .name("tora-pg-lock".into())
        .spawn(move || {
            let mut client = match take_serving_lock(&target, &shown) {
                Ok(client) => {
                    let _ = first_tx.send(Ok(()));
                    client
                }
                Err(e) => {
                    let _ = first_tx.send(Err(e));
                    return;
                }
            };
            loop {
                std::thread::sleep(SERVING_LOCK_CHECK);
                if client.is_valid(SERVING_LOCK_CHECK * 5).is_ok() {
                    continue;
                }
                eprintln!(
                    "the connection holding this server's lock on {shown} was lost; taking the lock again"
                );
                client = loop {
                    match take_serving_lock(&target, &shown) {
                        Ok(client) => break client,
                        Err(Error::Conflict(_)) => {
                            let _ = lost_tx.send(format!(
                                "a tora migrate took the lock on {shown} while this server's connection holding it was down"
                            ));
                            return;
                        }
                        // Unreachable for now: requests fail on their own meanwhile.
                        Err(_) => std::thread::sleep(SERVING_LOCK_CHECK),
                    }
                };
                eprintln!("holding the lock on {shown} again");
            }
        })
        .map_err(|e| Error::Internal(format!("starting the lock thread: {e}")))?;
    first_rx
        .recv()
        .map_err(|_| Error::Internal("the PostgreSQL lock thread ended".into()))??;
    Ok(lost_rx)
}

/// Connects to `target` and takes the serving lock shared; Conflict while a migrate holds it.
fn take_serving_lock(target: &crate::sql::pg_url::Target, shown: &str) -> Result<postgres::Client> {
    let mut client = target.open(shown).map_err(Error::Internal)?;
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock_shared($1)",
            &[&crate::migrate::ADVISORY_LOCK],
        )
        .map_err(|e| Error::Internal(format!("locking {shown}: {e}")))?
        .get(0);
    if !got {
        return Err(Error::Conflict(format!(
            "a tora migrate is using {shown}; wait for it to finish, then start again"
        )));
    }
    Ok(client)
}

/// The filesystem holding a database file: its free and total bytes, and whether it is mounted
/// read-only. None where it cannot be asked.
pub struct Space {
    pub free: u64,
    pub total: u64,
    pub read_only: bool,
}

pub fn space(path: &Path) -> Option<Space> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    #[cfg(unix)]
    {
        let fs = rustix::fs::statvfs(dir).ok()?;
        Some(Space {
            free: fs.f_bavail.saturating_mul(fs.f_frsize),
            total: fs.f_blocks.saturating_mul(fs.f_frsize).max(1),
            read_only: fs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Refuses, saying what to do, a database a server could not write: a directory that does not
/// exist, is on a read-only filesystem, or does not let this user create files (SQLite creates
/// `-wal` and `-shm` beside the database), or a database file that cannot be written.
fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::Internal(format!(
            "the directory {0} (for the database {1}) does not exist: create it (mkdir -p {0}) or choose another --db",
            dir.display(),
            path.display()
        )));
    }
    let why = |e: &std::io::Error, what: &Path| match e.kind() {
        std::io::ErrorKind::ReadOnlyFilesystem => format!(
            "{} is on a read-only filesystem, and tora serve writes the database and its -wal and -shm files there: mount it read-write or choose another --db",
            what.display()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "this user may not write {} (tora serve writes the database and creates -wal and -shm files beside it): fix its owner or permissions, or choose another --db",
            what.display()
        ),
        std::io::ErrorKind::StorageFull => format!(
            "the disk holding {} is full: free space, then start again",
            what.display()
        ),
        _ => format!("cannot write {}: {e}", what.display()),
    };
    if path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::Internal(why(&e, path)))?;
    }
    let probe = dir.join(format!(".tora-probe-{}", std::process::id()));
    match private_options().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::Internal(why(&e, &dir))),
    }
}

/// Whether a `tora serve` holds `path` (see [`hold_for_serving`]); false if there is no file.
pub fn in_use(path: &Path) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    // Dropping the probe's descriptor is safe: this process has no SQLite connection to it.
    Ok(try_lock(path)?.is_none())
}

/// The file open with an exclusive `flock` taken, or `None` if another process holds one
/// (a `tora serve`, or a `tora migrate` copying it). Keep it open while working on the file, and
/// close every SQLite connection to the file before dropping it (see [`hold_for_serving`]).
pub fn try_lock(path: &Path) -> Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|e| Error::Internal(format!("cannot open {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use rustix::fs::{FlockOperation, flock};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(file)),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(Error::Internal(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }
    #[cfg(not(unix))]
    Ok(Some(file))
}

/// File options that create owner-only (0600) files on Unix, whatever the umask.
pub fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Creates `path` as an empty owner-only file if nothing is there yet.
fn create_private(path: &Path) -> Result<()> {
    match private_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Internal(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// The database's files (itself, `-wal`, `-shm`) that other users may read, with their modes:
/// each is a copy of the signing secret for anyone with a shell on the machine.
pub fn readable_by_others(path: &Path) -> Vec<(PathBuf, u32)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut out = Vec::new();
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = PathBuf::from(name);
            if let Ok(meta) = std::fs::metadata(&file) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    out.push((file, mode));
                }
            }
        }
        out
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Vec::new()
    }
}

/// A fresh database with the current schema for a store test: SQLite in memory, or with
/// `TORA_TEST_ENGINE=postgres` a new database of the test cluster (`sql::pg::testing`), so the
/// store's own tests run on either engine unchanged.
#[cfg(test)]
pub fn memory() -> Connection {
    if std::env::var("TORA_TEST_ENGINE").as_deref() == Ok("postgres") {
        let mut conn = crate::sql::pg::testing::connection();
        migrate(&mut conn).expect("schema applies");
        return conn;
    }
    sqlite_memory()
}

/// A fresh SQLite database in memory with the current schema, whatever the test engine.
#[cfg(test)]
pub fn sqlite_memory() -> Connection {
    let mut conn =
        Connection::from(rusqlite::Connection::open_in_memory().expect("in-memory sqlite"));
    conn.execute_batch(CONNECTION_PRAGMAS).expect("pragmas");
    migrate(&mut conn).expect("schema applies");
    conn
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::logs::{self, Selection};
    use crate::store::{experiments, series, users, workspaces};

    /// With every reader busy, the next read waits [`READER_WAIT`], then gets a 503 that says
    /// the server is busy (not a 500 after half a minute).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_every_reader_busy_a_read_gets_a_503_after_the_wait() {
        let dir = std::env::temp_dir().join(format!("tora-readers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::open(&dir.join("tora.db")).unwrap();
        let hold = READER_WAIT + Duration::from_secs(2);
        let busy: Vec<_> = (0..READERS)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.read(move |_| {
                        std::thread::sleep(hold);
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        match db.read(|_| Ok(())).await {
            Err(e @ Error::Unavailable { .. }) => assert!(e.message().contains("busy"), "{e}"),
            other => panic!("expected a 503, got {other:?}"),
        }
        assert!(started.elapsed() >= READER_WAIT - Duration::from_millis(500));
        for b in busy {
            b.await.unwrap().unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A PostgreSQL database opens with the schema applied once, and reads and writes go
    /// through the same doors as a file's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_postgres_database_serves_reads_and_writes() {
        let url = crate::sql::pg::testing::database();
        let db = Db::open_postgres(&url).unwrap();
        let user = db
            .write(|tx| users::create(tx, "ada@lab.org", "h", 1))
            .await
            .unwrap();
        let found = db
            .read(|c| users::by_email(c, "Ada@Lab.org"))
            .await
            .unwrap()
            .expect("found by its address in another case");
        assert_eq!(found.id, user.id);
        // a second open finds the schema in place
        let again = Db::open_postgres(&url).unwrap();
        let n = again
            .read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))?))
            .await
            .unwrap();
        assert_eq!(n, 1);
    }

    /// A checkpoint that a reader blocks says so instead of passing for a clean one.
    #[test]
    fn a_blocked_checkpoint_is_reported() {
        let dir = std::env::temp_dir().join(format!("tora-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tora.db");
        let db = Db::open(&path).unwrap();
        let writer = open_connection(&path).unwrap();
        writer
            .execute_batch("INSERT INTO settings (key, value) VALUES ('a', x'01')")
            .unwrap();
        // A reader holding a snapshot from before more writes keeps them in the WAL.
        let reader = Connection::from(rusqlite::Connection::open(&path).unwrap());
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM settings", [], |r| r.get(0))
            .unwrap();
        writer
            .execute_batch("INSERT INTO settings (key, value) VALUES ('b', x'02')")
            .unwrap();
        let err = db.checkpoint().unwrap_err().to_string();
        assert!(err.contains("did not finish"), "{err}");
        reader.execute_batch("COMMIT").unwrap();
        db.checkpoint().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A read that would run for hours is stopped at its budget with a 503 that says why, and
    /// every pooled connection (the stopped one too) serves the next reads normally.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_past_its_budget_is_stopped_and_its_connection_reused() {
        let dir = std::env::temp_dir().join(format!("tora-budget-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::open(&dir.join("tora.db")).unwrap();
        let started = Instant::now();
        let endless = db
            .read(|c| {
                Ok(c.query_row(
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT count(*) FROM n",
                    [],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await;
        let took = started.elapsed();
        match endless {
            Err(e @ Error::Unavailable { .. }) => assert!(e.message().contains("budget"), "{e}"),
            other => panic!("expected the budget's 503, got {other:?}"),
        }
        assert!(took >= QUERY_BUDGET && took < QUERY_BUDGET * 3, "{took:?}");
        for _ in 0..READERS * 2 {
            let n = db
                .read(
                    |c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))?),
                )
                .await
                .unwrap();
            assert_eq!(n, 0);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A file of schema 2 comes up with nothing it used to call proven: every address is
    /// unconfirmed (the old signup reply let anyone confirm their own), no old confirmation
    /// token works, and a pending invitation keeps working by address for 7 days, without a
    /// link.
    #[test]
    fn a_version_2_file_forgets_every_confirmation_and_keeps_invitations_for_a_week() {
        let mut conn = Connection::from(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch(CONNECTION_PRAGMAS).unwrap();
        conn.execute_batch(include_str!("../tests/fixtures/schema_v1.sql"))
            .unwrap();
        set_schema_version(&conn, 1).unwrap();
        let (_, sql, step) = MIGRATIONS[0];
        write_tx(&mut conn, |tx| {
            tx.execute_batch(sql)?;
            step(tx)?;
            set_schema_version(tx, 2)?;
            Ok(())
        })
        .unwrap();
        conn.execute_batch(
            "INSERT INTO users (id, email, password_hash, email_confirmed_at, created_at)
               VALUES ('u1', 'pi@lab.org', 'h', 5, 1), ('u2', 'bob@lab.org', 'h', 6, 1);
             INSERT INTO confirmations VALUES (x'00', 'u2', 1);
             INSERT INTO workspaces (id, name, created_at) VALUES ('w1', 'lab', 1);
             INSERT INTO invitations (id, workspace_id, email, role_id, invited_by, created_at)
               VALUES ('i1', 'w1', 'bob@lab.org', 3, 'u1', 1);",
        )
        .unwrap();

        let before = crate::time::now_ms();
        migrate(&mut conn).unwrap();

        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let confirmed: i64 = conn
            .query_row(
                "SELECT count(*) FROM users WHERE email_confirmed_at IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(confirmed, 0);
        let tokens: i64 = conn
            .query_row("SELECT count(*) FROM confirmations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tokens, 0);
        let week = 7 * 24 * 3600 * 1000;
        let inv = crate::store::invitations::get(&conn, "i1", before + week - 60_000)
            .unwrap()
            .expect("an old invitation lives on for a week");
        assert_eq!(inv.email, "bob@lab.org");
        assert!(
            crate::store::invitations::get(&conn, "i1", before + week + 60_000)
                .unwrap()
                .is_none()
        );
        let token: Option<Vec<u8>> = conn
            .query_row("SELECT token_hash FROM invitations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(token, None, "an old invitation has no link");
    }

    /// Tables, columns (type, NOT NULL, default, key) and indexes, in a comparable form.
    fn layout(conn: &Connection) -> Vec<String> {
        let objects: Vec<(String, String)> = conn
            .prepare(
                "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<crate::sql::Result<_>>()
            .unwrap();
        let mut out = Vec::new();
        for (kind, name) in objects {
            out.push(format!("{kind} {name}"));
            let pragma = if kind == "table" {
                "table_info"
            } else {
                "index_info"
            };
            let mut columns = conn
                .prepare(&format!("SELECT * FROM pragma_{pragma}(?1)"))
                .unwrap();
            let count = columns.column_count();
            let rows = columns
                .query_map([&name], |r| {
                    (0..count)
                        .map(|i| {
                            r.get::<_, crate::sql::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<crate::sql::Result<Vec<_>>>()
                })
                .unwrap();
            for row in rows {
                out.push(format!("  {}", row.unwrap().join(" ")));
            }
        }
        out
    }

    /// `schema.sql` and the migrations agree: a file brought up from version 1 has the tables,
    /// columns and indexes of a fresh one.
    #[test]
    fn an_upgraded_file_has_the_layout_of_a_fresh_one() {
        let mut old = Connection::from(rusqlite::Connection::open_in_memory().unwrap());
        old.execute_batch(CONNECTION_PRAGMAS).unwrap();
        old.execute_batch(include_str!("../tests/fixtures/schema_v1.sql"))
            .unwrap();
        set_schema_version(&old, 1).unwrap();
        migrate(&mut old).unwrap();
        assert_eq!(layout(&old), layout(&sqlite_memory()));
    }

    /// A file of schema 5 (the last Tora before run groups) opens as version 6 with its runs
    /// in no group; a group set afterwards is stored, read back and found by the `group:`
    /// filter through the new index.
    #[test]
    fn a_version_5_file_is_upgraded_with_its_runs_in_no_group() {
        let mut conn = Connection::from(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch(CONNECTION_PRAGMAS).unwrap();
        conn.execute_batch(include_str!("../tests/fixtures/schema_v1.sql"))
            .unwrap();
        set_schema_version(&conn, 1).unwrap();
        for &(to, sql, step) in MIGRATIONS.iter().filter(|m| m.0 <= 5) {
            write_tx(&mut conn, |tx| {
                tx.execute_batch(sql)?;
                step(tx)?;
                set_schema_version(tx, to)?;
                Ok(())
            })
            .unwrap();
        }
        let u = users::create(&conn, "old@lab.org", "h", 0).unwrap();
        let ws = workspaces::personal(&conn, &u.id, 0).unwrap();
        // As version 5 made it: every column but run_group.
        conn.execute(
            "INSERT INTO experiments (id, uuid, workspace_id, created_by, name, tags, metadata, created_at, updated_at, ended_at, end_state)
               VALUES (3, '00000000-0000-4000-8000-000000000005', ?1, ?2, 'v5 run', '[\"a\"]', '{\"host\":\"gpu-1\"}', 10, 10, 20, 'finished')",
            [&ws, &u.id],
        )
        .unwrap();

        migrate(&mut conn).unwrap();

        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let id = "00000000-0000-4000-8000-000000000005";
        let old = experiments::get(&conn, id).unwrap().unwrap();
        assert_eq!(
            (
                old.name.as_str(),
                old.group,
                old.tags.as_str(),
                old.end_state
            ),
            (
                "v5 run",
                None,
                "[\"a\"]",
                Some(crate::run_state::EndState::Finished)
            )
        );
        let changes = experiments::Changes {
            name: None,
            description: None,
            hyperparams: None,
            tags: None,
            metadata: None,
            group: Some(Some("Sweep-1")),
        };
        experiments::update(&conn, old.rowid, &changes, 30).unwrap();
        assert_eq!(
            experiments::get(&conn, id)
                .unwrap()
                .unwrap()
                .group
                .as_deref(),
            Some("Sweep-1")
        );
        let filter = crate::query::parse("group:sweep-1").unwrap();
        let sort = crate::query::parse_sort("-created").unwrap();
        let page = experiments::page(&conn, &ws, Some(&filter), &sort, None, None, 40).unwrap();
        assert_eq!(page.total, 1);
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id FROM experiments e
                 WHERE e.workspace_id = ?1 AND e.run_group = ?2 COLLATE NOCASE",
                [&ws, "SWEEP-1"],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("experiments_group"), "{plan}");
    }

    /// A file of schema 6 (blocks, no step-ordered units) opens as version 8 with the units of
    /// every metric built from its points: the same units ingest would have kept, charts by
    /// step that match a scan of the points (a resumed run's re-logged steps included), and new
    /// points folded in after the old ones.
    #[test]
    fn a_version_6_file_is_upgraded_with_units_for_every_metric() {
        use crate::store::packed::Point;
        let mut conn = Connection::from(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch(CONNECTION_PRAGMAS).unwrap();
        conn.execute_batch(include_str!("../tests/fixtures/schema_v1.sql"))
            .unwrap();
        set_schema_version(&conn, 1).unwrap();
        for &(to, sql, step) in MIGRATIONS.iter().filter(|m| m.0 <= 6) {
            write_tx(&mut conn, |tx| {
                tx.execute_batch(sql)?;
                step(tx)?;
                set_schema_version(tx, to)?;
                Ok(())
            })
            .unwrap();
        }
        let u = users::create(&conn, "old@lab.org", "h", 0).unwrap();
        let ws = workspaces::personal(&conn, &u.id, 0).unwrap();
        conn.execute(
            "INSERT INTO experiments (id, uuid, workspace_id, created_by, name, created_at, updated_at)
               VALUES (4, '00000000-0000-4000-8000-000000000006', ?1, ?2, 'v6 run', 0, 0)",
            [&ws, &u.id],
        )
        .unwrap();
        // As version 6 stored them: a metric resumed from a checkpoint (steps 0..1000, then
        // 300..700 again), with NaN and Inf, and a result.
        let value = |s: i64, again: bool| match s % 50 {
            7 => f64::NAN,
            9 if again => f64::INFINITY,
            _ => s as f64 * if again { -1.0 } else { 1.0 },
        };
        let logged: Vec<(i64, f64)> = (0..1_000)
            .map(|s| (s, value(s, false)))
            .chain((300..700).map(|s| (s, value(s, true))))
            .collect();
        let points: Vec<Point> = logged
            .iter()
            .enumerate()
            .map(|(i, &(step, value))| Point {
                step,
                seq: i as i64 + 1,
                t: i as i64,
                value,
                msg_id: None,
            })
            .collect();
        conn.execute_batch(
            "INSERT INTO series (id, experiment_id, kind, name, count, nonfinite, first_step, last_step, ordered)
               VALUES (1, 4, 0, 'loss', 1400, 32, 0, 999, 0), (2, 4, 1, 'acc', 1, 0, -1, -1, 1);",
        )
        .unwrap();
        series::rebuild_blocks(&conn, 1, &points).unwrap();
        let acc = [Point {
            step: -1,
            seq: 1_401,
            t: 5,
            value: 0.9,
            msg_id: None,
        }];
        series::rebuild_blocks(&conn, 2, &acc).unwrap();

        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);

        let exp = experiments::get(&conn, "00000000-0000-4000-8000-000000000006")
            .unwrap()
            .unwrap();
        let all = series::list(&conn, exp.rowid).unwrap();
        let (loss, acc) = (&all[0], &all[1]);
        assert_eq!((loss.name.as_str(), acc.name.as_str()), ("loss", "acc"));
        assert!(acc.open_unit.is_none(), "results have no units");
        let built = crate::store::units::build(&conn, loss.id, points.iter().cloned()).unwrap();
        assert_eq!(loss.open_unit, built.open_column());
        let b =
            series::downsample(&conn, &exp, loss, series::Axis::Step, None, None, 5_000).unwrap();
        assert_eq!(b.x, (0..1_000).collect::<Vec<_>>(), "each step once");
        assert_eq!(b.last[400], Some(-400.0), "the later value on the line");
        assert_eq!(
            (b.min[400], b.max[400], b.count[400]),
            (Some(-400.0), Some(400.0), 2)
        );
        assert_eq!((b.last[309], b.nonfinite[309]), (Some(309.0), 1));
        assert_eq!((b.last[307], b.nonfinite[307]), (None, 2));
        let b = series::downsample(
            &conn,
            &exp,
            loss,
            series::Axis::Step,
            Some(10),
            Some(990),
            3,
        )
        .unwrap();
        assert_eq!(b.total, 981 + 400);
        assert_eq!(b.count.iter().sum::<i64>(), b.total);

        // New points go on after the old ones, as if the file had always had units.
        let more: Vec<logs::NewLog> = (500..1_200)
            .map(|s| logs::NewLog {
                msg_id: None,
                name: "loss".into(),
                kind: logs::Kind::Metric,
                step: Some(s),
                value: s as f64 / 7.0,
                at: None,
                extra_metadata: None,
            })
            .collect();
        logs::insert(&conn, &exp, &more, 10).unwrap();
        let loss = series::list(&conn, exp.rowid).unwrap().remove(0);
        let every = series::all_points(&conn, loss.id).unwrap();
        assert_eq!(every.len(), 2_100);
        let rebuilt = crate::store::units::build(&conn, loss.id, every).unwrap();
        assert_eq!(loss.open_unit, rebuilt.open_column());
        let stored: Vec<(i64, Vec<u8>)> = conn
            .prepare("SELECT id, data FROM series_units ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<crate::sql::Result<_>>()
            .unwrap();
        assert_eq!(stored, rebuilt.rows());
    }

    /// A file written by the previous Tora (schema 1: one `logs` row per point) opens with every
    /// point, id, msg_id and value intact, and takes new points after them.
    #[test]
    fn a_version_1_file_is_upgraded_with_every_point_intact() {
        let mut conn = Connection::from(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch(CONNECTION_PRAGMAS).unwrap();
        conn.execute_batch(include_str!("../tests/fixtures/schema_v1.sql"))
            .unwrap();
        set_schema_version(&conn, 1).unwrap();
        let u = users::create(&conn, "old@lab.org", "h", 0).unwrap();
        let ws = workspaces::personal(&conn, &u.id, 0).unwrap();
        // As version 1 made it: without the run-state columns of version 4.
        conn.execute(
            "INSERT INTO experiments (id, uuid, workspace_id, created_by, name, created_at, updated_at)
               VALUES (7, '00000000-0000-4000-8000-000000000002', ?1, ?2, 'old run', 0, 0)",
            [&ws, &u.id],
        )
        .unwrap();
        // What version 1 wrote: "loss" in step order with UUID msg_ids and a NaN (NULL), "acc"
        // with a late lower step and text msg_ids, one result with metadata.
        conn.execute_batch(&format!(
            "INSERT INTO series (id, experiment_id, kind, name, count, last_step, ordered, updated_at)
               VALUES (1, {e}, 0, 'loss', 300, 299, 1, 5), (2, {e}, 0, 'acc', 3, 9, 0, 5),
                      (3, {e}, 1, 'best', 1, NULL, 1, 5);
             INSERT INTO log_metadata VALUES ({e}, 304, '{{\"type\":\"result\",\"epoch\":3}}');
             UPDATE experiments SET next_seq = 305 WHERE id = {e};",
            e = 7
        ))
        .unwrap();
        let mut insert = conn
            .prepare("INSERT INTO logs (series_id, step, msg_id, seq, value, t) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .unwrap();
        for i in 0..300i64 {
            let uuid = uuid::Uuid::from_u128(0xabc0_0000 + i as u128);
            let value = (i != 7).then_some(i as f64 / 2.0);
            insert
                .execute(crate::sql::params![
                    1,
                    i,
                    uuid.as_bytes().as_slice(),
                    i + 1,
                    value,
                    i
                ])
                .unwrap();
        }
        for (step, seq) in [(9, 301), (2, 302), (5, 303)] {
            insert
                .execute(crate::sql::params![
                    2,
                    step,
                    format!("acc-{step}"),
                    seq,
                    0.5,
                    400
                ])
                .unwrap();
        }
        insert
            .execute(crate::sql::params![3, -1, "best", 304, 0.9, 401])
            .unwrap();
        drop(insert);

        migrate(&mut conn).unwrap();

        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let exp = experiments::get(&conn, "00000000-0000-4000-8000-000000000002")
            .unwrap()
            .expect("the old run is there");
        assert_eq!(exp.rowid, 7);
        // Version 4: an old run has no heartbeat and no end, and empty metadata; quiet since
        // long before the upgrade, it reads as finished when its series last changed (t = 5).
        assert_eq!(exp.metadata, "{}");
        assert_eq!(
            (exp.heartbeat_at, exp.ended_at, exp.end_state),
            (None, None, None)
        );
        let now = crate::time::now_ms();
        assert_eq!(
            exp.activity().state(now),
            crate::run_state::RunState::Finished
        );
        assert_eq!(exp.activity().ended_at(now), Some(5));
        let old_table: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'logs'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_table, 0, "the old table is gone");

        let all = logs::list(&conn, &exp, Selection::All).unwrap();
        assert_eq!(all.len(), 304);
        assert_eq!(
            all.iter().map(|l| l.seq).collect::<Vec<_>>(),
            (1..=304).collect::<Vec<_>>()
        );
        assert_eq!(
            all[0].msg_id.as_ref().unwrap().to_string(),
            uuid::Uuid::from_u128(0xabc0_0000).to_string()
        );
        assert!(all[7].value.is_nan());
        assert_eq!(all[299].value, 149.5);
        assert_eq!(all[299].created_at, 299);
        let acc: Vec<Option<i64>> = logs::list(&conn, &exp, Selection::Metrics)
            .unwrap()
            .into_iter()
            .filter(|l| &*l.name == "acc")
            .map(|l| l.step)
            .collect();
        assert_eq!(
            acc,
            vec![Some(2), Some(5), Some(9)],
            "by step, though stored 9, 2, 5"
        );
        let best = &all[303];
        assert_eq!((&*best.name, best.step), ("best", None));
        assert_eq!(
            best.extra_metadata.as_deref(),
            Some("{\"type\":\"result\",\"epoch\":3}")
        );

        // The blocks were rebuilt: a chart reads them, a stream resumes from a cursor.
        let loss = series::list(&conn, exp.rowid).unwrap().remove(1);
        assert_eq!(loss.name, "loss");
        let b = series::downsample(&conn, &exp, &loss, series::Axis::Step, None, None, 2).unwrap();
        assert_eq!(b.count, vec![128, 172]);
        assert_eq!(logs::since(&conn, &exp, 300).unwrap().len(), 4);

        // A resend of an old point is still recognised; a new point goes after the old ones.
        let resend = logs::NewLog {
            msg_id: Some(logs::MsgId::parse("acc-2")),
            name: "acc".into(),
            kind: logs::Kind::Metric,
            step: Some(2),
            value: 0.5,
            at: None,
            extra_metadata: None,
        };
        let mut fresh = resend.clone();
        fresh.msg_id = Some(logs::MsgId::parse("acc-10"));
        fresh.step = Some(10);
        let done = logs::insert(&conn, &exp, &[resend, fresh], 500).unwrap();
        assert_eq!(
            (done.inserted, done.skipped, done.stored),
            (1, 1, vec![(1, 305)])
        );
    }
}
