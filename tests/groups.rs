//! Runs in groups: a learning-rate sweep, a cross-validation's folds. A run is given its group
//! when it is made or later, leaves it with `null`, shows it in every answer that holds it and
//! in the table export, and the run table finds a group with `group:NAME` whatever its case.
//! A group name is bounded and plain text; anything else is a 400 that says what is wrong.

mod common;

use common::*;
use serde_json::{Value, json};

fn create(server: &TestServer, user: &User, body: Value) -> Value {
    let r = server.post("/api/experiments", &user.auth(), body);
    assert_eq!(r.status, 201, "{}", r.text);
    r.data()
}

fn patch(server: &TestServer, user: &User, id: &str, body: Value) -> Response {
    server.call(
        "PATCH",
        &format!("/api/experiments/{id}"),
        &user.auth(),
        Some(&body),
    )
}

/// The names of the runs `q` finds, sorted, with the group each list entry carries.
fn found(server: &TestServer, user: &User, ws: &str, q: &str) -> Vec<(String, Value)> {
    let encoded: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = server.get(
        &format!("/api/workspaces/{ws}/experiments?q={encoded}&sort=name"),
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{q}: {}", r.text);
    r.data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["group"].clone()))
        .collect()
}

fn names(list: &[(String, Value)]) -> Vec<&str> {
    list.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn a_sweep_is_a_group_the_run_table_filters_on_and_a_run_can_leave_it() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let ws = server.workspace(&alice, "lab");

    // Three runs of a sweep (the name trimmed), two folds of a cross-validation, one alone.
    let mut ids = Vec::new();
    for (name, group) in [
        ("lr-0.1", json!("sweep-lr")),
        ("lr-0.01", json!("  sweep-lr ")),
        ("lr-0.001", json!("sweep-lr")),
        ("fold-1", json!("cv folds")),
        ("fold-2", json!("cv folds")),
        ("baseline", Value::Null),
    ] {
        let run = create(
            &server,
            &alice,
            json!({"name": name, "workspaceId": ws, "group": group}),
        );
        assert_eq!(
            run["group"].as_str(),
            group.as_str().map(str::trim),
            "{run}"
        );
        ids.push(run["id"].as_str().unwrap().to_string());
    }
    let lonely = create(
        &server,
        &alice,
        json!({"name": "scratch", "workspaceId": ws}),
    );
    assert_eq!(lonely["group"], Value::Null, "no group given: none");
    let got = server.get(&format!("/api/experiments/{}", ids[0]), &alice.auth());
    assert_eq!(got.data()["group"], "sweep-lr");

    // The run table: by group, whatever its case, quoted when it has a space, negated.
    let sweep = found(&server, &alice, &ws, "group:SWEEP-LR");
    assert_eq!(names(&sweep), ["lr-0.001", "lr-0.01", "lr-0.1"]);
    assert!(sweep.iter().all(|(_, g)| g == "sweep-lr"), "{sweep:?}");
    assert_eq!(
        names(&found(&server, &alice, &ws, "group:\"CV Folds\"")),
        ["fold-1", "fold-2"]
    );
    assert_eq!(
        names(&found(&server, &alice, &ws, "group:cv")),
        Vec::<&str>::new(),
        "a group matches whole, not a part of it"
    );
    assert_eq!(
        names(&found(&server, &alice, &ws, "group:sweep-lr and lr-0.0")),
        ["lr-0.001", "lr-0.01"]
    );
    assert_eq!(
        names(&found(&server, &alice, &ws, "not group:sweep-lr")),
        ["baseline", "fold-1", "fold-2", "scratch"],
        "runs in no group are not in the sweep"
    );
    let msg = found_error(&server, &alice, &ws, "group:");
    assert!(msg.contains("expected a group after 'group:'"), "{msg}");

    // Moved to another group, then out of any; a change that names no group keeps it.
    let r = patch(&server, &alice, &ids[2], json!({"group": "sweep-lr-2"}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["group"], "sweep-lr-2");
    let r = patch(
        &server,
        &alice,
        &ids[2],
        json!({"description": "tried again"}),
    );
    assert_eq!(r.data()["group"], "sweep-lr-2", "not named: kept");
    let r = patch(&server, &alice, &ids[2], json!({"group": null}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["group"], Value::Null);
    let r = patch(&server, &alice, &ids[1], json!({"group": "   "}));
    assert_eq!(r.data()["group"], Value::Null, "blank is no group");
    assert_eq!(
        names(&found(&server, &alice, &ws, "group:sweep-lr")),
        ["lr-0.1"]
    );

    // Sorted by group (any case), runs in no group last, a page at a time either way.
    let sorted = |sort: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let r = server.get(
                &format!("/api/workspaces/{ws}/experiments?sort={sort}&limit=2{cursor}"),
                &alice.auth(),
            );
            assert_eq!(r.status, 200, "{}", r.text);
            let page = r.json();
            for e in page["data"].as_array().unwrap() {
                out.push(format!(
                    "{}:{}",
                    e["group"].as_str().unwrap_or("-"),
                    e["name"].as_str().unwrap()
                ));
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return out,
            }
        }
    };
    let by_group = sorted("group");
    let groups: Vec<&str> = by_group
        .iter()
        .map(|g| g.split(':').next().unwrap())
        .collect();
    assert_eq!(
        groups,
        ["cv folds", "cv folds", "sweep-lr", "-", "-", "-", "-"],
        "{by_group:?}"
    );
    let groups_desc: Vec<String> = sorted("-group")
        .iter()
        .map(|g| g.split(':').next().unwrap().to_string())
        .collect();
    assert_eq!(
        groups_desc,
        ["sweep-lr", "cv folds", "cv folds", "-", "-", "-", "-"]
    );

    // The table export has a group column.
    let r = server.get(
        &format!("/api/workspaces/{ws}/experiments.csv?q=group%3A%22cv+folds%22&sort=name"),
        &alice.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let lines: Vec<&str> = r.text.lines().collect();
    assert_eq!(
        lines[0],
        "id,name,state,created_at,ended_at,duration_s,tags,group"
    );
    assert_eq!(lines.len(), 3, "{}", r.text);
    assert!(lines[1].ends_with(",cv folds"), "{}", lines[1]);
}

fn found_error(server: &TestServer, user: &User, ws: &str, q: &str) -> String {
    let r = server.get(
        &format!(
            "/api/workspaces/{ws}/experiments?q={}",
            q.replace(':', "%3A")
        ),
        &user.auth(),
    );
    r.expect_error(400)
}

#[test]
fn a_group_name_that_is_too_long_or_not_plain_text_is_refused_with_the_reason() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let id = server.experiment(&alice, "run", None);
    let longest = "ü".repeat(128);
    let run = create(&server, &alice, json!({"name": "long", "group": longest}));
    assert_eq!(run["group"], longest.as_str(), "128 characters fit");

    for (group, says) in [
        (
            json!(format!("{longest}x")),
            "129 characters long; the limit is 128",
        ),
        (json!("sweep\nlr"), "control characters"),
        (json!("a\u{1b}[31mred"), "control characters"),
        (json!(7), "expected a string"),
        (json!(["a"]), "expected a string"),
    ] {
        let r = server.post(
            "/api/experiments",
            &alice.auth(),
            json!({"name": "bad", "group": group}),
        );
        let msg = r.expect_error(400);
        assert!(msg.contains(says), "create with {group}: {msg}");
        let msg = patch(&server, &alice, &id, json!({"group": group})).expect_error(400);
        assert!(msg.contains(says), "change to {group}: {msg}");
    }
    let unchanged = server.get(&format!("/api/experiments/{id}"), &alice.auth());
    assert_eq!(unchanged.data()["group"], Value::Null);
    let all = server.get("/api/experiments", &alice.auth()).data();
    let made: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(made.len(), 2, "nothing refused was made: {made:?}");
}

