//! `tora migrate` between SQLite and a real PostgreSQL (tests/postgres/cluster.sh: Debian's
//! postgresql in a temp dir, one cluster for this test binary, a database per test), and
//! schema_postgres.sql held to schema.sql's catalog.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Auth, BIN, TempDir, TestServer, User};
use rusqlite::types::Value as Sql;
use serde_json::json;

use common::pg::database;

fn pg(url: &str) -> postgres::Client {
    common::pg::connect(url)
}

/// `tora migrate --from FROM --to TO`: (success, stdout, stderr, exit code).
fn migrate(from: &str, to: &str, env: &[(&str, &str)]) -> (bool, String, String, i32) {
    let out = Command::new(BIN)
        .args(["migrate", "--from", from, "--to", to])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        out.status.code().unwrap_or(-1),
    )
}

fn ok(from: &str, to: &str) -> String {
    let (ok, out, err, _) = migrate(from, to, &[]);
    assert!(ok, "tora migrate --from {from} --to {to}: {out}\n{err}");
    out
}

fn refused(from: &str, to: &str) -> String {
    let (ok, out, err, code) = migrate(from, to, &[]);
    assert!(!ok, "tora migrate --from {from} --to {to} succeeded: {out}");
    assert_eq!(code, 1);
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every table of a SQLite file, each row in full (rowid too, where there is one), in order:
/// two files with equal dumps hold the same data.
fn dump(file: &Path) -> BTreeMap<String, Vec<Vec<Sql>>> {
    let conn =
        rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let tables: Vec<(String, String)> = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut out = BTreeMap::new();
    for (name, sql) in tables {
        let n: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM pragma_table_info('{name}')"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        let n = n as usize;
        let order: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT * FROM {name} ORDER BY {}",
                order.join(", ")
            ))
            .unwrap();
        let rows: Vec<Vec<Sql>> = stmt
            .query_map([], |r| (0..n).map(|i| r.get::<_, Sql>(i)).collect())
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        out.insert(name.clone(), rows);
        out.insert(format!("{name} (sql)"), vec![vec![Sql::Text(sql)]]);
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    out.insert("user_version".into(), vec![vec![Sql::Integer(version)]]);
    out
}

