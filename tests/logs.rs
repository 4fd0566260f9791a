//! Logging metrics and results: exactly-once, non-finite values, validation, CSV, bad input.

mod common;

use common::{Auth, TestServer, User};
use serde_json::{Value, json};

fn setup() -> (TestServer, User, String) {
    let server = TestServer::start();
    let user = server.user("logger@lab.org");
    let exp = server.experiment(&user, "run", None);
    (server, user, exp)
}

fn batch(server: &TestServer, user: &User, exp: &str, logs: Value) -> common::Response {
    server.post(
        &format!("/api/experiments/{exp}/logs/batch"),
        &user.auth(),
        json!({ "logs": logs }),
    )
}

fn metrics(server: &TestServer, user: &User, exp: &str) -> Vec<Value> {
    let r = server.get(&format!("/api/experiments/{exp}/metrics"), &user.auth());
    assert_eq!(r.status, 200, "{}", r.text);
    r.data().as_array().unwrap().clone()
}

#[test]
fn a_retried_batch_is_stored_once() {
    let (server, user, exp) = setup();
    let first = json!([
        {"msg_id": "0b6f4e3c-6d0f-4c1e-9f5a-3a2b1c0d9e8f", "name": "loss", "value": 0.9, "step": 0, "metadata": {"type": "metric"}},
        {"msg_id": "1b6f4e3c-6d0f-4c1e-9f5a-3a2b1c0d9e8f", "name": "loss", "value": 0.7, "step": 1, "metadata": {"type": "metric"}},
    ]);
    let r = batch(&server, &user, &exp, first.clone());
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.data(), json!({"inserted": 2, "skipped": 0}));

    // What the 0.0.12 SDK does after a timeout: resend the old points plus new ones.
    let mut retry = first.as_array().unwrap().clone();
    retry.push(json!({"msg_id": "2b6f4e3c-6d0f-4c1e-9f5a-3a2b1c0d9e8f", "name": "loss", "value": 0.5, "step": 2, "metadata": {"type": "metric"}}));
    let r = batch(&server, &user, &exp, Value::Array(retry));
    assert_eq!(r.status, 201, "a retry must succeed, never 409: {}", r.text);
    assert_eq!(r.data(), json!({"inserted": 1, "skipped": 2}));

    let points = metrics(&server, &user, &exp);
    let got: Vec<(i64, f64)> = points
        .iter()
        .map(|p| (p["step"].as_i64().unwrap(), p["value"].as_f64().unwrap()))
        .collect();
    assert_eq!(got, vec![(0, 0.9), (1, 0.7), (2, 0.5)]);
    assert_eq!(points[0]["msg_id"], "0b6f4e3c-6d0f-4c1e-9f5a-3a2b1c0d9e8f");
    assert_eq!(points[0]["experiment_id"], exp.as_str());
    assert_eq!(points[0]["metadata"], json!({"type": "metric"}));
    assert!(points[0]["created_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn kinds_follow_metadata_or_the_step() {
    let (server, user, exp) = setup();
    let r = batch(
        &server,
        &user,
        &exp,
        json!([
            {"msg_id": "a", "name": "acc", "value": 0.5, "step": 3},
            {"msg_id": "b", "name": "acc", "value": 0.1, "step": 1},
            {"msg_id": "c", "name": "final_acc", "value": 0.93},
            {"msg_id": "d", "name": "best", "value": 7, "step": 12, "metadata": {"type": "result", "epoch": 12}},
        ]),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let steps: Vec<i64> = metrics(&server, &user, &exp)
        .iter()
        .map(|p| p["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, vec![1, 3], "metrics come ordered by step");

    let results = server
        .get(&format!("/api/experiments/{exp}/results"), &user.auth())
        .data();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["name"], "final_acc");
    assert_eq!(results[0]["step"], Value::Null);
    assert_eq!(results[0]["metadata"], json!({"type": "result"}));
    assert_eq!(
        results[1]["metadata"],
        json!({"type": "result", "epoch": 12})
    );

    let all = server
        .get(&format!("/api/experiments/{exp}/logs"), &user.auth())
        .data();
    let ids: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4], "all logs in the order they arrived");
}

#[test]
fn non_finite_values_round_trip_as_strings() {
    let (server, user, exp) = setup();
    let r = batch(
        &server,
        &user,
        &exp,
        json!([
            {"name": "x", "value": "NaN", "step": 0},
            {"name": "x", "value": "Infinity", "step": 1},
            {"name": "x", "value": "-Infinity", "step": 2},
            {"name": "x", "value": 1e308, "step": 3},
            {"name": "x", "value": -2.5, "step": 4},
        ]),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let values: Vec<Value> = metrics(&server, &user, &exp)
        .iter()
        .map(|p| p["value"].clone())
        .collect();
    assert_eq!(
        values,
        vec![
            json!("NaN"),
            json!("Infinity"),
            json!("-Infinity"),
            json!(1e308),
            json!(-2.5)
        ]
    );

    let csv = server.get(&format!("/api/experiments/{exp}/logs/csv"), &user.auth());
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "name,type,step,value,created_at");
    let values: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(3).unwrap())
        .collect();
    assert_eq!(values, vec!["NaN", "inf", "-inf", "1e308", "-2.5"]);
}

