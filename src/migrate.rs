//! `tora migrate --from SRC --to DEST`: copies a whole Tora database between SQLite and
//! PostgreSQL, either way, exactly: every table of the schema, row for row, the ids, blobs
//! (packed points, artifact chunks, hashes) byte for byte, the settings with the signing secret.
//!
//! The copy is one transaction on the destination, so a run that is interrupted (killed, a lost
//! connection, a failed check) leaves nothing there, and running it again starts over: into
//! PostgreSQL, the tables are created inside that transaction; into SQLite, the file is written
//! as `DEST.migrating` and only linked to DEST once complete and verified. Before committing,
//! every table is read back from the destination and its row count and SHA-256 (over the rows in
//! key order, in one canonical encoding of values, [`Tally`]) compared with the source's. A
//! destination that already holds exactly the source's data is left as it is (a rerun after a
//! finished one succeeds and says so); one that holds anything else is refused.
//!
//! The tables and their columns come from `schema.sql` itself (an in-memory database made by
//! [`crate::db::migrate`]), so a table added there is copied without a change here; the
//! PostgreSQL side is `schema_postgres.sql`, which a test holds to the same catalog.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::db::SCHEMA_VERSION;
use crate::error::{Error, Result};

/// The PostgreSQL schema (v10): `schema.sql`'s tables in PostgreSQL's types.
pub const SCHEMA_POSTGRES: &str = include_str!("../schema_postgres.sql");

/// The session advisory lock a process working on a PostgreSQL database holds (`tora migrate`
/// now; `tora serve` on PostgreSQL should take the same one, as it takes a `flock` on a file).
pub const ADVISORY_LOCK: i64 = 0x746f_7261; // "tora"

/// Set to a number of rows, makes `tora migrate` exit abruptly (no rollback, no clean-up, as a
/// kill would) once it has copied that many: how the tests interrupt a copy at a known point.
const ABORT_AFTER: &str = "TORA_MIGRATE_ABORT_AFTER";

/// One side of a migration.
#[derive(Debug, Clone)]
pub enum Place {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Place {
    pub fn parse(raw: &str) -> Place {
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Place::Postgres(raw.to_string())
        } else {
            Place::Sqlite(PathBuf::from(raw))
        }
    }

    /// For messages: the path, or the URL without its password.
    pub fn shown(&self) -> String {
        match self {
            Place::Sqlite(p) => p.display().to_string(),
            Place::Postgres(url) => redact(url),
        }
    }
}

/// A URL with any password replaced by `***` (in the user part and as a `password=` option).
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail: String = match tail.split_once('?') {
        Some((path, query)) => {
            let options: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k == "password" => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", options.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// What a migration did.
pub struct Migrated {
    /// Each table: name, rows, bytes of values (as encoded for the check).
    pub tables: Vec<(String, u64, u64)>,
    /// The destination already held exactly this data: nothing was written.
    pub already: bool,
    pub seconds: f64,
    /// Artifacts whose bytes are files in the server's --artifacts-dir, not rows.
    pub external_artifacts: u64,
}

/// How SQLite declares a column in schema.sql, which decides its PostgreSQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// INTEGER -> BIGINT
    Integer,
    /// REAL -> DOUBLE PRECISION
    Real,
    /// TEXT -> TEXT
    Text,
    /// BLOB -> BYTEA
    Blob,
    /// no type (experiment_hyperparams.value) -> JSONB, see [`HyperValue`]
    Any,
}

impl Kind {
    fn from_decl(decl: &str) -> Result<Kind> {
        Ok(match decl.to_ascii_uppercase().as_str() {
            "INTEGER" => Kind::Integer,
            "REAL" => Kind::Real,
            "TEXT" => Kind::Text,
            "BLOB" => Kind::Blob,
            "" => Kind::Any,
            other => {
                return Err(Error::Internal(format!(
                    "schema.sql declares a column {other}, which tora migrate does not map"
                )));
            }
        })
    }

    /// The PostgreSQL type schema_postgres.sql gives such a column (as information_schema
    /// names it).
    pub fn postgres(self) -> &'static str {
        match self {
            Kind::Integer => "bigint",
            Kind::Real => "double precision",
            Kind::Text => "text",
            Kind::Blob => "bytea",
            Kind::Any => "jsonb",
        }
    }
}

/// A table of schema.sql: its columns in order and the key its rows are read in.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub columns: Vec<(String, Kind)>,
    pub key: Vec<String>,
}

impl Table {
    fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(c, _)| c.as_str()).collect();
        names.join(", ")
    }

    fn select(&self) -> String {
        format!(
            "SELECT {} FROM {} ORDER BY {}",
            self.column_list(),
            self.name,
            self.key.join(", ")
        )
    }
}

