//! Upgrades: a database written by the Tora of every schema version since the first opens with
//! today's binary with everything in it (accounts, the password, the API key, runs, hyperparameters,
//! tags, every point with its msg_id, NaN and infinities, results, batch ids), takes new points,
//! and is sound after; a database from a newer Tora is refused with a sentence.
//!
//! Each `tests/fixtures/upgrade_vN.sql` was made by the real binary of that version
//! (`tests/fixtures/make_upgrade_fixture.py`), built from the last commit of the version:
//! v1 3cbd797, v2 70d9e22, v3 ce0e8d7, v4 115f4b9, v5 6be1552, v6 e686433, v9 5912a6e.
//! Versions 7 and 8 never landed on their own: the submission that made them landed as 9.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Auth, BIN, TempDir, TestServer};
use serde_json::{Value, json};

/// The schema version of the last submission that landed: a database of it may exist anywhere.
/// Raise it, with a fixture made by that binary, when a submission with a newer version lands.
const NEWEST_RELEASED: i64 = 9;
const _: () = assert!(NEWEST_RELEASED <= tora::db::SCHEMA_VERSION);

const FIXTURES: [(i64, &str); 7] = [
    (1, include_str!("fixtures/upgrade_v1.sql")),
    (2, include_str!("fixtures/upgrade_v2.sql")),
    (3, include_str!("fixtures/upgrade_v3.sql")),
    (4, include_str!("fixtures/upgrade_v4.sql")),
    (5, include_str!("fixtures/upgrade_v5.sql")),
    (6, include_str!("fixtures/upgrade_v6.sql")),
    (9, include_str!("fixtures/upgrade_v9.sql")),
];

const RUN: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

/// The fixture as a database file at `db`; its API key.
fn restore(sql: &str, db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    // A dump creates tables in name order, rows with each: references are checked after.
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    conn.execute_batch(sql).unwrap();
    let broken: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(broken, 0, "the fixture's references hold");
    drop(conn);
    sql.lines()
        .find_map(|l| l.strip_prefix("-- api key: "))
        .expect("the fixture names its API key")
        .to_string()
}

/// A metric's points as (step, value as text, msg_id), in the order `/metrics` gives them.
fn points_of(server: &TestServer, auth: &Auth, name: &str) -> Vec<(i64, String, Option<String>)> {
    let r = server.get(&format!("/api/experiments/{RUN}/metrics"), auth);
    assert_eq!(r.status, 200, "{}", r.text);
    let mut out: Vec<_> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == name)
        .map(|p| {
            (
                p["step"].as_i64().unwrap(),
                p["value"].to_string(),
                p["msg_id"].as_str().map(str::to_string),
            )
        })
        .collect();
    out.sort_by_key(|p| p.0);
    out
}

