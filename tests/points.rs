//! The columnar batch format, `POST /api/experiments/{id}/points`: what Tora's own SDK sends.
//! Same stored points as `logs/batch`, a fraction of the JSON, and one idempotency key a batch.

mod common;

use common::{TestServer, User};
use serde_json::{Value, json};

fn setup() -> (TestServer, User, String) {
    let server = TestServer::start();
    let user = server.user("columns@lab.org");
    let exp = server.experiment(&user, "run", None);
    (server, user, exp)
}

fn send(server: &TestServer, user: &User, exp: &str, body: Value) -> common::Response {
    server.post(
        &format!("/api/experiments/{exp}/points"),
        &user.auth(),
        body,
    )
}

fn read(server: &TestServer, user: &User, exp: &str, what: &str) -> Vec<Value> {
    let r = server.get(&format!("/api/experiments/{exp}/{what}"), &user.auth());
    assert_eq!(r.status, 200, "{}", r.text);
    r.data().as_array().unwrap().clone()
}

#[test]
fn a_training_loop_sends_columns_and_reads_back_points() {
    let (server, user, exp) = setup();
    let r = send(
        &server,
        &user,
        &exp,
        json!({
            "batch_id": "session-1.0",
            "metrics": [
                {"name": "loss", "steps": [0, 1, 2], "values": [0.9, "NaN", 0.5]},
                {"name": "lr", "steps": [0, 1, 2], "values": [0.1, 0.1, "-Infinity"]}
            ],
            "results": [{"name": "test_acc", "value": 0.93}]
        }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.data(), json!({"inserted": 7, "skipped": 0}));

    let metrics = read(&server, &user, &exp, "metrics");
    let got: Vec<(String, i64, Value)> = metrics
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["step"].as_i64().unwrap(),
                p["value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("loss".into(), 0, json!(0.9)),
            ("lr".into(), 0, json!(0.1)),
            ("loss".into(), 1, json!("NaN")),
            ("lr".into(), 1, json!(0.1)),
            ("loss".into(), 2, json!(0.5)),
            ("lr".into(), 2, json!("-Infinity")),
        ]
    );
    assert!(metrics.iter().all(|p| p["msg_id"].is_null()));
    assert!(
        metrics
            .iter()
            .all(|p| p["metadata"] == json!({"type": "metric"}))
    );
    let results = read(&server, &user, &exp, "results");
    assert_eq!(results.len(), 1);
    assert_eq!(
        (results[0]["name"].as_str(), results[0]["value"].as_f64()),
        (Some("test_acc"), Some(0.93))
    );

    // The summary is kept the same way as for logs/batch.
    let summary = server
        .get(&format!("/api/experiments/{exp}/summary"), &user.auth())
        .data();
    let loss = summary["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "loss")
        .unwrap()
        .clone();
    assert_eq!(loss["count"], 3);
    assert_eq!(loss["nonfinite"], 1);
    assert_eq!(loss["last_step"], 2);
}

#[test]
fn a_resent_batch_id_stores_nothing_twice() {
    let (server, user, exp) = setup();
    let body = json!({
        "batch_id": "s.100",
        "metrics": [{"name": "loss", "steps": [0, 1], "values": [1.0, 0.5]}]
    });
    assert_eq!(
        send(&server, &user, &exp, body.clone()).data()["inserted"],
        2
    );
    // The reply was lost; the client sends the same batch again, and then the next one.
    let again = send(&server, &user, &exp, body);
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.data(), json!({"inserted": 0, "skipped": 2}));
    let next = json!({
        "batch_id": "s.102",
        "metrics": [{"name": "loss", "steps": [2], "values": [0.25]}]
    });
    assert_eq!(send(&server, &user, &exp, next).data()["inserted"], 1);
    let steps: Vec<i64> = read(&server, &user, &exp, "metrics")
        .iter()
        .map(|p| p["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, vec![0, 1, 2]);

    // An empty batch stores nothing and leaves its id free for the real one.
    let empty = send(&server, &user, &exp, json!({"batch_id": "s.103"}));
    assert_eq!(empty.data(), json!({"inserted": 0, "skipped": 0}));
    let real =
        json!({"batch_id": "s.103", "metrics": [{"name": "loss", "steps": [3], "values": [0.1]}]});
    assert_eq!(send(&server, &user, &exp, real).data()["inserted"], 1);

    // Batch ids belong to one experiment: another run may use the same id.
    let other = server.experiment(&user, "other run", None);
    let body =
        json!({"batch_id": "s.100", "metrics": [{"name": "loss", "steps": [0], "values": [3]}]});
    assert_eq!(send(&server, &user, &other, body).data()["inserted"], 1);

    // Without a batch id nothing is taken for a resend: the same points twice are two points.
    let plain = json!({"metrics": [{"name": "acc", "steps": [7], "values": [0.5]}]});
    send(&server, &user, &exp, plain.clone());
    send(&server, &user, &exp, plain);
    let acc = read(&server, &user, &exp, "metrics")
        .into_iter()
        .filter(|p| p["name"] == "acc")
        .count();
    assert_eq!(acc, 2);
}

#[test]
fn a_bad_column_rejects_the_whole_batch_and_names_the_spot() {
    let (server, user, exp) = setup();
    let good = json!({"name": "ok", "steps": [0], "values": [1]});
    let cases = [
        (
            json!({"metrics": [good, {"name": "loss", "steps": [0, 1], "values": [1]}]}),
            "metrics[1]: 2 steps but 1 values",
        ),
        (
            json!({"metrics": [good, {"name": "loss", "steps": [0, -3], "values": [1, 2]}]}),
            "metrics[1]: steps[1] must be a non-negative integer",
        ),
        (
            json!({"metrics": [{"name": "  ", "steps": [], "values": []}]}),
            "metrics[0]: the name must not be empty",
        ),
        (
            json!({"metrics": [good], "results": [{"name": "", "value": 1}]}),
            "results[0]: the name must not be empty",
        ),
        (
            json!({"batch_id": "", "metrics": [good]}),
            "batch_id must be 1 to 255",
        ),
        (
            json!({"metrics": [{"name": "x", "steps": [0], "values": ["nope"]}]}),
            "invalid value: string \"nope\", expected a number, or one of the strings",
        ),
        (
            json!({"metrics": [{"name": "x", "steps": [0.5], "values": [1]}]}),
            "invalid type: floating point `0.5`",
        ),
    ];
    for (body, want) in cases {
        let r = send(&server, &user, &exp, body.clone());
        let err = r.expect_error(400);
        assert!(err.contains(want), "{body} -> {err:?}, wanted {want:?}");
    }
    assert!(
        read(&server, &user, &exp, "metrics").is_empty(),
        "nothing stored"
    );

    // Over the per-request limit: in one column (refused while parsing, before the array is
    // built) or over several.
    let n = 100_001;
    let big = json!({"metrics": [{"name": "x", "steps": vec![1; n], "values": vec![0.5; n]}]});
    let err = send(&server, &user, &exp, big).expect_error(400);
    assert!(err.contains("more than 100000"), "{err}");
    let half = 50_001;
    let column =
        |name: &str| json!({"name": name, "steps": vec![1; half], "values": vec![0.5; half]});
    let two = json!({"metrics": [column("a"), column("b")]});
    let err = send(&server, &user, &exp, two).expect_error(400);
    assert!(err.contains("100002 points in one batch"), "{err}");
    // However the arrays are split, one body's arrays hold at most 310,000 values in all: the
    // parse stops there instead of building them (a 2-byte step is an 8-byte integer).
    let fifth = 40_000;
    let column =
        |name: &str| json!({"name": name, "steps": vec![1; fifth], "values": vec![0.5; fifth]});
    let four = json!({"metrics": [column("a"), column("b"), column("c"), column("d")]});
    let err = send(&server, &user, &exp, four).expect_error(400);
    assert!(err.contains("more than 310000 values in one body"), "{err}");
    // That is room for the largest batch with a time for each point (an import).
    let n = 100_000;
    let full = json!({"metrics": [{"name": "x", "steps": (0..n).collect::<Vec<i64>>(), "values": vec![0.5; n as usize], "times": vec![1_700_000_000_000_i64; n as usize]}]});
    let r = send(&server, &user, &exp, full);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.data()["inserted"], 100_000);
}

#[test]
fn only_editors_may_send_points() {
    let (server, owner, exp) = setup();
    let body = json!({"metrics": [{"name": "loss", "steps": [0], "values": [1]}]});
    let stranger = server.user("stranger@lab.org");
    send(&server, &stranger, &exp, body.clone()).expect_error(404);
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &common::Auth::None,
        body.clone(),
    );
    r.expect_error(401);
    assert!(read(&server, &owner, &exp, "metrics").is_empty());
}

