//! What the run table does with many runs at once: change them (delete, tag, untag, move; one
//! request is all or nothing: a run the caller may not change, or cannot see, leaves every run
//! as it was), and export them as CSV.

mod common;

use common::{TestServer, User};
use serde_json::{Value, json};

fn bulk(server: &TestServer, user: &User, body: Value) -> common::Response {
    server.post("/api/experiments/bulk", &user.auth(), body)
}

/// Every run's workspace, tags and name, and every point: what a refused bulk change must
/// leave alone.
fn snapshot(server: &TestServer) -> String {
    let conn = server.sql();
    let mut out = String::new();
    for sql in [
        "SELECT uuid, workspace_id, name, tags FROM experiments ORDER BY uuid",
        "SELECT experiment_id, name, count, last_value FROM series ORDER BY id",
        "SELECT id, data FROM chunks ORDER BY id",
    ] {
        let mut stmt = conn.prepare(sql).unwrap();
        let cols = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..cols {
                let v: tora::sql::types::Value = row.get(i).unwrap();
                out += &format!("{v:?}|");
            }
            out.push('\n');
        }
    }
    out
}

fn tags(server: &TestServer, user: &User, exp: &str) -> Value {
    let r = server.get(&format!("/api/experiments/{exp}"), &user.auth());
    assert_eq!(r.status, 200, "{}", r.text);
    r.data()["tags"].clone()
}