/// `conn` brought to this binary's schema by the server's own code (`db::migrate`, which takes
/// the store's connection), handed back as the plain SQLite connection the copy uses.
fn migrated(mut conn: crate::sql::Connection) -> Result<Connection> {
    crate::db::migrate(&mut conn)?;
    match conn {
        crate::sql::Connection::Sqlite(c) => Ok(c),
        crate::sql::Connection::Postgres(_) => {
            Err(Error::Internal("a SQLite file opened as PostgreSQL".into()))
        }
    }
}

/// The tables of this binary's schema.sql in the order it creates them (a table's foreign keys
/// point only to tables before it), from a fresh in-memory database.
pub fn tables() -> Result<Vec<Table>> {
    let conn = migrated(Connection::open_in_memory()?.into())?;
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for name in names {
        let mut columns = Vec::new();
        let mut pk: Vec<(i64, String)> = Vec::new();
        let mut stmt = conn.prepare("SELECT name, type, pk FROM pragma_table_info(?1)")?;
        let mut rows = stmt.query([&name])?;
        while let Some(r) = rows.next()? {
            let column: String = r.get(0)?;
            let decl: String = r.get(1)?;
            let at: i64 = r.get(2)?;
            if at > 0 {
                pk.push((at, column.clone()));
            }
            columns.push((column, Kind::from_decl(&decl)?));
        }
        pk.sort();
        let mut key: Vec<String> = pk.into_iter().map(|(_, c)| c).collect();
        if key.is_empty() {
            // No primary key (artifact_chunks): its first UNIQUE constraint orders it.
            let index: Option<String> = conn
                .prepare(
                    "SELECT name FROM pragma_index_list(?1) WHERE \"unique\" = 1 ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([&name], |r| r.get(0))
                .ok();
            if let Some(index) = index {
                key = conn
                    .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?
                    .query_map([&index], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
            }
        }
        if key.is_empty() {
            return Err(Error::Internal(format!(
                "table {name} has no key to copy it in order by"
            )));
        }
        out.push(Table { name, columns, key });
    }
    Ok(out)
}

/// A value as both engines' rows are read into, whichever engine it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A table's row count, value bytes, and SHA-256 over its rows in key order, each value
/// encoded as a tag byte (0 NULL, 1 integer, 2 real, 3 text, 4 blob) then, for integers and
/// reals, 8 little-endian bytes (a real's IEEE bits), for text and blobs a little-endian u64
/// length and the bytes. Both sides of a migration are tallied the same way.
#[derive(Clone)]
pub struct Tally {
    pub rows: u64,
    pub bytes: u64,
    hash: Sha256,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            rows: 0,
            bytes: 0,
            hash: Sha256::new(),
        }
    }
}

impl Tally {
    pub fn add(&mut self, row: &[Val]) {
        self.rows += 1;
        for v in row {
            match v {
                Val::Null => self.hash.update([0]),
                Val::Int(i) => {
                    self.hash.update([1]);
                    self.hash.update(i.to_le_bytes());
                    self.bytes += 8;
                }
                Val::Real(f) => {
                    self.hash.update([2]);
                    self.hash.update(f.to_bits().to_le_bytes());
                    self.bytes += 8;
                }
                Val::Text(s) => {
                    self.hash.update([3]);
                    self.hash.update((s.len() as u64).to_le_bytes());
                    self.hash.update(s.as_bytes());
                    self.bytes += s.len() as u64;
                }
                Val::Blob(b) => {
                    self.hash.update([4]);
                    self.hash.update((b.len() as u64).to_le_bytes());
                    self.hash.update(b);
                    self.bytes += b.len() as u64;
                }
            }
        }
    }

    pub fn digest(&self) -> (u64, [u8; 32]) {
        (self.rows, self.hash.clone().finalize().into())
    }
}

/// experiment_hyperparams.value, untyped in SQLite, in PostgreSQL's JSONB: an integer as a JSON
/// number without a point, a real as one with a point and no exponent (Rust's shortest digits
/// that read back as the same double, which numeric keeps as written), text as a JSON string,
/// NULL as SQL NULL. The one value that does not come back bit for bit is -0.0 (numeric has no
/// negative zero): it comes back as 0.0, which compares equal to it in both engines, and the
/// run's own JSON (experiments.hyperparams, which is what is shown) keeps what the client sent.
pub struct HyperValue;

