//! The admin's command line beside a running server: API keys listed (never shown again) and
//! revoked by id, and accounts deleted without silently taking runs or a workspace's last
//! OWNER with them.

mod common;

use common::{Auth, TestServer};
use serde_json::json;

/// Runs `tora ARGS` on the server's database; asserts it succeeded and returns stdout.
fn ok(server: &TestServer, args: &[&str]) -> String {
    let (ok, out, err) = server.admin(args, None);
    assert!(ok, "tora {args:?} failed: {err}");
    out
}

/// Runs `tora ARGS`, which must fail; returns stderr, checked for plain words.
fn refused(server: &TestServer, args: &[&str]) -> String {
    let (ok, out, err) = server.admin(args, None);
    assert!(!ok, "tora {args:?} should have failed: {out}");
    assert!(err.starts_with("error: "), "{err}");
    for code in ["BAD_REQUEST", "NOT_FOUND", "CONFLICT", "internal"] {
        assert!(!err.contains(code), "an HTTP status name in: {err}");
    }
    err
}

fn runs_in_database(server: &TestServer) -> i64 {
    let conn = server.sql();
    conn.query_row("SELECT count(*) FROM experiments", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn api_keys_are_listed_without_the_key_and_revoked_by_id() {
    let mut server = TestServer::start();
    let ann = server.admin_user("ann@lab.org");
    let bob = server.admin_user("bob@lab.org");
    let key = ok(
        &server,
        &[
            "api-key",
            "create",
            "--user",
            "ann@lab.org",
            "--name",
            "laptop",
        ],
    );
    let key = key.trim().to_string();
    assert_eq!(server.get("/api/me", &Auth::Key(key.clone())).status, 200);

    let list = ok(&server, &["api-key", "list"]);
    assert!(list.starts_with("id "), "{list}");
    assert!(
        !list.contains("tora_sk_"),
        "a listing never shows a key: {list}"
    );
    let laptop = list
        .lines()
        .find(|l| l.ends_with("  laptop"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        laptop.contains("ann@lab.org") && laptop.contains(" live "),
        "{laptop}"
    );
    // Everyone's keys, the test harness's own ("test") included.
    assert!(list.contains("bob@lab.org"), "{list}");
    let only_ann = ok(&server, &["api-key", "list", "--user", "ann@lab.org"]);
    assert!(
        !only_ann.contains("bob@lab.org") && only_ann.contains("laptop"),
        "{only_ann}"
    );
    let id = laptop.split_whitespace().next().unwrap().to_string();

    let out = ok(&server, &["api-key", "revoke", &id]);
    assert!(
        out.contains("revoked API key 'laptop'") && out.contains("ann@lab.org"),
        "{out}"
    );
    // The running server refuses it at the next request; the others still work.
    server
        .get("/api/me", &Auth::Key(key.clone()))
        .expect_error(401);
    assert_eq!(server.get("/api/me", &ann.auth()).status, 200);
    assert_eq!(server.get("/api/me", &bob.auth()).status, 200);
    let again = ok(&server, &["api-key", "revoke", &id]);
    assert!(again.contains("already revoked"), "{again}");
    let listed = ok(&server, &["api-key", "list", "--user", "ann@lab.org"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.contains(" revoked ")),
        "{listed}"
    );

    let err = refused(&server, &["api-key", "revoke", "no-such-key"]);
    assert!(err.contains("no API key has the id no-such-key"), "{err}");
    let err = refused(&server, &["api-key", "list", "--user", "nobody@lab.org"]);
    assert!(err.contains("user nobody@lab.org not found"), "{err}");

    // Last use is kept in memory and saved at shutdown (and every minute).
    let before = ok(&server, &["api-key", "list", "--user", "bob@lab.org"]);
    assert!(before.lines().nth(1).unwrap().contains("never"), "{before}");
    server.sigterm();
    let after = ok(&server, &["api-key", "list", "--user", "bob@lab.org"]);
    assert!(!after.lines().nth(1).unwrap().contains("never"), "{after}");
}

#[test]
fn deleting_a_user_never_silently_deletes_their_runs() {
    let server = TestServer::start();
    let ann = server.admin_user("ann@lab.org");
    let bob = server.admin_user("bob@lab.org");
    let mine = server.experiment(&ann, "ann's own run", None);
    let shared = server.workspace(&ann, "shared");
    server.add_member(&shared, &bob, 2);
    let team_run = server.experiment(&bob, "bob's run in shared", Some(&shared));
    // A run ann made in bob's workspace.
    let bobs = server.workspace(&bob, "bob's team");
    server.add_member(&bobs, &ann, 2);
    let in_bobs = server.experiment(&ann, "ann's run in bob's team", Some(&bobs));
    let runs = runs_in_database(&server);

    // Her Personal workspace holds a run and she is the last OWNER of a workspace bob uses:
    // refused, naming both, and nothing changes.
    let err = refused(&server, &["user", "delete", "ann@lab.org"]);
    assert!(
        err.contains("their Personal workspace holds 1 run"),
        "{err}"
    );
    assert!(
        err.contains("workspace 'shared'") && err.contains("needs a new OWNER"),
        "{err}"
    );
    assert!(
        err.contains("--new-owner") && err.contains("--delete-runs"),
        "{err}"
    );
    // --delete-runs cannot take a workspace someone else uses.
    let err = refused(&server, &["user", "delete", "ann@lab.org", "--delete-runs"]);
    assert!(err.contains("workspace 'shared'"), "{err}");
    assert!(!err.contains("Personal workspace holds"), "{err}");
    assert_eq!(runs_in_database(&server), runs);
    assert_eq!(server.get("/api/me", &ann.auth()).status, 200);

    let err = refused(
        &server,
        &[
            "user",
            "delete",
            "ann@lab.org",
            "--new-owner",
            "ann@lab.org",
        ],
    );
    assert!(err.contains("name another"), "{err}");
    let err = refused(
        &server,
        &[
            "user",
            "delete",
            "ann@lab.org",
            "--new-owner",
            "zed@lab.org",
        ],
    );
    assert!(err.contains("user zed@lab.org not found"), "{err}");

    // Handed to bob: every run stays, bob is OWNER of both workspaces, ann is gone.
    let out = ok(
        &server,
        &[
            "user",
            "delete",
            "ann@lab.org",
            "--new-owner",
            "bob@lab.org",
        ],
    );
    assert!(out.starts_with("deleted ann@lab.org"), "{out}");
    assert!(
        out.contains("'Personal workspace of ann@lab.org' (1 run) now belongs to bob@lab.org"),
        "{out}"
    );
    assert_eq!(runs_in_database(&server), runs);
    server.get("/api/me", &ann.auth()).expect_error(401);
    server
        .get("/api/me", &Auth::Bearer(ann.token.clone()))
        .expect_error(401);
    for run in [&mine, &team_run, &in_bobs] {
        assert_eq!(
            server
                .get(&format!("/api/experiments/{run}"), &bob.auth())
                .status,
            200,
            "{run}"
        );
    }
    let spaces = server.get("/api/workspaces", &bob.auth()).data();
    let owned: Vec<&str> = spaces
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["role"] == "OWNER")
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    for name in ["Personal workspace of ann@lab.org", "shared", "bob's team"] {
        assert!(owned.contains(&name), "{owned:?}");
    }
    // ann's name is free again.
    server.admin_user("ann@lab.org");
}

#[test]
fn delete_runs_takes_only_what_the_user_alone_used() {
    let server = TestServer::start();
    let cy = server.admin_user("cy@lab.org");
    let dee = server.admin_user("dee@lab.org");
    server.experiment(&cy, "cy's own run", None);
    let solo = server.workspace(&cy, "solo");
    server.experiment(&cy, "cy's solo run", Some(&solo));
    let team = server.workspace(&dee, "team");
    server.add_member(&team, &cy, 2);
    let stays = server.experiment(&cy, "cy's run in dee's team", Some(&team));
    assert_eq!(runs_in_database(&server), 3);

    let err = refused(&server, &["user", "delete", "cy@lab.org"]);
    assert!(
        err.contains("Personal workspace holds 1 run") && err.contains("'solo'"),
        "{err}"
    );
    let out = ok(&server, &["user", "delete", "cy@lab.org", "--delete-runs"]);
    assert!(out.contains("deleted 'solo' and its 1 run"), "{out}");
    assert_eq!(runs_in_database(&server), 1);
    let run = server.get(&format!("/api/experiments/{stays}"), &dee.auth());
    assert_eq!(run.status, 200, "{}", run.text);

    // A user with nothing at stake is deleted at once, their empty Personal workspace too.
    let eve = server.admin_user("eve@lab.org");
    server
        .post(
            "/api/experiments",
            &eve.auth(),
            json!({"name": "x", "workspaceId": team}),
        )
        .expect_error(404);
    ok(&server, &["user", "delete", "eve@lab.org"]);
    let err = refused(&server, &["user", "delete", "eve@lab.org"]);
    assert!(err.contains("user eve@lab.org not found"), "{err}");
}

/// The README's `tora serve` row names every flag and TORA_* variable `--help` lists, so a new
/// setting cannot ship undocumented.
#[test]
fn every_serve_flag_and_variable_is_in_the_readme() {
    let help = std::process::Command::new(common::BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut missing = Vec::new();
    let mut seen = 0;
    for word in help.split(|c: char| c.is_whitespace() || "[],=<>.:;()".contains(c)) {
        let setting = (word.starts_with("--") && word.len() > 2 && word != "--help")
            || word.starts_with("TORA_");
        if setting {
            seen += 1;
            if !readme.contains(word) {
                missing.push(word.to_string());
            }
        }
    }
    assert!(seen > 20, "read no settings from --help:\n{help}");
    assert!(missing.is_empty(), "not in the README: {missing:?}");
}
