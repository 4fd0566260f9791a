//! Attacks on a shared server's memory and availability, over real sockets: each asserts that
//! the process stays up, still serves a normal client promptly, and keeps its resident memory
//! under a stated bound.

mod common;

use std::time::Duration;

use common::{TestServer, User};
use serde_json::{Value, json};

/// How long a normal client may wait for `/api/health` while an attack runs or just ran.
const SERVED_WITHIN: Duration = Duration::from_secs(2);

/// Stores `metrics` metric series of `steps` points each in one columnar batch.
fn store_metrics(server: &TestServer, user: &User, exp: &str, metrics: usize, steps: usize) {
    let steps_list: Vec<usize> = (0..steps).collect();
    let values: Vec<f64> = (0..steps).map(|s| (s % 97) as f64 / 7.0).collect();
    let batch: Vec<Value> = (0..metrics)
        .map(|m| json!({"name": format!("metric_{m:05}"), "steps": steps_list, "values": values}))
        .collect();
    for chunk in batch.chunks((100_000 / steps).max(1)) {
        let r = server.post(
            &format!("/api/experiments/{exp}/points"),
            &user.auth(),
            json!({ "metrics": chunk }),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
}

#[test]
fn a_run_listed_200_times_is_answered_once() {
    let mut server = TestServer::start();
    let user = server.user("dup@lab.org");
    let exp = server.experiment(&user, "busy run", None);
    store_metrics(&server, &user, &exp, 20, 10_000);
    let idle = server.rss_kib();

    let ids = vec![exp.as_str(); 200].join(",");
    let r = server.get(
        &format!("/api/series?experiments={ids}&points=1000"),
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(300)]);
    let runs = r.data();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "the run comes back once");
    assert_eq!(runs[0]["experiment_id"], exp.as_str());
    assert_eq!(runs[0]["series"].as_array().unwrap().len(), 20);
    // A name listed twice is answered once too.
    let r = server.get(
        &format!("/api/series?experiments={exp},{exp}&names=metric_00001,metric_00001"),
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()[0]["series"].as_array().unwrap().len(), 1);

    // Answered 200 times over, this was 4,000,000 buckets: hundreds of MiB of JSON.
    let grown = server.rss_kib().saturating_sub(idle);
    eprintln!("series x200: idle {idle} KiB, grown {grown} KiB");
    assert!(grown < 64 << 10, "RSS grew by {grown} KiB");
    assert!(server.alive());
    server.assert_serves_within(SERVED_WITHIN);
}

#[test]
fn a_request_over_the_bucket_cap_is_refused_with_what_to_ask_instead() {
    let mut server = TestServer::start();
    let user = server.user("cap@lab.org");
    let a = server.experiment(&user, "wide a", None);
    let b = server.experiment(&user, "wide b", None);
    // Runs with many metrics and no names=: 300 series × 1000 points is over 250,000.
    store_metrics(&server, &user, &a, 300, 2);
    store_metrics(&server, &user, &b, 300, 2);

    let message = server
        .get(&format!("/api/experiments/{a}/series"), &user.auth())
        .expect_error(400);
    assert!(message.contains("250000"), "{message}");
    assert!(message.contains("points=833"), "{message}");
    let r = server.get(
        &format!("/api/experiments/{a}/series?points=833"),
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(300)]);
    assert_eq!(r.data()["series"].as_array().unwrap().len(), 300);

    let message = server
        .get(
            &format!("/api/series?experiments={a},{b}&points=500"),
            &user.auth(),
        )
        .expect_error(400);
    assert!(message.contains("250000"), "{message}");
    assert!(message.contains("names="), "{message}");
    let r = server.get(
        &format!("/api/series?experiments={a},{b}&names=metric_00007&points=10000"),
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(server.alive());
    server.assert_serves_within(SERVED_WITHIN);
}
