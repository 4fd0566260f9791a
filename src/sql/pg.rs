//! The PostgreSQL engine of the layer: a blocking `postgres::Client` behind the same
//! [`super::Connection`]. The store's SQL is SQLite's; each distinct statement text is
//! translated once ([`translate`]) and prepared once, then found in a per-connection cache.
//! Values cross as SQLite's: a parameter becomes whatever type the server inferred for its
//! place ([`Param`]), a column is decoded into a [`ValueRef`] ([`value`]) and converted by
//! rusqlite's rules, so `INT2/4/8`, `FLOAT4/8`, `NUMERIC` (what `sum` gives), `BOOL`, text
//! types and `BYTEA` all read as SQLite would give them.
//!
//! Rows are read in pages: inside a transaction a query that returns rows runs as a cursor and
//! [`Rows`] fetches [`FETCH_ROWS`] at a time, so a big read holds one page in memory, and other
//! statements may run between pages, as on SQLite. Outside a transaction (the CLI's one-off
//! statements) the rows are read whole.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};

use postgres::types::{IsNull, Type, private::BytesMut};
use rusqlite::types::{Value, ValueRef};

use super::{Error, Result};

/// Rows a cursor hands over per round trip.
pub const FETCH_ROWS: usize = 512;
/// Prepared statements kept per connection; past it the cache starts again (filters make
/// statement texts at run time, so their number is not bounded by the code).
const CACHE: usize = 512;

/// A PostgreSQL connection and its statement cache.
pub struct PgConn {
    /// Always there until the connection is dropped (see its `Drop`).
    client: RefCell<Option<postgres::Client>>,
    cache: RefCell<HashMap<String, Prepared>>,
    in_transaction: Cell<bool>,
    /// Cursor names for statements prepared outside the cache.
    next_cursor: Cell<u64>,
}

/// A statement as prepared for this connection: the translated query, and the same query
/// opened as a cursor (prepared the first time it returns rows inside a transaction).
#[derive(Clone)]
pub struct Prepared {
    /// The statement as the store wrote it, the cache's key.
    sql: std::sync::Arc<str>,
    cached: bool,
    query: postgres::Statement,
    cursor: String,
    declare: Option<postgres::Statement>,
    fetch: Option<postgres::Statement>,
}

impl Prepared {
    pub fn column_count(&self) -> usize {
        self.query.columns().len()
    }
}

impl PgConn {
    pub fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client: RefCell::new(Some(client)),
            cache: RefCell::new(HashMap::new()),
            in_transaction: Cell::new(false),
            next_cursor: Cell::new(0),
        }
    }

    pub fn client(&self) -> std::cell::RefMut<'_, postgres::Client> {
        std::cell::RefMut::map(self.client.borrow_mut(), |c| {
            c.as_mut()
                .expect("a connection's client lives as long as it")
        })
    }

    pub(super) fn in_transaction(&self) -> bool {
        self.in_transaction.get()
    }

    pub(super) fn set_in_transaction(&self, yes: bool) {
        self.in_transaction.set(yes);
    }

    pub(super) fn batch_execute(&self, sql: &str) -> Result<()> {
        Ok(self.client().batch_execute(sql)?)
    }

    pub(super) fn prepare(&self, sql: &str, cached: bool) -> Result<Prepared> {
        if cached && let Some(p) = self.cache.borrow().get(sql) {
            return Ok(p.clone());
        }
        let query = self.client().prepare(&translate(sql))?;
        let prepared = Prepared {
            sql: sql.into(),
            cached,
            query,
            cursor: String::new(),
            declare: None,
            fetch: None,
        };
        if cached {
            let mut cache = self.cache.borrow_mut();
            if cache.len() >= CACHE {
                cache.clear();
            }
            let prepared = Prepared {
                cursor: format!("tora_c{}", cache.len()),
                ..prepared
            };
            cache.insert(sql.to_string(), prepared.clone());
            return Ok(prepared);
        }
        Ok(prepared)
    }

    pub(super) fn execute(&self, p: &Prepared, params: &[Param]) -> Result<usize> {
        let params = as_params(params);
        Ok(self.client().execute(&p.query, &params)? as usize)
    }

    /// The first row only (the rest are read and dropped by the driver).
    pub(super) fn first(&self, p: &Prepared, params: &[Param]) -> Result<Option<postgres::Row>> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut client = self.client();
        let mut rows = client.query_raw(&p.query, as_params(params))?;
        Ok(rows.next()?)
    }

    /// Starts reading the rows of `p`: as a cursor inside a transaction, whole outside one.
    pub(super) fn query(&self, p: &mut Prepared, params: &[Param]) -> Result<Rows<'_>> {
        let args = as_params(params);
        if !self.in_transaction() {
            let rows = self.client().query(&p.query, &args)?;
            return Ok(Rows {
                conn: self,
                fetch: None,
                cursor: None,
                buf: rows.into(),
                current: None,
            });
        }
        if p.declare.is_none() {
            if p.cursor.is_empty() {
                let n = self.next_cursor.get();
                self.next_cursor.set(n + 1);
                p.cursor = format!("tora_u{n}");
            }
            let declare = format!(
                "DECLARE {} NO SCROLL CURSOR FOR {}",
                p.cursor,
                translate(&p.sql)
            );
            p.declare = Some(self.client().prepare(&declare)?);
        }
        let declare = p.declare.as_ref().expect("prepared above");
        self.client().execute(declare, &args)?;
        if p.fetch.is_none() {
            let fetch = format!("FETCH FORWARD {FETCH_ROWS} FROM {}", p.cursor);
            p.fetch = Some(self.client().prepare(&fetch)?);
        }
        if p.cached
            && let Some(slot) = self.cache.borrow_mut().get_mut(&*p.sql)
            && slot.cursor == p.cursor
        {
            slot.declare.clone_from(&p.declare);
            slot.fetch.clone_from(&p.fetch);
        }
        Ok(Rows {
            conn: self,
            fetch: p.fetch.clone(),
            cursor: Some(p.cursor.clone()),
            buf: VecDeque::new(),
            current: None,
        })
    }
}

