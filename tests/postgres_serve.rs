//! `tora serve --db postgres://...`: a user's story on a real PostgreSQL (tests/postgres/cluster.sh,
//! one cluster for this test binary, a database per test), a restart, two servers on one
//! database, and what only a SQLite file can do refused with a clear message.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use common::pg::database;
use common::{Auth, BIN, Sse, TempDir, TestServer, User};
use serde_json::{Value, json};

const EDITOR: i64 = 2;

fn server_on(url: &str) -> TestServer {
    TestServer::start_on(Path::new(url), &[])
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ok(r: common::Response, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", r.text);
    r.data()
}

/// Opens a live stream on `server` as `user`: a token from POST `token`, then GET `path` with it
/// over HTTP/`version` (1.1 as a browser's EventSource; 1.0 so that the stream's end closes
/// the connection).
fn sse(server: &TestServer, user: &User, token: &str, path: &str, version: &str) -> Sse {
    let token = ok(server.post(token, &user.auth(), json!({})), 200);
    let token = token["token"].as_str().unwrap();
    let joiner = if path.contains('?') { '&' } else { '?' };
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    write!(
        stream,
        "GET {path}{joiner}token={token} HTTP/{version}\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        server.addr
    )
    .unwrap();
    Sse::from(stream)
}

/// An experiment's live stream, as a browser's EventSource opens it.
fn open_stream(server: &TestServer, user: &User, exp: &str) -> Sse {
    sse(
        server,
        user,
        &format!("/api/experiments/{exp}/logs/stream-token"),
        &format!("/api/experiments/{exp}/stream"),
        "1.1",
    )
}

/// `v` without what changes with the clock or the server's port (`duration_s`, `url`).
fn stable(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            map.remove("duration_s");
            map.remove("url");
            for (_, item) in map.iter_mut() {
                *item = stable(item.take());
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = stable(item.take());
            }
        }
        _ => {}
    }
    v
}

/// Everything a run shows, as a client reads it: for "still there after a restart".
fn snapshot(server: &TestServer, user: &User, ws: &str, exp: &str) -> Vec<Value> {
    let get = |path: &str| stable(ok(server.get(path, &user.auth()), 200));
    vec![
        get(&format!("/api/experiments/{exp}")),
        get(&format!("/api/experiments/{exp}/metrics")),
        get(&format!("/api/experiments/{exp}/results")),
        get(&format!("/api/experiments/{exp}/summary")),
        get(&format!(
            "/api/experiments/{exp}/series?names=loss&points=50"
        )),
        get(&format!("/api/workspaces/{ws}/experiments?sort=hp.lr")),
        json!(
            server
                .get(&format!("/api/experiments/{exp}/logs/csv"), &user.auth())
                .text
        ),
    ]
}