impl HyperValue {
    /// The JSONB text for a value; `None` for NULL.
    pub fn encode(v: &Val) -> Result<Option<String>> {
        Ok(match v {
            Val::Null => None,
            Val::Int(i) => Some(i.to_string()),
            Val::Real(f) if f.is_finite() => {
                let s = format!("{f}");
                Some(if s.contains('.') { s } else { format!("{s}.0") })
            }
            Val::Real(f) => {
                return Err(Error::bad_request(format!(
                    "a hyperparameter value is {f}, which JSON cannot hold"
                )));
            }
            Val::Text(s) => Some(serde_json::to_string(s).map_err(|e| {
                Error::Internal(format!("cannot write a hyperparameter as JSON: {e}"))
            })?),
            Val::Blob(_) => {
                return Err(Error::bad_request(
                    "a hyperparameter value is a blob, which tora never stores; nothing was copied",
                ));
            }
        })
    }

    /// The value back from its JSONB text.
    pub fn decode(json: &str) -> Result<Val> {
        let bad = || {
            Error::bad_request(format!(
                "experiment_hyperparams holds the JSON {json:?}, which is not a value tora stores"
            ))
        };
        if json.starts_with('"') {
            return serde_json::from_str::<String>(json)
                .map(Val::Text)
                .map_err(|_| bad());
        }
        if !json.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return Err(bad());
        }
        if !json.contains(['.', 'e', 'E'])
            && let Ok(i) = json.parse::<i64>()
        {
            return Ok(Val::Int(i));
        }
        json.parse::<f64>().map(Val::Real).map_err(|_| bad())
    }

    /// What a value becomes after a trip through JSONB: itself, except -0.0.
    fn canonical(v: Val) -> Val {
        match v {
            Val::Real(f) if f.to_bits() == (-0.0f64).to_bits() => Val::Real(0.0),
            v => v,
        }
    }
}

/// A PostgreSQL error with the server's message (postgres::Error's own Display says only
/// "db error").
fn pg(e: postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::Internal(format!(
            "PostgreSQL: {}{}",
            db.message(),
            db.detail().map(|d| format!(" ({d})")).unwrap_or_default()
        )),
        None => Error::Internal(format!("PostgreSQL: {}", crate::sql::pg_url::describe(&e))),
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite rows

/// Reads `t`'s rows from SQLite in key order.
fn sqlite_rows(
    conn: &Connection,
    t: &Table,
    f: &mut dyn FnMut(Vec<Val>) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn.prepare(&t.select())?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let mut row = Vec::with_capacity(t.columns.len());
        for (i, (column, kind)) in t.columns.iter().enumerate() {
            let v = r.get_ref(i)?;
            let wrong = |what: &str| {
                Error::bad_request(format!(
                    "{}.{column} holds {what} where schema.sql declares {kind:?}; it cannot be copied exactly, nothing was copied",
                    t.name
                ))
            };
            row.push(match (kind, v) {
                (_, ValueRef::Null) => Val::Null,
                (Kind::Integer | Kind::Any, ValueRef::Integer(i)) => Val::Int(i),
                (Kind::Real | Kind::Any, ValueRef::Real(f)) => Val::Real(f),
                (Kind::Text | Kind::Any, ValueRef::Text(b)) => Val::Text(
                    std::str::from_utf8(b)
                        .map_err(|_| wrong("text that is not UTF-8"))?
                        .to_string(),
                ),
                (Kind::Blob, ValueRef::Blob(b)) => Val::Blob(b.to_vec()),
                (_, ValueRef::Integer(_)) => return Err(wrong("an integer")),
                (_, ValueRef::Real(_)) => return Err(wrong("a real")),
                (_, ValueRef::Text(_)) => return Err(wrong("text")),
                (_, ValueRef::Blob(_)) => return Err(wrong("a blob")),
            });
            if *kind == Kind::Any {
                let last = row.pop().unwrap_or(Val::Null);
                row.push(HyperValue::canonical(last));
            }
        }
        f(row)?;
    }
    Ok(())
}

fn sqlite_value(v: &Val) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match v {
        Val::Null => Value::Null,
        Val::Int(i) => Value::Integer(*i),
        Val::Real(f) => Value::Real(*f),
        Val::Text(s) => Value::Text(s.clone()),
        Val::Blob(b) => Value::Blob(b.clone()),
    }
}

fn sqlite_digests(conn: &Connection, tables: &[Table]) -> Result<Vec<Tally>> {
    let mut out = Vec::new();
    for t in tables {
        let mut tally = Tally::default();
        sqlite_rows(conn, t, &mut |row| {
            tally.add(&row);
            Ok(())
        })?;
        out.push(tally);
    }
    Ok(out)
}

