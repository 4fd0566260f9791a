//! `POST /api/experiments/batch` with `summary: true`: what the compare page reads in one
//! request instead of a `/summary` per run. Each run's summary is checked against its own
//! `/summary` (the brute-force answer); hidden runs stay out; the bounds answer 400.

mod common;

use common::TestServer;
use serde_json::{Value, json};

#[test]
fn batch_with_summary_matches_each_runs_summary() {
    let server = TestServer::start();
    let owner = server.user("o@lab.org");
    let outsider = server.user("x@lab.org");
    let ws = server.workspace(&owner, "lab");
    let mut ids = Vec::new();
    for r in 0..5 {
        let exp = server.experiment(&owner, &format!("run-{r}"), Some(&ws));
        let mut logs: Vec<Value> = (0..(10 + r))
            .map(|s| json!({"name": "loss", "value": 1.0 / (s + 1) as f64, "step": s}))
            .collect();
        if r % 2 == 0 {
            logs.push(json!({"name": "even/only", "value": "NaN", "step": 3}));
        }
        logs.push(json!({"name": "accuracy", "value": 0.5 + r as f64 / 10.0}));
        server
            .post(
                &format!("/api/experiments/{exp}/logs/batch"),
                &owner.auth(),
                json!({ "logs": logs }),
            )
            .data();
        ids.push(exp);
    }
    let hidden_ws = server.workspace(&outsider, "theirs");
    let hidden = server.experiment(&outsider, "hidden", Some(&hidden_ws));
    let mut asked = ids.clone();
    asked.push(hidden);

    let without = server.post(
        "/api/experiments/batch",
        &owner.auth(),
        json!({ "ids": asked }),
    );
    assert!(
        without.data()[0].get("summary").is_none(),
        "no summary unless asked"
    );

    let batch = server
        .post(
            "/api/experiments/batch",
            &owner.auth(),
            json!({ "ids": asked, "summary": true }),
        )
        .data();
    let runs = batch.as_array().expect("a list");
    assert_eq!(runs.len(), ids.len(), "the hidden run is left out");
    for run in runs {
        let id = run["id"].as_str().expect("id");
        let one = server
            .get(&format!("/api/experiments/{id}/summary"), &owner.auth())
            .data();
        let s = &run["summary"];
        let metrics = one["metrics"].as_array().expect("metrics");
        assert_eq!(s["metrics"].as_object().expect("map").len(), metrics.len());
        for m in metrics {
            let got = &s["metrics"][m["name"].as_str().expect("name")];
            for k in ["last", "min", "max", "count", "last_step"] {
                assert_eq!(got[k], m[k], "{id} {} {k}", m["name"]);
            }
        }
        let results = one["results"].as_array().expect("results");
        assert_eq!(s["results"].as_object().expect("map").len(), results.len());
        for r in results {
            assert_eq!(s["results"][r["name"].as_str().expect("name")], r["value"]);
        }
    }
}

#[test]
fn batch_with_summary_is_bounded() {
    let server = TestServer::start();
    let owner = server.user("o@lab.org");
    let ids: Vec<String> = (0..201).map(|_| uuid_like()).collect();
    server
        .call(
            "POST",
            "/api/experiments/batch",
            &owner.auth(),
            Some(&json!({ "ids": ids, "summary": true })),
        )
        .expect_error(400);
    // Without summaries the same ids are fine (up to 1,000).
    server
        .post(
            "/api/experiments/batch",
            &owner.auth(),
            json!({ "ids": ids }),
        )
        .data();
}

/// Distinct well-formed ids no run has.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "00000000-0000-4000-8000-{:012x}",
        N.fetch_add(1, Ordering::Relaxed)
    )
}
