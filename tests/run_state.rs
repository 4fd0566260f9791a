//! A run's life as the dashboard and the SDK see it: running from creation, kept running by
//! heartbeats, ended by its client as finished or failed (with an end time and a duration),
//! reopened by a heartbeat when resumed; a run that goes quiet for 5 minutes is finished if its
//! client never sent heartbeats (tora==0.0.12) and crashed if it did. The state can be filtered
//! on, metadata comes back as sent and is bounded, and only editors may change a run's state.
//!
//! Going quiet for 5 minutes is simulated by moving the run's times back in the database file
//! (the server reads them on every request; nothing in the binary is there for tests).

mod common;

use common::*;
use serde_json::{Value, json};

const MINUTE: i64 = 60_000;

/// Parses the server's RFC 3339 (`2026-11-29T11:32:17.844Z`) to unix milliseconds.
fn ms(rfc3339: &Value) -> i64 {
    let s = rfc3339
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {rfc3339}"));
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    // Days from civil (Howard Hinnant), as the server's time.rs, the other way.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + n(11, 13)) * 60 + n(14, 16)) * 60_000 + n(17, 19) * 1000 + n(20, 23)
}

fn run(server: &TestServer, user: &User, id: &str) -> Value {
    let r = server.get(&format!("/api/experiments/{id}"), &user.auth());
    assert_eq!(r.status, 200, "{}", r.text);
    r.data()
}

fn beat(server: &TestServer, user: &User, id: &str) -> Response {
    server.call(
        "POST",
        &format!("/api/experiments/{id}/heartbeat"),
        &user.auth(),
        None,
    )
}

fn finish(server: &TestServer, user: &User, id: &str, state: &str) -> Response {
    server.post(
        &format!("/api/experiments/{id}/finish"),
        &user.auth(),
        json!({ "state": state }),
    )
}

/// Moves a run's creation, points and heartbeat `by` milliseconds into the past, as if it had
/// been quiet that long.
fn age(server: &TestServer, id: &str, by: i64) {
    let conn = server.sql();
    conn.execute(
        "UPDATE experiments SET created_at = created_at - ?2, heartbeat_at = heartbeat_at - ?2
         WHERE uuid = ?1",
        tora::sql::params![id, by],
    )
    .unwrap();
    conn.execute(
        "UPDATE series SET updated_at = updated_at - ?2
         WHERE experiment_id = (SELECT id FROM experiments WHERE uuid = ?1)",
        tora::sql::params![id, by],
    )
    .unwrap();
}

