//! `tora doctor FILE`: is this database file, alone, complete and intact? For a copy made with
//! `cp` or `rsync`, a backup, or a file about to be restored.
//!
//! The file is opened `immutable` and read-only: nothing beside it is created or read (no
//! `-wal`, no `-shm`), so what is checked is exactly what a copy of that one file holds. The
//! checks, cheapest first: the SQLite header and the file length it implies (a copy that raced
//! a growing file is cut short or too long), `integrity_check` and `foreign_key_check`, the
//! schema version, and every packed block of points decoded and counted against its series.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use rusqlite::OpenFlags;

use crate::sql::Connection;

use crate::db::SCHEMA_VERSION;
use crate::error::{Error, Result};

/// What `doctor` found: `problems` empty means complete and intact.
#[derive(Debug, Default)]
pub struct Report {
    /// What the file holds, one line each.
    pub facts: Vec<String>,
    /// Worth knowing, not a fault of the file (a `-wal` beside it, an older schema).
    pub warnings: Vec<String>,
    /// Why the file is not a complete, intact Tora database.
    pub problems: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The most `integrity_check` messages reported (it stops there).
const MAX_MESSAGES: usize = 20;

pub fn check(path: &Path) -> Result<Report> {
    let mut report = Report::default();
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::bad_request(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::bad_request(format!(
            "{} is not a file",
            path.display()
        )));
    }
    let len = meta.len();
    surroundings(path, &mut report);
    let wal = crate::wal::wal_path(path);
    if let Ok(w) = std::fs::metadata(&wal)
        && w.len() > 0
    {
        report.warnings.push(format!(
            "{} ({} bytes) is beside it: it may hold changes this file lacks. Checked here is the file alone; a copy must take both, or use `tora backup`",
            wal.display(),
            w.len()
        ));
    }
    if len == 0 {
        report.problems.push(
            "the file is empty: a copy of a database whose changes were all still in its -wal file"
                .into(),
        );
        return Ok(report);
    }
    if !header(path, len, &mut report)? {
        return Ok(report);
    }
    // Past the header, anything SQLite cannot read is a finding about the file, not a failure
    // of the check.
    if let Err(e) = open_immutable(path).and_then(|conn| contents(&conn, &mut report)) {
        report
            .problems
            .push(format!("SQLite cannot read all of it: {}", e.plain()));
    }
    Ok(report)
}

/// What a server on this file would meet: who can read it, the disk it is on, open files.
fn surroundings(path: &Path, report: &mut Report) {
    for (file, mode) in crate::db::readable_by_others(path) {
        report.warnings.push(format!(
            "{} can be read by other users (mode {mode:o}): it holds the token-signing secret; `chmod 600` it",
            file.display()
        ));
    }
    if let Some(space) = crate::db::space(path) {
        let (free, total) = (space.free, space.total);
        report.facts.push(format!(
            "{} MiB free of {} MiB on its filesystem",
            free >> 20,
            total >> 20
        ));
        if free < LOW_DISK || free.saturating_mul(20) < total {
            report.warnings.push(format!(
                "only {} MiB free on the filesystem holding it: a full disk stops writes",
                free >> 20
            ));
        }
    }
    #[cfg(unix)]
    {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
        report.facts.push(format!(
            "open-file limit {} (hard {}; tora serve raises it to the hard limit)",
            show(limit.current),
            show(limit.maximum)
        ));
    }
}

/// Less free space than this (or under 5%) is worth a warning.
const LOW_DISK: u64 = 1 << 30;

/// Checks the 100-byte header; false when the file is not an SQLite database at all.
fn header(path: &Path, len: u64, report: &mut Report) -> Result<bool> {
    let mut head = [0u8; 100];
    let mut file = std::fs::File::open(path)?;
    let read = file.read(&mut head)?;
    if read < 100 || &head[..16] != b"SQLite format 3\0" {
        report
            .problems
            .push("not an SQLite database (its header is missing or wrong)".into());
        return Ok(false);
    }
    let page_size = match u16::from_be_bytes([head[16], head[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let be32 = |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let pages = u64::from(be32(28));
    // The page count in the header is valid only when written by the same change as the
    // "version valid for" number (SQLite's file format, section 1.3.7).
    if be32(24) == be32(92) && pages > 0 {
        let expected = pages * page_size;
        if expected != len {
            report.problems.push(format!(
                "the header says {pages} pages of {page_size} bytes ({expected} bytes) but the file holds {len}: it was copied while being written, or cut short"
            ));
        }
    }
    report
        .facts
        .push(format!("{len} bytes, {pages} pages of {page_size} bytes"));
    Ok(true)
}

fn open_immutable(path: &Path) -> Result<Connection> {
    // A URI, so `immutable=1` can say: read this file only, take no locks, make no -shm.
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/._-~".contains(&b) {
            uri.push(b as char);
        } else {
            let _ = write!(uri, "%{b:02X}");
        }
    }
    uri.push_str("?immutable=1");
    Ok(Connection::from(rusqlite::Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )?))
}

