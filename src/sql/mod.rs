//! The engine-neutral connection every store function takes: [`Connection`] and what hangs off
//! it ([`Transaction`], [`Statement`], [`Rows`], [`Row`], [`Params`], [`Error`]), named and
//! shaped after the part of rusqlite the store uses, so store code reads as it did over
//! rusqlite. Each type is an enum over the engines; the SQLite arm hands everything to rusqlite
//! as is (no SQL rewriting, no allocation, `prepare_cached` cached by rusqlite), so SQLite pays
//! one match per call.
//!
//! Values cross the layer as SQLite's: parameters are anything that is rusqlite's [`ToSql`],
//! columns are read with rusqlite's [`types::FromSql`] (an engine that is not SQLite turns its
//! column into a [`types::ValueRef`] first, so every engine converts by the same rules).

use std::ops::Deref;

pub mod pg;
pub mod pg_url;

use self::pg::{Param, PgConn, Prepared};

pub use rusqlite::{ToSql, params};

/// The value types of the layer: SQLite's five storage classes.
pub mod types {
    pub use rusqlite::types::{FromSql, FromSqlError, Null, ToSqlOutput, Type, Value, ValueRef};
}

/// A failure of any engine. rusqlite's error type also carries the conditions that belong to
/// no engine in particular (no row where one was expected, a column of the wrong type), so
/// every engine reports those through it.
#[derive(Debug)]
pub enum Error {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What callers above the layer tell apart in a failure; everything else is internal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Stopped on purpose: a read past its time budget.
    Interrupted,
    /// The disk (or the database's quota) is full; the transaction rolled back whole.
    Full,
    /// The statement is past the engine's limits (depth, parameters, sizes): only a request
    /// can make one that big.
    TooBig,
    /// A UNIQUE or PRIMARY KEY constraint refused the row.
    Unique,
    Other,
}

impl Error {
    pub fn failure(&self) -> Failure {
        match self {
            Error::Sqlite(e) => sqlite_failure(e),
            Error::Postgres(e) => Error::postgres_failure(e),
        }
    }
}

fn sqlite_failure(e: &rusqlite::Error) -> Failure {
    use rusqlite::ErrorCode;
    if let rusqlite::Error::SqliteFailure(f, _) = e
        && (f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    {
        return Failure::Unique;
    }
    match e.sqlite_error_code() {
        Some(ErrorCode::OperationInterrupted) => Failure::Interrupted,
        Some(ErrorCode::DiskFull) => Failure::Full,
        Some(ErrorCode::TooBig) => Failure::TooBig,
        Some(ErrorCode::Unknown) => {
            let msg = e.to_string();
            if ["too large", "too many", "stack overflow"]
                .iter()
                .any(|m| msg.contains(m))
            {
                Failure::TooBig
            } else {
                Failure::Other
            }
        }
        _ => Failure::Other,
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Sqlite(e) => write!(f, "sqlite: {e}"),
            Error::Postgres(e) => match (e.as_db_error(), std::error::Error::source(e)) {
                (Some(db), _) => write!(f, "postgres: {}: {}", db.code().code(), db.message()),
                (None, _) => write!(f, "postgres: {}", pg_url::describe(e)),
            },
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sqlite(e) => Some(e),
            Error::Postgres(e) => Some(e),
        }
    }
}

impl From<rusqlite::Error> for Error {
    #[inline]
    fn from(e: rusqlite::Error) -> Self {
        Error::Sqlite(e)
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Error::Postgres(e)
    }
}

impl From<types::FromSqlError> for Error {
    fn from(e: types::FromSqlError) -> Self {
        Error::Sqlite(e.into())
    }
}

/// `.optional()` on a single-row result: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A statement's parameters: what `params![..]`, an array of values, `[]` and
/// [`params_from_iter`] make.
pub trait Params {
    /// The same parameters as rusqlite takes them.
    type Sqlite: rusqlite::Params;
    fn into_sqlite(self) -> Self::Sqlite;
    /// The values, for an engine that is not SQLite.
    fn into_values(self) -> Result<Vec<Param>>;
}