fn as_params(params: &[Param]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|p| -> &(dyn postgres::types::ToSql + Sync) { p })
        .collect()
}

impl Drop for PgConn {
    /// The client says goodbye to the server by running a small runtime of its own, which
    /// tokio refuses on a thread that drives async tasks (where a pool may be dropped): so it
    /// is dropped on a thread of its own.
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take() {
            let _ = std::thread::Builder::new()
                .name("tora-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

/// A statement's rows on PostgreSQL, a page at a time.
pub struct Rows<'c> {
    conn: &'c PgConn,
    fetch: Option<postgres::Statement>,
    /// The open cursor, closed when the rows are dropped.
    cursor: Option<String>,
    buf: VecDeque<postgres::Row>,
    current: Option<postgres::Row>,
}

impl Rows<'_> {
    pub fn advance(&mut self) -> Result<Option<&postgres::Row>> {
        if self.buf.is_empty()
            && let Some(fetch) = &self.fetch
        {
            let page = self.conn.client().query(fetch, &[])?;
            if page.len() < FETCH_ROWS {
                self.fetch = None;
            }
            self.buf = page.into();
        }
        self.current = self.buf.pop_front();
        Ok(self.current.as_ref())
    }
}

impl Drop for Rows<'_> {
    fn drop(&mut self) {
        if let Some(cursor) = &self.cursor
            && self.conn.in_transaction()
        {
            // A failed transaction has closed it already; the error then is of no interest.
            let _ = self.conn.batch_execute(&format!("CLOSE {cursor}"));
        }
    }
}

