//! A lab keeps a year of runs: its OWNER sets a retention policy, sees first what it would
//! delete, and the server deletes exactly the runs past it (never one tagged keep, nor one still
//! logging), at once and from then on; members may read the policy, only OWNERs change it.

mod common;

use common::{TestServer, User};
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A run in `ws` created `days` ago (as an importer would), with `tags`.
fn run(server: &TestServer, user: &User, ws: &str, name: &str, days: i64, tags: &[&str]) -> String {
    let r = server.post(
        "/api/experiments",
        &user.auth(),
        json!({"name": name, "workspaceId": ws, "tags": tags, "created_at": now() - days * DAY}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    r.data()["id"].as_str().unwrap().to_string()
}

fn names(server: &TestServer, user: &User, ws: &str) -> Vec<String> {
    let r = server.get(&format!("/api/workspaces/{ws}/experiments"), &user.auth());
    assert_eq!(r.status, 200, "{}", r.text);
    let mut out: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn an_owner_previews_then_sets_a_policy_and_exactly_the_old_runs_go() {
    let server = TestServer::start();
    let ada = server.user("ada@lab.org");
    let bob = server.user("bob@lab.org");
    let ws = server.workspace(&ada, "vision lab");
    server.add_member(&ws, &bob, 3);
    let old = run(&server, &ada, &ws, "old", 400, &[]);
    run(&server, &ada, &ws, "old-kept", 400, &["Keep"]);
    let resumed = run(&server, &ada, &ws, "old-but-logging", 400, &[]);
    run(&server, &ada, &ws, "recent", 10, &[]);
    run(&server, &ada, &ws, "fresh", 0, &[]);
    // A run created long ago that logged a point just now is active, not old.
    let r = server.post(
        &format!("/api/experiments/{resumed}/logs/batch"),
        &ada.auth(),
        json!({"logs": [{"name": "loss", "value": 0.1, "step": 1}]}),
    );
    assert_eq!(r.status, 201);
    let r = server.post(
        &format!("/api/experiments/{old}/logs/batch"),
        &ada.auth(),
        json!({"logs": [{"name": "loss", "value": 0.1, "step": 1}]}),
    );
    assert_eq!(r.status, 201);
    // ... which is only true while it is new: make old's point arrive long ago too.
    {
        let conn = rusqlite::Connection::open(&server.db).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        conn.execute(
            "UPDATE series SET updated_at = ?1 WHERE experiment_id = (SELECT id FROM experiments WHERE uuid = ?2)",
            rusqlite::params![now() - 400 * DAY, old],
        )
        .unwrap();
    }

    // Nothing yet; the dry run says what 30 days would delete, and deletes nothing.
    let r = server.get(&format!("/api/workspaces/{ws}/retention"), &bob.auth());
    assert_eq!(r.data(), json!({"policy": null, "due": null}));
    let r = server.get(
        &format!("/api/workspaces/{ws}/retention/preview?delete_after_days=30"),
        &bob.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["runs"], 1, "{}", r.text);
    assert_eq!(r.data()["points"], 1);
    assert!(r.data()["bytes"].as_i64().unwrap() > 0);
    let r = server.get(
        &format!("/api/workspaces/{ws}/retention/preview?delete_after_days=5"),
        &ada.auth(),
    );
    assert_eq!(r.data()["runs"], 2, "old and recent: {}", r.text);
    assert_eq!(names(&server, &ada, &ws).len(), 5);

    // A VIEWER may not set one; nothing changes.
    let r = server.call(
        "PUT",
        &format!("/api/workspaces/{ws}/retention"),
        &bob.auth(),
        Some(&json!({"delete_after_days": 1})),
    );
    r.expect_error(403);
    // Bad policies are refused with what is allowed.
    for body in [
        json!({"delete_after_days": 0}),
        json!({"delete_after_days": 36501}),
        json!({"delete_after_days": 30, "keep_tag": ""}),
        json!({"delete_after_days": 30, "keep_tag": "x".repeat(65)}),
    ] {
        let r = server.call(
            "PUT",
            &format!("/api/workspaces/{ws}/retention"),
            &ada.auth(),
            Some(&body),
        );
        let message = r.expect_error(400);
        assert!(
            message.contains("days") || message.contains("keep_tag"),
            "{message}"
        );
    }

    // The OWNER sets 30 days: applied at once.
    let r = server.call(
        "PUT",
        &format!("/api/workspaces/{ws}/retention"),
        &ada.auth(),
        Some(&json!({"delete_after_days": 30})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.data()["policy"],
        json!({"delete_after_days": 30, "keep_tag": "keep"})
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while names(&server, &ada, &ws).len() == 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "the policy was not applied"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        names(&server, &ada, &ws),
        ["fresh", "old-but-logging", "old-kept", "recent"]
    );
    let r = server.get(&format!("/api/experiments/{old}"), &ada.auth());
    assert_eq!(r.status, 404);
    let r = server.get(&format!("/api/workspaces/{ws}/retention"), &bob.auth());
    assert_eq!(r.data()["due"]["runs"], 0, "{}", r.text);

    // Removing the policy is the OWNER's too.
    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}/retention"),
        &bob.auth(),
        None,
    );
    r.expect_error(403);
    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}/retention"),
        &ada.auth(),
        None,
    );
    assert_eq!(r.data()["policy"], Value::Null);
    // An outsider sees nothing of it.
    let eve = server.user("eve@else.org");
    let r = server.get(&format!("/api/workspaces/{ws}/retention"), &eve.auth());
    r.expect_error(404);
}