/// A parameter's value as SQLite would store it.
fn owned(p: &dyn ToSql) -> Result<Param> {
    match p.to_sql()? {
        types::ToSqlOutput::Borrowed(v) => Ok(Param(match v {
            types::ValueRef::Null => types::Value::Null,
            types::ValueRef::Integer(i) => types::Value::Integer(i),
            types::ValueRef::Real(f) => types::Value::Real(f),
            types::ValueRef::Text(t) => types::Value::Text(String::from_utf8_lossy(t).into_owned()),
            types::ValueRef::Blob(b) => types::Value::Blob(b.to_vec()),
        })),
        types::ToSqlOutput::Owned(v) => Ok(Param(v)),
        _ => Err(Error::Sqlite(rusqlite::Error::ToSqlConversionFailure(
            "a parameter only SQLite can take".into(),
        ))),
    }
}

impl<'a> Params for &'a [&'a dyn ToSql] {
    type Sqlite = Self;
    #[inline]
    fn into_sqlite(self) -> Self {
        self
    }
    fn into_values(self) -> Result<Vec<Param>> {
        self.iter().map(|p| owned(*p)).collect()
    }
}

impl Params for [&(dyn ToSql + Send + Sync); 0] {
    type Sqlite = Self;
    #[inline]
    fn into_sqlite(self) -> Self {
        self
    }
    fn into_values(self) -> Result<Vec<Param>> {
        Ok(Vec::new())
    }
}

macro_rules! array_params {
    ($($n:literal)+) => {$(
        impl<T: ToSql> Params for [T; $n] {
            type Sqlite = Self;
            #[inline]
            fn into_sqlite(self) -> Self {
                self
            }
            fn into_values(self) -> Result<Vec<Param>> {
                self.iter().map(|p| owned(p)).collect()
            }
        }
    )+};
}
array_params!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);

/// Parameters from an iterator, for statements built at run time (filters, `IN` lists).
pub struct ParamsFromIter<I>(I);

pub fn params_from_iter<I>(iter: I) -> ParamsFromIter<I>
where
    I: IntoIterator,
    I::Item: ToSql,
{
    ParamsFromIter(iter)
}

impl<I> Params for ParamsFromIter<I>
where
    I: IntoIterator,
    I::Item: ToSql,
{
    type Sqlite = rusqlite::ParamsFromIter<I>;
    #[inline]
    fn into_sqlite(self) -> Self::Sqlite {
        rusqlite::params_from_iter(self.0)
    }
    fn into_values(self) -> Result<Vec<Param>> {
        self.0.into_iter().map(|p| owned(&p)).collect()
    }
}

/// A connection to one of the engines.
pub enum Connection {
    Sqlite(rusqlite::Connection),
    Postgres(PgConn),
}

impl From<rusqlite::Connection> for Connection {
    fn from(c: rusqlite::Connection) -> Self {
        Connection::Sqlite(c)
    }
}