/// A parameter bound as the type PostgreSQL inferred for its place, converted from SQLite's
/// storage class the way SQLite would compare it.
#[derive(Debug)]
pub struct Param(pub Value);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl postgres::types::ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let wrong = || -> BoxError {
            format!("cannot bind {:?} to a parameter of type {ty}", self.0).into()
        };
        match &self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::FLOAT4 => (*i as f32).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::NUMERIC => numeric(*i, out),
                Type::JSONB => {
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(i.to_string().as_bytes());
                    Ok(IsNull::No)
                }
                Type::TEXT | Type::VARCHAR | Type::UNKNOWN => {
                    i.to_string().as_str().to_sql(ty, out)
                }
                _ => Err(wrong()),
            },
            // SQLite stores a NaN as NULL; so does this engine (schema_postgres.sql).
            Value::Real(f) if f.is_nan() => Ok(IsNull::Yes),
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                Type::INT8 if f.fract() == 0.0 => (*f as i64).to_sql(ty, out),
                // A number with a point, so it reads back as a real (schema_postgres.sql).
                Type::JSONB if f.is_finite() => {
                    let mut text = f.to_string();
                    if !text.contains('.') {
                        text.push_str(".0");
                    }
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(text.as_bytes());
                    Ok(IsNull::No)
                }
                Type::TEXT | Type::VARCHAR | Type::UNKNOWN => {
                    f.to_string().as_str().to_sql(ty, out)
                }
                _ => Err(wrong()),
            },
            Value::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.as_str().to_sql(ty, out)
                }
                Type::JSON => {
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                // A hyperparameter's text: a JSON string (see `column`).
                Type::JSONB => {
                    out.extend_from_slice(&[1]);
                    out.extend_from_slice(serde_json::to_string(s)?.as_bytes());
                    Ok(IsNull::No)
                }
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                _ => Err(wrong()),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => b.as_slice().to_sql(ty, out),
                _ => Err(wrong()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// An integer as PostgreSQL's binary NUMERIC: base-10000 digits, most significant first.
fn numeric(i: i64, out: &mut BytesMut) -> Result<IsNull, BoxError> {
    let mut digits = Vec::new();
    let mut n = i.unsigned_abs();
    while n > 0 {
        digits.push((n % 10_000) as i16);
        n /= 10_000;
    }
    digits.reverse();
    let weight = digits.len() as i16 - 1;
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.max(0).to_be_bytes());
    out.extend_from_slice(&(if i < 0 { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&0i16.to_be_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_be_bytes());
    }
    Ok(IsNull::No)
}

/// A column's bytes as the server sent them (binary format), for [`value`] to decode.
struct Raw<'a>(&'a [u8]);

impl<'a> postgres::types::FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A column as SQLite's storage classes: borrowed from the row, or (a JSONB string, whose
/// escapes are undone) owned.
pub enum Column<'r> {
    Ref(ValueRef<'r>),
    Owned(Value),
}

impl Column<'_> {
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Column::Ref(v) => *v,
            Column::Owned(v) => v.into(),
        }
    }
}

/// Column `idx` of `row` as SQLite's storage classes, borrowed from the row: see [`column`].
/// A JSONB string with escapes cannot be borrowed; that is an error here.
pub fn value(row: &postgres::Row, idx: usize) -> Result<ValueRef<'_>> {
    match column(row, idx)? {
        Column::Ref(v) => Ok(v),
        Column::Owned(_) => Err(Error::Sqlite(rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            "a JSONB string with escapes cannot be borrowed; read it with get()".into(),
        ))),
    }
}

/// Column `idx` of `row` as SQLite would hold it. JSONB (experiment_hyperparams.value, which
/// SQLite keeps untyped) reads as what was bound: a string as its text, a number as an integer
/// (no point or exponent) or a real, true/false as 1/0; an object or array as its JSON text.
pub fn column(row: &postgres::Row, idx: usize) -> Result<Column<'_>> {
    let Some(column) = row.columns().get(idx) else {
        return Err(Error::Sqlite(rusqlite::Error::InvalidColumnIndex(idx)));
    };
    let Some(Raw(raw)) = row.try_get::<_, Option<Raw>>(idx)? else {
        return Ok(Column::Ref(ValueRef::Null));
    };
    let bad = || {
        Error::Sqlite(rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Null,
            format!("cannot read a {} column", column.type_()).into(),
        ))
    };
    let int = |n: usize| -> Result<i64> {
        let b = raw.get(..n).filter(|_| raw.len() == n).ok_or_else(bad)?;
        let mut full = [if b[0] & 0x80 != 0 { 0xff } else { 0 }; 8];
        full[8 - n..].copy_from_slice(b);
        Ok(i64::from_be_bytes(full))
    };
    Ok(Column::Ref(match *column.type_() {
        Type::INT8 => ValueRef::Integer(int(8)?),
        Type::INT4 => ValueRef::Integer(int(4)?),
        Type::INT2 => ValueRef::Integer(int(2)?),
        Type::OID => ValueRef::Integer(int(4)? & 0xffff_ffff),
        Type::BOOL => ValueRef::Integer(i64::from(raw.first().copied().ok_or_else(bad)? != 0)),
        Type::FLOAT8 => ValueRef::Real(f64::from_be_bytes(raw.try_into().map_err(|_| bad())?)),
        Type::FLOAT4 => {
            ValueRef::Real(f32::from_be_bytes(raw.try_into().map_err(|_| bad())?).into())
        }
        Type::NUMERIC => decode_numeric(raw).ok_or_else(bad)?,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::UNKNOWN => {
            ValueRef::Text(raw)
        }
        Type::JSONB => {
            let text = raw.get(1..).ok_or_else(bad)?;
            return Ok(match serde_json::from_slice(text).map_err(|_| bad())? {
                serde_json::Value::Null => Column::Ref(ValueRef::Null),
                serde_json::Value::Bool(b) => Column::Ref(ValueRef::Integer(i64::from(b))),
                serde_json::Value::Number(n) => Column::Ref(match n.as_i64() {
                    Some(i) if !text.contains(&b'.') && !text.contains(&b'e') => {
                        ValueRef::Integer(i)
                    }
                    _ => ValueRef::Real(n.as_f64().ok_or_else(bad)?),
                }),
                serde_json::Value::String(s) => Column::Owned(Value::Text(s)),
                _ => Column::Ref(ValueRef::Text(text)),
            });
        }
        Type::BYTEA => ValueRef::Blob(raw),
        _ => return Err(bad()),
    }))
}