fn sqlite_counts(conn: &Connection, tables: &[Table]) -> Result<Vec<u64>> {
    tables
        .iter()
        .map(|t| {
            let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", t.name), [], |r| {
                r.get(0)
            })?;
            Ok(n as u64)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL rows, in COPY's binary format: a header, then per row a 16-bit field count and
// per field a 32-bit length (-1 for NULL) and the value in the type's binary form, then -1.

const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Appends one row in COPY's binary format.
fn copy_row(out: &mut Vec<u8>, t: &Table, row: &[Val]) -> Result<()> {
    out.extend_from_slice(&(row.len() as i16).to_be_bytes());
    for ((column, kind), v) in t.columns.iter().zip(row) {
        let field: Option<Vec<u8>> = match (kind, v) {
            (_, Val::Null) => None,
            (Kind::Any, v) => HyperValue::encode(v)?.map(|json| {
                // jsonb's binary form: a version byte (1), then the JSON text.
                let mut b = Vec::with_capacity(json.len() + 1);
                b.push(1);
                b.extend_from_slice(json.as_bytes());
                b
            }),
            (Kind::Integer, Val::Int(i)) => Some(i.to_be_bytes().to_vec()),
            (Kind::Real, Val::Real(f)) => Some(f.to_bits().to_be_bytes().to_vec()),
            (Kind::Text, Val::Text(s)) => {
                if s.contains('\0') {
                    return Err(Error::bad_request(format!(
                        "{}.{column} holds text with a NUL character, which PostgreSQL's text cannot store; nothing was copied",
                        t.name
                    )));
                }
                Some(s.as_bytes().to_vec())
            }
            (Kind::Blob, Val::Blob(b)) => Some(b.clone()),
            (kind, v) => {
                return Err(Error::Internal(format!(
                    "{}.{column}: a {v:?} for a {kind:?} column",
                    t.name
                )));
            }
        };
        match field {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(b) => {
                let len = i32::try_from(b.len()).map_err(|_| {
                    Error::bad_request(format!("{}.{column}: a value over 2 GiB", t.name))
                })?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&b);
            }
        }
    }
    Ok(())
}

/// Reads `t`'s rows from PostgreSQL in key order (COPY ... TO STDOUT in binary).
fn pg_rows(
    tx: &mut postgres::Transaction,
    t: &Table,
    f: &mut dyn FnMut(Vec<Val>) -> Result<()>,
) -> Result<()> {
    let reader = tx
        .copy_out(&format!("COPY ({}) TO STDOUT (FORMAT binary)", t.select()))
        .map_err(pg)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, reader);
    let bad = |what: &str| Error::Internal(format!("COPY of {} in binary: {what}", t.name));
    let mut head = [0u8; 19];
    reader.read_exact(&mut head)?;
    if &head[..11] != COPY_SIGNATURE {
        return Err(bad("no signature"));
    }
    let ext = u32::from_be_bytes([head[15], head[16], head[17], head[18]]);
    std::io::copy(
        &mut (&mut reader).take(u64::from(ext)),
        &mut std::io::sink(),
    )?;
    let mut b2 = [0u8; 2];
    let mut b4 = [0u8; 4];
    loop {
        reader.read_exact(&mut b2)?;
        let fields = i16::from_be_bytes(b2);
        if fields == -1 {
            break;
        }
        if fields as usize != t.columns.len() {
            return Err(bad("a row with another number of columns"));
        }
        let mut row = Vec::with_capacity(t.columns.len());
        for (column, kind) in &t.columns {
            reader.read_exact(&mut b4)?;
            let len = i32::from_be_bytes(b4);
            if len < 0 {
                row.push(Val::Null);
                continue;
            }
            let mut data = vec![0u8; len as usize];
            reader.read_exact(&mut data)?;
            let eight = |d: &[u8]| -> Result<[u8; 8]> {
                d.try_into()
                    .map_err(|_| bad(&format!("{column} is not 8 bytes")))
            };
            row.push(match kind {
                Kind::Integer => Val::Int(i64::from_be_bytes(eight(&data)?)),
                Kind::Real => {
                    let f = f64::from_bits(u64::from_be_bytes(eight(&data)?));
                    // SQLite stores NaN as NULL: so does a copy, and so does the check.
                    if f.is_nan() { Val::Null } else { Val::Real(f) }
                }
                Kind::Text => Val::Text(
                    String::from_utf8(data).map_err(|_| bad(&format!("{column} is not UTF-8")))?,
                ),
                Kind::Blob => Val::Blob(data),
                Kind::Any => {
                    if data.first() != Some(&1) {
                        return Err(bad("a jsonb of an unknown version"));
                    }
                    let json = std::str::from_utf8(&data[1..])
                        .map_err(|_| bad(&format!("{column} is not UTF-8")))?;
                    HyperValue::decode(json)?
                }
            });
        }
        f(row)?;
    }
    Ok(())
}