fn names(server: &TestServer, user: &User, ws: &str, q: &str) -> Vec<String> {
    let q = q.replace(' ', "+").replace(':', "%3A");
    let r = server.get(
        &format!("/api/workspaces/{ws}/experiments?q={q}&sort=name"),
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{q}: {}", r.text);
    r.data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_run_is_running_until_its_client_ends_it_and_a_heartbeat_reopens_it() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let r = server.post(
        "/api/experiments",
        &alice.auth(),
        json!({"name": "resnet", "metadata": {"git": {"commit": "3f2a1c", "dirty": false}, "host": "gpu-1"}}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let created = r.data();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "running");
    assert_eq!(created["started_at"], created["created_at"]);
    assert_eq!(created["active_at"], created["created_at"]);
    assert_eq!(created["ended_at"], Value::Null);
    assert!(created["duration_s"].as_f64().unwrap() < 5.0, "{created}");
    assert_eq!(
        created["metadata"],
        json!({"git": {"commit": "3f2a1c", "dirty": false}, "host": "gpu-1"})
    );
    assert_eq!(
        created["live"], false,
        "no point yet: 0.0.12's `live` is unchanged"
    );

    // A heartbeat keeps it running and moves its last activity on.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let r = beat(&server, &alice, &id);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data(), json!({"state": "running"}));
    let alive = run(&server, &alice, &id);
    assert_eq!(alive["state"], "running");
    assert!(
        ms(&alive["active_at"]) > ms(&created["started_at"]),
        "{alive}"
    );

    // The client ends it as failed: an end time and the duration up to it, which stay put.
    let r = finish(&server, &alice, &id, "failed");
    assert_eq!(r.status, 200, "{}", r.text);
    let failed = r.data();
    assert_eq!(failed["state"], "failed");
    let ended = ms(&failed["ended_at"]);
    let started = ms(&failed["started_at"]);
    assert!(ended >= ms(&alive["active_at"]), "{failed}");
    assert_eq!(
        (failed["duration_s"].as_f64().unwrap() * 1000.0).round() as i64,
        ended - started
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = finish(&server, &alice, &id, "failed").data();
    assert_eq!(
        again["ended_at"], failed["ended_at"],
        "a retried finish keeps its time"
    );
    assert_eq!(
        run(&server, &alice, &id)["duration_s"],
        failed["duration_s"]
    );

    // Resumed: a heartbeat reopens it; then it finishes for good.
    assert_eq!(beat(&server, &alice, &id).data()["state"], "running");
    let resumed = run(&server, &alice, &id);
    assert_eq!(
        (resumed["state"].as_str(), &resumed["ended_at"]),
        (Some("running"), &Value::Null)
    );
    let done = finish(&server, &alice, &id, "finished").data();
    assert_eq!(done["state"], "finished");
    assert!(ms(&done["ended_at"]) > ended, "{done}");

    // Only the two ends a client can declare.
    for bad in [
        json!({"state": "crashed"}),
        json!({"state": "running"}),
        json!({}),
    ] {
        let r = server.post(
            &format!("/api/experiments/{id}/finish"),
            &alice.auth(),
            bad.clone(),
        );
        let msg = r.expect_error(400);
        if bad.get("state").is_some() {
            assert!(msg.contains("\"finished\" or \"failed\""), "{bad}: {msg}");
        }
    }
    assert_eq!(run(&server, &alice, &id)["state"], "finished");
}

#[test]
fn a_quiet_run_is_finished_without_heartbeats_and_crashed_with_them() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let ws = server.workspace(&alice, "lab");
    // Like tora==0.0.12: points, never a heartbeat.
    let old_sdk = server.experiment(&alice, "old-sdk", Some(&ws));
    let r = server.post(
        &format!("/api/experiments/{old_sdk}/points"),
        &alice.auth(),
        json!({"metrics": [{"name": "loss", "steps": [0, 1], "values": [1.0, 0.5]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    // Heartbeats, then the machine went away.
    let lost = server.experiment(&alice, "lost", Some(&ws));
    assert_eq!(beat(&server, &alice, &lost).status, 200);
    // Heartbeats and still going.
    let busy = server.experiment(&alice, "busy", Some(&ws));
    assert_eq!(beat(&server, &alice, &busy).status, 200);
    // Ended by its client before going quiet.
    let failed = server.experiment(&alice, "failed", Some(&ws));
    assert_eq!(finish(&server, &alice, &failed, "failed").status, 200);

    let last_point = ms(&run(&server, &alice, &old_sdk)["active_at"]);
    let last_beat = ms(&run(&server, &alice, &lost)["active_at"]);
    for id in [&old_sdk, &lost, &failed] {
        age(&server, id, 6 * MINUTE);
    }
    // Four minutes of quiet is still running.
    age(&server, &busy, 4 * MINUTE);

    let quiet = run(&server, &alice, &old_sdk);
    assert_eq!(quiet["state"], "finished", "{quiet}");
    assert_eq!(
        ms(&quiet["ended_at"]),
        last_point - 6 * MINUTE,
        "ended at its last point"
    );
    assert_eq!(quiet["ended_at"], quiet["active_at"]);
    let crashed = run(&server, &alice, &lost);
    assert_eq!(crashed["state"], "crashed", "{crashed}");
    assert_eq!(
        ms(&crashed["ended_at"]),
        last_beat - 6 * MINUTE,
        "ended at its last heartbeat"
    );
    let d = crashed["duration_s"].as_f64().unwrap();
    assert!(d < 5.0, "from start to the last heartbeat, not to now: {d}");
    assert_eq!(
        run(&server, &alice, &failed)["state"],
        "failed",
        "what the client said stays"
    );
    let busy_run = run(&server, &alice, &busy);
    assert_eq!(busy_run["state"], "running");
    assert_eq!(busy_run["ended_at"], Value::Null);
    let d = busy_run["duration_s"].as_f64().unwrap();
    assert!((240.0..260.0).contains(&d), "running: up to now ({d})");

    // The filter says the same as the runs themselves.
    assert_eq!(names(&server, &alice, &ws, "state:running"), ["busy"]);
    assert_eq!(names(&server, &alice, &ws, "state:finished"), ["old-sdk"]);
    assert_eq!(names(&server, &alice, &ws, "state:crashed"), ["lost"]);
    assert_eq!(names(&server, &alice, &ws, "state:failed"), ["failed"]);
    assert_eq!(
        names(
            &server,
            &alice,
            &ws,
            "not state:running and not state:failed"
        ),
        ["lost", "old-sdk"]
    );
    assert_eq!(
        names(&server, &alice, &ws, "STATE:Crashed or busy"),
        ["busy", "lost"]
    );
    let r = server.get(
        &format!("/api/workspaces/{ws}/experiments?q=state%3Adone"),
        &alice.auth(),
    );
    let msg = r.expect_error(400);
    assert!(
        msg.contains("running, finished, failed or crashed"),
        "{msg}"
    );

    // The lost run's client comes back: running again.
    assert_eq!(beat(&server, &alice, &lost).data()["state"], "running");
    assert_eq!(
        names(&server, &alice, &ws, "state:running"),
        ["busy", "lost"]
    );
}

#[test]
fn every_answer_that_holds_a_run_carries_its_state_times_and_metadata() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let ws = server.workspace(&alice, "lab");
    let r = server.post(
        "/api/experiments",
        &alice.auth(),
        json!({"name": "one", "workspaceId": ws, "metadata": {"python": "3.12.1"}}),
    );
    let id = r.data()["id"].as_str().unwrap().to_string();
    let answers = [
        r.data(),
        run(&server, &alice, &id),
        server.get("/api/experiments", &alice.auth()).data()[0].clone(),
        server
            .get(&format!("/api/experiments?workspace={ws}"), &alice.auth())
            .data()[0]
            .clone(),
        server
            .get(
                &format!("/api/workspaces/{ws}/experiments?summary=1"),
                &alice.auth(),
            )
            .data()[0]
            .clone(),
        server
            .post(
                "/api/experiments/batch",
                &alice.auth(),
                json!({"ids": [id]}),
            )
            .data()[0]
            .clone(),
        server
            .call(
                "PATCH",
                &format!("/api/experiments/{id}"),
                &alice.auth(),
                Some(&json!({"description": "changed"})),
            )
            .data(),
        finish(&server, &alice, &id, "finished").data(),
    ];
    for (i, e) in answers.iter().enumerate() {
        assert_eq!(e["id"], id.as_str(), "answer {i}: {e}");
        for field in ["state", "started_at", "active_at", "duration_s", "live"] {
            assert!(!e[field].is_null(), "answer {i} lacks {field}: {e}");
        }
        assert!(e.get("ended_at").is_some(), "answer {i}: {e}");
        assert_eq!(e["metadata"], json!({"python": "3.12.1"}), "answer {i}");
    }
    assert_eq!(answers[7]["state"], "finished");
    assert!(!answers[7]["ended_at"].is_null());
}

#[test]
fn metadata_round_trips_is_replaced_by_an_update_and_is_bounded() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let metadata = json!({
        "git": {"commit": "3f2a1c9", "branch": "main", "dirty": true},
        "command": ["python", "train.py", "--lr", "0.01"],
        "host": "gpu-1",
        "packages": {"torch": "2.5.1", "numpy": "2.1.0"},
        "pid": 4242,
        "note": "ünïcode ✓",
        "nothing": null
    });
    let r = server.post(
        "/api/experiments",
        &alice.auth(),
        json!({"name": "meta", "metadata": metadata}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert_eq!(run(&server, &alice, &id)["metadata"], metadata);

    // PATCH and PUT replace it whole; leaving it out leaves it.
    let path = format!("/api/experiments/{id}");
    let r = server.call(
        "PATCH",
        &path,
        &alice.auth(),
        Some(&json!({"metadata": {"host": "gpu-2"}})),
    );
    assert_eq!(r.data()["metadata"], json!({"host": "gpu-2"}), "{}", r.text);
    let r = server.call(
        "PUT",
        &path,
        &alice.auth(),
        Some(&json!({"name": "renamed"})),
    );
    assert_eq!(r.data()["metadata"], json!({"host": "gpu-2"}));
    let r = server.call("PUT", &path, &alice.auth(), Some(&json!({"metadata": {}})));
    assert_eq!(r.data()["metadata"], json!({}));
    // Without metadata a run has an empty object.
    let plain = server.experiment(&alice, "plain", None);
    assert_eq!(run(&server, &alice, &plain)["metadata"], json!({}));

    // At the limits: 200 keys, 16 KiB as compact JSON ({"blob":"..."} is 11 bytes + the text).
    let keys = |n: usize| Value::Object((0..n).map(|i| (format!("k{i}"), json!(i))).collect());
    let blob = |n: usize| json!({"blob": "x".repeat(n)});
    for ok in [keys(200), blob(16 * 1024 - 11)] {
        let r = server.post(
            "/api/experiments",
            &alice.auth(),
            json!({"name": "at", "metadata": ok}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.data()["metadata"], ok);
    }
    for (bad, says) in [
        (keys(201), "201 keys; the limit is 200"),
        (blob(16 * 1024 - 10), "the limit is 16384 (16 KiB)"),
        (
            json!(["not", "an", "object"]),
            "metadata must be a JSON object",
        ),
        (json!("git=3f2a1c"), "metadata must be a JSON object"),
    ] {
        let before = server.get("/api/experiments", &alice.auth()).json()["total"].clone();
        let r = server.post(
            "/api/experiments",
            &alice.auth(),
            json!({"name": "past", "metadata": bad}),
        );
        let msg = r.expect_error(400);
        assert!(msg.contains(says), "{msg}");
        assert_eq!(
            server.get("/api/experiments", &alice.auth()).json()["total"],
            before,
            "nothing made"
        );
        let r = server.call(
            "PATCH",
            &path,
            &alice.auth(),
            Some(&json!({"metadata": bad})),
        );
        assert!(r.expect_error(400).contains(says));
    }
    assert_eq!(
        run(&server, &alice, &id)["metadata"],
        json!({}),
        "the refused updates changed nothing"
    );
}

#[test]
fn only_editors_change_a_runs_state_and_outsiders_learn_nothing() {
    let server = TestServer::start();
    let owner = server.user("owner@lab.org");
    let editor = server.user("editor@lab.org");
    let viewer = server.user("viewer@lab.org");
    let outsider = server.user("outsider@lab.org");
    let ws = server.workspace(&owner, "lab");
    server.add_member(&ws, &editor, 2);
    server.add_member(&ws, &viewer, 3);
    let id = server.experiment(&owner, "shared", Some(&ws));

    let r = beat(&server, &viewer, &id);
    assert!(r.expect_error(403).contains("role"), "{}", r.text);
    finish(&server, &viewer, &id, "failed").expect_error(403);
    let seen = run(&server, &viewer, &id);
    assert_eq!(
        (seen["state"].as_str(), &seen["ended_at"]),
        (Some("running"), &Value::Null)
    );

    for r in [
        beat(&server, &outsider, &id),
        finish(&server, &outsider, &id, "failed"),
    ] {
        r.expect_error(404);
        assert!(!r.text.contains("shared"), "{}", r.text);
    }
    let unknown = "00000000-0000-4000-8000-00000000dead";
    beat(&server, &owner, unknown).expect_error(404);
    finish(&server, &owner, "not-a-uuid", "failed").expect_error(400);
    assert_eq!(run(&server, &owner, &id)["state"], "running");

    // An editor may.
    assert_eq!(beat(&server, &editor, &id).status, 200);
    assert_eq!(
        finish(&server, &editor, &id, "failed").data()["state"],
        "failed"
    );
    assert_eq!(run(&server, &viewer, &id)["state"], "failed");
}
