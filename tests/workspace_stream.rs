//! A run table stays current without polling: one stream per workspace tells its watchers when a
//! run is created, changed, gets new values, moves out or is deleted. Members may watch,
//! outsiders get 404, and a watcher that never reads is dropped instead of held in memory.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Auth, Sse, TestServer, User};
use serde_json::{Value, json};

/// Opens a stream as EventSource does (a token from `token_path` in the URL of `stream_path`),
/// without reading it.
fn open(server: &TestServer, user: &User, token_path: &str, stream_path: &str) -> TcpStream {
    let r = server.post(token_path, &user.auth(), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.data()["token"].as_str().unwrap().to_string();
    let mut s = TcpStream::connect(&server.addr).unwrap();
    write!(
        s,
        "GET {stream_path}?token={token} HTTP/1.0\r\nHost: {}\r\n\r\n",
        server.addr
    )
    .unwrap();
    s
}

/// Opens `ws`'s stream, without reading it.
fn connect(server: &TestServer, user: &User, ws: &str) -> TcpStream {
    let (token, stream) = (
        format!("/api/workspaces/{ws}/stream-token"),
        format!("/api/workspaces/{ws}/stream"),
    );
    open(server, user, &token, &stream)
}

/// Watches `ws` as `user`: the stream opens with `hello`.
fn watch(server: &TestServer, user: &User, ws: &str) -> Sse {
    let mut sse = Sse::from(connect(server, user, ws));
    let (event, _, data) = sse.next().expect("hello");
    assert_eq!((event.as_str(), data.as_str()), ("hello", "{}"));
    sse
}

/// The next event as (name, data as JSON).
fn next(sse: &mut Sse) -> (String, Value) {
    let (event, _, data) = sse.next().expect("an event, not the end of the stream");
    (event, serde_json::from_str(&data).unwrap())
}

/// A lab workspace: an owner, and a viewer who watches it.
fn lab(server: &TestServer) -> (User, User, String) {
    let owner = server.user("owner@lab.org");
    let viewer = server.user("viewer@lab.org");
    let ws = server.workspace(&owner, "lab");
    server.add_member(&ws, &viewer, 3);
    (owner, viewer, ws)
}

#[test]
fn a_viewer_sees_a_run_arrive_progress_change_and_go_without_polling() {
    let server = TestServer::start();
    let (owner, viewer, ws) = lab(&server);
    let mut sse = watch(&server, &viewer, &ws);

    // A training script starts a run: the table gets its row.
    let exp = server.experiment(&owner, "resnet-1", Some(&ws));
    let (event, run) = next(&mut sse);
    assert_eq!(event, "run");
    assert_eq!(run["id"], exp.as_str());
    assert_eq!(run["name"], "resnet-1");
    assert_eq!(run["workspace_id"], ws.as_str());
    assert_eq!(run["state"], "running");
    assert!(run.get("summary").is_none(), "{run}");

    // Points arrive: the first batch's last values come at once.
    let posted = Instant::now();
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &owner.auth(),
        json!({"metrics": [{"name": "loss", "steps": [0, 1, 2], "values": [0.9, 0.5, 0.25]}],
               "results": [{"name": "best", "value": "NaN"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let (event, progress) = next(&mut sse);
    let first_at = Instant::now();
    assert_eq!(event, "progress");
    assert!(
        first_at - posted < Duration::from_millis(900),
        "not held back"
    );
    assert_eq!(progress["id"], exp.as_str());
    assert_eq!(
        progress["metrics"]["loss"],
        json!({"step": 2, "value": 0.25})
    );
    assert_eq!(progress["results"]["best"], Value::Null, "NaN is null");
    assert!(progress["active_at"].as_str().unwrap().ends_with('Z'));

    // The published 0.0.12 SDK's paths, three batches within the same second: they come as
    // one progress event a second after the last, carrying the latest of each series.
    for body in [
        json!({"logs": [{"msg_id": "a", "name": "loss", "value": 0.2, "step": 3},
                        {"msg_id": "b", "name": "acc", "value": 0.7, "step": 3}]}),
        json!({"logs": [{"msg_id": "c", "name": "loss", "value": 0.1, "step": 4}]}),
    ] {
        let r = server.post(
            &format!("/api/experiments/{exp}/logs/batch"),
            &owner.auth(),
            body,
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = server.post(
        &format!("/api/experiments/{exp}/logs"),
        &owner.auth(),
        json!({"msg_id": "d", "name": "best", "value": 0.1}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let (event, progress) = next(&mut sse);
    let second_at = Instant::now();
    assert_eq!(event, "progress");
    assert!(
        second_at - first_at >= Duration::from_millis(900),
        "at most one progress a second: {:?} apart",
        second_at - first_at
    );
    assert_eq!(
        progress["metrics"]["loss"],
        json!({"step": 4, "value": 0.1})
    );
    assert_eq!(progress["metrics"]["acc"], json!({"step": 3, "value": 0.7}));
    assert_eq!(progress["results"]["best"], 0.1);

    // The script ends it, then resumes it: its state changes in the table both times. A
    // heartbeat that changes nothing (it is running) is no news.
    let r = server.post(
        &format!("/api/experiments/{exp}/finish"),
        &owner.auth(),
        json!({"state": "failed"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (event, run) = next(&mut sse);
    assert_eq!((event.as_str(), &run["state"]), ("run", &json!("failed")));
    for _ in 0..2 {
        let r = server.post(
            &format!("/api/experiments/{exp}/heartbeat"),
            &owner.auth(),
            json!({}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let (event, run) = next(&mut sse);
    assert_eq!((event.as_str(), &run["state"]), ("run", &json!("running")));

    // Someone edits it: the row changes.
    let r = server.call(
        "PUT",
        &format!("/api/experiments/{exp}"),
        &owner.auth(),
        Some(&json!({"description": "warmup 5", "tags": ["baseline"]})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (event, run) = next(&mut sse);
    assert_eq!(event, "run");
    assert_eq!(
        (&run["description"], &run["tags"]),
        (&json!("warmup 5"), &json!(["baseline"]))
    );

    // Moved to another workspace, it leaves this table; moved back, it comes back.
    let elsewhere = server.workspace(&owner, "archive");
    for (to, expected) in [(&elsewhere, "deleted"), (&ws, "run")] {
        let r = server.post(
            "/api/experiments/bulk",
            &owner.auth(),
            json!({"ids": [exp], "action": "move", "workspace_id": to}),
        );
        assert_eq!(r.data(), json!({"changed": 1}), "{}", r.text);
        let (event, data) = next(&mut sse);
        assert_eq!((event.as_str(), &data["id"]), (expected, &json!(exp)));
    }

    // It is deleted: the row goes.
    let r = server.call(
        "DELETE",
        &format!("/api/experiments/{exp}"),
        &owner.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(next(&mut sse), ("deleted".to_string(), json!({"id": exp})));

    // A run in another workspace of the owner is none of this stream's business.
    let elsewhere = server.experiment(&owner, "private", None);
    let here = server.experiment(&owner, "resnet-2", Some(&ws));
    let (event, run) = next(&mut sse);
    assert_eq!((event.as_str(), &run["id"]), ("run", &json!(here)));
    assert_ne!(here, elsewhere);
}

#[test]
fn only_members_may_watch_and_a_token_opens_only_its_workspace() {
    let server = TestServer::start();
    let (owner, viewer, ws) = lab(&server);
    let outsider = server.user("outsider@lab.org");
    server.experiment(&owner, "secret-run", Some(&ws));

    let r = server.post(
        &format!("/api/workspaces/{ws}/stream-token"),
        &outsider.auth(),
        json!({}),
    );
    r.expect_error(404);
    assert!(!r.text.contains("lab"), "{}", r.text);
    let r = server.get(&format!("/api/workspaces/{ws}/stream"), &outsider.auth());
    r.expect_error(404);
    server
        .get(&format!("/api/workspaces/{ws}/stream"), &Auth::None)
        .expect_error(401);

    // A viewer's token for this workspace does not open another, nor an experiment stream.
    let other = server.workspace(&owner, "other");
    server.add_member(&other, &viewer, 3);
    let r = server.post(
        &format!("/api/workspaces/{ws}/stream-token"),
        &viewer.auth(),
        json!({}),
    );
    let token = r.data()["token"].as_str().unwrap().to_string();
    assert!(r.data()["expires_at"].as_i64().is_some());
    server
        .get(
            &format!("/api/workspaces/{other}/stream?token={token}"),
            &Auth::None,
        )
        .expect_error(401);
    let exp = server.experiment(&owner, "run", Some(&ws));
    server
        .get(
            &format!("/api/experiments/{exp}/stream?token={token}"),
            &Auth::None,
        )
        .expect_error(401);

    // Removed from the workspace, a viewer's open stream ends.
    let mut sse = watch(&server, &viewer, &ws);
    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}/members/{}", viewer.id),
        &owner.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    server.experiment(&owner, "after-removal", Some(&ws));
    assert!(sse.next().is_none(), "the stream ended");

    // A deleted workspace's streams end; reconnecting finds it gone.
    let mut sse = watch(&server, &owner, &ws);
    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}"),
        &owner.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(sse.next().is_none(), "the stream ended");
    server
        .post(
            &format!("/api/workspaces/{ws}/stream-token"),
            &owner.auth(),
            json!({}),
        )
        .expect_error(404);
}

#[test]
fn a_watcher_that_never_reads_is_dropped_and_grows_no_memory() {
    let mut server = TestServer::start();
    let (owner, viewer, ws) = lab(&server);
    let exp = server.experiment(&owner, "big", Some(&ws));
    let stalled = connect(&server, &viewer, &ws);
    // Each change carries 1 MB of hyperparameters: 40 of them are 40 MB of `run` events (twice
    // that held as runs and their JSON), were they queued for a client that takes none.
    let hyperparams: Vec<Value> = (0..100)
        .map(|i| json!({"key": format!("k{i}"), "value": "x".repeat(10_000)}))
        .collect();
    let update = |server: &TestServer, n: usize| {
        let r = server.call(
            "PUT",
            &format!("/api/experiments/{exp}"),
            &owner.auth(),
            Some(&json!({"name": format!("big-{n}"), "hyperparams": hyperparams})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    };
    for n in 0..5 {
        update(&server, n);
    }
    let before = server.rss_kib();
    let peak = common::PeakRss::watch(&server);
    for n in 5..45 {
        update(&server, n);
    }
    let grown = peak.stop().saturating_sub(before);
    println!("a stalled workspace stream while 40 MB of changes went out: RSS +{grown} KiB");
    assert!(grown < 16 * 1024, "RSS grew by {grown} KiB");
    server.assert_serves_within(Duration::from_secs(2));

    // Its client finally reads: what was queued, then the end (it was dropped, and would
    // reconnect and fetch the table again).
    let mut sse = Sse::from(stalled);
    assert_eq!(sse.next().unwrap().0, "hello");
    let mut runs = 0;
    while let Some((event, _, _)) = sse.next() {
        assert_eq!(event, "run");
        runs += 1;
    }
    assert!(runs < 40, "{runs} of 40 changes were kept for it");

    // Reconnecting works as before, and the others' streams were never affected.
    let mut again = watch(&server, &viewer, &ws);
    update(&server, 99);
    let (event, run) = next(&mut again);
    assert_eq!((event.as_str(), &run["name"]), ("run", &json!("big-99")));
}

/// Opens `exp`'s point stream: the hello comes first.
fn watch_points(server: &TestServer, user: &User, exp: &str) -> Sse {
    let (token, stream) = (
        format!("/api/experiments/{exp}/logs/stream-token"),
        format!("/api/experiments/{exp}/stream"),
    );
    let mut sse = Sse::from(open(server, user, &token, &stream));
    assert_eq!(sse.next().expect("hello").0, "hello");
    sse
}

#[test]
fn a_disabled_or_removed_member_stops_seeing_what_their_open_streams_watched() {
    let server = TestServer::start();
    let (owner, viewer, ws) = lab(&server);
    let editor = server.user("editor@lab.org");
    server.add_member(&ws, &editor, 2);
    let exp = server.experiment(&owner, "resnet-1", Some(&ws));
    let mut viewer_points = watch_points(&server, &viewer, &exp);
    let mut viewer_runs = watch(&server, &viewer, &ws);
    let mut editor_points = watch_points(&server, &editor, &exp);

    // The admin disables the viewer from another process, and the owner removes the editor.
    let (ok, _, err) = server.admin(&["user", "disable", "viewer@lab.org"], None);
    assert!(ok, "{err}");
    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}/members/{}", editor.id),
        &owner.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);

    // Once the streams' trust has run out, the next points reach neither of them: each stream
    // ends instead (their clients' reconnects then meet a 401 and a 404).
    std::thread::sleep(Duration::from_millis(5_500)); // api::stream::RECHECK (5 s), and a margin
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &owner.auth(),
        json!({"metrics": [{"name": "loss", "steps": [0], "values": [0.5]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        viewer_points.next(),
        None,
        "a disabled user's point stream ends"
    );
    assert_eq!(
        viewer_runs.next(),
        None,
        "a disabled user's run stream ends"
    );
    assert_eq!(
        editor_points.next(),
        None,
        "a removed member's point stream ends"
    );

    // A member in good standing keeps watching the same run.
    let mut owner_points = watch_points(&server, &owner, &exp);
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &owner.auth(),
        json!({"metrics": [{"name": "loss", "steps": [1], "values": [0.25]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(owner_points.next().expect("the new point").0, "logs");
}