fn pg_digests(tx: &mut postgres::Transaction, tables: &[Table]) -> Result<Vec<Tally>> {
    let mut out = Vec::new();
    for t in tables {
        let mut tally = Tally::default();
        pg_rows(tx, t, &mut |row| {
            tally.add(&row);
            Ok(())
        })?;
        out.push(tally);
    }
    Ok(out)
}

fn pg_counts(tx: &mut postgres::Transaction, tables: &[Table]) -> Result<Vec<u64>> {
    tables
        .iter()
        .map(|t| {
            let n: i64 = tx
                .query_one(&format!("SELECT count(*) FROM {}", t.name), &[])
                .map_err(pg)?
                .get(0);
            Ok(n as u64)
        })
        .collect()
}

/// Connects, and takes [`ADVISORY_LOCK`] for this session (refusing if another holds it).
fn pg_connect(url: &str, shown: &str) -> Result<postgres::Client> {
    let mut target =
        crate::sql::pg_url::parse(url).map_err(|e| Error::bad_request(format!("{shown}: {e}")))?;
    target.config.application_name("tora migrate");
    let mut client = target.open(shown).map_err(Error::bad_request)?;
    // A holder that was just killed keeps the lock until its backend notices the closed
    // connection (when its statement ends): wait a little for that, not for a live holder.
    client
        .batch_execute("SET lock_timeout = '10s'")
        .map_err(pg)?;
    if let Err(e) = client.query_one("SELECT pg_advisory_lock($1)", &[&ADVISORY_LOCK]) {
        if e.code() == Some(&postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
            return Err(Error::Conflict(format!(
                "another tora (a server or a migrate) is using {shown}; stop it first (nothing was changed)"
            )));
        }
        return Err(pg(e));
    }
    client.batch_execute("RESET lock_timeout").map_err(pg)?;
    Ok(client)
}

/// What a PostgreSQL database holds, as a destination.
enum PgState {
    /// No tables at all in its current schema.
    Empty,
    /// A Tora schema of this version.
    Tora,
}

fn pg_state(client: &mut postgres::Client, shown: &str) -> Result<PgState> {
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
            &[],
        )
        .map_err(pg)?
        .get(0);
    if tables == 0 {
        return Ok(PgState::Empty);
    }
    let version = pg_version(client).map_err(|_| {
        Error::Conflict(format!(
            "{shown} already holds tables that are not Tora's; migrate into an empty database (CREATE DATABASE tora)"
        ))
    })?;
    check_version(version, shown)?;
    Ok(PgState::Tora)
}

fn pg_version(client: &mut postgres::Client) -> std::result::Result<i64, postgres::Error> {
    Ok(client
        .query_one("SELECT version FROM schema_version", &[])?
        .get(0))
}