#[test]
fn a_bare_nan_token_is_refused_with_advice() {
    let (server, user, exp) = setup();
    let body = br#"{"logs": [{"name": "loss", "value": NaN, "step": 0}]}"#;
    let r = server.raw(
        "POST",
        &format!("/api/experiments/{exp}/logs/batch"),
        &user.auth(),
        Some(body),
        Some("application/json"),
    );
    let msg = r.expect_error(400);
    assert!(msg.contains("\"NaN\""), "{msg}");
    assert!(metrics(&server, &user, &exp).is_empty());
}

#[test]
fn one_bad_log_rejects_the_whole_batch() {
    let (server, user, exp) = setup();
    batch(
        &server,
        &user,
        &exp,
        json!([{"msg_id": "keep", "name": "loss", "value": 1, "step": 0}]),
    );
    let long = "n".repeat(256);
    for (bad, why) in [
        (json!({"name": "loss", "value": "high", "step": 1}), "NaN"),
        (json!({"name": "loss", "value": null, "step": 1}), "number"),
        (json!({"name": "loss", "value": [1], "step": 1}), "number"),
        (
            json!({"name": "loss", "value": 1, "step": -1}),
            "non-negative",
        ),
        (json!({"name": "loss", "value": 1, "step": 1.5}), "i64"),
        (json!({"name": "", "value": 1, "step": 1}), "empty"),
        (json!({"name": long, "value": 1, "step": 1}), "255"),
        (
            json!({"name": "loss", "value": 1, "step": 1, "metadata": "x"}),
            "object",
        ),
        (
            json!({"name": "loss", "value": 1, "step": 1, "metadata": {"type": "other"}}),
            "metadata.type",
        ),
        (
            json!({"name": "loss", "value": 1, "metadata": {"type": "metric"}}),
            "needs a step",
        ),
        (
            json!({"name": "loss", "value": 1, "step": 1, "metadata": {"blob": "x".repeat(11_000)}}),
            "10 KB",
        ),
        (json!({"value": 1, "step": 1}), "name"),
    ] {
        let logs = json!([{"msg_id": "new-ok", "name": "loss", "value": 2, "step": 5}, bad]);
        let msg = batch(&server, &user, &exp, logs).expect_error(400);
        assert!(msg.contains(why), "expected '{why}' in: {msg}");
    }
    let points = metrics(&server, &user, &exp);
    assert_eq!(points.len(), 1, "nothing from a refused batch was stored");
    assert_eq!(points[0]["msg_id"], "keep");
}

#[test]
fn batches_over_the_limit_are_refused() {
    let (server, user, exp) = setup();
    let logs: Vec<Value> = (0..100_001)
        .map(|i| json!({"name": "l", "value": 1, "step": i}))
        .collect();
    let msg = batch(&server, &user, &exp, Value::Array(logs)).expect_error(400);
    assert!(msg.contains("100000"), "{msg}");

    let huge = vec![b' '; 33 << 20];
    let r = server.raw(
        "POST",
        &format!("/api/experiments/{exp}/logs/batch"),
        &user.auth(),
        Some(&huge),
        Some("application/json"),
    );
    r.expect_error(413);
    assert!(metrics(&server, &user, &exp).is_empty());
}

