//! The authorization matrix of MLflow's tracking API (`/api/2.0/mlflow`), which is not in
//! `/api/openapi.json` and so not in `tests/matrix.rs`: every endpoint × every kind of caller,
//! both sides asserted (the allowed caller gets 200, the others MLflow's error shape with the
//! status and code MLflow uses, and nothing of the run).

mod common;

use common::{Auth, TestServer, User};
use serde_json::{Value, json};

const OWNER: u8 = 1;
const EDITOR: u8 = 2;
const VIEWER: u8 = 3;

struct World {
    server: TestServer,
    owner: User,
    editor: User,
    viewer: User,
    outsider: User,
    ws: String,
}

fn world() -> World {
    let server = TestServer::start();
    let owner = server.user("owner@example.com");
    let editor = server.user("editor@example.com");
    let viewer = server.user("viewer@example.com");
    let outsider = server.user("outsider@example.com");
    let ws = server.workspace(&owner, "shared");
    server.add_member(&ws, &editor, EDITOR as i64);
    server.add_member(&ws, &viewer, VIEWER as i64);
    World {
        server,
        owner,
        editor,
        viewer,
        outsider,
        ws,
    }
}

fn mlflow(w: &World, method: &str, path: &str, auth: &Auth, body: Option<&Value>) -> (u16, Value) {
    let r = w
        .server
        .call(method, &format!("/api/2.0/mlflow/{path}"), auth, body);
    let v = serde_json::from_str(&r.text).unwrap_or(Value::Null);
    (r.status, v)
}

fn new_run(w: &World) -> String {
    let (s, v) = mlflow(
        w,
        "POST",
        "runs/create",
        &w.owner.auth(),
        Some(&json!({"experiment_id": w.ws, "run_name": "matrix"})),
    );
    assert_eq!(s, 200, "{v}");
    let run = v["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let (s, v) = mlflow(
        w,
        "POST",
        "runs/log-metric",
        &w.owner.auth(),
        Some(
            &json!({"run_id": run, "key": "secret_loss", "value": 0.5, "step": 0, "timestamp": 0}),
        ),
    );
    assert_eq!(s, 200, "{v}");
    run
}