impl Connection {
    /// The SQLite connection underneath, for what only SQLite has (PRAGMAs, backup, WAL).
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match self {
            Connection::Sqlite(c) => Some(c),
            Connection::Postgres(_) => None,
        }
    }

    /// A connection over a PostgreSQL client.
    pub fn postgres(client: postgres::Client) -> Connection {
        Connection::Postgres(PgConn::new(client))
    }

    /// Which engine this is, for the few places whose SQL differs.
    pub fn dialect(&self) -> Dialect {
        match self {
            Connection::Sqlite(_) => Dialect::Sqlite,
            Connection::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement; the rows it changed.
    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        match self {
            Connection::Sqlite(c) => Ok(c.execute(sql, params.into_sqlite())?),
            Connection::Postgres(c) => {
                let p = c.prepare(sql, false)?;
                c.execute(&p, &params.into_values()?)
            }
        }
    }

    /// Runs a statement and maps its first row; no row is an error (see
    /// [`OptionalExtension::optional`]).
    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        self.prepare(sql)?.query_row(params, f)
    }

    /// Runs statements separated by `;`, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Connection::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Connection::Postgres(c) => c.batch_execute(sql),
        }
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        match self {
            Connection::Sqlite(c) => Ok(Statement::Sqlite(c.prepare(sql)?)),
            Connection::Postgres(c) => Ok(Statement::Postgres(c, c.prepare(sql, false)?)),
        }
    }

    /// A prepared statement from the connection's cache (prepared the first time).
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        match self {
            Connection::Sqlite(c) => Ok(Statement::SqliteCached(c.prepare_cached(sql)?)),
            Connection::Postgres(c) => Ok(Statement::Postgres(c, c.prepare(sql, true)?)),
        }
    }

    /// A deferred transaction (see [`Connection::transaction_with_behavior`]).
    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        Transaction::new_unchecked(self, TransactionBehavior::Deferred)
    }

    /// A transaction, rolled back when dropped unless committed.
    pub fn transaction_with_behavior(
        &mut self,
        behavior: TransactionBehavior,
    ) -> Result<Transaction<'_>> {
        Transaction::new_unchecked(self, behavior)
    }

    fn in_transaction(&self) -> bool {
        match self {
            Connection::Sqlite(c) => !c.is_autocommit(),
            Connection::Postgres(c) => c.in_transaction(),
        }
    }
}

/// How a transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionBehavior {
    /// A read: its snapshot is taken at the first statement and held to the end.
    Deferred,
    /// A write: the write lock is taken at once.
    Immediate,
}

/// An open transaction; derefs to its [`Connection`]. Dropped without [`Transaction::commit`],
/// it rolls back.
pub struct Transaction<'c> {
    conn: &'c Connection,
    /// A PostgreSQL transaction begun inside one already open (a page read inside a read that
    /// `Db` runs in a transaction): it neither begins nor ends anything.
    nested: bool,
}

impl<'c> Transaction<'c> {
    /// Begins a transaction on `conn`, which the caller promises is not in one already (the
    /// `&mut` of [`Connection::transaction_with_behavior`] is not asked for).
    pub fn new_unchecked(conn: &'c Connection, behavior: TransactionBehavior) -> Result<Self> {
        if let Connection::Postgres(c) = conn
            && c.in_transaction()
        {
            return Ok(Transaction { conn, nested: true });
        }
        let begin = match (conn, behavior) {
            (Connection::Sqlite(_), TransactionBehavior::Deferred) => "BEGIN DEFERRED",
            (Connection::Sqlite(_), TransactionBehavior::Immediate) => "BEGIN IMMEDIATE",
            // A read sees one snapshot throughout, as in SQLite.
            (Connection::Postgres(_), TransactionBehavior::Deferred) => {
                "BEGIN ISOLATION LEVEL REPEATABLE READ"
            }
            (Connection::Postgres(_), TransactionBehavior::Immediate) => "BEGIN",
        };
        conn.execute_batch(begin)?;
        if let Connection::Postgres(c) = conn {
            c.set_in_transaction(true);
        }
        Ok(Transaction {
            conn,
            nested: false,
        })
    }

    pub fn commit(self) -> Result<()> {
        if self.nested {
            return Ok(());
        }
        let done = self.conn.execute_batch("COMMIT");
        if let Connection::Postgres(c) = self.conn {
            // A failed COMMIT of PostgreSQL ends the transaction too (rolled back).
            c.set_in_transaction(false);
        }
        done
        // Drop then finds no transaction open and does nothing.
    }
}

impl Deref for Transaction<'_> {
    type Target = Connection;
    #[inline]
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.nested && self.conn.in_transaction() {
            let _ = self.conn.execute_batch("ROLLBACK");
            if let Connection::Postgres(c) = self.conn {
                c.set_in_transaction(false);
            }
        }
    }
}