#[test]
fn malformed_requests_get_json_errors() {
    let (server, user, exp) = setup();
    let path = format!("/api/experiments/{exp}/logs/batch");
    let r = server.raw(
        "POST",
        &path,
        &user.auth(),
        Some(b"{\"logs\": ["),
        Some("application/json"),
    );
    r.expect_error(400);
    let r = server.raw(
        "POST",
        &path,
        &user.auth(),
        Some(b"logs=1"),
        Some("application/x-www-form-urlencoded"),
    );
    r.expect_error(415);
    let r = server.raw(
        "POST",
        &path,
        &user.auth(),
        Some(b"{\"logs\": {}}"),
        Some("application/json"),
    );
    r.expect_error(400);
    let r = server.raw(
        "POST",
        &path,
        &user.auth(),
        Some(b""),
        Some("application/json"),
    );
    r.expect_error(400);
    server
        .get("/api/experiments/not-a-uuid/logs", &user.auth())
        .expect_error(400);
    server
        .get(
            "/api/experiments/7d444840-9dc0-11d1-b245-5ffdce74fad2/logs",
            &user.auth(),
        )
        .expect_error(404);
    server
        .get("/api/no/such/route", &user.auth())
        .expect_error(404);
    server
        .call("PATCH", &path, &user.auth(), Some(&json!({})))
        .expect_error(405);
    server
        .call("DELETE", "/api/health", &Auth::None, None)
        .expect_error(405);
    assert!(metrics(&server, &user, &exp).is_empty());
}

#[test]
fn single_logs_and_csv_quoting() {
    let (server, user, exp) = setup();
    let r = server.post(
        &format!("/api/experiments/{exp}/logs"),
        &user.auth(),
        json!({"name": "val \"top-1\", %", "value": 0.25, "step": 7}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.post(
        &format!("/api/experiments/{exp}/logs"),
        &user.auth(),
        json!({"name": "multi\nline", "value": 1}),
    );
    r.expect_error(400);

    let csv = server.get(&format!("/api/experiments/{exp}/logs/csv"), &user.auth());
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(
        csv.header("content-disposition")
            .unwrap()
            .contains("attachment")
    );
    let row = csv.text.lines().nth(1).unwrap();
    assert!(
        row.starts_with("\"val \"\"top-1\"\", %\",metric,7,0.25,"),
        "{row}"
    );
}

#[test]
fn a_large_csv_export_streams_every_row() {
    let (server, user, exp) = setup();
    for chunk in 0..4 {
        let logs: Vec<Value> = (0..25_000)
            .map(|i| json!({"name": format!("m{}", i % 4), "value": i as f64 / 3.0, "step": chunk * 25_000 + i}))
            .collect();
        assert_eq!(batch(&server, &user, &exp, Value::Array(logs)).status, 201);
    }
    let csv = server.get(&format!("/api/experiments/{exp}/logs/csv"), &user.auth());
    assert_eq!(csv.status, 200);
    assert_eq!(csv.text.lines().count(), 100_001);
}

#[test]
fn a_csv_export_never_hands_a_spreadsheet_a_formula() {
    let (server, user, exp) = setup();
    let names = [
        "=cmd|'/C calc'!A0",
        "@SUM(1)",
        "+1+1",
        "-2+3",
        "plain=not-a-formula",
    ];
    for (step, name) in names.iter().enumerate() {
        let r = server.post(
            &format!("/api/experiments/{exp}/logs"),
            &user.auth(),
            json!({"name": name, "value": -1.5, "step": step}),
        );
        assert_eq!(r.status, 201, "{name}: {}", r.text);
    }
    let csv = server.get(&format!("/api/experiments/{exp}/logs/csv"), &user.auth());
    assert_eq!(csv.status, 200);
    let mut reader = csv::ReaderBuilder::new().from_reader(csv.text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    for row in &rows {
        let name = &row[0];
        assert!(
            !name.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "a live formula: {name:?}"
        );
        // Numbers stay numbers, a negative one included.
        assert_eq!(&row[3], "-1.5");
    }
    let cells: Vec<&str> = rows.iter().map(|r| &r[0]).collect();
    for name in names {
        let expected = if name.starts_with(['=', '+', '-', '@']) {
            format!("'{name}")
        } else {
            name.to_string()
        };
        assert!(
            cells.contains(&expected.as_str()),
            "{expected:?} in {cells:?}"
        );
    }
}