/// Checks one endpoint for every caller: `needed` and stronger roles get 200, weaker ones 403
/// PERMISSION_DENIED, an outsider 404 RESOURCE_DOES_NOT_EXIST, nobody 401 UNAUTHENTICATED.
/// `call` makes the request for a caller (fresh objects if the endpoint destroys them).
fn check(w: &World, what: &str, needed: u8, call: &dyn Fn(&Auth) -> (u16, Value)) {
    let (s, v) = call(&Auth::None);
    assert_eq!(
        (s, v["error_code"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{what} anonymous: {v}"
    );
    let (s, v) = call(&w.outsider.auth());
    assert_eq!(
        (s, v["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST")),
        "{what} outsider: {v}"
    );
    assert!(
        !v.to_string().contains("secret_loss"),
        "{what} outsider: {v}"
    );
    for (role, user) in [(VIEWER, &w.viewer), (EDITOR, &w.editor), (OWNER, &w.owner)] {
        let (s, v) = call(&user.auth());
        if role <= needed {
            assert_eq!(s, 200, "{what} as role {role}: {v}");
        } else {
            assert_eq!(
                (s, v["error_code"].as_str()),
                (403, Some("PERMISSION_DENIED")),
                "{what} as role {role}: {v}"
            );
        }
    }
}

#[test]
fn every_mlflow_endpoint_checks_the_callers_role() {
    let w = world();
    let run = new_run(&w);
    let ws = w.ws.clone();
    let (s, v) = mlflow(
        &w,
        "POST",
        "logged-models",
        &w.owner.auth(),
        Some(&json!({"experiment_id": ws, "source_run_id": run, "name": "m"})),
    );
    assert_eq!(s, 200, "{v}");
    let model = v["model"]["info"]["model_id"].as_str().unwrap().to_string();

    let get = |path: String, needed: u8| {
        check(&w, &path.clone(), needed, &|a| {
            mlflow(&w, "GET", &path, a, None)
        });
    };
    get(format!("experiments/get?experiment_id={ws}"), VIEWER);
    get(format!("runs/get?run_id={run}"), VIEWER);
    get(
        format!("metrics/get-history?run_id={run}&metric_key=secret_loss"),
        VIEWER,
    );
    get(format!("logged-models/{model}"), VIEWER);

    let send = |method: &str, path: &str, body: Value, needed: u8| {
        check(&w, path, needed, &|a| {
            mlflow(&w, method, path, a, Some(&body))
        });
    };
    send(
        "POST",
        "runs/search",
        json!({"experiment_ids": [ws]}),
        VIEWER,
    );
    send(
        "POST",
        "logged-models/search",
        json!({"experiment_ids": [ws]}),
        VIEWER,
    );
    send("POST", "runs/create", json!({"experiment_id": ws}), EDITOR);
    send(
        "POST",
        "runs/update",
        json!({"run_id": run, "status": "RUNNING"}),
        EDITOR,
    );
    send(
        "POST",
        "runs/log-metric",
        json!({"run_id": run, "key": "loss", "value": 1, "step": 1, "timestamp": 0}),
        EDITOR,
    );
    send(
        "POST",
        "runs/log-batch",
        json!({"run_id": run, "metrics": [{"key": "loss", "value": 1, "step": 2, "timestamp": 0}],
               "params": [{"key": "lr", "value": "0.1"}], "tags": [{"key": "t", "value": "v"}]}),
        EDITOR,
    );
    send(
        "POST",
        "runs/log-parameter",
        json!({"run_id": run, "key": "bs", "value": "8"}),
        EDITOR,
    );
    send(
        "POST",
        "runs/set-tag",
        json!({"run_id": run, "key": "k", "value": "v"}),
        EDITOR,
    );
    send(
        "POST",
        "runs/delete-tag",
        json!({"run_id": run, "key": "k"}),
        EDITOR,
    );
    send(
        "POST",
        "runs/log-inputs",
        json!({"run_id": run, "datasets": []}),
        EDITOR,
    );
    send(
        "POST",
        "runs/outputs",
        json!({"run_id": run, "models": []}),
        EDITOR,
    );
    send(
        "POST",
        "logged-models",
        json!({"experiment_id": ws, "source_run_id": run}),
        EDITOR,
    );
    send(
        "PATCH",
        &format!("logged-models/{model}"),
        json!({"model_id": model, "status": "LOGGED_MODEL_READY"}),
        EDITOR,
    );
    send(
        "POST",
        &format!("logged-models/{model}/params"),
        json!({"params": [{"key": "C", "value": "1"}]}),
        EDITOR,
    );
    send(
        "PATCH",
        &format!("logged-models/{model}/tags"),
        json!({"tags": [{"key": "a", "value": "b"}]}),
        EDITOR,
    );
    send(
        "POST",
        "experiments/set-experiment-tag",
        json!({"experiment_id": ws, "key": "mlflow.note.content", "value": "notes"}),
        EDITOR,
    );
    send(
        "POST",
        "experiments/update",
        json!({"experiment_id": ws, "new_name": "renamed"}),
        OWNER,
    );

    // Destructive ones: a fresh run for each caller that may succeed.
    check(&w, "runs/delete", OWNER, &|a| {
        let run = new_run(&w);
        mlflow(&w, "POST", "runs/delete", a, Some(&json!({"run_id": run})))
    });
    check(&w, "experiments/delete", OWNER, &|a| {
        let (_, v) = mlflow(
            &w,
            "POST",
            "experiments/create",
            &w.owner.auth(),
            Some(&json!({"name": format!("doomed-{}", uuid_like())})),
        );
        let id = v["experiment_id"].as_str().unwrap().to_string();
        w.server.add_member(&id, &w.editor, EDITOR as i64);
        w.server.add_member(&id, &w.viewer, VIEWER as i64);
        mlflow(
            &w,
            "POST",
            "experiments/delete",
            a,
            Some(&json!({"experiment_id": id})),
        )
    });

    // The viewer's refused points are not there.
    let (_, v) = mlflow(
        &w,
        "GET",
        &format!("metrics/get-history?run_id={run}&metric_key=loss"),
        &w.owner.auth(),
        None,
    );
    let steps: Vec<i64> = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 1, 2, 2], "{v}");
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

#[test]
fn unknown_mlflow_endpoints_and_bad_bodies_answer_in_mlflows_shape() {
    let w = world();
    for path in [
        "/api/2.0/mlflow/registered-models/create",
        "/api/2.0/mlflow/model-versions/get",
        "/api/2.0/preview/mlflow/registered-models/list",
        "/api/3.0/mlflow/traces",
    ] {
        let r = w
            .server
            .call("POST", path, &w.owner.auth(), Some(&json!({})));
        let v: Value = serde_json::from_str(&r.text).unwrap();
        assert_eq!(
            (r.status, v["error_code"].as_str()),
            (404, Some("ENDPOINT_NOT_FOUND")),
            "{path}: {v}"
        );
    }
    let (s, v) = mlflow(
        &w,
        "POST",
        "runs/create",
        &w.owner.auth(),
        Some(&json!({"experiment_id": 5})),
    );
    assert_eq!(
        (s, v["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{v}"
    );
    let run = new_run(&w);
    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({"key": format!("p{i}"), "value": "1"}))
        .collect();
    let (s, v) = mlflow(
        &w,
        "POST",
        "runs/log-batch",
        &w.owner.auth(),
        Some(&json!({"run_id": run, "params": too_many})),
    );
    assert_eq!(
        (s, v["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("100"), "{v}");
    let (s, v) = mlflow(
        &w,
        "POST",
        "runs/search",
        &w.owner.auth(),
        Some(&json!({"experiment_ids": [w.ws], "filter": "params.a = 'b' and ".repeat(200)})),
    );
    assert_eq!(
        (s, v["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{v}"
    );
    // A big tag value that would push the run's metadata past 16 KiB is refused whole.
    let tags: Vec<Value> = (0..5)
        .map(|i| json!({"key": format!("t{i}"), "value": "x".repeat(7_000)}))
        .collect();
    let (s, v) = mlflow(
        &w,
        "POST",
        "runs/log-batch",
        &w.owner.auth(),
        Some(&json!({"run_id": run, "tags": tags})),
    );
    assert_eq!(
        (s, v["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE")),
        "{v}"
    );
    let (_, v) = mlflow(
        &w,
        "GET",
        &format!("runs/get?run_id={run}"),
        &w.owner.auth(),
        None,
    );
    assert!(!v.to_string().contains("xxxxxxxx"), "{v}");
}