fn check_version(version: i64, shown: &str) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(Error::bad_request(format!(
            "{shown} has schema version {version}, newer than this tora's ({SCHEMA_VERSION}); use the tora that wrote it (nothing was changed)"
        )));
    }
    if version < SCHEMA_VERSION {
        return Err(Error::bad_request(format!(
            "{shown} has schema version {version}, older than this tora's ({SCHEMA_VERSION}); let this tora upgrade it first (run `tora doctor` to check it, then `tora user list --db` on it once), then migrate (nothing was changed)"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The copy

/// A one-line progress display on a terminal's stderr, redrawn at most 5 times a second;
/// silent otherwise (scripts, logs).
struct Progress {
    total: u64,
    done: u64,
    on: bool,
    drawn: Instant,
    abort_after: Option<u64>,
}

impl Progress {
    fn new(total: u64) -> Progress {
        Progress {
            total,
            done: 0,
            on: std::io::stderr().is_terminal(),
            drawn: Instant::now(),
            abort_after: std::env::var(ABORT_AFTER).ok().and_then(|v| v.parse().ok()),
        }
    }

    fn row(&mut self, table: &str) {
        self.done += 1;
        if self.abort_after.is_some_and(|n| self.done >= n) {
            eprintln!(
                "tora migrate: stopping abruptly after {} rows ({ABORT_AFTER})",
                self.done
            );
            std::process::exit(99);
        }
        if self.on && self.drawn.elapsed() > Duration::from_millis(200) {
            self.drawn = Instant::now();
            eprint!(
                "\r{:>3}%  {} of {} rows  {table:<24}",
                self.done * 100 / self.total.max(1),
                self.done,
                self.total
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn say(&self, what: &str) {
        if self.on {
            eprint!("\r{what:<60}");
            let _ = std::io::stderr().flush();
        }
    }

    fn finish(&self) {
        if self.on {
            eprintln!("\r{:<60}", "");
        }
    }
}

/// Compares two tallies table by table; the tables that differ, with their counts.
fn differences(tables: &[Table], a: &[Tally], b: &[Tally]) -> Vec<String> {
    tables
        .iter()
        .zip(a.iter().zip(b))
        .filter(|(_, (x, y))| x.digest() != y.digest())
        .map(|(t, (x, y))| {
            if x.rows == y.rows {
                format!("{} (same {} rows, other contents)", t.name, x.rows)
            } else {
                format!("{} ({} rows vs {})", t.name, x.rows, y.rows)
            }
        })
        .collect()
}

fn summary(tables: &[Table], tallies: &[Tally], started: Instant, already: bool) -> Migrated {
    Migrated {
        tables: tables
            .iter()
            .zip(tallies)
            .map(|(t, n)| (t.name.clone(), n.rows, n.bytes))
            .collect(),
        already,
        seconds: started.elapsed().as_secs_f64(),
        external_artifacts: 0,
    }
}

/// `tora migrate --from SRC --to DEST`.
pub fn run(from: &str, to: &str) -> Result<Migrated> {
    let (src, dst) = (Place::parse(from), Place::parse(to));
    match (&src, &dst) {
        (Place::Sqlite(s), Place::Postgres(url)) => sqlite_to_postgres(s, url, &dst.shown()),
        (Place::Postgres(url), Place::Sqlite(d)) => postgres_to_sqlite(url, &src.shown(), d),
        (Place::Sqlite(_), Place::Sqlite(_)) => Err(Error::bad_request(
            "both are SQLite files: copy one with `tora backup` instead",
        )),
        (Place::Postgres(_), Place::Postgres(_)) => Err(Error::bad_request(
            "both are PostgreSQL databases: copy one with pg_dump instead",
        )),
    }
}

/// Opens a SQLite source read-only after taking its `flock` (so no `tora serve` starts on it
/// meanwhile), checks its version and starts one read transaction: every table is read from
/// one snapshot.
fn open_sqlite_source(path: &Path) -> Result<(std::fs::File, Connection)> {
    if !path.is_file() {
        return Err(Error::bad_request(format!(
            "no database at {}",
            path.display()
        )));
    }
    let Some(lock) = crate::db::try_lock(path)? else {
        return Err(Error::Conflict(format!(
            "a tora serve is using {}; stop it first, then migrate (nothing was changed)",
            path.display()
        )));
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        return Err(Error::bad_request(format!(
            "{} is not a Tora database (it has no schema version)",
            path.display()
        )));
    }
    check_version(version, &path.display().to_string())?;
    conn.execute_batch("BEGIN")?;
    Ok((lock, conn))
}

fn sqlite_to_postgres(path: &Path, url: &str, shown: &str) -> Result<Migrated> {
    let started = Instant::now();
    let tables = tables()?;
    let (_lock, source) = open_sqlite_source(path)?;
    let external: i64 = source.query_row(
        "SELECT count(*) FROM artifacts WHERE external = 1",
        [],
        |r| r.get(0),
    )?;
    let mut client = pg_connect(url, shown)?;
    let mut done = match pg_state(&mut client, shown)? {
        PgState::Tora => {
            let ours = sqlite_digests(&source, &tables)?;
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(pg)?;
            let theirs = pg_digests(&mut tx, &tables)?;
            let differ = differences(&tables, &ours, &theirs);
            if !differ.is_empty() {
                return Err(Error::Conflict(format!(
                    "{shown} already holds a Tora database with other data: {}; migrate into an empty database (nothing was changed)",
                    differ.join(", ")
                )));
            }
            summary(&tables, &ours, started, true)
        }
        PgState::Empty => {
            let counts = sqlite_counts(&source, &tables)?;
            let mut progress = Progress::new(counts.iter().sum());
            let mut tx = client.transaction().map_err(pg)?;
            progress.say("creating the schema");
            tx.batch_execute(SCHEMA_POSTGRES).map_err(pg)?;
            // The copy brings roles exactly as the source has them.
            tx.batch_execute("DELETE FROM roles").map_err(pg)?;
            let mut tallies = Vec::new();
            for t in &tables {
                let mut tally = Tally::default();
                let mut writer = tx
                    .copy_in(&format!(
                        "COPY {} ({}) FROM STDIN (FORMAT binary)",
                        t.name,
                        t.column_list()
                    ))
                    .map_err(pg)?;
                let mut buf = Vec::with_capacity(1 << 16);
                buf.extend_from_slice(COPY_SIGNATURE);
                buf.extend_from_slice(&[0; 8]);
                let copied = sqlite_rows(&source, t, &mut |row| {
                    copy_row(&mut buf, t, &row)?;
                    tally.add(&row);
                    progress.row(&t.name);
                    if buf.len() >= 1 << 16 {
                        writer.write_all(&buf)?;
                        buf.clear();
                    }
                    Ok(())
                });
                copied?;
                buf.extend_from_slice(&(-1i16).to_be_bytes());
                writer.write_all(&buf)?;
                writer.finish().map_err(pg)?;
                tallies.push(tally);
            }
            // The ids SQLite assigned are in; new rows get the next ones.
            for t in &tables {
                let identity: Option<String> = tx
                    .query_opt(
                        "SELECT column_name::text FROM information_schema.columns
                         WHERE table_schema = current_schema() AND table_name = $1 AND is_identity = 'YES'",
                        &[&t.name],
                    )
                    .map_err(pg)?
                    .map(|r| r.get(0));
                if let Some(c) = identity {
                    tx.execute(
                        &format!(
                            "SELECT setval(pg_get_serial_sequence('{0}', '{c}'), coalesce(max({c}), 0) + 1, false) FROM {0}",
                            t.name
                        ),
                        &[],
                    )
                    .map_err(pg)?;
                }
            }
            progress.say("checking the copy");
            let theirs = pg_digests(&mut tx, &tables)?;
            let differ = differences(&tables, &tallies, &theirs);
            if !differ.is_empty() {
                return Err(Error::Internal(format!(
                    "the copy in {shown} does not match the source: {}; nothing was changed",
                    differ.join(", ")
                )));
            }
            tx.commit().map_err(pg)?;
            progress.finish();
            summary(&tables, &tallies, started, false)
        }
    };
    drop(source);
    done.external_artifacts = external as u64;
    Ok(done)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn postgres_to_sqlite(url: &str, shown: &str, dest: &Path) -> Result<Migrated> {
    let started = Instant::now();
    let tables = tables()?;
    let mut client = pg_connect(url, shown)?;
    match pg_version(&mut client) {
        Ok(v) => check_version(v, shown)?,
        Err(_) => {
            return Err(Error::bad_request(format!(
                "{shown} holds no Tora database (no schema_version table)"
            )));
        }
    }
    let mut source = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg)?;
    let external: i64 = source
        .query_one("SELECT count(*) FROM artifacts WHERE external = 1", &[])
        .map_err(pg)?
        .get(0);

    let exists = match std::fs::metadata(dest) {
        // An empty file (what a server makes before its schema) holds nothing to keep.
        Ok(m) if m.len() == 0 && !crate::db::in_use(dest)? => {
            std::fs::remove_file(dest)?;
            false
        }
        Ok(_) => true,
        Err(_) => false,
    };
    if exists {
        let Some(_lock) = crate::db::try_lock(dest)? else {
            return Err(Error::Conflict(format!(
                "a tora serve is using {}; it is not an empty destination (nothing was changed)",
                dest.display()
            )));
        };
        let theirs = {
            let conn = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version != SCHEMA_VERSION {
                return Err(Error::Conflict(format!(
                    "{} already exists (schema version {version}); migrate into a new file (nothing was changed)",
                    dest.display()
                )));
            }
            conn.execute_batch("BEGIN")?;
            sqlite_digests(&conn, &tables)?
        };
        let ours = pg_digests(&mut source, &tables)?;
        let differ = differences(&tables, &ours, &theirs);
        if !differ.is_empty() {
            return Err(Error::Conflict(format!(
                "{} already holds a Tora database with other data: {}; migrate into a new file (nothing was changed)",
                dest.display(),
                differ.join(", ")
            )));
        }
        let mut done = summary(&tables, &ours, started, true);
        done.external_artifacts = external as u64;
        return Ok(done);
    }

    // Written beside DEST under another name, linked to DEST only once complete: DEST never
    // holds half a copy. A .migrating file left by an interrupted run is unlocked and ours to
    // replace; one that is locked belongs to a migrate still running.
    let staging = with_suffix(dest, ".migrating");
    if staging.exists() {
        if crate::db::try_lock(&staging)?.is_none() {
            return Err(Error::Conflict(format!(
                "another tora migrate is writing {}; wait for it",
                staging.display()
            )));
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(with_suffix(&staging, suffix));
        }
    }
    let counts = pg_counts(&mut source, &tables)?;
    let mut progress = Progress::new(counts.iter().sum());
    let result = (|| {
        // Created owner-only (it holds the signing secret), with the server's PRAGMAs and
        // schema.sql, then locked while written.
        let conn = crate::db::open_connection(&staging)?;
        let _lock = crate::db::try_lock(&staging)?;
        let mut conn = migrated(conn)?;
        let tallies = {
            let tx = conn.transaction()?;
            tx.execute_batch("DELETE FROM roles")?;
            let mut tallies = Vec::new();
            for t in &tables {
                let marks: Vec<String> = (1..=t.columns.len()).map(|i| format!("?{i}")).collect();
                let mut insert = tx.prepare(&format!(
                    "INSERT INTO {} ({}) VALUES ({})",
                    t.name,
                    t.column_list(),
                    marks.join(", ")
                ))?;
                let mut tally = Tally::default();
                pg_rows(&mut source, t, &mut |row| {
                    let values: Vec<rusqlite::types::Value> =
                        row.iter().map(sqlite_value).collect();
                    insert.execute(rusqlite::params_from_iter(values))?;
                    tally.add(&row);
                    progress.row(&t.name);
                    Ok(())
                })?;
                tallies.push(tally);
            }
            progress.say("checking the copy");
            let theirs = sqlite_digests(&tx, &tables)?;
            let differ = differences(&tables, &tallies, &theirs);
            if !differ.is_empty() {
                return Err(Error::Internal(format!(
                    "the copy does not match the source: {}; nothing was written to {}",
                    differ.join(", "),
                    dest.display()
                )));
            }
            tx.commit()?;
            tallies
        };
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        drop(conn);
        std::fs::File::open(&staging)?.sync_all()?;
        // A link, not a rename: it fails rather than replace a DEST made meanwhile.
        std::fs::hard_link(&staging, dest).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Conflict(format!(
                "{} appeared while copying; the copy is left in {}",
                dest.display(),
                staging.display()
            )),
            _ => Error::Internal(format!("cannot create {}: {e}", dest.display())),
        })?;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(&staging, suffix));
        }
        Ok(tallies)
    })();
    let tallies = match result {
        Ok(t) => t,
        Err(e) => {
            if !matches!(e, Error::Conflict(_)) {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(with_suffix(&staging, suffix));
                }
            }
            return Err(e);
        }
    };
    progress.finish();
    let mut done = summary(&tables, &tallies, started, false);
    done.external_artifacts = external as u64;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperparameter_values_survive_jsonb_exactly() {
        let values = [
            Val::Int(0),
            Val::Int(-7),
            Val::Int(i64::MAX),
            Val::Int(i64::MIN),
            Val::Real(0.1),
            Val::Real(2.0),
            Val::Real(-1e300),
            Val::Real(5e-324),
            Val::Real(f64::MAX),
            Val::Real(1.0 / 3.0),
            Val::Text(String::new()),
            Val::Text("lr \"quoted\" \\ é 🙂 \n".into()),
            Val::Text("1.5".into()),
        ];
        for v in values {
            let json = HyperValue::encode(&v).unwrap().unwrap();
            assert_eq!(HyperValue::decode(&json).unwrap(), v, "{json}");
        }
        assert_eq!(HyperValue::encode(&Val::Null).unwrap(), None);
        assert_eq!(HyperValue::encode(&Val::Real(2.0)).unwrap().unwrap(), "2.0");
        assert_eq!(HyperValue::decode("2").unwrap(), Val::Int(2));
        assert!(HyperValue::encode(&Val::Real(f64::INFINITY)).is_err());
        assert!(HyperValue::decode("true").is_err());
    }

    #[test]
    fn tables_follow_schema_sql_with_parents_first() {
        let tables = tables().unwrap();
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        let at = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(at("users") < at("workspaces"));
        assert!(at("experiments") < at("series"));
        assert!(at("artifacts") < at("artifact_chunks"));
        let chunks = tables.iter().find(|t| t.name == "artifact_chunks").unwrap();
        assert_eq!(chunks.key, ["artifact_id", "seq"]);
        let hyper = tables
            .iter()
            .find(|t| t.name == "experiment_hyperparams")
            .unwrap();
        assert_eq!(hyper.columns[2], ("value".to_string(), Kind::Any));
    }

    #[test]
    fn passwords_never_reach_a_message() {
        assert_eq!(
            redact("postgres://tora:s3cret@db:5432/tora?sslmode=disable&password=x"),
            "postgres://tora:***@db:5432/tora?sslmode=disable&password=***"
        );
        assert_eq!(
            redact("postgres://tora@127.0.0.1:5/postgres"),
            "postgres://tora@127.0.0.1:5/postgres"
        );
    }
}