/// A prepared statement.
pub enum Statement<'c> {
    Sqlite(rusqlite::Statement<'c>),
    SqliteCached(rusqlite::CachedStatement<'c>),
    Postgres(&'c PgConn, Prepared),
}

impl<'c> Statement<'c> {
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        match self {
            Statement::Sqlite(s) => Ok(s.execute(params.into_sqlite())?),
            Statement::SqliteCached(s) => Ok(s.execute(params.into_sqlite())?),
            Statement::Postgres(c, p) => c.execute(p, &params.into_values()?),
        }
    }

    /// The rows, read one at a time as [`Rows::next`] asks.
    pub fn query<P: Params>(&mut self, params: P) -> Result<Rows<'_>> {
        match self {
            Statement::Sqlite(s) => Ok(Rows::Sqlite(s.query(params.into_sqlite())?)),
            Statement::SqliteCached(s) => Ok(Rows::Sqlite(s.query(params.into_sqlite())?)),
            Statement::Postgres(c, p) => Ok(Rows::Postgres(c.query(p, &params.into_values()?)?)),
        }
    }

    /// The rows, each mapped by `f` as the iterator is pulled.
    pub fn query_map<T, P, F>(&mut self, params: P, f: F) -> Result<MappedRows<'_, F>>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T>,
    {
        Ok(MappedRows {
            rows: self.query(params)?,
            f,
        })
    }

    /// The first row mapped by `f`; no row is an error (see [`OptionalExtension::optional`]).
    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T>,
    {
        if let Statement::Postgres(c, p) = self {
            return match c.first(p, &params.into_values()?)? {
                Some(row) => f(&Row::Postgres(&row)),
                None => Err(Error::Sqlite(rusqlite::Error::QueryReturnedNoRows)),
            };
        }
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(row) => f(&row),
            None => Err(Error::Sqlite(rusqlite::Error::QueryReturnedNoRows)),
        }
    }

    /// Whether the statement returns at least one row.
    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool> {
        if let Statement::Postgres(c, p) = self {
            return Ok(c.first(p, &params.into_values()?)?.is_some());
        }
        Ok(self.query(params)?.next()?.is_some())
    }

    pub fn column_count(&self) -> usize {
        match self {
            Statement::Sqlite(s) => s.column_count(),
            Statement::SqliteCached(s) => s.column_count(),
            Statement::Postgres(_, p) => p.column_count(),
        }
    }
}

/// The rows of a running statement.
pub enum Rows<'s> {
    Sqlite(rusqlite::Rows<'s>),
    Postgres(pg::Rows<'s>),
}

impl Rows<'_> {
    /// The next row, or `None` past the last.
    #[allow(clippy::should_implement_trait)] // a lending iterator: the row borrows `self`
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        match self {
            Rows::Sqlite(r) => Ok(r.next()?.map(Row::Sqlite)),
            Rows::Postgres(r) => Ok(r.advance()?.map(Row::Postgres)),
        }
    }
}

/// [`Statement::query_map`]'s iterator.
pub struct MappedRows<'s, F> {
    rows: Rows<'s>,
    f: F,
}