fn contents(conn: &Connection, report: &mut Report) -> Result<()> {
    let mut messages = Vec::new();
    {
        let mut stmt = conn.prepare(&format!("PRAGMA integrity_check({MAX_MESSAGES})"))?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0));
        match rows {
            Ok(rows) => {
                for row in rows {
                    match row {
                        Ok(m) if m == "ok" => {}
                        Ok(m) => messages.push(m),
                        Err(e) => messages.push(e.to_string()),
                    }
                }
            }
            Err(e) => messages.push(e.to_string()),
        }
    }
    if !messages.is_empty() {
        report.problems.push(format!(
            "SQLite's integrity check failed: {}",
            messages.join("; ")
        ));
        return Ok(());
    }
    report.facts.push("SQLite's integrity check: ok".into());

    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'experiments'",
        [],
        |r| r.get(0),
    )?;
    if version == 0 || tables == 0 {
        report.problems.push(
            "no Tora data in it: an empty database (its contents may all have been in the -wal file left behind)".into(),
        );
        return Ok(());
    }
    if version > SCHEMA_VERSION {
        report.problems.push(format!(
            "schema version {version} is newer than this tora understands ({SCHEMA_VERSION}); check it with a newer tora"
        ));
        return Ok(());
    }
    if version < SCHEMA_VERSION {
        report.warnings.push(format!(
            "schema version {version}: `tora serve` upgrades it to {SCHEMA_VERSION} when it opens it"
        ));
    } else {
        report.facts.push(format!("schema version {version}"));
    }
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let incremental = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))? == 2;
    let free_mib = (free * page) as f64 / 1048576.0;
    if incremental {
        report.facts.push(format!(
            "{free_mib:.1} MiB of free pages inside (a running server gives them back when idle)"
        ));
    } else if free * page > 64 << 20 {
        report.warnings.push(format!(
            "{free_mib:.1} MiB of free pages inside, which this file never gives back: run `tora vacuum` once with the server stopped"
        ));
    }

    let broken: i64 = conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
        r.get(0)
    })?;
    if broken > 0 {
        report
            .problems
            .push(format!("{broken} rows refer to rows that are not there"));
    }
    points(conn, report)?;
    counts(conn, report)?;
    Ok(())
}

/// Rebuilds each metric's units ([`crate::store::units`]) from its points and compares them
/// with what is stored.
struct UnitCheck {
    /// Metric series and their `open_unit`; empty before schema 8.
    metrics: HashMap<i64, Option<Vec<u8>>>,
    current: Option<crate::store::units::Units>,
    /// Whether the file has units to check (schema 8 on).
    checked: bool,
}

impl UnitCheck {
    fn new(conn: &Connection) -> Result<UnitCheck> {
        let has: bool = conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'series_units'",
            [],
            |r| r.get(0),
        )?;
        let mut metrics = HashMap::new();
        if has {
            let mut stmt = conn.prepare("SELECT id, open_unit FROM series WHERE kind = 0")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                metrics.insert(r.get(0)?, r.get(1)?);
            }
        }
        Ok(UnitCheck {
            metrics,
            current: None,
            checked: has,
        })
    }

    fn feed(
        &mut self,
        conn: &Connection,
        series: i64,
        points: &[crate::store::packed::Point],
        bad: &mut Vec<String>,
    ) -> Result<()> {
        if !self.metrics.contains_key(&series) {
            return Ok(());
        }
        if self.current.as_ref().map(|u| u.series()) != Some(series) {
            self.finish(conn, bad)?;
            self.current = Some(crate::store::units::Units::new(series, None)?);
        }
        let units = self.current.as_mut().expect("set above");
        for p in points {
            units.add(conn, p)?;
        }
        Ok(())
    }

    fn finish(&mut self, conn: &Connection, bad: &mut Vec<String>) -> Result<()> {
        let Some(built) = self.current.take() else {
            return Ok(());
        };
        let id = built.series();
        let stored: Vec<(i64, Vec<u8>)> = conn
            .prepare_cached(
                "SELECT id, data FROM series_units WHERE id BETWEEN ?1 AND ?1 + 4294967295 ORDER BY id",
            )?
            .query_map([id << 32], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<crate::sql::Result<_>>()?;
        let open = self.metrics.get(&id).cloned().flatten();
        if stored != built.rows() || open != built.open_column() {
            bad.push(format!(
                "the step-ordered units of series {id} disagree with its points"
            ));
        }
        Ok(())
    }
}