#[test]
fn values_can_travel_as_packed_doubles_with_every_bit_kept() {
    use base64::Engine;
    let (server, user, exp) = setup();
    let values = [0.1, -0.0, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE, 1e308];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let r = send(
        &server,
        &user,
        &exp,
        json!({"metrics": [{"name": "loss", "steps": [0, 1, 2, 3, 4, 5], "values_f64": b64}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let got: Vec<Value> = read(&server, &user, &exp, "metrics")
        .iter()
        .map(|p| p["value"].clone())
        .collect();
    assert_eq!(
        got,
        vec![
            json!(0.1),
            json!(0.0),
            json!("NaN"),
            json!("Infinity"),
            json!(f64::MIN_POSITIVE),
            json!(1e308)
        ]
    );
    // -0.0 keeps its sign bit in storage: the CSV export prints it.
    let csv = server.get(&format!("/api/experiments/{exp}/logs/csv"), &user.auth());
    assert!(csv.text.contains("loss,metric,1,-0"), "{}", csv.text);

    let cases = [
        (
            json!({"name": "x", "steps": [0], "values": [1], "values_f64": "AAAAAAAA8D8="}),
            "metrics[0]: give values or values_f64, not both",
        ),
        (
            json!({"name": "x", "steps": [0]}),
            "metrics[0]: values (or values_f64) is required",
        ),
        (
            json!({"name": "x", "steps": [0], "values_f64": "not base64!"}),
            "metrics[0]: values_f64 is not base64",
        ),
        (
            json!({"name": "x", "steps": [0], "values_f64": "AAAA"}),
            "metrics[0]: values_f64 holds 3 bytes, not a whole number of 8-byte doubles",
        ),
        (
            json!({"name": "x", "steps": [0, 1], "values_f64": "AAAAAAAA8D8="}),
            "metrics[0]: 2 steps but 1 values",
        ),
    ];
    for (column, want) in cases {
        let err = send(&server, &user, &exp, json!({"metrics": [column]})).expect_error(400);
        assert!(err.contains(want), "{err:?}, wanted {want:?}");
    }
    assert_eq!(
        read(&server, &user, &exp, "metrics").len(),
        6,
        "nothing more stored"
    );
}

/// The value as `/metrics` shows it: non-finite values are strings.
fn shown(v: f64) -> Value {
    match v {
        v if v.is_nan() => json!("NaN"),
        f64::INFINITY => json!("Infinity"),
        f64::NEG_INFINITY => json!("-Infinity"),
        v => json!(v),
    }
}

#[test]
fn a_run_logged_in_many_batches_reads_back_bit_for_bit() {
    use base64::Engine;
    let (server, user, exp) = setup();
    // Shapes the point codec treats differently: float32-born values, full doubles, repeats,
    // the special values, and a rewind (a resume from a checkpoint).
    let value = |i: usize| -> f64 {
        match i % 50 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => -0.0,
            4 => 5e-324,
            5 => f64::MAX,
            6..=15 => 0.001,
            16..=30 => f64::from((2.5 / (1.0 + i as f64)) as f32),
            _ => 1.0 / (3.0 + i as f64) + (i % 7) as f64 * 1e-9,
        }
    };
    let steps: Vec<i64> = (0..1_000)
        .map(|i| if i < 600 { i } else { i - 250 })
        .collect();
    let values: Vec<f64> = (0..1_000).map(value).collect();
    // Uneven batches, so open blocks are extended again and again.
    let mut at = 0;
    for size in [1, 127, 2, 200, 300, 5, 365] {
        let bytes: Vec<u8> = values[at..at + size]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let r = send(
            &server,
            &user,
            &exp,
            json!({"metrics": [{"name": "loss", "steps": &steps[at..at + size], "values_f64": b64}]}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        at += size;
    }
    assert_eq!(at, 1_000);
    // And points with msg_ids, through the 0.0.12 SDK's format.
    let rows: Vec<Value> = (0..300)
        .map(|i| json!({"msg_id": format!("m-{i}"), "name": "acc", "value": 0.5 + i as f64 / 1024.0, "step": i}))
        .collect();
    let r = server.post(
        &format!("/api/experiments/{exp}/logs/batch"),
        &user.auth(),
        json!({"logs": rows}),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    let got = read(&server, &user, &exp, "metrics");
    let loss: Vec<&Value> = got.iter().filter(|p| p["name"] == "loss").collect();
    assert_eq!(loss.len(), 1_000);
    // By step, then in the order logged; each value with its bits (JSON numbers round-trip
    // doubles exactly).
    let mut order: Vec<usize> = (0..1_000).collect();
    order.sort_by_key(|&i| steps[i]);
    for (p, &i) in loss.iter().zip(&order) {
        assert_eq!(p["step"], json!(steps[i]), "point {i}");
        assert_eq!(p["value"], shown(values[i]), "point {i}");
        if let Some(v) = p["value"].as_f64() {
            assert_eq!(v.to_bits(), values[i].to_bits(), "point {i}: {v}");
        }
    }
    let acc: Vec<&Value> = got.iter().filter(|p| p["name"] == "acc").collect();
    assert_eq!(acc.len(), 300);
    for (i, p) in acc.iter().enumerate() {
        assert_eq!(
            (&p["step"], &p["value"], &p["msg_id"]),
            (
                &json!(i),
                &json!(0.5 + i as f64 / 1024.0),
                &json!(format!("m-{i}"))
            ),
        );
    }
}