/// PostgreSQL's binary NUMERIC: an integer when it has no fraction and fits, else a float.
fn decode_numeric(raw: &[u8]) -> Option<ValueRef<'static>> {
    let word = |i: usize| -> Option<i16> {
        Some(i16::from_be_bytes(
            raw.get(i * 2..i * 2 + 2)?.try_into().ok()?,
        ))
    };
    let (ndigits, weight, sign, dscale) = (word(0)?, word(1)?, word(2)? as u16, word(3)?);
    match sign {
        0xC000 => return Some(ValueRef::Real(f64::NAN)),
        0xD000 => return Some(ValueRef::Real(f64::INFINITY)),
        0xF000 => return Some(ValueRef::Real(f64::NEG_INFINITY)),
        _ => {}
    }
    let negative = sign == 0x4000;
    let mut int: Option<i64> = Some(0);
    let mut float = 0f64;
    let mut fraction = false;
    for k in 0..ndigits {
        let d = word(4 + k as usize)?;
        let power = weight as i32 - k as i32;
        float += f64::from(d) * 10_000f64.powi(power);
        if power < 0 {
            fraction |= d != 0;
        } else {
            int = int.and_then(|v| {
                v.checked_add(i64::from(d).checked_mul(10_000i64.checked_pow(power as u32)?)?)
            });
        }
    }
    let _ = dscale;
    if !fraction && let Some(v) = int {
        return Some(ValueRef::Integer(if negative { -v } else { v }));
    }
    Some(ValueRef::Real(if negative { -float } else { float }))
}

/// SQLite's SQL as PostgreSQL takes it: `?NNN` and `?` become `$N` (a bare `?` is one past the
/// highest number so far, as in SQLite), `instr(` becomes `strpos(`, a `min(`/`max(` of two or
/// more arguments `least(`/`greatest(`, the type name `BLOB` `BYTEA`, and `x COLLATE NOCASE`
/// `nocase(x)` (schema_postgres.sql's ASCII fold, which its indexes use), for `x` an
/// identifier, a parameter, a string or a parenthesised expression: so a comparison that
/// ignores case names the collation on both sides. Quoted strings, quoted identifiers and
/// comments are copied as they are.
pub fn translate(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut highest = 0u32;
    // Where the last operand written to `out` starts, for `COLLATE NOCASE` to wrap it; and
    // where each open parenthesis (with its function name) starts.
    let mut operand = 0;
    let mut open: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                let start = i;
                i += 1;
                while i < b.len() {
                    if b[i] == c {
                        if b.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
                operand = out.len();
                out.push_str(&sql[start..i]);
            }
            b'(' => {
                open.push(
                    if out.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                        operand
                    } else {
                        out.len()
                    },
                );
                out.push('(');
                i += 1;
            }
            b')' => {
                operand = open.pop().unwrap_or(0);
                out.push(')');
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = sql[i..].find('\n').map_or(b.len(), |n| i + n);
                out.push_str(&sql[i..end]);
                i = end;
            }
            b'?' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                let n = if end > start {
                    sql[start..end].parse().unwrap_or(0)
                } else {
                    highest + 1
                };
                highest = highest.max(n);
                operand = out.len();
                out.push('$');
                out.push_str(&n.to_string());
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                let word = &sql[start..i];
                if word.eq_ignore_ascii_case("collate") {
                    let rest = &sql[i..];
                    let name = rest.trim_start();
                    if name.len() >= 6 && name[..6].eq_ignore_ascii_case("nocase") {
                        let folded = format!("nocase({})", out[operand..].trim_end());
                        out.truncate(operand);
                        out.push_str(&folded);
                        i += rest.len() - name.len() + 6;
                        continue;
                    }
                }
                let call = b.get(i) == Some(&b'(');
                operand = out.len();
                let renamed = match word.to_ascii_lowercase().as_str() {
                    "instr" if call => "strpos",
                    "max" if call && has_two_arguments(&b[i..]) => "greatest",
                    "min" if call && has_two_arguments(&b[i..]) => "least",
                    "blob" if !call => "BYTEA",
                    _ => word,
                };
                out.push_str(renamed);
            }
            _ => {
                let start = i;
                i += 1;
                while i < b.len() && !b[i].is_ascii() {
                    i += 1;
                }
                out.push_str(&sql[start..i]);
            }
        }
    }
    out
}

