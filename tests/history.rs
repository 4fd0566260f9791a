//! Bringing a run's history: a run imported from another tracker keeps when it began and when
//! each point was taken; a run resumed from a checkpoint is running again, and the steps it
//! logs a second time are all kept, while its chart shows each step once with the newer value.

mod common;

use common::*;
use serde_json::{Value, json};

/// 2023-11-14T22:13:20Z: a run from long before the server was installed.
const THEN: i64 = 1_700_000_000_000;
const DAY: i64 = 24 * 3600 * 1000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn points(server: &TestServer, user: &User, id: &str, body: Value) -> Response {
    server.post(&format!("/api/experiments/{id}/points"), &user.auth(), body)
}

fn chart(server: &TestServer, user: &User, id: &str, query: &str) -> Value {
    let r = server.get(
        &format!("/api/experiments/{id}/series?names=loss&{query}"),
        &user.auth(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    r.data()["series"][0].clone()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn an_imported_run_keeps_when_it_began_and_when_each_point_was_taken() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let r = server.post(
        "/api/experiments",
        &alice.auth(),
        json!({"name": "imported", "created_at": THEN, "group": "from-mlflow"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let run = r.data();
    assert_eq!(run["created_at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(run["started_at"], run["created_at"]);
    let id = run["id"].as_str().unwrap().to_string();

    // A point a minute for ten minutes; one stamped before the run began counts from its start.
    let steps: Vec<i64> = (0..10).collect();
    let mut times: Vec<i64> = steps.iter().map(|s| THEN + 60_000 * s).collect();
    times[0] = THEN - 5_000;
    let r = points(
        &server,
        &alice,
        &id,
        json!({
            "metrics": [{"name": "loss", "steps": steps, "values": [9, 8, 7, 6, 5, 4, 3, 2, 1, 0], "times": times}],
            "results": [{"name": "acc", "value": 0.9, "time": THEN + 600_000}, {"name": "f1", "value": 0.8}],
        }),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let by_time = chart(&server, &alice, &id, "x=time");
    let mut expected = times.clone();
    expected[0] = THEN;
    assert_eq!(
        by_time["x"],
        json!(expected),
        "the chart's time axis is when they were taken"
    );
    let logs = server
        .get(&format!("/api/experiments/{id}/logs"), &alice.auth())
        .data();
    let stamps: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["created_at"].as_str().unwrap())
        .collect();
    assert_eq!(stamps[1], "2023-11-14T22:14:20.000Z");
    assert_eq!(stamps[10], "2023-11-14T22:23:20.000Z", "the result's time");
    assert!(
        stamps[11] > "2025",
        "without a time: when it arrived ({})",
        stamps[11]
    );

    // Bounds: a start before 1970 or more than a day ahead, times that do not pair with the
    // steps, or a negative time: a 400 naming the spot, and nothing stored.
    let now = now_ms();
    let r = server.post(
        "/api/experiments",
        &alice.auth(),
        json!({"name": "soon", "created_at": now + DAY - 60_000}),
    );
    assert_eq!(r.status, 201, "clocks differ: up to a day ahead is fine");
    for created_at in [json!(-1), json!(now + DAY + 60_000)] {
        let r = server.post(
            "/api/experiments",
            &alice.auth(),
            json!({"name": "bad", "created_at": created_at}),
        );
        let msg = r.expect_error(400);
        assert!(
            msg.contains("created_at must be ms since the unix epoch"),
            "{msg}"
        );
    }
    for (body, says) in [
        (
            json!({"metrics": [{"name": "loss", "steps": [10, 11], "values": [1, 2], "times": [THEN]}]}),
            "metrics[0]: 2 steps but 1 times",
        ),
        (
            json!({"metrics": [{"name": "loss", "steps": [10], "values": [1], "times": [-1]}]}),
            "metrics[0]: times[0] must be ms since the unix epoch",
        ),
        (
            json!({"results": [{"name": "acc", "value": 1, "time": -5}]}),
            "results[0]: time must be ms since the unix epoch",
        ),
        (
            json!({"metrics": [{"name": "loss", "steps": [10], "values": [1], "times": ["soon"]}]}),
            "invalid type",
        ),
    ] {
        let msg = points(&server, &alice, &id, body.clone()).expect_error(400);
        assert!(msg.contains(says), "{body}: {msg}");
    }
    assert_eq!(chart(&server, &alice, &id, "")["total"], 10);

    // It ended when it ended there, not when it was imported: its duration is its own.
    let finish = |body: Value| {
        server.post(
            &format!("/api/experiments/{id}/finish"),
            &alice.auth(),
            body,
        )
    };
    let msg = finish(json!({"state": "finished", "ended_at": THEN - 1})).expect_error(400);
    assert!(
        msg.contains("ended_at must be ms since the unix epoch"),
        "{msg}"
    );
    let msg = finish(json!({"state": "finished", "ended_at": now + 2 * DAY})).expect_error(400);
    assert!(msg.contains("a day past now"), "{msg}");
    let r = finish(json!({"state": "finished", "ended_at": THEN + 600_000}));
    assert_eq!(r.status, 200, "{}", r.text);
    let done = r.data();
    assert_eq!(
        (&done["state"], &done["ended_at"], &done["duration_s"]),
        (
            &json!("finished"),
            &json!("2023-11-14T22:23:20.000Z"),
            &json!(600.0)
        )
    );

    // A client clock a little ahead of the server's is believed; three days ahead is held to a
    // day past now.
    let now = now_ms();
    let r = points(
        &server,
        &alice,
        &id,
        json!({"metrics": [{"name": "loss", "steps": [10, 11], "values": [0, 0], "times": [now + 10_000, now + 3 * DAY]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let x = numbers(&chart(&server, &alice, &id, "x=time")["x"]);
    assert_eq!(x[10], (now + 10_000) as f64);
    let held = x[11] as i64;
    assert!(
        held > now + DAY - 60_000 && held <= now_ms() + DAY,
        "{held} vs {now}"
    );
}

#[test]
fn a_finished_run_that_is_resumed_runs_again_until_it_finishes_again() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let id = server.experiment(&alice, "resnet", None);
    let state = |id: &str| {
        server
            .get(&format!("/api/experiments/{id}"), &alice.auth())
            .data()["state"]
            .clone()
    };
    let finish = |id: &str| {
        let r = server.post(
            &format!("/api/experiments/{id}/finish"),
            &alice.auth(),
            json!({"state": "finished"}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        r.data()
    };
    let first = finish(&id);
    assert_eq!(first["state"], "finished");

    // Resumed from its last checkpoint: the client's heartbeat makes it running again.
    let r = server.call(
        "POST",
        &format!("/api/experiments/{id}/heartbeat"),
        &alice.auth(),
        None,
    );
    assert_eq!(r.data()["state"], "running");
    assert_eq!(state(&id), "running");
    std::thread::sleep(std::time::Duration::from_millis(5));

    // And ends again, later than the first time.
    let second = finish(&id);
    assert_eq!(second["state"], "finished");
    assert!(
        second["ended_at"].as_str() > first["ended_at"].as_str(),
        "{first} then {second}"
    );
    assert_eq!(state(&id), "finished");
}

#[test]
fn steps_logged_again_after_a_resume_are_all_kept_and_charted_once_with_the_newer_value() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let id = server.experiment(&alice, "resumed", None);
    let first: Vec<f64> = (0..100).map(|s| 100.0 - s as f64).collect();
    let r = points(
        &server,
        &alice,
        &id,
        json!({"metrics": [{"name": "loss", "steps": (0..100).collect::<Vec<i64>>(), "values": first}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    // Resumed from the checkpoint of step 50: steps 50..=80 again, lower this time.
    let again: Vec<f64> = (50..81).map(|s| -(s as f64)).collect();
    let r = points(
        &server,
        &alice,
        &id,
        json!({"metrics": [{"name": "loss", "steps": (50..81).collect::<Vec<i64>>(), "values": again}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.data()["inserted"], 31, "none taken for a resend");

    // The chart at full resolution: one point per step, the newer value on the line, the
    // band spanning both.
    let c = chart(&server, &alice, &id, "points=1000");
    assert_eq!(c["total"], 131);
    assert_eq!(
        c["x"],
        json!((0..100).collect::<Vec<i64>>()),
        "each step once"
    );
    let line = numbers(&c["last"]);
    let expected: Vec<f64> = (0..100)
        .map(|s| {
            if (50..=80).contains(&s) {
                -(s as f64)
            } else {
                100.0 - s as f64
            }
        })
        .collect();
    assert_eq!(line, expected);
    assert_eq!(
        (c["min"][60].clone(), c["max"][60].clone()),
        (json!(-60.0), json!(40.0))
    );
    assert_eq!(c["count"][60], 2);
    assert_eq!(c["count"][90], 1);

    // Every point is kept: /logs in the order logged, /metrics by step (the newer after the
    // older within a step).
    let logs = server
        .get(&format!("/api/experiments/{id}/logs"), &alice.auth())
        .data();
    let logs = logs.as_array().unwrap();
    assert_eq!(logs.len(), 131);
    let logged: Vec<(i64, f64)> = logs
        .iter()
        .map(|l| (l["step"].as_i64().unwrap(), l["value"].as_f64().unwrap()))
        .collect();
    let sent: Vec<(i64, f64)> = (0..100)
        .map(|s| (s, 100.0 - s as f64))
        .chain((50..81).map(|s| (s, -(s as f64))))
        .collect();
    assert_eq!(logged, sent);
    let metrics = server
        .get(&format!("/api/experiments/{id}/metrics"), &alice.auth())
        .data();
    let metrics = metrics.as_array().unwrap();
    assert_eq!(metrics.len(), 131);
    let at_60: Vec<f64> = metrics
        .iter()
        .filter(|l| l["step"] == 60)
        .map(|l| l["value"].as_f64().unwrap())
        .collect();
    assert_eq!(at_60, [40.0, -60.0]);
    // The run's summary counts every point; its last value is the one at the highest step.
    let summary = server
        .get(&format!("/api/experiments/{id}/summary"), &alice.auth())
        .data();
    let loss = &summary["metrics"][0];
    assert_eq!(
        (&loss["count"], &loss["last"], &loss["min"], &loss["max"]),
        (&json!(131), &json!(1.0), &json!(-80.0), &json!(100.0))
    );
}