impl<T, F> Iterator for MappedRows<'_, F>
where
    F: FnMut(&Row<'_>) -> Result<T>,
{
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        let f = &mut self.f;
        match self.rows.next() {
            Ok(Some(row)) => Some(f(&row)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// A column index: only positions, which every engine has.
pub trait RowIndex: rusqlite::RowIndex + Copy {
    fn index(self) -> usize;
}
impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One row of a result.
#[derive(Clone, Copy)]
pub enum Row<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl<'r> Row<'r> {
    /// Column `idx` converted to `T` by SQLite's rules (an integer reads as a float, a NULL
    /// only as an `Option`).
    #[inline]
    pub fn get<I: RowIndex, T: types::FromSql>(&self, idx: I) -> Result<T> {
        match self {
            Row::Sqlite(r) => Ok(r.get(idx)?),
            Row::Postgres(r) => {
                let idx = idx.index();
                let column = pg::column(r, idx)?;
                let value = column.as_ref();
                types::FromSql::column_result(value).map_err(|e| {
                    Error::Sqlite(match e {
                        types::FromSqlError::InvalidType => rusqlite::Error::InvalidColumnType(
                            idx,
                            r.columns()[idx].name().to_string(),
                            value.data_type(),
                        ),
                        types::FromSqlError::OutOfRange(i) => {
                            rusqlite::Error::IntegralValueOutOfRange(idx, i)
                        }
                        other => rusqlite::Error::FromSqlConversionFailure(
                            idx,
                            value.data_type(),
                            Box::new(other),
                        ),
                    })
                })
            }
        }
    }

    /// Column `idx` as it is, borrowed from the row.
    #[inline]
    pub fn get_ref<I: RowIndex>(&self, idx: I) -> Result<types::ValueRef<'r>> {
        match self {
            Row::Sqlite(r) => Ok(r.get_ref(idx)?),
            Row::Postgres(r) => pg::value(r, idx.index()),
        }
    }
}

/// The engines, for the few statements whose SQL differs between them (see the store's
/// `dialect` uses): everything else is written once, in SQL both accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A FROM item named `alias` over the elements of the JSON array in `json` (text: a
    /// column or a parameter), each as its column `value` (a JSON string as its text, a number
    /// as a number on SQLite and as its text on PostgreSQL). On PostgreSQL the text is cast to
    /// text first: a parameter in a jsonb place would be bound as a JSON string (see the
    /// layer's encoding), not parsed.
    pub fn json_elements(self, json: &str, alias: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_each({json}) {alias}"),
            Dialect::Postgres => format!(
                "jsonb_array_elements_text(CAST(CAST({json} AS TEXT) AS jsonb)) {alias}(value)"
            ),
        }
    }

    /// A FROM item named `alias` over the members of the JSON object in `json` (text), or of
    /// its member `member`: columns `key` and `value`.
    pub fn json_members(self, json: &str, member: Option<&str>, alias: &str) -> String {
        match (self, member) {
            (Dialect::Sqlite, None) => format!("json_each({json}) {alias}"),
            (Dialect::Sqlite, Some(m)) => format!("json_each({json}, '$.{m}') {alias}"),
            (Dialect::Postgres, None) => {
                format!("jsonb_each_text(CAST(CAST({json} AS TEXT) AS jsonb)) {alias}")
            }
            (Dialect::Postgres, Some(m)) => {
                format!("jsonb_each_text(CAST(CAST({json} AS TEXT) AS jsonb) -> '{m}') {alias}")
            }
        }
    }

    /// Whether `column` matches the SQL LIKE `pattern` (an expression), ignoring ASCII case
    /// when `ci`. SQLite's LIKE ignores case and GLOB does not (it takes
    /// [`Dialect::like_pattern`]'s translation); PostgreSQL's LIKE minds case, so both sides
    /// are folded for `ci`; no escape character on either.
    pub fn like(self, column: &str, pattern: &str, ci: bool) -> String {
        match (self, ci) {
            (Dialect::Sqlite, true) => format!("{column} LIKE {pattern}"),
            (Dialect::Sqlite, false) => format!("{column} GLOB {pattern}"),
            (Dialect::Postgres, true) => {
                format!("nocase({column}) LIKE nocase({pattern}) ESCAPE ''")
            }
            (Dialect::Postgres, false) => format!("{column} LIKE {pattern} ESCAPE ''"),
        }
    }

    /// The pattern [`Dialect::like`] takes for the SQL LIKE pattern `pattern`: on SQLite, when
    /// case matters, a GLOB pattern (`%` -> `*`, `_` -> `?`, GLOB's own specials bracketed).
    pub fn like_pattern(self, pattern: &str, ci: bool) -> String {
        if ci || self == Dialect::Postgres {
            return pattern.to_string();
        }
        pattern
            .chars()
            .map(|c| match c {
                '%' => "*".to_string(),
                '_' => "?".to_string(),
                '*' | '?' | '[' => format!("[{c}]"),
                c => c.to_string(),
            })
            .collect()
    }

    /// The inner join that keeps the tables in the order written: SQLite's `CROSS JOIN` (its
    /// way to say which index leads); PostgreSQL has no such hint and plans a plain `JOIN`.
    pub fn join_in_order(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CROSS JOIN",
            Dialect::Postgres => "JOIN",
        }
    }

    /// What a SELECT ends with to lock the rows it reads until the transaction ends, against
    /// other writers of them: PostgreSQL's ` FOR NO KEY UPDATE`, where several servers may
    /// write one database (not `FOR UPDATE`, which also waits for the key-share locks that
    /// rows referring to it take, e.g. a batch id just claimed: two such writers deadlock);
    /// nothing on SQLite, whose one writer (`BEGIN IMMEDIATE`) already excludes every other.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR NO KEY UPDATE",
        }
    }

    /// A hyperparameter's value (`experiment_hyperparams.value`, or a parameter compared with
    /// one) as what orders it the way SQLite does, numbers before text: SQLite compares its
    /// untyped column so already; PostgreSQL's JSONB puts strings before numbers, so a string is
    /// wrapped in a one-element array, which JSONB puts after numbers and compares by its element.
    pub fn hyperparam_order(self, value: &str) -> String {
        match self {
            Dialect::Sqlite => value.to_string(),
            Dialect::Postgres => format!(
                "(CASE WHEN jsonb_typeof({value}) = 'string' THEN jsonb_build_array({value}) ELSE {value} END)"
            ),
        }
    }

    /// A hyperparameter's value (`experiment_hyperparams.value`) as text: SQLite keeps it
    /// untyped, PostgreSQL as JSONB (a string's text, a number's digits).
    pub fn hyperparam_text(self, value: &str) -> String {
        match self {
            Dialect::Sqlite => format!("CAST({value} AS TEXT)"),
            Dialect::Postgres => format!("({value} #>> '{{}}')"),
        }
    }
}