/// The series whose raw points retention deleted (schema 10): their blocks' aggregates have no
/// chunks behind them, or only those still queued for deletion.
fn compacted(conn: &Connection) -> Result<std::collections::HashSet<i64>> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('series') WHERE name = 'compacted_at'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        return Ok(Default::default());
    }
    let mut stmt = conn.prepare("SELECT id FROM series WHERE compacted_at IS NOT NULL")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<crate::sql::Result<_>>()?)
}

/// Decodes every packed block and checks its count against the block index and the series
/// (a compacted series' remaining chunks are decoded, not counted).
fn points(conn: &Connection, report: &mut Report) -> Result<()> {
    let compacted = compacted(conn)?;
    let mut blocks: HashMap<(i64, i64), i64> = HashMap::new();
    {
        let mut stmt = conn.prepare("SELECT series_id, block, count FROM series_blocks")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let series: i64 = r.get(0)?;
            if !compacted.contains(&series) {
                blocks.insert((series, r.get(1)?), r.get(2)?);
            }
        }
    }
    let mut per_series: HashMap<i64, i64> = HashMap::new();
    let mut bad = Vec::new();
    // The step-ordered units of each metric (schema 8), rebuilt from its points as the chunks
    // come by in rowid order (a series' blocks in arrival order) and compared with the stored.
    let mut units = UnitCheck::new(conn)?;
    units.metrics.retain(|id, _| !compacted.contains(id));
    {
        let mut stmt = conn.prepare("SELECT id, data FROM chunks ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let (series, block) = (id >> 32, id & 0xffff_ffff);
            let data = r.get_ref(1)?.as_blob().unwrap_or_default();
            match crate::store::packed::decode(data, false) {
                Ok(_) if compacted.contains(&series) => {}
                Ok(p) => {
                    units.feed(conn, series, &p, &mut bad)?;
                    *per_series.entry(series).or_default() += p.len() as i64;
                    if blocks.remove(&(series, block)) != Some(p.len() as i64) {
                        bad.push(format!(
                            "block {block} of series {series} disagrees with its index"
                        ));
                    }
                }
                Err(_) => bad.push(format!("block {block} of series {series} does not decode")),
            }
        }
    }
    units.finish(conn, &mut bad)?;
    for (series, block) in blocks.keys().take(MAX_MESSAGES) {
        bad.push(format!("block {block} of series {series} is missing"));
    }
    let mut total = 0i64;
    {
        let mut stmt = conn.prepare("SELECT id, count FROM series")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (id, count): (i64, i64) = (r.get(0)?, r.get(1)?);
            total += count;
            if compacted.contains(&id) {
                continue;
            }
            if per_series.remove(&id).unwrap_or(0) != count {
                bad.push(format!("series {id} should hold {count} points"));
            }
        }
    }
    for series in per_series.keys().take(MAX_MESSAGES) {
        bad.push(format!("points of series {series}, which is not there"));
    }
    if bad.is_empty() {
        report.facts.push(format!(
            "{total} points, every block decoded and counted{}{}",
            if units.checked {
                ", every metric's units rebuilt and compared"
            } else {
                ""
            },
            if compacted.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} metrics compacted to aggregates by retention)",
                    compacted.len()
                )
            }
        ));
    } else {
        let more = bad.len().saturating_sub(MAX_MESSAGES);
        bad.truncate(MAX_MESSAGES);
        report.problems.push(format!(
            "stored points are damaged: {}{}",
            bad.join("; "),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        ));
    }
    Ok(())
}

fn counts(conn: &Connection, report: &mut Report) -> Result<()> {
    let count = |sql: &str| -> Result<i64> { Ok(conn.query_row(sql, [], |r| r.get(0))?) };
    report.facts.push(format!(
        "{} accounts, {} API keys, {} workspaces, {} runs, {} artifacts ({} bytes)",
        count("SELECT count(*) FROM users")?,
        count("SELECT count(*) FROM api_keys WHERE revoked = 0")?,
        count("SELECT count(*) FROM workspaces")?,
        count("SELECT count(*) FROM experiments")?,
        count("SELECT count(*) FROM artifacts WHERE path IS NOT NULL")?,
        count("SELECT coalesce(sum(size), 0) FROM artifacts WHERE path IS NOT NULL")?,
    ));
    let newest: Option<i64> = conn.query_row(
        "SELECT max(t) FROM (SELECT max(updated_at) AS t FROM experiments
                             UNION ALL SELECT max(created_at) FROM users)",
        [],
        |r| r.get(0),
    )?;
    if let Some(ms) = newest {
        report
            .facts
            .push(format!("newest change: {}", crate::time::rfc3339(ms)));
    }
    Ok(())
}