#[test]
fn a_lab_works_on_postgres_and_keeps_everything_across_a_restart() {
    let url = database();
    let mut server = server_on(&url);
    // Accounts: one signs up, one is made by the admin with `tora user add --db URL`.
    let alice = server.user("alice@lab.org");
    let bob = server.admin_user("bob@lab.org");

    // A workspace, and Bob in it as an editor through an invitation.
    let ws = server.workspace(&alice, "vision");
    let inv = ok(
        server.post(
            "/api/workspace-invitations",
            &alice.auth(),
            json!({"workspaceId": ws, "email": bob.email, "roleId": EDITOR}),
        ),
        201,
    );
    let r = server.call(
        "PUT",
        &format!(
            "/api/workspaces/any/invitations?invitationId={}&action=accept",
            inv["id"].as_str().unwrap()
        ),
        &bob.auth(),
        None,
    );
    assert!(r.status < 300, "accept: {}", r.text);
    let members = ok(
        server.get(&format!("/api/workspaces/{ws}/members"), &alice.auth()),
        200,
    );
    assert!(members.to_string().contains("bob@lab.org"), "{members}");

    // Runs with hyperparameters, Bob's points in both formats.
    let mut runs = Vec::new();
    for (i, lr) in [0.1, 0.01, 0.001].into_iter().enumerate() {
        let exp = ok(
            server.post(
                "/api/experiments",
                &bob.auth(),
                json!({"name": format!("run-{i}"), "workspaceId": ws, "tags": ["sweep"],
                       "hyperparams": [{"key": "lr", "value": lr}, {"key": "opt", "value": "adam"}]}),
            ),
            201,
        );
        runs.push(exp["id"].as_str().unwrap().to_string());
    }
    let exp = runs[1].clone();
    let live_exp = runs[2].clone();
    let mut live = open_stream(&server, &bob, &live_exp);
    let (event, _, _) = live.next().unwrap();
    assert_eq!(event, "hello");

    let columns = json!({
        "batch_id": "session-1.0",
        "metrics": [
            {"name": "loss", "steps": [0, 1, 2], "values": [0.9, "NaN", 0.5]},
            {"name": "lr", "steps": [0, 1, 2], "values": [0.1, "Infinity", "-Infinity"]}
        ],
        "results": [{"name": "acc", "value": 0.93}]
    });
    let points = format!("/api/experiments/{exp}/points");
    assert_eq!(
        ok(server.post(&points, &bob.auth(), columns.clone()), 201),
        json!({"inserted": 7, "skipped": 0})
    );
    // The reply was lost: the same batch again stores nothing.
    assert_eq!(
        ok(server.post(&points, &bob.auth(), columns), 201),
        json!({"inserted": 0, "skipped": 7})
    );
    let rows = json!({"logs": [
        {"name": "loss", "value": 0.25, "step": 3, "msg_id": "m-3"},
        {"name": "loss", "value": "-Infinity", "step": 4, "msg_id": "m-4"}
    ]});
    let batch = format!("/api/experiments/{exp}/logs/batch");
    assert_eq!(
        ok(server.post(&batch, &bob.auth(), rows.clone()), 201)["inserted"],
        2
    );
    assert_eq!(
        ok(server.post(&batch, &bob.auth(), rows), 201)["inserted"],
        0
    );
    for (i, acc) in [(0, 0.5), (2, 0.7)] {
        let r = server.post(
            &format!("/api/experiments/{}/logs/batch", runs[i]),
            &bob.auth(),
            json!({"logs": [{"name": "acc", "value": acc}, {"name": "loss", "value": 1.0 - acc, "step": 1}]}),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }

    // The live stream of run-2 received its batch.
    let (event, _, data) = live.next().unwrap();
    assert_eq!(event, "logs", "{data}");
    assert!(
        data.contains("\"acc\"") && data.contains("\"loss\""),
        "{data}"
    );
    drop(live);

    let metrics = ok(
        server.get(&format!("/api/experiments/{exp}/metrics"), &alice.auth()),
        200,
    );
    let got: Vec<(String, i64, Value)> = metrics
        .as_array()
        .unwrap()
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
            ("lr".into(), 1, json!("Infinity")),
            ("loss".into(), 2, json!(0.5)),
            ("lr".into(), 2, json!("-Infinity")),
            ("loss".into(), 3, json!(0.25)),
            ("loss".into(), 4, json!("-Infinity")),
        ]
    );

    // Charts and the summary.
    let chart = ok(
        server.get(
            &format!("/api/experiments/{exp}/series?names=loss,lr&points=100"),
            &alice.auth(),
        ),
        200,
    );
    let loss = chart["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "loss")
        .unwrap()
        .clone();
    assert_eq!(loss["total"], 5, "{loss}");
    let summary = ok(
        server.get(&format!("/api/experiments/{exp}/summary"), &alice.auth()),
        200,
    );
    let loss = summary["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "loss")
        .unwrap()
        .clone();
    assert_eq!(
        (loss["count"].clone(), loss["last_step"].clone()),
        (json!(5), json!(4))
    );
    assert_eq!(loss["nonfinite"], 2);

    // The run table: a filter and a sort.
    let list = |query: &str| -> Vec<String> {
        ok(
            server.get(
                &format!("/api/workspaces/{ws}/experiments?{query}"),
                &alice.auth(),
            ),
            200,
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
    };
    assert_eq!(
        list(&format!("q={}&sort=hp.lr", enc("lr < 0.05 and tag:sweep"))),
        vec![runs[2].clone(), runs[1].clone()]
    );
    assert_eq!(
        list("sort=-result.acc"),
        vec![runs[1].clone(), runs[2].clone(), runs[0].clone()]
    );
    assert_eq!(
        list(&format!("q={}", enc("hp.opt = adam and acc >= 0.6"))).len(),
        2
    );

    // Grouped, with a column of each kind (the run ids travel as a JSON parameter).
    let groups = ok(
        server.get(
            &format!(
                "/api/workspaces/{ws}/experiments/groups?by=group&cols=hp.lr,metric.loss,result.acc"
            ),
            &alice.auth(),
        ),
        200,
    );
    let group = &groups["groups"][0];
    assert_eq!(group["runs"], 3, "{groups}");

    // The CSV export.
    let csv = server.get(&format!("/api/experiments/{exp}/logs/csv"), &alice.auth());
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "name,type,step,value,created_at");
    assert_eq!(lines.len(), 1 + 9, "{}", csv.text);
    assert!(csv.text.contains("loss,metric,1,NaN,"), "{}", csv.text);

    // A restart: everything is still there, read the same way.
    let before = snapshot(&server, &alice, &ws, &exp);
    server.sigterm();
    let server = server_on(&url);
    assert_eq!(snapshot(&server, &alice, &ws, &exp), before);
    let again = server.login("bob@lab.org", "admin made password");
    assert_eq!(
        ok(
            server.get(&format!("/api/experiments/{exp}"), &again.auth()),
            200
        )["name"],
        "run-1"
    );
}

#[test]
fn two_servers_share_one_database() {
    let url = database();
    let first = server_on(&url);
    let second = server_on(&url);
    let alice = first.user("alice@lab.org");
    let exp = first.experiment(&alice, "shared", None);
    let r = first.post(
        &format!("/api/experiments/{exp}/points"),
        &alice.auth(),
        json!({"batch_id": "b1", "metrics": [{"name": "loss", "steps": [0, 1], "values": [1.0, 0.5]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    // The second server knows the account, its key and its sessions (one signing secret)...
    let via_key = ok(
        second.get(&format!("/api/experiments/{exp}/metrics"), &alice.auth()),
        200,
    );
    assert_eq!(via_key.as_array().unwrap().len(), 2);
    let via_token = second.get(&format!("/api/experiments/{exp}"), &alice.bearer());
    assert_eq!(via_token.status, 200, "{}", via_token.text);
    // ...and a batch resent to it is skipped: exactly once across servers.
    let r = second.post(
        &format!("/api/experiments/{exp}/points"),
        &alice.auth(),
        json!({"batch_id": "b1", "metrics": [{"name": "loss", "steps": [0, 1], "values": [1.0, 0.5]}]}),
    );
    assert_eq!(ok(r, 201), json!({"inserted": 0, "skipped": 2}));
    // Writes through the second are read through the first.
    let other = second.experiment(&alice, "from the second", None);
    let mine = ok(first.get("/api/experiments", &alice.auth()), 200).to_string();
    assert!(mine.contains(&other), "{mine}");
}

#[test]
fn servers_started_together_on_an_empty_database_all_start() {
    let url = database();
    let servers: Vec<TestServer> = std::thread::scope(|s| {
        let starting: Vec<_> = (0..3).map(|_| s.spawn(|| server_on(&url))).collect();
        starting.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let alice = servers[0].user("alice@lab.org");
    for server in &servers {
        let r = server.get("/api/workspaces", &alice.auth());
        assert_eq!(r.status, 200, "{}", r.text);
    }
}

#[test]
fn migrate_refuses_a_database_a_server_serves() {
    let url = database();
    let mut server = server_on(&url);
    server.user("alice@lab.org");
    let dir = TempDir::new();
    let file = dir.join("copy.db");
    let migrate = || {
        Command::new(BIN)
            .args(["migrate", "--from", &url, "--to"])
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = migrate();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("another tora"), "{err}");
    assert!(!file.exists());

    // Stopped, the server lets it go: the copy runs.
    server.sigterm();
    let out = migrate();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(file.exists());
}

#[test]
fn what_only_a_file_can_do_is_refused_on_postgres() {
    let url = database();
    let password_url = url.replace("postgres://tora@", "postgres://tora:s3cret@");
    let dir = TempDir::new();
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let backups = dir.join("backups");
    let (ok_, _, err) = run(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--db",
        &password_url,
        "--backup-dir",
        backups.to_str().unwrap(),
    ]);
    assert!(!ok_);
    assert!(
        err.contains("pg_dump") && err.contains("--backup-dir"),
        "{err}"
    );
    assert!(
        err.contains("tora:***@"),
        "the password is never shown: {err}"
    );
    assert!(!err.contains("s3cret"), "{err}");

    let dest = dir.join("b.db");
    for args in [
        vec!["backup", dest.to_str().unwrap(), "--db", &password_url],
        vec!["vacuum", "--db", &password_url],
        vec!["doctor", &password_url],
        vec!["restore", dest.to_str().unwrap(), "--db", &password_url],
    ] {
        let (ok_, _, err) = run(&args);
        assert!(!ok_, "{args:?}");
        assert!(
            err.contains("works on a SQLite database file, not on PostgreSQL"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }

    // The admin commands that go through the store work on the URL.
    let (ok_, out, err) = run(&["user", "list", "--db", &url]);
    assert!(ok_, "{out} {err}");
}

#[test]
fn health_metrics_and_start_up_lines_speak_of_postgres() {
    let url = database();
    let server = server_on(&url);
    let health = server.get("/api/health", &Auth::None).json();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["database"]["writable"], true);
    assert!(health["database"].get("free_bytes").is_none(), "{health}");
    let metrics = server.get("/metrics", &Auth::None).text;
    let size: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tora_database_bytes{file=\"db\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > 1 << 20, "pg_database_size: {size}");
    assert!(metrics.contains("tora_database_bytes{file=\"wal\"} 0"));
    assert!(!metrics.contains("tora_disk_free_bytes"));
}

#[test]
fn text_with_nul_is_refused_naming_the_field() {
    let url = database();
    let server = server_on(&url);
    let alice = server.user("alice@lab.org");
    let r = server.post(
        "/api/experiments",
        &alice.auth(),
        json!({"name": "run", "tags": ["ok", "bad\u{0}tag"]}),
    );
    let msg = r.expect_error(400);
    assert!(msg.contains("tags[1]") && msg.contains("U+0000"), "{msg}");
    let exp = server.experiment(&alice, "run", None);
    let r = server.post(
        &format!("/api/experiments/{exp}/logs/batch"),
        &alice.auth(),
        json!({"logs": [{"name": "lo\u{0}ss", "value": 1}]}),
    );
    let msg = r.expect_error(400);
    assert!(msg.contains("logs[0].name"), "{msg}");
    // In a query string too.
    let ws = ok(server.get("/api/workspaces", &alice.auth()), 200)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = server.get(
        &format!("/api/workspaces/{ws}/experiments?q=name%3D%22a%00%22"),
        &alice.auth(),
    );
    let msg = r.expect_error(400);
    assert!(msg.contains("'q'") && msg.contains("U+0000"), "{msg}");
    // Nothing was stored, and the server goes on.
    let metrics = ok(
        server.get(&format!("/api/experiments/{exp}/metrics"), &alice.auth()),
        200,
    );
    assert_eq!(metrics, json!([]));
}

#[test]
fn two_servers_writing_one_run_at_once_store_every_point_once() {
    let url = database();
    let first = server_on(&url);
    let second = server_on(&url);
    let alice = first.user("alice@lab.org");
    let exp = first.experiment(&alice, "busy", None);
    // Two writers per server, each its own series and some shared ones, new series included,
    // and every batch sent twice (once through each server) at the same time.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let a = first.client.clone();
            let b = second.client.clone();
            let auth = alice.auth();
            let exp = exp.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let body = json!({
                        "batch_id": format!("w{w}.{i}"),
                        "metrics": [
                            {"name": format!("own-{w}"), "steps": [i], "values": [i as f64]},
                            {"name": "shared", "steps": [w * 100 + i], "values": [1.0]},
                            {"name": format!("new-{i}"), "steps": [w], "values": [2.0]}
                        ]
                    });
                    let path = format!("/api/experiments/{exp}/points");
                    let (x, y) = if (w + i) % 2 == 0 { (&a, &b) } else { (&b, &a) };
                    let r1 = std::thread::scope(|s| {
                        let other = s.spawn(|| y.post(&path, &auth, body.clone()));
                        let mine = x.post(&path, &auth, body.clone());
                        (mine, other.join().unwrap())
                    });
                    for r in [&r1.0, &r1.1] {
                        assert_eq!(r.status, 201, "{}", r.text);
                    }
                    let total = r1.0.data()["inserted"].as_i64().unwrap()
                        + r1.1.data()["inserted"].as_i64().unwrap();
                    assert_eq!(total, 3, "one of the two stored the batch: {r1:?}");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let metrics = ok(
        second.get(&format!("/api/experiments/{exp}/metrics"), &alice.auth()),
        200,
    );
    let points = metrics.as_array().unwrap();
    assert_eq!(points.len(), 4 * 25 * 3);
    let ids: std::collections::BTreeSet<i64> =
        points.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(
        ids,
        (1..=300).collect(),
        "every point its own id, none missing"
    );
}

#[test]
fn a_stream_on_one_server_gets_every_point_written_through_another_once_in_order() {
    let url = database();
    let a = server_on(&url);
    let b = server_on(&url);
    let alice = a.user("alice@lab.org");
    let exp = a.experiment(&alice, "watched elsewhere", None);
    let mut live = open_stream(&b, &alice, &exp);
    let (event, _, _) = live.next().unwrap();
    assert_eq!(event, "hello");
    let path = format!("/api/experiments/{exp}/points");
    let batch = |i: i64| {
        json!({"batch_id": format!("b{i}"),
               "metrics": [{"name": "loss", "steps": [2 * i, 2 * i + 1], "values": [1.0, 0.5]}]})
    };
    // From sending a batch to A to reading its event on B's stream.
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let sent = std::time::Instant::now();
        assert_eq!(a.post(&path, &alice.auth(), batch(i)).status, 201);
        ids.extend(live.ids(2));
        latencies.push(sent.elapsed());
    }
    // A resend of a stored batch through B stores nothing and sends nothing; the next batch,
    // through A again, follows at once.
    assert_eq!(
        ok(b.post(&path, &alice.auth(), batch(2)), 201),
        json!({"inserted": 0, "skipped": 2})
    );
    // Several batches through A before B's stream reads, and one through B between them.
    for i in 5..9 {
        assert_eq!(a.post(&path, &alice.auth(), batch(i)).status, 201);
    }
    assert_eq!(b.post(&path, &alice.auth(), batch(9)).status, 201);
    assert_eq!(a.post(&path, &alice.auth(), batch(10)).status, 201);
    ids.extend(live.ids(12));
    assert_eq!(
        ids,
        (1..=22).collect::<Vec<i64>>(),
        "each point once, in order"
    );
    latencies.sort();
    eprintln!(
        "POST sent to A -> its event read on B: median {:?} of {:?}",
        latencies[latencies.len() / 2],
        latencies
    );
}

#[test]
fn a_server_killed_mid_ingest_lost_nothing_it_acknowledged() {
    let url = database();
    let mut a = server_on(&url);
    let b = server_on(&url);
    let alice = a.user("alice@lab.org");
    let exp = a.experiment(&alice, "killed", None);
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let (client, auth, exp, acked) = (
            a.client.clone(),
            alice.auth(),
            exp.clone(),
            acknowledged.clone(),
        );
        std::thread::spawn(move || {
            for i in 0.. {
                let body = json!({"batch_id": format!("k{i}"),
                    "metrics": [{"name": "loss", "steps": [i], "values": [i as f64]}]});
                // Panics once the server is gone: what was acknowledged is recorded by then.
                let r = client.post(&format!("/api/experiments/{exp}/points"), &auth, body);
                if r.status != 201 {
                    return;
                }
                acked.lock().unwrap().push(i);
            }
        })
    };
    while acknowledged.lock().unwrap().len() < 20 {
        std::thread::yield_now();
    }
    a.sigkill();
    let _ = writer.join();
    let acked = acknowledged.lock().unwrap().clone();
    let metrics = ok(
        b.get(&format!("/api/experiments/{exp}/metrics"), &alice.auth()),
        200,
    );
    let steps: std::collections::BTreeSet<i64> = metrics
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["step"].as_i64().unwrap())
        .collect();
    for i in &acked {
        assert!(
            steps.contains(i),
            "batch k{i} was acknowledged but is not stored"
        );
    }
    assert!(acked.len() >= 20);
}

#[test]
fn a_run_created_changed_and_deleted_through_one_server_shows_on_another_s_workspace_stream() {
    let url = database();
    let a = server_on(&url);
    let b = server_on(&url);
    let alice = a.user("alice@lab.org");
    let ws = a.workspace(&alice, "lab");
    let mut sse = open_workspace_stream(&b, &alice, &ws);

    let exp = a.experiment(&alice, "resnet-1", Some(&ws));
    let (event, _, data) = sse.next().unwrap();
    let run: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        (event.as_str(), run["id"].as_str()),
        ("run", Some(exp.as_str()))
    );
    assert_eq!(run["name"], "resnet-1");

    let r = a.call(
        "PATCH",
        &format!("/api/experiments/{exp}"),
        &alice.auth(),
        Some(&json!({"name": "resnet-2"})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (event, _, data) = sse.next().unwrap();
    let run: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        (event.as_str(), run["name"].as_str()),
        ("run", Some("resnet-2"))
    );

    let r = a.call(
        "DELETE",
        &format!("/api/experiments/{exp}"),
        &alice.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let (event, _, data) = sse.next().unwrap();
    assert_eq!(event, "deleted");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap(),
        json!({"id": exp})
    );
}

/// A workspace's stream of run changes on `server`, past its `hello`.
fn open_workspace_stream(server: &TestServer, user: &User, ws: &str) -> Sse {
    let mut stream = sse(
        server,
        user,
        &format!("/api/workspaces/{ws}/stream-token"),
        &format!("/api/workspaces/{ws}/stream"),
        "1.0",
    );
    assert_eq!(stream.next().unwrap().0, "hello");
    stream
}

/// The data of the next `event` on `sse` about run `id`, passing over the others.
fn next_about(sse: &mut Sse, event: &str, id: &str) -> Value {
    loop {
        let (kind, _, data) = sse.next().expect("the stream ended");
        let data: Value = serde_json::from_str(&data).unwrap();
        if kind == event && data["id"] == id {
            return data;
        }
    }
}

#[test]
fn a_run_s_progress_and_bulk_changes_through_one_server_show_on_another_s_workspace_stream() {
    let url = database();
    let a = server_on(&url);
    let b = server_on(&url);
    let alice = a.user("alice@lab.org");
    let ws = a.workspace(&alice, "lab");
    let other = a.workspace(&alice, "elsewhere");
    let runs: Vec<String> = (0..3)
        .map(|i| a.experiment(&alice, &format!("run-{i}"), Some(&ws)))
        .collect();
    let mut sse = open_workspace_stream(&b, &alice, &ws);

    // Points and a result stored through A: B's table gets their last values.
    let r = a.post(
        &format!("/api/experiments/{}/logs/batch", runs[0]),
        &alice.auth(),
        json!({"logs": [
            {"name": "loss", "value": 0.9, "step": 1},
            {"name": "loss", "value": 0.5, "step": 7},
            {"name": "loss", "value": 0.7, "step": 3},
            {"name": "acc", "value": 0.81, "type": "result"},
        ]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let progress = next_about(&mut sse, "progress", &runs[0]);
    assert_eq!(
        progress["metrics"]["loss"],
        json!({"step": 7, "value": 0.5})
    );
    assert_eq!(progress["results"]["acc"], json!(0.81));

    // Bulk changes through A: tagged runs, a moved one, a deleted one.
    let r = a.post(
        "/api/experiments/bulk",
        &alice.auth(),
        json!({"ids": [runs[0], runs[1]], "action": "tag", "tags": ["best"]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    for run in &runs[..2] {
        let changed = next_about(&mut sse, "run", run);
        assert_eq!(changed["tags"], json!(["best"]), "{changed}");
    }
    let r = a.post(
        "/api/experiments/bulk",
        &alice.auth(),
        json!({"ids": [runs[1]], "action": "move", "workspaceId": other}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        next_about(&mut sse, "deleted", &runs[1]),
        json!({"id": runs[1]})
    );
    let r = a.post(
        "/api/experiments/bulk",
        &alice.auth(),
        json!({"ids": [runs[2]], "action": "delete"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        next_about(&mut sse, "deleted", &runs[2]),
        json!({"id": runs[2]})
    );
}

#[test]
fn a_stream_whose_server_lost_its_listening_connection_ends_and_catches_up_on_reconnecting() {
    let url = database();
    let a = server_on(&url);
    let b = server_on(&url);
    let alice = a.user("alice@lab.org");
    let exp = a.experiment(&alice, "listener lost", None);
    let path = format!("/api/experiments/{exp}/points");
    let batch = |i: i64| {
        json!({"batch_id": format!("b{i}"),
               "metrics": [{"name": "loss", "steps": [i], "values": [i as f64]}]})
    };
    let mut live = stream_from(&b, &alice, &exp, None);
    assert_eq!(live.next().unwrap().0, "hello");
    assert_eq!(a.post(&path, &alice.auth(), batch(0)).status, 201);
    assert_eq!(live.ids(1), vec![1]);

    // PostgreSQL drops B's listening connection (a restart, a failover, a network cut would).
    let mut pg = common::pg::connect(&url);
    assert_eq!(
        end_backends_named(&mut pg, tora::fanout::LISTENER_NAME),
        2,
        "each server listens on one connection"
    );
    // B's stream ends rather than go silent: its client knows to reconnect.
    let started = std::time::Instant::now();
    while let Some((event, _, _)) = live.next() {
        assert_ne!(event, "logs", "no points were written");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // Written while nobody on B listened; then B's client reconnects from its cursor.
    assert_eq!(a.post(&path, &alice.auth(), batch(1)).status, 201);
    assert_eq!(a.post(&path, &alice.auth(), batch(2)).status, 201);
    // Once B listens again (it retries at once, then with a growing pause), a reconnected
    // stream replays what it missed and goes on live.
    let mut again = None;
    for _ in 0..50 {
        if backends_named(&mut pg, tora::fanout::LISTENER_NAME) == 2 {
            again = Some(());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(again.is_some(), "B listens again");
    // A resumed stream says no hello: it replays from its cursor.
    let mut live = stream_from(&b, &alice, &exp, Some(1));
    assert_eq!(live.ids(2), vec![2, 3], "what was written meanwhile, once");
    assert_eq!(a.post(&path, &alice.auth(), batch(3)).status, 201);
    assert_eq!(live.ids(1), vec![4], "and what is written now, live");
}

/// An experiment's live stream after point `cursor` (None: from the start), over HTTP/1.0, so
/// that the stream's end closes the connection.
fn stream_from(server: &TestServer, user: &User, exp: &str, cursor: Option<i64>) -> Sse {
    let at = cursor.map(|c| format!("?cursor={c}")).unwrap_or_default();
    sse(
        server,
        user,
        &format!("/api/experiments/{exp}/logs/stream-token"),
        &format!("/api/experiments/{exp}/stream{at}"),
        "1.0",
    )
}

/// Backends of `pg`'s database whose `application_name` is `name`.
fn backends_named(pg: &mut postgres::Client, name: &str) -> i64 {
    pg.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
        &[&name],
    )
    .unwrap()
    .get(0)
}

/// Ends the backends of `pg`'s database whose `application_name` is `name`, as a PostgreSQL
/// restart, a failover or a network cut would; how many there were.
fn end_backends_named(pg: &mut postgres::Client, name: &str) -> i64 {
    pg.query_one(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
        &[&name],
    )
    .unwrap()
    .get(0)
}

#[test]
fn a_server_that_lost_its_lock_takes_it_again_and_stops_if_a_migrate_took_it_first() {
    let url = database();
    let mut server = TestServer::spawn(
        {
            let mut c = Command::new(BIN);
            c.stderr(std::process::Stdio::piped());
            c
        },
        Path::new(&url),
        &["--bind", "127.0.0.1:0"],
        &[],
    );
    // Read as it comes: a full pipe would stop the server.
    let stderr = server.child.stderr.take().unwrap();
    let said = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
    let alice = server.user("alice@lab.org");
    let mut pg = common::pg::connect(&url);
    let exclusive = |pg: &mut postgres::Client| -> bool {
        let got: bool = pg
            .query_one(
                "SELECT pg_try_advisory_lock($1)",
                &[&tora::migrate::ADVISORY_LOCK],
            )
            .unwrap()
            .get(0);
        if got {
            pg.execute(
                "SELECT pg_advisory_unlock($1)",
                &[&tora::migrate::ADVISORY_LOCK],
            )
            .unwrap();
        }
        got
    };
    assert!(!exclusive(&mut pg), "a serving server keeps a migrate out");

    // PostgreSQL drops the lock's connection; within moments the server holds the lock again.
    let lock = tora::db::SERVING_LOCK_NAME;
    assert_eq!(end_backends_named(&mut pg, lock), 1, "one lock connection");
    let mut again = false;
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if backends_named(&mut pg, lock) == 1 && !exclusive(&mut pg) {
            again = true;
            break;
        }
    }
    assert!(again, "the server takes its lock again");
    let exp = server.experiment(&alice, "kept serving", None);
    assert!(server.alive());

    // Dropped again, and this time a migrate takes the lock before the server can: the server
    // stops rather than serve beside a copy in progress, and says why.
    pg.batch_execute("SET lock_timeout = '5s'").unwrap();
    let mut taken = false;
    for _ in 0..3 {
        end_backends_named(&mut pg, lock);
        if pg
            .execute(
                "SELECT pg_advisory_lock($1)",
                &[&tora::migrate::ADVISORY_LOCK],
            )
            .is_ok()
        {
            taken = true;
            break;
        }
    }
    assert!(taken, "the test took the lock as a migrate would");
    let mut stopped = None;
    for _ in 0..150 {
        if let Some(status) = server.child.try_wait().unwrap() {
            stopped = Some(status);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = stopped.expect("the server stops once a migrate holds the lock");
    assert_eq!(status.code(), Some(1), "README: exit code 1");
    let err = said.join().unwrap();
    assert!(
        err.contains("lost") && err.contains("tora migrate"),
        "{err}"
    );
    // What it stored before is there for whoever serves next.
    pg.execute(
        "SELECT pg_advisory_unlock($1)",
        &[&tora::migrate::ADVISORY_LOCK],
    )
    .unwrap();
    let next = server_on(&url);
    let alice = next.login("alice@lab.org", "correct horse battery");
    assert_eq!(
        next.get(&format!("/api/experiments/{exp}"), &alice.auth())
            .status,
        200
    );
}