/// Whether the parenthesised list starting at `b[0] == b'('` has a comma at its top level.
fn has_two_arguments(b: &[u8]) -> bool {
    let mut depth = 0;
    let mut quote = None;
    for &c in b {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'\'' | b'"') => quote = Some(c),
            (None, b'(') => depth += 1,
            (None, b')') => {
                depth -= 1;
                if depth == 0 {
                    return false;
                }
            }
            (None, b',') if depth == 1 => return true,
            _ => {}
        }
    }
    false
}

impl Error {
    pub(super) fn postgres_failure(e: &postgres::Error) -> super::Failure {
        use super::Failure;
        use postgres::error::SqlState;
        let Some(code) = e.code() else {
            return Failure::Other;
        };
        if *code == SqlState::UNIQUE_VIOLATION {
            Failure::Unique
        } else if *code == SqlState::QUERY_CANCELED {
            Failure::Interrupted
        } else if *code == SqlState::DISK_FULL {
            Failure::Full
        } else if *code == SqlState::PROGRAM_LIMIT_EXCEEDED
            || *code == SqlState::STATEMENT_TOO_COMPLEX
            || *code == SqlState::TOO_MANY_ARGUMENTS
            || *code == SqlState::TOO_MANY_COLUMNS
        {
            Failure::TooBig
        } else {
            Failure::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_functions_are_translated_outside_quotes() {
        assert_eq!(
            translate(
                "SELECT max(a, ?2), max(b), instr(lower(x), ?) FROM t WHERE s = '?1 max(a, b)' AND y = ?"
            ),
            "SELECT greatest(a, $2), max(b), strpos(lower(x), $3) FROM t WHERE s = '?1 max(a, b)' AND y = $4"
        );
        assert_eq!(
            translate(
                "UPDATE u SET d = CAST(d || ?2 AS BLOB) WHERE id = ?1 AND min(coalesce(x, 0), 3) > 0"
            ),
            "UPDATE u SET d = CAST(d || $2 AS BYTEA) WHERE id = $1 AND least(coalesce(x, 0), 3) > 0"
        );
        assert_eq!(translate("SELECT 'it''s ?' , ?"), "SELECT 'it''s ?' , $1");
        assert_eq!(
            translate(
                "SELECT a FROM t WHERE e.name COLLATE NOCASE = ?1 COLLATE  nocase ORDER BY (x || y) COLLATE NOCASE, lower(z) COLLATE NOCASE DESC"
            ),
            "SELECT a FROM t WHERE nocase(e.name) = nocase($1) ORDER BY nocase((x || y)), nocase(lower(z)) DESC"
        );
    }

    #[test]
    fn numerics_decode_to_integers_or_floats() {
        // 12345678 = [1234, 5678], weight 1
        let raw = [0, 2, 0, 1, 0, 0, 0, 0, 0x04, 0xd2, 0x16, 0x2e];
        assert_eq!(decode_numeric(&raw), Some(ValueRef::Integer(12_345_678)));
        // -1.5 = [1, 5000], weight 0, negative, dscale 1
        let raw = [0, 2, 0, 0, 0x40, 0, 0, 1, 0, 1, 0x13, 0x88];
        assert_eq!(decode_numeric(&raw), Some(ValueRef::Real(-1.5)));
        let raw = [0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_numeric(&raw), Some(ValueRef::Integer(0)));
    }
}

/// A PostgreSQL for tests: the cluster and fresh databases of `tests/postgres/cluster.rs`,
/// which the integration tests share.
#[cfg(test)]
pub mod testing {
    mod cluster {
        include!("../../tests/postgres/cluster.rs");
    }
    pub use cluster::database;

    /// A layer connection to a new, empty database.
    pub fn connection() -> crate::sql::Connection {
        let client = postgres::Client::connect(&database(), postgres::NoTls).expect("connect");
        crate::sql::Connection::postgres(client)
    }
}