fn count(file: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(file).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// A server's database filled through its API with a bit of everything the schema holds.
struct Filled {
    server: TestServer,
    alice: User,
    exp: String,
}

fn filled() -> Filled {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let bob = server.admin_user("bob@lab.org");
    let ws = server.workspace(&alice, "vision");
    server.add_member(&ws, &bob, 2);
    let r = server.post(
        "/api/workspace-invitations",
        &alice.auth(),
        json!({"workspaceId": ws, "email": "carol@lab.org", "roleId": 3}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.call(
        "PUT",
        &format!("/api/workspaces/{ws}/retention"),
        &alice.auth(),
        Some(&json!({"delete_after_days": 365, "keep_tag": "keep"})),
    );
    assert_eq!(r.status, 200, "{}", r.text);

    let r = server.post(
        "/api/experiments",
        &alice.auth(),
        json!({
            "name": "resnet",
            "workspaceId": ws,
            "description": "every kind of value",
            "hyperparams": [
                {"key": "lr", "value": 0.001},
                {"key": "epochs", "value": 10},
                {"key": "big", "value": 9007199254740993i64},
                {"key": "whole", "value": 2.0},
                {"key": "tiny", "value": 1e-300},
                {"key": "huge", "value": -1.5e300},
                {"key": "opt", "value": "adam \"w\" é"},
                {"key": "nesterov", "value": true},
                {"key": "frozen", "value": false},
                {"key": "none", "value": null}
            ],
            "tags": ["baseline", "keep"],
            "metadata": {"git": {"commit": "abc"}, "host": "gpu-1"},
            "group": "sweep-1"
        }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let exp = r.data()["id"].as_str().unwrap().to_string();
    let other = server.experiment(&alice, "personal run", None);

    // Columnar batches with batch ids, NaN and infinities, enough points for many blocks and
    // units, and a series whose steps go back (a resumed run).
    for (b, start) in [(0usize, 0usize), (1, 3000), (2, 6000)] {
        let steps: Vec<usize> = (start..start + 3000).collect();
        let values: Vec<serde_json::Value> = steps
            .iter()
            .map(|&i| match i % 997 {
                0 => json!("NaN"),
                1 => json!("Infinity"),
                2 => json!("-Infinity"),
                _ => json!((i as f64).sin() / 3.0),
            })
            .collect();
        let r = server.post(
            &format!("/api/experiments/{exp}/points"),
            &alice.auth(),
            json!({
                "batch_id": format!("session-1.{b}"),
                "metrics": [
                    {"name": "loss", "steps": steps, "values": values},
                    {"name": "lr", "steps": [b, b + 1], "values": [0.1, 0.05]}
                ],
                "results": [{"name": "acc", "value": 0.9 + b as f64 / 100.0}]
            }),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &alice.auth(),
        json!({"batch_id": "resume", "metrics": [{"name": "loss", "steps": [10, 11], "values": [0.5, 0.25]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    // Row logs with msg_ids and metadata beyond the type (log_metadata).
    let r = server.post(
        &format!("/api/experiments/{exp}/logs/batch"),
        &alice.auth(),
        json!({"logs": [
            {"msg_id": "0b6f4e3c-6d0f-4c1e-9f5a-3a2b1c0d9e8f", "name": "val_loss", "value": 0.7, "step": 0, "metadata": {"type": "metric", "note": "first"}},
            {"msg_id": "1b6f4e3c-6d0f-4c1e-9f5a-3a2b1c0d9e8f", "name": "val_loss", "value": "NaN", "step": 1},
            {"msg_id": "m3", "name": "best", "value": 7, "step": 12, "metadata": {"type": "result", "epoch": 12}}
        ]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.post(
        &format!("/api/experiments/{other}/heartbeat"),
        &alice.auth(),
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = server.post(
        &format!("/api/experiments/{exp}/finish"),
        &alice.auth(),
        json!({"state": "finished"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // An artifact of three chunks (256 KiB each), and a small one.
    for (path, len) in [("model.bin", 600_000usize), ("notes.txt", 5)] {
        let r = server.raw(
            "PUT",
            &format!("/api/experiments/{exp}/artifacts/{path}"),
            &alice.auth(),
            Some(&pattern(len)),
            Some("application/octet-stream"),
        );
        assert!(r.status == 201 || r.status == 200, "{}", r.text);
    }
    Filled { server, alice, exp }
}

/// A filled database, server stopped: the file alone.
fn filled_file(dir: &TempDir) -> PathBuf {
    let mut f = filled();
    f.server.sigterm();
    let file = dir.join("source.db");
    std::fs::copy(&f.server.db, &file).unwrap();
    file
}

#[test]
fn a_database_goes_to_postgres_and_back_unchanged() {
    let dir = TempDir::new();
    let mut f = filled();
    let (alice, exp) = (f.alice.key.clone(), f.exp.clone());
    f.server.sigterm();
    let source = f.server.db.clone();
    let url = database();

    let out = ok(s(&source), &url);
    assert!(
        out.contains("every table's row count and SHA-256 match"),
        "{out}"
    );
    // What PostgreSQL holds: the packed points as they are, typed hyperparameters.
    let mut c = pg(&url);
    let chunks: i64 = c
        .query_one("SELECT count(*) FROM chunks", &[])
        .unwrap()
        .get(0);
    assert_eq!(chunks, count(&source, "SELECT count(*) FROM chunks"));
    let kinds: Vec<(String, Option<String>)> = c
        .query(
            "SELECT key, jsonb_typeof(value) FROM experiment_hyperparams ORDER BY key",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        kinds.contains(&("opt".into(), Some("string".into()))),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("none".into(), None)), "{kinds:?}");
    let whole: String = c
        .query_one(
            "SELECT value::text FROM experiment_hyperparams WHERE key = 'whole'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(whole, "2.0");
    let version: i64 = c
        .query_one("SELECT version FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, tora::db::SCHEMA_VERSION);
    // New rows get ids past the copied ones.
    let next: i64 = c
        .query_one(
            "INSERT INTO artifacts (experiment_id, size, created_at) SELECT min(id), 0, 0 FROM experiments RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(next > count(&source, "SELECT max(id) FROM artifacts"));
    c.batch_execute("DELETE FROM artifacts WHERE path IS NULL AND size = 0")
        .unwrap();

    let back = dir.join("back.db");
    let out = ok(&url, s(&back));
    assert!(out.contains("SHA-256 match"), "{out}");
    assert_eq!(
        dump(&source),
        dump(&back),
        "the file back from PostgreSQL differs"
    );
    assert!(!dir.join("back.db.migrating").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&back).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the copy holds the signing secret");
    }

    // The copy serves: the same key, the same points (NaN included), the same files.
    let server = TestServer::start_on(&back, &[]);
    let r = server.get(
        &format!("/api/experiments/{exp}/metrics"),
        &Auth::Key(alice),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let points = r.data();
    assert!(points.as_array().unwrap().len() > 9000);
    assert!(
        points
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["value"] == "NaN")
    );

    // Running both again changes nothing, and says so.
    let out = ok(s(&source), &url);
    assert!(out.contains("already holds exactly"), "{out}");
    drop(server);
    let out = ok(&url, s(&back));
    assert!(out.contains("already holds exactly"), "{out}");
}

#[test]
fn an_interrupted_copy_to_postgres_leaves_nothing_and_runs_again() {
    let dir = TempDir::new();
    let source = filled_file(&dir);
    let url = database();
    let (ok_, _, err, code) = migrate(s(&source), &url, &[("TORA_MIGRATE_ABORT_AFTER", "40")]);
    assert!(!ok_ && code == 99, "{err}");
    let tables: i64 = pg(&url)
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "an interrupted copy left tables behind");
    ok(s(&source), &url);
    let back = dir.join("back.db");
    ok(&url, s(&back));
    assert_eq!(dump(&source), dump(&back));
}

#[test]
fn an_interrupted_copy_from_postgres_leaves_no_file_and_runs_again() {
    let dir = TempDir::new();
    let source = filled_file(&dir);
    let url = database();
    ok(s(&source), &url);
    let back = dir.join("back.db");
    let (ok_, _, err, code) = migrate(&url, s(&back), &[("TORA_MIGRATE_ABORT_AFTER", "40")]);
    assert!(!ok_ && code == 99, "{err}");
    assert!(
        !back.exists(),
        "an interrupted copy left a database at DEST"
    );
    ok(&url, s(&back));
    assert!(!dir.join("back.db.migrating").exists());
    assert_eq!(dump(&source), dump(&back));
}

#[test]
fn a_killed_copy_runs_again() {
    let dir = TempDir::new();
    let source = filled_file(&dir);
    let url = database();
    // Killed at some point of its run (wherever that is), then run again.
    let mut child = Command::new(BIN)
        .args(["migrate", "--from", s(&source), "--to", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let _ = child.kill();
    let _ = child.wait();
    ok(s(&source), &url);
    let back = dir.join("back.db");
    ok(&url, s(&back));
    assert_eq!(dump(&source), dump(&back));
}

#[test]
fn a_database_a_server_holds_is_refused() {
    let f = filled();
    let url = database();
    let err = refused(s(&f.server.db), &url);
    assert!(err.contains("a tora serve is using"), "{err}");
    let tables: i64 = pg(&url)
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
}

#[test]
fn a_database_of_another_schema_version_is_refused() {
    let dir = TempDir::new();
    let source = filled_file(&dir);
    let conn = rusqlite::Connection::open(&source).unwrap();
    let (ours, newer) = (tora::db::SCHEMA_VERSION, tora::db::SCHEMA_VERSION + 1);
    conn.execute_batch(&format!("PRAGMA user_version = {newer}"))
        .unwrap();
    drop(conn);
    let err = refused(s(&source), &database());
    assert!(
        err.contains(&format!(
            "schema version {newer}, newer than this tora's ({ours})"
        )),
        "{err}"
    );

    rusqlite::Connection::open(&source)
        .unwrap()
        .execute_batch(&format!("PRAGMA user_version = {ours}"))
        .unwrap();
    let url = database();
    ok(s(&source), &url);
    pg(&url)
        .batch_execute(&format!("UPDATE schema_version SET version = {newer}"))
        .unwrap();
    let err = refused(&url, s(&dir.join("back.db")));
    assert!(err.contains("newer than this tora's"), "{err}");
    assert!(!dir.join("back.db").exists());
}

#[test]
fn a_destination_with_other_data_is_refused() {
    let dir = TempDir::new();
    let source = filled_file(&dir);
    let url = database();
    ok(s(&source), &url);

    // Another server's database into the same PostgreSQL database.
    let mut other = TestServer::start();
    other.user("someone@else.org");
    other.sigterm();
    let err = refused(s(&other.db), &url);
    assert!(
        err.contains("already holds a Tora database with other data"),
        "{err}"
    );
    assert!(
        err.contains("users (2 rows vs 1)") || err.contains("users"),
        "{err}"
    );

    // A database with tables of something else.
    let foreign = database();
    pg(&foreign)
        .batch_execute("CREATE TABLE accounts (id int)")
        .unwrap();
    let err = refused(s(&source), &foreign);
    assert!(err.contains("tables that are not Tora's"), "{err}");

    // Back into a SQLite file that holds another database.
    let err = refused(&url, s(&other.db));
    assert!(err.contains("other data"), "{err}");
    // And SQLite to SQLite is `tora backup`'s job.
    let err = refused(s(&source), s(&dir.join("copy.db")));
    assert!(err.contains("tora backup"), "{err}");
}

// --- schema_postgres.sql against schema.sql --------------------------------------------------

/// SQLite's declared type -> the PostgreSQL type schema_postgres.sql must give the column.
fn postgres_type(decl: &str) -> &'static str {
    match decl {
        "INTEGER" => "bigint",
        "REAL" => "double precision",
        "TEXT" => "text",
        "BLOB" => "bytea",
        "" => "jsonb",
        other => panic!("schema.sql declares {other}: map it here and in src/migrate.rs"),
    }
}

#[test]
fn postgres_schema_matches_sqlite_schema() {
    let lite = rusqlite::Connection::open_in_memory().unwrap();
    lite.execute_batch(include_str!("../schema.sql")).unwrap();
    let url = database();
    let mut c = pg(&url);
    c.batch_execute(include_str!("../schema_postgres.sql"))
        .unwrap();
    let strings = |sql: &str| -> BTreeSet<String> {
        lite.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };

    // Tables: the same, plus schema_version (SQLite's PRAGMA user_version).
    let tables = strings("SELECT name FROM sqlite_master WHERE type = 'table'");
    let mut theirs: BTreeSet<String> = c
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(theirs.remove("schema_version"));
    assert_eq!(tables, theirs, "tables differ");

    for table in &tables {
        // Columns in order: name, type, NOT NULL, default, place in the primary key.
        let ours: Vec<(String, String, bool, Option<String>, i64)> = lite
            .prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) ORDER BY cid")
            .unwrap()
            .query_map([table], |r| {
                let pk: i64 = r.get(4)?;
                Ok((
                    r.get::<_, String>(0)?,
                    postgres_type(&r.get::<_, String>(1)?).to_string(),
                    r.get::<_, bool>(2)? || pk > 0,
                    r.get(3)?,
                    pk,
                ))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let theirs: Vec<(String, String, bool, Option<String>, i64)> = c
            .query(
                "SELECT c.column_name::text, c.data_type::text, c.is_nullable = 'NO',
                        regexp_replace(c.column_default, '::[a-z ]+$', ''),
                        coalesce((SELECT k.ordinal_position FROM information_schema.key_column_usage k
                                  JOIN information_schema.table_constraints t USING (constraint_schema, constraint_name)
                                  WHERE t.constraint_type = 'PRIMARY KEY' AND k.table_schema = c.table_schema
                                    AND k.table_name = c.table_name AND k.column_name = c.column_name), 0)::bigint
                 FROM information_schema.columns c
                 WHERE c.table_schema = current_schema() AND c.table_name = $1
                 ORDER BY c.ordinal_position",
                &[table],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        assert_eq!(ours, theirs, "columns of {table} differ");

        // Foreign keys with what a delete does.
        let ours: BTreeSet<(String, String, String, String)> = lite
            .prepare(
                "SELECT \"from\", \"table\", \"to\", on_delete FROM pragma_foreign_key_list(?1)",
            )
            .unwrap()
            .query_map([table], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let theirs: BTreeSet<(String, String, String, String)> = c
            .query(
                "SELECT a.attname::text, f.relname::text, af.attname::text,
                        CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL'
                             WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' ELSE 'SET DEFAULT' END
                 FROM pg_constraint c
                 JOIN pg_class t ON t.oid = c.conrelid
                 JOIN pg_class f ON f.oid = c.confrelid
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                 JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1]
                 WHERE c.contype = 'f' AND t.relname = $1",
                &[table],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        assert_eq!(ours, theirs, "foreign keys of {table} differ");

        // CHECK constraints: as many.
        let sql: String = lite
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        let checks: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
                 WHERE c.contype = 'c' AND t.relname = $1",
                &[table],
            )
            .unwrap()
            .get(0);
        assert_eq!(
            sql.matches("CHECK").count() as i64,
            checks,
            "CHECKs of {table}"
        );
    }

    // Every named index and trigger, under its name.
    let indexes: BTreeSet<String> = c
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for index in strings("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    {
        assert!(
            indexes.contains(&index),
            "schema_postgres.sql lacks the index {index}"
        );
    }
    let triggers: BTreeSet<String> = c
        .query(
            "SELECT trigger_name::text FROM information_schema.triggers WHERE trigger_schema = current_schema()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        strings("SELECT name FROM sqlite_master WHERE type = 'trigger'"),
        triggers
    );
    let version: i64 = c
        .query_one("SELECT version FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, tora::db::SCHEMA_VERSION, "schema_version");
    let header = include_str!("../schema.sql")
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(
        header.contains(&format!("version {version}")),
        "schema.sql is at another version than schema_postgres.sql: {header}"
    );
}

#[test]
fn postgres_schema_applies_and_its_triggers_and_rules_hold() {
    let url = database();
    let mut c = pg(&url);
    c.batch_execute(include_str!("../schema_postgres.sql"))
        .unwrap();
    c.batch_execute(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES ('u', 'Ann@Lab.org', 'x', 0);
         INSERT INTO workspaces (id, name, created_at) VALUES ('w', 'w', 0);
         INSERT INTO experiments (uuid, workspace_id, name, created_at, updated_at) VALUES ('e', 'w', 'E', 0, 0);
         INSERT INTO series (experiment_id, kind, name) SELECT id, 0, 'loss' FROM experiments;
         INSERT INTO chunks (id, data) SELECT id * 4294967296 + b, '\\x02' FROM series, generate_series(0, 2) b;
         INSERT INTO series_units (id, data) SELECT id * 4294967296, '\\x00' FROM series;
         INSERT INTO chunks (id, data) VALUES (99 * 4294967296, '\\x02');",
    )
    .unwrap();
    // A series' points and units go with it (the SQLite triggers, in plpgsql).
    c.batch_execute("DELETE FROM experiments").unwrap();
    let left: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM chunks) + (SELECT count(*) FROM series_units)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 1, "only the other series' chunk stays");
    // NOCASE: the same address in another case is the same account (ASCII only, as SQLite).
    let dup = c.batch_execute(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES ('v', 'ann@lab.ORG', 'x', 0)",
    );
    assert!(dup.is_err(), "email is unique ignoring ASCII case");
    c.batch_execute(
        "INSERT INTO users (id, email, password_hash, created_at) VALUES ('v', 'ÄNN@lab.org', 'x', 0)",
    )
    .unwrap();
    // CHECKs as in schema.sql.
    c.batch_execute("INSERT INTO experiments (uuid, workspace_id, name, created_at, updated_at) VALUES ('f', 'w', 'F', 0, 0)")
        .unwrap();
    assert!(
        c.batch_execute("UPDATE experiments SET end_state = 'crashed'")
            .is_err()
    );
    assert!(
        c.batch_execute(
            "INSERT INTO series (experiment_id, kind, name) SELECT id, 2, 'x' FROM experiments"
        )
        .is_err()
    );
}