#[test]
fn every_schema_version_since_the_first_upgrades_with_everything_in_it() {
    assert_eq!(
        FIXTURES.last().unwrap().0,
        NEWEST_RELEASED,
        "a fixture per version up to the newest one released"
    );
    for (version, sql) in FIXTURES {
        let dir = TempDir::new();
        let db = dir.join("tora.db");
        let key = restore(sql, &db);
        let mut server = TestServer::start_on(&db, &[]);
        let old_key = Auth::Key(key);

        // The password and the key made by the old version both still sign in.
        let pi = server.login("pi@lab.org", "correct horse battery");
        let me = server.get("/api/me", &old_key);
        assert_eq!(me.status, 200, "v{version}: {}", me.text);
        assert_eq!(me.data()["email"], "pi@lab.org");

        let r = server.get(&format!("/api/experiments/{RUN}"), &old_key);
        assert_eq!(r.status, 200, "v{version}: {}", r.text);
        let run = r.data();
        assert_eq!(run["name"], "resnet50", "v{version}");
        assert_eq!(run["description"], "baseline", "v{version}");
        assert_eq!(run["tags"], json!(["baseline", "keep"]), "v{version}");
        let hp: Vec<(String, Value)> = run["hyperparams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["key"].as_str().unwrap().to_string(), h["value"].clone()))
            .collect();
        assert!(
            hp.contains(&("lr".into(), json!(0.001))),
            "v{version}: {hp:?}"
        );
        assert!(
            hp.contains(&("opt".into(), json!("adam"))),
            "v{version}: {hp:?}"
        );

        // Every point, bit for bit, with its msg_id.
        let loss = points_of(&server, &pi.auth(), "train/loss");
        assert_eq!(loss.len(), 301, "v{version}");
        for (step, value, msg_id) in &loss[..300] {
            assert_eq!(
                *value,
                json!(2.0 / (*step + 1) as f64).to_string(),
                "v{version}"
            );
            assert_eq!(msg_id.as_deref(), Some(format!("loss-{step}").as_str()));
        }
        assert_eq!(loss[300].1, "\"NaN\"", "v{version}");
        let acc = points_of(&server, &pi.auth(), "val/acc");
        let acc: Vec<(i64, &str)> = acc.iter().map(|(s, v, _)| (*s, v.as_str())).collect();
        assert_eq!(
            acc,
            [
                (3, "0.5"),
                (9, "0.9"),
                (10, "\"Infinity\""),
                (11, "\"-Infinity\"")
            ],
            "v{version}"
        );
        let r = server.get(&format!("/api/experiments/{RUN}/results"), &pi.auth());
        let results = r.data();
        assert_eq!(results[0]["name"], "best_acc", "v{version}: {results}");
        assert_eq!(results[0]["value"], 0.9);
        assert_eq!(results[0]["metadata"]["epoch"], 9, "v{version}: {results}");

        // Exactly-once survives the upgrade: the old msg_ids and batch ids are known.
        let again =
            json!({"logs": [{"msg_id": "loss-5", "name": "train/loss", "value": 7.0, "step": 5}]});
        let r = server.post(
            &format!("/api/experiments/{RUN}/logs/batch"),
            &old_key,
            again,
        );
        assert_eq!(r.data()["skipped"], 1, "v{version}: {}", r.text);
        let list = server.get("/api/experiments", &old_key);
        assert_eq!(list.status, 200, "v{version}: {}", list.text);
        let other = list.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "vit-small")
            .unwrap_or_else(|| panic!("v{version}: {}", list.text))["id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = if version == 1 {
            // Schema 1 had no /points: its rows carried msg_ids.
            let resend =
                json!({"logs": [{"msg_id": "vit-0", "name": "loss", "value": 0.0, "step": 0}]});
            server.post(
                &format!("/api/experiments/{other}/logs/batch"),
                &old_key,
                resend,
            )
        } else {
            let resend = json!({"batch_id": "fixture-1", "metrics": [{"name": "loss", "steps": [0], "values_f64": "AAAAAAAAAAA="}]});
            server.post(
                &format!("/api/experiments/{other}/points"),
                &old_key,
                resend,
            )
        };
        assert_eq!(r.data()["inserted"], 0, "v{version}: {}", r.text);
        let r = server.get(&format!("/api/experiments/{other}/summary"), &old_key);
        assert_eq!(
            r.data()["metrics"][0]["count"],
            1000,
            "v{version}: {}",
            r.text
        );

        // New points go after the old ones, and charts read both.
        let more = json!({"logs": [{"msg_id": "loss-301", "name": "train/loss", "value": 0.001, "step": 301}]});
        let r = server.post(
            &format!("/api/experiments/{RUN}/logs/batch"),
            &old_key,
            more,
        );
        assert_eq!(r.data()["inserted"], 1, "v{version}: {}", r.text);
        let r = server.get(
            &format!("/api/experiments/{RUN}/series?names=train/loss&points=50"),
            &old_key,
        );
        let series = &r.data()["series"][0];
        assert_eq!(series["total"], 302, "v{version}: {}", r.text);

        server.sigterm();
        let out = Command::new(BIN).arg("doctor").arg(&db).output().unwrap();
        assert!(
            out.status.success(),
            "v{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_database_from_a_newer_tora_is_refused_with_a_sentence() {
    let dir = TempDir::new();
    let db = dir.join("tora.db");
    restore(FIXTURES.last().unwrap().1, &db);
    let newer = tora::db::SCHEMA_VERSION + 1;
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("schema version {newer} is newer than this tora")),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the file is left as it was"
    );
}
