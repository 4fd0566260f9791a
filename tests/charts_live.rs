//! Chart data and live updates over HTTP: downsampled series, comparisons, summaries, and a
//! live stream that resumes after a disconnect with no gap and no duplicate.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::{Auth, Sse, TestServer, User};
use serde_json::{Value, json};

fn log_steps(server: &TestServer, user: &User, exp: &str, name: &str, steps: std::ops::Range<i64>) {
    let logs: Vec<Value> = steps
        .map(|s| json!({"name": name, "value": (s % 97) as f64, "step": s}))
        .collect();
    for chunk in logs.chunks(20_000) {
        let r = server.post(
            &format!("/api/experiments/{exp}/logs/batch"),
            &user.auth(),
            json!({"logs": chunk}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

#[test]
fn a_long_series_comes_back_in_at_most_the_buckets_asked_for() {
    let server = TestServer::start();
    let user = server.user("c@lab.org");
    let exp = server.experiment(&user, "long", None);
    log_steps(&server, &user, &exp, "loss", 0..60_000);
    log_steps(&server, &user, &exp, "acc", 0..500);
    let r = server.post(
        &format!("/api/experiments/{exp}/logs/batch"),
        &user.auth(),
        json!({"logs": [{"name": "loss", "value": "NaN", "step": 60_000}, {"name": "loss", "value": 1e9, "step": 60_001}]}),
    );
    assert_eq!(r.status, 201);

    let r = server.get(
        &format!("/api/experiments/{exp}/series?names=loss,acc&points=300"),
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.data();
    assert_eq!(data["x"], "step");
    let series = data["series"].as_array().unwrap();
    let loss = series.iter().find(|s| s["name"] == "loss").unwrap();
    let acc = series.iter().find(|s| s["name"] == "acc").unwrap();
    assert_eq!(loss["total"], 60_002);
    assert_eq!(loss["raw"], false);
    let buckets = loss["x"].as_array().unwrap().len();
    assert!((250..=300).contains(&buckets), "{buckets} buckets");
    let counts: i64 = loss["count"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_i64().unwrap())
        .sum();
    assert_eq!(counts, 60_002);
    assert_eq!(
        loss["nonfinite"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_i64().unwrap())
            .sum::<i64>(),
        1
    );
    assert!(
        loss["max"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_f64() == Some(1e9)),
        "the spike survives"
    );
    assert_eq!(
        (acc["raw"].as_bool(), acc["total"].as_i64()),
        (Some(false), Some(500))
    );
    assert_eq!(acc["x"].as_array().unwrap().len(), 300);
    let r = server.get(
        &format!("/api/experiments/{exp}/series?names=acc&points=500"),
        &user.auth(),
    );
    assert_eq!(
        r.data()["series"][0]["raw"],
        true,
        "500 points fit in 500 buckets as they are"
    );

    // Zoom: a new request for a narrower range gives finer buckets.
    let r = server.get(
        &format!("/api/experiments/{exp}/series?names=loss&points=1000&from=100&to=599"),
        &user.auth(),
    );
    let zoom = &r.data()["series"][0];
    assert_eq!(zoom["raw"], true);
    assert_eq!(zoom["x"].as_array().unwrap().len(), 500);
    assert_eq!(zoom["x"][0], 100);
    assert_eq!(zoom["last"][0], (100 % 97) as f64);

    let r = server.get(
        &format!("/api/experiments/{exp}/series?x=time&points=10"),
        &user.auth(),
    );
    assert_eq!(r.data()["x"], "time");
    assert!(r.data()["series"][0]["x"][0].as_i64().unwrap() > 1_700_000_000_000);

    server
        .get(
            &format!("/api/experiments/{exp}/series?x=epoch"),
            &user.auth(),
        )
        .expect_error(400);
    server
        .get(
            &format!("/api/experiments/{exp}/series?points=0"),
            &user.auth(),
        )
        .expect_error(400);
    let other = server.user("o@lab.org");
    server
        .get(&format!("/api/experiments/{exp}/series"), &other.auth())
        .expect_error(404);
}

#[test]
fn summaries_and_comparisons_respect_access() {
    let server = TestServer::start();
    let user = server.user("s@lab.org");
    let a = server.experiment(&user, "a", None);
    let b = server.experiment(&user, "b", None);
    log_steps(&server, &user, &a, "loss", 0..1000);
    log_steps(&server, &user, &b, "loss", 0..2000);
    let r = server.post(
        &format!("/api/experiments/{a}/logs/batch"),
        &user.auth(),
        json!({"logs": [{"name": "acc", "value": 0.5}, {"name": "acc", "value": "NaN"}, {"name": "f1", "value": 0.7}]}),
    );
    assert_eq!(r.status, 201);

    let summary = server
        .get(&format!("/api/experiments/{a}/summary"), &user.auth())
        .data();
    let loss = &summary["metrics"][0];
    assert_eq!(loss["name"], "loss");
    assert_eq!(loss["count"], 1000);
    assert_eq!(
        (loss["first_step"].as_i64(), loss["last_step"].as_i64()),
        (Some(0), Some(999))
    );
    assert_eq!(loss["last"], (999 % 97) as f64);
    assert_eq!(
        (loss["min"].as_f64(), loss["max"].as_f64()),
        (Some(0.0), Some(96.0))
    );
    let results = summary["results"].as_array().unwrap();
    assert_eq!(results[0]["name"], "acc");
    assert_eq!(results[0]["value"], "NaN", "the latest result value");
    assert_eq!(results[1]["value"], 0.7);

    let outsider = server.user("x@lab.org");
    let hidden = server.experiment(&outsider, "hidden", None);
    log_steps(&server, &outsider, &hidden, "loss", 0..10);
    let r = server.get(
        &format!("/api/series?experiments={a},{hidden},{b}&names=loss&points=50"),
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let runs = r.data();
    let ids: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["experiment_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![a.as_str(), b.as_str()],
        "the hidden run is left out"
    );
    assert_eq!(runs[1]["series"][0]["total"], 2000);
    server
        .get("/api/series?names=loss", &user.auth())
        .expect_error(400);
    server
        .get(&format!("/api/experiments/{hidden}/summary"), &user.auth())
        .expect_error(404);
}

/// Opens a stream over HTTP/1.1 (chunked), as a browser's EventSource does.
fn open_sse(server: &TestServer, path: &str, last_event_id: Option<i64>) -> Sse {
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{resume}\r\n",
        server.addr
    )
    .unwrap();
    Sse::from(stream)
}

/// The next event, with its data parsed.
fn next_event(sse: &mut Sse) -> (String, Option<i64>, Value) {
    let (event, id, data) = sse.next().expect("stream closed");
    (event, id, serde_json::from_str(&data).unwrap())
}

#[test]
fn a_stream_resumes_after_a_disconnect_with_no_gap_and_no_duplicate() {
    let server = TestServer::start();
    let user = server.user("live@lab.org");
    let exp = server.experiment(&user, "live", None);
    log_steps(&server, &user, &exp, "loss", 0..100);

    let token = server
        .post(
            &format!("/api/experiments/{exp}/logs/stream-token"),
            &user.auth(),
            json!({}),
        )
        .data();
    let token = token["token"].as_str().unwrap().to_string();
    let path = format!("/api/experiments/{exp}/stream?token={token}");
    let mut live = open_sse(&server, &path, None);
    let (event, _, hello) = next_event(&mut live);
    assert_eq!(
        (event.as_str(), hello["cursor"].as_i64()),
        ("hello", Some(100))
    );

    log_steps(&server, &user, &exp, "loss", 100..130);
    log_steps(&server, &user, &exp, "acc", 0..20);
    let first = live.ids(50);
    assert_eq!(first, (101..=150).collect::<Vec<_>>());
    drop(live); // the connection breaks

    log_steps(&server, &user, &exp, "loss", 130..200);
    let r = server.post(
        &format!("/api/experiments/{exp}/logs/batch"),
        &user.auth(),
        json!({"logs": [{"name": "best", "value": 1}]}),
    );
    assert_eq!(r.status, 201);

    // EventSource reconnects with its last event id; a fresh token, since tokens are short-lived.
    let token = server
        .post(
            &format!("/api/experiments/{exp}/logs/stream-token"),
            &user.auth(),
            json!({}),
        )
        .data();
    let path = format!(
        "/api/experiments/{exp}/stream?token={}",
        token["token"].as_str().unwrap()
    );
    let mut again = open_sse(&server, &path, Some(150));
    let missed = again.ids(71);
    assert_eq!(
        missed,
        (151..=221).collect::<Vec<_>>(),
        "exactly the missed points, in order"
    );
    log_steps(&server, &user, &exp, "loss", 200..210);
    assert_eq!(again.ids(10), (222..=231).collect::<Vec<_>>());
}

#[test]
fn streams_need_access_to_the_experiment() {
    let server = TestServer::start();
    let user = server.user("a@lab.org");
    let other = server.user("b@lab.org");
    let exp = server.experiment(&user, "mine", None);
    let theirs = server.experiment(&other, "theirs", None);
    server
        .get(&format!("/api/experiments/{exp}/stream"), &Auth::None)
        .expect_error(401);
    server
        .post(
            &format!("/api/experiments/{exp}/logs/stream-token"),
            &other.auth(),
            json!({}),
        )
        .expect_error(404);
    let token = server
        .post(
            &format!("/api/experiments/{exp}/logs/stream-token"),
            &user.auth(),
            json!({}),
        )
        .data();
    let token = token["token"].as_str().unwrap();
    // A token opens its own experiment only, and is no access token.
    server
        .get(
            &format!("/api/experiments/{theirs}/stream?token={token}"),
            &Auth::None,
        )
        .expect_error(401);
    server
        .get("/api/workspaces", &Auth::Bearer(token.to_string()))
        .expect_error(401);
}
