//! Workspaces and experiments, and who may see or change them.

mod common;

use common::{Auth, TestServer};
use serde_json::json;

const EDITOR: i64 = 2;
const VIEWER: i64 = 3;

#[test]
fn an_experiment_without_a_workspace_lands_in_the_personal_one() {
    let server = TestServer::start();
    let user = server.user("a@lab.org");
    let r = server.post(
        "/api/experiments",
        &user.auth(),
        json!({"name": "resnet", "description": "baseline", "hyperparams": [{"key": "lr", "value": 0.001}, {"key": "opt", "value": "adam"}], "tags": ["cv", "cv", "baseline"]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let e = r.data();
    assert_eq!(e["name"], "resnet");
    assert_eq!(e["description"], "baseline");
    assert_eq!(
        e["hyperparams"],
        json!([{"key": "lr", "value": 0.001}, {"key": "opt", "value": "adam"}])
    );
    assert_eq!(e["tags"], json!(["cv", "baseline"]));
    let id = e["id"].as_str().unwrap();
    assert_eq!(e["url"], format!("{}/experiments/{id}", server.url()));

    let spaces = server.get("/api/workspaces", &user.auth()).data();
    let spaces = spaces.as_array().unwrap();
    assert_eq!(spaces.len(), 1);
    assert_eq!(spaces[0]["role"], "OWNER");
    assert_eq!(spaces[0]["id"], e["workspace_id"]);

    let listed = server.get(
        &format!(
            "/api/workspaces/{}/experiments",
            e["workspace_id"].as_str().unwrap()
        ),
        &user.auth(),
    );
    assert_eq!(listed.data()[0]["id"], id);
}

#[test]
fn public_url_is_used_in_experiment_links() {
    let server = TestServer::start_with(&["--public-url", "https://tora.lab.example/"]);
    let user = server.user("b@lab.org");
    let r = server.post("/api/experiments", &user.auth(), json!({"name": "x"}));
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.data()["url"],
        format!("https://tora.lab.example/experiments/{id}")
    );
}

#[test]
fn outsiders_see_nothing_and_change_nothing() {
    let server = TestServer::start();
    let owner = server.user("owner@lab.org");
    let outsider = server.user("outsider@lab.org");
    let ws = server.workspace(&owner, "secret-lab");
    let exp = server.experiment(&owner, "secret-run", Some(&ws));

    for path in [
        format!("/api/workspaces/{ws}"),
        format!("/api/workspaces/{ws}/members"),
        format!("/api/workspaces/{ws}/experiments"),
        format!("/api/experiments?workspace={ws}"),
        format!("/api/experiments/{exp}"),
        format!("/api/experiments/{exp}/logs"),
        format!("/api/experiments/{exp}/metrics"),
        format!("/api/experiments/{exp}/results"),
        format!("/api/experiments/{exp}/logs/csv"),
    ] {
        let r = server.get(&path, &outsider.auth());
        r.expect_error(404);
        assert!(!r.text.contains("secret"), "{path}: {}", r.text);
    }
    assert_eq!(
        server.get("/api/experiments", &outsider.auth()).data(),
        json!([])
    );
    let batch = server.post(
        "/api/experiments/batch",
        &outsider.auth(),
        json!({"ids": [exp]}),
    );
    assert_eq!(batch.data(), json!([]));

    server
        .call(
            "PUT",
            &format!("/api/experiments/{exp}"),
            &outsider.auth(),
            Some(&json!({"name": "pwned"})),
        )
        .expect_error(404);
    server
        .call(
            "DELETE",
            &format!("/api/experiments/{exp}"),
            &outsider.auth(),
            None,
        )
        .expect_error(404);
    server
        .call(
            "DELETE",
            &format!("/api/workspaces/{ws}"),
            &outsider.auth(),
            None,
        )
        .expect_error(404);
    server
        .post(
            &format!("/api/experiments/{exp}/logs/batch"),
            &outsider.auth(),
            json!({"logs": [{"name": "x", "value": 1, "step": 0}]}),
        )
        .expect_error(404);
    server
        .post(
            "/api/experiments",
            &outsider.auth(),
            json!({"name": "intruder", "workspaceId": ws}),
        )
        .expect_error(404);

    // Still intact for the owner.
    let r = server.get(&format!("/api/experiments/{exp}"), &owner.auth());
    assert_eq!(r.data()["name"], "secret-run");
    assert_eq!(
        server
            .get(&format!("/api/experiments/{exp}/logs"), &owner.auth())
            .data(),
        json!([])
    );
    let batch = server.post(
        "/api/experiments/batch",
        &owner.auth(),
        json!({"ids": [exp]}),
    );
    assert_eq!(batch.data()[0]["id"], exp.as_str());
}

#[test]
fn viewers_read_editors_write_owners_delete() {
    let server = TestServer::start();
    let owner = server.user("o@lab.org");
    let editor = server.user("e@lab.org");
    let viewer = server.user("v@lab.org");
    let ws = server.workspace(&owner, "lab");
    server.add_member(&ws, &editor, EDITOR);
    server.add_member(&ws, &viewer, VIEWER);
    let exp = server.experiment(&owner, "shared", Some(&ws));
    let log = json!({"logs": [{"name": "loss", "value": 1.0, "step": 0}]});

    // The viewer reads everything...
    assert_eq!(
        server
            .get(&format!("/api/experiments/{exp}"), &viewer.auth())
            .data()["name"],
        "shared"
    );
    assert_eq!(
        server
            .get(&format!("/api/workspaces/{ws}/members"), &viewer.auth())
            .data()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // ...and changes nothing.
    server
        .post(
            &format!("/api/experiments/{exp}/logs/batch"),
            &viewer.auth(),
            log.clone(),
        )
        .expect_error(403);
    server
        .call(
            "PUT",
            &format!("/api/experiments/{exp}"),
            &viewer.auth(),
            Some(&json!({"name": "renamed"})),
        )
        .expect_error(403);
    server
        .post(
            "/api/experiments",
            &viewer.auth(),
            json!({"name": "new", "workspaceId": ws}),
        )
        .expect_error(403);
    server
        .call(
            "DELETE",
            &format!("/api/experiments/{exp}"),
            &viewer.auth(),
            None,
        )
        .expect_error(403);
    assert_eq!(
        server
            .get(&format!("/api/experiments/{exp}/logs"), &owner.auth())
            .data(),
        json!([])
    );
    assert_eq!(
        server
            .get(&format!("/api/experiments/{exp}"), &owner.auth())
            .data()["name"],
        "shared"
    );

    // The editor writes logs and edits, but does not delete.
    let r = server.post(
        &format!("/api/experiments/{exp}/logs/batch"),
        &editor.auth(),
        log,
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.call(
        "PUT",
        &format!("/api/experiments/{exp}"),
        &editor.auth(),
        Some(&json!({"description": "by editor"})),
    );
    assert_eq!(r.data()["description"], "by editor");
    assert_eq!(
        r.data()["name"],
        "shared",
        "fields left out stay as they were"
    );
    server
        .call(
            "DELETE",
            &format!("/api/experiments/{exp}"),
            &editor.auth(),
            None,
        )
        .expect_error(403);
    server
        .call(
            "DELETE",
            &format!("/api/workspaces/{ws}"),
            &editor.auth(),
            None,
        )
        .expect_error(403);

    let r = server.call(
        "DELETE",
        &format!("/api/experiments/{exp}"),
        &owner.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    server
        .get(&format!("/api/experiments/{exp}"), &owner.auth())
        .expect_error(404);
}

#[test]
fn experiments_update_and_clear_fields() {
    let server = TestServer::start();
    let user = server.user("u@lab.org");
    let r = server.post(
        "/api/experiments",
        &user.auth(),
        json!({"name": "a", "description": "d", "tags": ["t"]}),
    );
    let id = r.data()["id"].as_str().unwrap().to_string();
    let created_at = r.data()["created_at"].clone();
    let r = server.call(
        "PUT",
        &format!("/api/experiments/{id}"),
        &user.auth(),
        Some(&json!({"name": "b", "description": null, "hyperparams": [{"key": "k", "value": true}], "tags": []})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let e = r.data();
    assert_eq!(e["name"], "b");
    assert_eq!(e["description"], serde_json::Value::Null);
    assert_eq!(e["hyperparams"], json!([{"key": "k", "value": true}]));
    assert_eq!(e["tags"], json!([]));
    assert_eq!(e["created_at"], created_at);
    let bad = server.call(
        "PUT",
        &format!("/api/experiments/{id}"),
        &user.auth(),
        Some(&json!({"name": ""})),
    );
    bad.expect_error(400);
    assert_eq!(
        server
            .get(&format!("/api/experiments/{id}"), &user.auth())
            .data()["name"],
        "b"
    );
}

#[test]
fn a_client_chosen_id_makes_creation_idempotent() {
    let server = TestServer::start();
    let user = server.user("i@lab.org");
    let id = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
    let body = json!({"id": id, "name": "offline-run"});
    let first = server.post("/api/experiments", &user.auth(), body.clone());
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.data()["id"], id);
    let again = server.post("/api/experiments", &user.auth(), body.clone());
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.data()["id"], id);
    assert_eq!(
        server
            .get("/api/experiments", &user.auth())
            .data()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let other = server.user("j@lab.org");
    let r = server.post("/api/experiments", &other.auth(), body);
    r.expect_error(409);
    assert!(!r.text.contains("offline-run"));
    server
        .post(
            "/api/experiments",
            &user.auth(),
            json!({"id": "not-a-uuid", "name": "x"}),
        )
        .expect_error(400);
}

#[test]
fn deleting_a_workspace_deletes_its_experiments_and_logs() {
    let server = TestServer::start();
    let user = server.user("w@lab.org");
    let ws = server.workspace(&user, "short-lived");
    let exp = server.experiment(&user, "doomed", Some(&ws));
    let r = server.post(
        &format!("/api/experiments/{exp}/logs/batch"),
        &user.auth(),
        json!({"logs": [{"name": "loss", "value": 1, "step": 1}, {"name": "acc", "value": 0.5, "metadata": {"type": "result", "split": "test"}}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &user.auth(),
        json!({"batch_id": "b1", "metrics": [{"name": "loss", "steps": [2, 3], "values": [0.5, 0.25]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}"),
        &user.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    server
        .get(&format!("/api/workspaces/{ws}"), &user.auth())
        .expect_error(404);
    server
        .get(&format!("/api/experiments/{exp}"), &user.auth())
        .expect_error(404);

    let conn = server.sql();
    for table in [
        "experiments",
        "series",
        "series_blocks",
        "chunks",
        "log_metadata",
        "batches",
    ] {
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "{table} keeps orphans");
    }
}

#[test]
fn the_last_owner_cannot_leave_but_a_member_can() {
    let server = TestServer::start();
    let owner = server.user("lo@lab.org");
    let member = server.user("lm@lab.org");
    let ws = server.workspace(&owner, "lab");
    server.add_member(&ws, &member, VIEWER);
    let msg = server
        .post(
            &format!("/api/workspaces/{ws}/leave"),
            &owner.auth(),
            json!({}),
        )
        .expect_error(400);
    assert!(msg.contains("last OWNER"), "{msg}");
    let r = server.post(
        &format!("/api/workspaces/{ws}/leave"),
        &member.auth(),
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    server
        .get(&format!("/api/workspaces/{ws}"), &member.auth())
        .expect_error(404);
    assert_eq!(
        server
            .get(&format!("/api/workspaces/{ws}"), &owner.auth())
            .data()["name"],
        "lab"
    );
}

#[test]
fn roles_are_listed_with_ids() {
    let server = TestServer::start();
    let user = server.user("r@lab.org");
    let roles = server.get("/api/workspace-roles", &user.auth()).data();
    assert_eq!(
        roles,
        json!([{"id": 1, "name": "OWNER"}, {"id": 2, "name": "EDITOR"}, {"id": 3, "name": "VIEWER"}])
    );
    let _ = Auth::None;
}