/// The layer's behaviour, the same on every engine: each check runs on SQLite (in memory) and
/// on PostgreSQL (a fresh database of the test cluster).
#[cfg(test)]
mod tests {
    use super::*;

    fn engines() -> Vec<Connection> {
        vec![
            Connection::from(rusqlite::Connection::open_in_memory().unwrap()),
            pg::testing::connection(),
        ]
    }

    fn create(conn: &Connection) {
        let ddl = match conn.dialect() {
            Dialect::Sqlite => {
                "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, x REAL, data BLOB, n INTEGER)"
            }
            Dialect::Postgres => {
                "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT UNIQUE, x DOUBLE PRECISION, data BYTEA, n BIGINT)"
            }
        };
        conn.execute_batch(ddl).unwrap();
    }

    #[test]
    fn statements_take_parameters_and_read_values_alike() {
        for conn in engines() {
            create(&conn);
            let mut insert = conn
                .prepare_cached("INSERT INTO t (id, name, x, data, n) VALUES (?1, ?2, ?3, ?4, ?5)")
                .unwrap();
            insert
                .execute(params![1, "one", 1.5, vec![1u8, 2, 3], Option::<i64>::None])
                .unwrap();
            insert
                .execute(params![2, "two", 2, b"\x00\xff".to_vec(), 7])
                .unwrap();
            drop(insert);
            // the cached statement again, with a bare `?` after a numbered one
            let n = conn
                .prepare_cached("UPDATE t SET n = ?2 WHERE id = ?1 AND name <> ?")
                .unwrap()
                .execute(params![1, 5, "x"])
                .unwrap();
            assert_eq!(n, 1);
            let (name, x, data, n): (String, f64, Vec<u8>, Option<i64>) = conn
                .query_row("SELECT name, x, data, n FROM t WHERE id = ?1", [2], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .unwrap();
            assert_eq!(
                (name.as_str(), x, data, n),
                ("two", 2.0, vec![0, 255], Some(7))
            );
            // sums, counts, comparisons and scalar max/min read as SQLite gives them
            let (sum, count, cmp): (i64, i64, i64) = conn
                .query_row(
                    "SELECT sum(n), count(*), 1 < 2 FROM t WHERE id = 2",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap();
            assert_eq!((sum, count, cmp), (7, 1, 1));
            let (most, fewest): (i64, f64) = conn
                .query_row(
                    "SELECT max(id, 7), min(x, 0.5) FROM t WHERE id = 2",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            assert_eq!((most, fewest), (7, 0.5));
            let half: f64 = conn
                .query_row("SELECT sum(x) / 2 FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(half, 1.75);
            let at = conn
                .query_row("SELECT instr(name, ?1) FROM t WHERE id = 1", ["ne"], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap();
            assert_eq!(at, 2);
            let none = conn
                .query_row("SELECT id FROM t WHERE id = ?1", [99], |r| {
                    r.get::<_, i64>(0)
                })
                .optional()
                .unwrap();
            assert_eq!(none, None);
            let dynamic = [types::Value::Integer(1), types::Value::Text("one".into())];
            let found: i64 = conn
                .prepare("SELECT count(*) FROM t WHERE id = ?1 AND name = ?2")
                .unwrap()
                .query_row(params_from_iter(dynamic.iter()), |r| r.get(0))
                .unwrap();
            assert_eq!(found, 1);
            let blob_grown: Vec<u8> = conn
                .query_row(
                    "UPDATE t SET data = CAST(data || ?2 AS BLOB) WHERE id = ?1 RETURNING data",
                    params![1, vec![4u8]],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(blob_grown, [1, 2, 3, 4]);
        }
    }

    #[test]
    fn failures_are_told_apart() {
        for conn in engines() {
            create(&conn);
            conn.execute("INSERT INTO t (id, name) VALUES (1, 'a')", [])
                .unwrap();
            let taken = conn
                .execute("INSERT INTO t (id, name) VALUES (2, 'a')", [])
                .unwrap_err();
            assert_eq!(taken.failure(), Failure::Unique, "{taken}");
            let missing = conn.execute("SELECT nope FROM nothing", []).unwrap_err();
            assert_eq!(missing.failure(), Failure::Other, "{missing}");
        }
    }

    #[test]
    fn transactions_commit_or_roll_back_when_dropped() {
        for mut conn in engines() {
            create(&conn);
            {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .unwrap();
                tx.execute("INSERT INTO t (id) VALUES (1)", []).unwrap();
            }
            {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .unwrap();
                tx.execute("INSERT INTO t (id) VALUES (2)", []).unwrap();
                tx.commit().unwrap();
            }
            let ids: Vec<i64> = conn
                .prepare("SELECT id FROM t ORDER BY id")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_>>()
                .unwrap();
            assert_eq!(ids, [2]);
        }
    }

    /// A long read inside a transaction comes a page at a time, and other statements run
    /// between its rows, as on SQLite.
    #[test]
    fn long_reads_interleave_with_other_statements() {
        for mut conn in engines() {
            create(&conn);
            let rows = 3 * pg::FETCH_ROWS as i64 + 7;
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            let mut insert = tx
                .prepare_cached("INSERT INTO t (id, n) VALUES (?1, ?1)")
                .unwrap();
            for i in 0..rows {
                insert.execute([i]).unwrap();
            }
            drop(insert);
            for _ in 0..2 {
                let mut read = tx
                    .prepare_cached("SELECT id, n FROM t WHERE id >= ?1 ORDER BY id")
                    .unwrap();
                let mut seen = 0;
                let mut rows_of = read.query([0]).unwrap();
                while let Some(r) = rows_of.next().unwrap() {
                    let (id, n): (i64, i64) = (r.get(0).unwrap(), r.get(1).unwrap());
                    assert_eq!((id, n), (seen, seen));
                    tx.execute("UPDATE t SET x = ?2 WHERE id = ?1", params![id, 1.0])
                        .unwrap();
                    seen += 1;
                }
                assert_eq!(seen, rows);
            }
            // stopped half-way, then read again from the start
            let mut read = tx
                .prepare_cached("SELECT id, n FROM t WHERE id >= ?1 ORDER BY id")
                .unwrap();
            let first: Vec<i64> = read
                .query_map([0], |r| r.get(0))
                .unwrap()
                .take(3)
                .collect::<Result<_>>()
                .unwrap();
            assert_eq!(first, [0, 1, 2]);
            drop(read);
            let total: f64 = tx
                .query_row("SELECT sum(x) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(total, rows as f64);
            tx.commit().unwrap();
        }
    }
}