fn log_points(server: &TestServer, user: &User, exp: &str) {
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &user.auth(),
        json!({"metrics": [{"name": "loss", "steps": [0, 1, 2], "values": [1.0, 0.5, "NaN"]}],
               "results": [{"name": "acc", "value": 0.9}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.post(
        &format!("/api/experiments/{exp}/logs/batch"),
        &user.auth(),
        json!({"logs": [{"msg_id": "m1", "name": "lr", "value": 0.1, "step": 0,
                          "metadata": {"type": "metric", "phase": "warmup"}}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
}

#[test]
fn an_owner_tags_untags_and_deletes_many_runs_at_once() {
    let server = TestServer::start();
    let owner = server.user("owner@lab.org");
    let ws = server.workspace(&owner, "lab");
    let runs: Vec<String> = (0..3)
        .map(|i| server.experiment(&owner, &format!("run-{i}"), Some(&ws)))
        .collect();

    let r = bulk(
        &server,
        &owner,
        json!({"ids": [runs[0], runs[1], runs[0]], "action": "tag", "tags": ["sweep", "lr"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data(), json!({"changed": 2}), "a repeated id counts once");
    assert_eq!(tags(&server, &owner, &runs[0]), json!(["sweep", "lr"]));
    assert_eq!(tags(&server, &owner, &runs[2]), json!([]));

    // Tagging again changes nothing; untagging removes only the tags named.
    let r = bulk(
        &server,
        &owner,
        json!({"ids": [runs[0], runs[1]], "action": "tag", "tags": ["sweep"]}),
    );
    assert_eq!(r.data(), json!({"changed": 0}));
    let r = bulk(
        &server,
        &owner,
        json!({"ids": [runs[0], runs[1], runs[2]], "action": "untag", "tags": ["sweep"]}),
    );
    assert_eq!(r.data(), json!({"changed": 2}));
    assert_eq!(tags(&server, &owner, &runs[1]), json!(["lr"]));

    let r = bulk(
        &server,
        &owner,
        json!({"ids": [runs[0], runs[1]], "action": "delete"}),
    );
    assert_eq!(r.data(), json!({"changed": 2}), "{}", r.text);
    for gone in &runs[..2] {
        server
            .get(&format!("/api/experiments/{gone}"), &owner.auth())
            .expect_error(404);
    }
    assert_eq!(
        tags(&server, &owner, &runs[2]),
        json!([]),
        "the third stays"
    );

    // Tag and untag need tags; move needs a destination; an action must be one of the four.
    for body in [
        json!({"ids": [runs[2]], "action": "tag"}),
        json!({"ids": [runs[2]], "action": "untag", "tags": []}),
        json!({"ids": [runs[2]], "action": "move"}),
        json!({"ids": [runs[2]], "action": "archive"}),
        json!({"ids": ["not-a-uuid"], "action": "delete"}),
    ] {
        bulk(&server, &owner, body).expect_error(400);
    }
}

#[test]
fn a_moved_run_keeps_its_points_series_and_metadata() {
    let server = TestServer::start();
    let owner = server.user("owner@lab.org");
    let from = server.workspace(&owner, "from");
    let to = server.workspace(&owner, "to");
    let exp = server.experiment(&owner, "resnet", Some(&from));
    log_points(&server, &owner, &exp);
    let read = |what: &str| {
        let r = server.get(&format!("/api/experiments/{exp}/{what}"), &owner.auth());
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        r.text
    };
    let before: Vec<String> = ["logs", "summary", "series", "logs/csv"]
        .iter()
        .map(|w| read(w))
        .collect();

    let r = bulk(
        &server,
        &owner,
        json!({"ids": [exp], "action": "move", "workspace_id": to}),
    );
    assert_eq!(r.data(), json!({"changed": 1}), "{}", r.text);
    let run = server.get(&format!("/api/experiments/{exp}"), &owner.auth());
    assert_eq!(run.data()["workspace_id"], to.as_str());
    let after: Vec<String> = ["logs", "summary", "series", "logs/csv"]
        .iter()
        .map(|w| read(w))
        .collect();
    assert_eq!(
        before, after,
        "points, series, results and metadata moved with it"
    );
    assert!(after[0].contains("warmup"), "{}", after[0]);
    let listed = |ws: &str| {
        server
            .get(&format!("/api/workspaces/{ws}/experiments"), &owner.auth())
            .data()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!((listed(&from), listed(&to)), (0, 1));

    // Ingest goes on in its new workspace, and a move to where it is changes nothing.
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &owner.auth(),
        json!({"metrics": [{"name": "loss", "steps": [3], "values": [0.1]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = bulk(
        &server,
        &owner,
        json!({"ids": [exp], "action": "move", "workspaceId": to}),
    );
    assert_eq!(r.data(), json!({"changed": 0}));
}

#[test]
fn roles_decide_who_may_change_runs_and_a_refusal_changes_nothing() {
    let server = TestServer::start();
    let owner = server.user("owner@lab.org");
    let editor = server.user("editor@lab.org");
    let viewer = server.user("viewer@lab.org");
    let outsider = server.user("outsider@lab.org");
    let ws = server.workspace(&owner, "lab");
    server.add_member(&ws, &editor, 2);
    server.add_member(&ws, &viewer, 3);
    let a = server.experiment(&owner, "a", Some(&ws));
    let b = server.experiment(&owner, "b", Some(&ws));
    log_points(&server, &owner, &a);
    // The editor's own workspace, where the viewer may only look.
    let theirs = server.workspace(&editor, "theirs");
    server.add_member(&theirs, &viewer, 3);
    let hidden = server.experiment(&outsider, "hidden", None);

    let refused = |user: &User, body: Value, status: u16| {
        let before = snapshot(&server);
        let r = bulk(&server, user, body.clone());
        let message = r.expect_error(status);
        assert_eq!(before, snapshot(&server), "{body} changed something");
        message
    };
    let delete = json!({"ids": [a, b], "action": "delete"});
    let tag = json!({"ids": [a, b], "action": "tag", "tags": ["x"]});

    // An editor may tag but not delete; a viewer neither; an outsider sees no such runs.
    refused(&editor, delete.clone(), 403);
    refused(&viewer, tag.clone(), 403);
    let message = refused(&outsider, tag.clone(), 404);
    assert!(!message.contains("lab"), "{message}");
    assert_eq!(bulk(&server, &editor, tag).data(), json!({"changed": 2}));

    // One unknown or hidden id among visible ones: 404, and no run is touched.
    refused(
        &owner,
        json!({"ids": [a, "00000000-0000-4000-8000-000000000000"], "action": "delete"}),
        404,
    );
    refused(
        &owner,
        json!({"ids": [a, hidden], "action": "untag", "tags": ["x"]}),
        404,
    );

    // Moving needs EDITOR where the runs are and where they go: into a workspace where the
    // caller only views, 403; into one they are not in, 404 (as for any hidden workspace).
    let to_theirs = json!({"ids": [a], "action": "move", "workspace_id": theirs});
    refused(&viewer, to_theirs.clone(), 403);
    refused(&owner, to_theirs.clone(), 404);
    let own = server.workspace(&viewer, "viewer's own");
    refused(
        &viewer,
        json!({"ids": [a], "action": "move", "workspace_id": own}),
        403,
    );
    assert_eq!(
        bulk(&server, &editor, to_theirs).data(),
        json!({"changed": 1})
    );

    // Deleting is for the OWNER of each run's workspace: the owner of `lab` is not one in
    // `theirs`, where `a` now is, so deleting both is refused whole.
    server.add_member(&theirs, &owner, 2);
    refused(&owner, delete, 403);
    assert_eq!(
        bulk(&server, &owner, json!({"ids": [b], "action": "delete"})).data(),
        json!({"changed": 1})
    );
}

#[test]
fn one_request_names_at_most_1000_runs() {
    let server = TestServer::start();
    let owner = server.user("owner@lab.org");
    let exp = server.experiment(&owner, "run", None);
    let unknown = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
            .collect()
    };
    let mut ids = unknown(1000);
    ids[999] = exp.clone();
    let before = snapshot(&server);
    // 1,000 is allowed (here refused only for the unknown ids in it)...
    let r = bulk(&server, &owner, json!({"ids": ids, "action": "delete"}));
    r.expect_error(404);
    // ... 1,001 is not, before any is looked up.
    ids.push(exp.clone());
    let message = bulk(&server, &owner, json!({"ids": ids, "action": "delete"})).expect_error(400);
    assert!(message.contains("1000"), "{message}");
    assert_eq!(before, snapshot(&server));
    let all_mine = vec![exp.clone(); 1000];
    let r = bulk(
        &server,
        &owner,
        json!({"ids": all_mine, "action": "delete"}),
    );
    assert_eq!(r.data(), json!({"changed": 1}), "{}", r.text);
}

fn export(server: &TestServer, user: &User, ws: &str, query: &str) -> common::Response {
    server.get(
        &format!("/api/workspaces/{ws}/experiments.csv{query}"),
        &user.auth(),
    )
}

fn rows(csv_text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(csv_text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

#[test]
fn the_table_exports_the_filtered_runs_as_csv_a_spreadsheet_cannot_run() {
    let server = TestServer::start();
    let owner = server.user("owner@lab.org");
    let viewer = server.user("viewer@lab.org");
    let outsider = server.user("outsider@lab.org");
    let ws = server.workspace(&owner, "lab");
    server.add_member(&ws, &viewer, 3);
    let create = |body: Value| {
        let r = server.post("/api/experiments", &owner.auth(), body);
        assert_eq!(r.status, 201, "{}", r.text);
        r.data()["id"].as_str().unwrap().to_string()
    };
    let evil = create(json!({"name": "=cmd|' /C calc'!A0", "workspaceId": ws,
        "hyperparams": [{"key": "lr", "value": 0.01}, {"key": "note", "value": "@SUM(1)"},
                        {"key": "opt", "value": "adam"}],
        "tags": ["+x", "base"]}));
    let plain = create(json!({"name": "plain", "workspaceId": ws,
        "hyperparams": [{"key": "lr", "value": 0.1}, {"key": "opt", "value": "-sgd"}]}));
    let skipped = create(
        json!({"name": "skipped", "workspaceId": ws, "tags": ["skip"],
        "hyperparams": [{"key": "only_here", "value": 1}]}),
    );
    let r = server.post(
        &format!("/api/experiments/{evil}/points"),
        &owner.auth(),
        json!({"metrics": [{"name": "loss", "steps": [0, 1], "values": [1.0, 0.5]}],
               "results": [{"name": "acc", "value": 0.9}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.post(
        &format!("/api/experiments/{plain}/points"),
        &owner.auth(),
        json!({"metrics": [{"name": "loss", "steps": [0], "values": ["NaN"]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.post(
        &format!("/api/experiments/{skipped}/points"),
        &owner.auth(),
        json!({"metrics": [{"name": "skip_metric", "steps": [0], "values": [1]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    // A viewer downloads the table as filtered and sorted: only the matching runs, and only
    // their columns.
    let r = export(&server, &viewer, &ws, "?q=not%20tag:skip&sort=name");
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    assert!(
        r.header("content-disposition")
            .unwrap()
            .contains("lab-runs.csv")
    );
    let table = rows(&r.text);
    assert_eq!(
        table[0],
        [
            "id",
            "name",
            "state",
            "created_at",
            "ended_at",
            "duration_s",
            "tags",
            "group",
            "hp.lr",
            "hp.note",
            "hp.opt",
            "result.acc",
            "metric.loss"
        ]
    );
    assert_eq!(table.len(), 3, "{}", r.text);
    let (first, second) = (&table[1], &table[2]);
    assert_eq!(first[0], evil);
    // Text a spreadsheet would run starts with a quote; numbers stay numbers.
    assert_eq!(first[1], "'=cmd|' /C calc'!A0");
    assert_eq!(first[6], "'+x;base");
    assert_eq!(first[7], "", "in no group");
    assert_eq!(&first[8..], ["0.01", "'@SUM(1)", "adam", "0.9", "0.5"]);
    assert_eq!(first[2], "running", "points just arrived");
    assert_eq!(first[4], "", "not ended");
    assert!(first[5].parse::<f64>().unwrap() >= 0.0, "{}", first[5]);
    assert!(first[3].ends_with('Z'), "{}", first[3]);
    assert_eq!(second[0], plain);
    assert_eq!(&second[8..], ["0.1", "", "'-sgd", "", "NaN"]);

    // The whole workspace by default; a bad filter is a 400; outsiders see nothing.
    let all = rows(&export(&server, &owner, &ws, "").text);
    assert_eq!(all.len(), 4);
    assert!(all[0].contains(&"hp.only_here".to_string()));
    assert!(all[0].contains(&"metric.skip_metric".to_string()));
    export(&server, &owner, &ws, "?q=lr%20%3C").expect_error(400);
    let r = export(&server, &outsider, &ws, "");
    r.expect_error(404);
    assert!(!r.text.contains("plain"));
}

#[test]
fn an_export_holds_at_most_10000_runs() {
    let server = TestServer::start();
    let owner = server.user("owner@lab.org");
    let ws = server.workspace(&owner, "big");
    // 10,001 runs, written straight into the file (creating them over HTTP only takes longer).
    let conn = server.sql();
    conn.execute_batch("BEGIN").unwrap();
    for i in 0..10_001 {
        conn.execute(
            "INSERT INTO experiments (uuid, workspace_id, name, tags, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            tora::sql::params![
                format!("00000000-0000-4000-8000-{i:012}"),
                ws,
                format!("run-{i}"),
                if i % 2 == 0 { r#"["even"]"# } else { "[]" },
                1_700_000_000_000_i64 + i,
            ],
        )
        .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
    let message = export(&server, &owner, &ws, "").expect_error(400);
    assert!(
        message.contains("10001 runs") && message.contains("10000"),
        "{message}"
    );
    // Narrowed to 5,001 runs, it comes whole, in order, read 50 runs at a time.
    let r = export(&server, &owner, &ws, "?q=tag:even&sort=created");
    assert_eq!(r.status, 200, "{}", r.text);
    let table = rows(&r.text);
    assert_eq!(table.len(), 5_002);
    assert_eq!(table[1][1], "run-0");
    assert_eq!(table[5_001][1], "run-10000");
    assert_eq!(table[5_001][2], "finished", "quiet since 2023");
}