#[test]
fn runs_chosen_in_the_table_are_put_in_a_group_at_once_and_taken_out_again() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let viewer = server.user("vic@lab.org");
    let ws = server.workspace(&alice, "lab");
    server.add_member(&ws, &viewer, 3);
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| server.experiment(&alice, n, Some(&ws)))
        .collect();
    let bulk = |user: &User, body: Value| server.post("/api/experiments/bulk", &user.auth(), body);

    let r = bulk(
        &alice,
        json!({"ids": [ids[0], ids[1]], "action": "group", "group": " sweep "}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["changed"], 2);
    assert_eq!(
        names(&found(&server, &alice, &ws, "group:sweep")),
        ["a", "b"]
    );
    let again = bulk(
        &alice,
        json!({"ids": [ids[0], ids[1]], "action": "group", "group": "sweep"}),
    );
    assert_eq!(again.data()["changed"], 0, "already there: nothing changes");

    // Refused: no group named, a name too long, a VIEWER. Nothing changes.
    for (user, body, status, says) in [
        (
            &alice,
            json!({"ids": [ids[2]], "action": "group"}),
            400,
            "null to take the runs out",
        ),
        (
            &alice,
            json!({"ids": [ids[2]], "action": "group", "group": "g".repeat(129)}),
            400,
            "the limit is 128",
        ),
        (
            &viewer,
            json!({"ids": [ids[2]], "action": "group", "group": "mine"}),
            403,
            "",
        ),
    ] {
        let msg = bulk(user, body.clone()).expect_error(status);
        assert!(msg.contains(says), "{body}: {msg}");
    }
    assert_eq!(
        names(&found(&server, &alice, &ws, "not group:sweep")),
        ["c"]
    );
    let c = server.get(&format!("/api/experiments/{}", ids[2]), &alice.auth());
    assert_eq!(c.data()["group"], Value::Null);

    // null takes every chosen run out of its group.
    let r = bulk(
        &alice,
        json!({"ids": ids, "action": "group", "group": null}),
    );
    assert_eq!(r.data()["changed"], 2);
    assert_eq!(
        names(&found(&server, &alice, &ws, "group:sweep")),
        Vec::<&str>::new()
    );
}
