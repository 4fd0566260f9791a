//! Clients that read slowly, or never, hold nothing: long reads (JSON lists, CSV, a stream's
//! replay) take the database a page at a time, live streams hold a bounded queue, and through
//! all of it a normal client signs in, reads and writes within two seconds while the server's
//! memory stays within a stated bound.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Auth, Sse, TestServer, User};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_json::json;

const SERVED_WITHIN: Duration = Duration::from_secs(2);

/// Stores `steps` of each metric in columnar batches of about `per_batch` points, values as
/// base64 doubles (the SDK's fast path).
fn ingest(
    server: &TestServer,
    user: &User,
    exp: &str,
    metrics: &[&str],
    steps: std::ops::Range<i64>,
    per_batch: usize,
) {
    let per_metric = (per_batch / metrics.len()).max(1) as i64;
    let mut from = steps.start;
    while from < steps.end {
        let to = (from + per_metric).min(steps.end);
        let values: Vec<u8> = (from..to)
            .flat_map(|s| ((s % 1000) as f64 * 0.5).to_le_bytes())
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&values);
        let steps_json = (from..to)
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let columns: Vec<String> = metrics
            .iter()
            .map(|m| format!(r#"{{"name":"{m}","steps":[{steps_json}],"values_f64":"{b64}"}}"#))
            .collect();
        let body = format!(r#"{{"metrics":[{}]}}"#, columns.join(","));
        let r = server.raw(
            "POST",
            &format!("/api/experiments/{exp}/points"),
            &user.auth(),
            Some(body.as_bytes()),
            Some("application/json"),
        );
        assert_eq!(r.status, 201, "{}", r.text);
        from = to;
    }
}

/// A normal client, timed: health, a real login, a read and a write, all within the bound.
fn a_normal_client_is_served(server: &mut TestServer, user: &User, exp: &str) -> Duration {
    server.assert_serves_within(SERVED_WITHIN);
    let start = Instant::now();
    let r = server.post(
        "/api/login",
        &Auth::None,
        json!({"email": user.email, "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 200, "login: {}", r.text);
    let token = Auth::Bearer(r.data()["access_token"].as_str().unwrap().to_string());
    let r = server.get(&format!("/api/experiments/{exp}/summary"), &token);
    assert_eq!(r.status, 200, "read: {}", r.text);
    let r = server.post(
        &format!("/api/experiments/{exp}/points"),
        &token,
        json!({"results": [{"name": "still here", "value": 1}]}),
    );
    assert_eq!(r.status, 201, "write: {}", r.text);
    let took = start.elapsed();
    assert!(took <= SERVED_WITHIN, "login, read and write took {took:?}");
    assert!(server.alive());
    took
}

/// Sends a GET and never reads the answer: the server's writes stall once the socket buffers
/// are full.
fn never_read(
    server: &TestServer,
    path: &str,
    auth: &Auth,
    last_event_id: Option<i64>,
) -> TcpStream {
    let mut s = TcpStream::connect(&server.addr).unwrap();
    let auth = match auth {
        Auth::Key(k) => format!("x-api-key: {k}\r\n"),
        Auth::Bearer(t) => format!("Authorization: Bearer {t}\r\n"),
        Auth::None => String::new(),
    };
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {}\r\n{auth}{resume}\r\n",
        server.addr
    )
    .unwrap();
    s
}

/// Waits until the server has stopped working (its CPU time stands still for 200 ms): stalled
/// clients have filled their socket buffers and nothing more moves. A server still busy after
/// 20 s is left to the checks that follow (they fail if it cannot serve).
fn wait_until_idle(server: &TestServer) {
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id())).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<u64> = after_name
            .split(' ')
            .skip(11)
            .take(2)
            .map(|f| f.parse().unwrap())
            .collect();
        fields[0] + fields[1]
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = cpu();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = cpu();
        if now - last <= 1 {
            return;
        }
        last = now;
    }
}

/// Opens a stream over HTTP/1.0 (the body ends when the server ends the stream).
fn open_sse(server: &TestServer, path: &str, auth: &Auth, last_event_id: Option<i64>) -> Sse {
    Sse::from(never_read(server, path, auth, last_event_id))
}

/// Asserts that `ids` are exactly `from..=to` (naming the first difference, not printing a
/// million numbers).
fn assert_ids(ids: &[i64], from: i64, to: i64, what: &str) {
    if let Some(i) = (0..ids.len()).find(|&i| ids[i] != from + i as i64) {
        panic!(
            "{what}: id {} at position {i}, expected {}",
            ids[i],
            from + i as i64
        );
    }
    assert_eq!(ids.len() as i64, to - from + 1, "{what}: {} ids", ids.len());
}

fn stream_token(server: &TestServer, user: &User, exp: &str) -> String {
    let r = server.post(
        &format!("/api/experiments/{exp}/logs/stream-token"),
        &user.auth(),
        json!({}),
    );
    r.data()["token"].as_str().unwrap().to_string()
}

#[test]
fn stalled_csv_and_json_downloads_hold_no_database_reader() {
    let mut server = TestServer::start();
    let user = server.user("reader@lab.org");
    let exp = server.experiment(&user, "big", None);
    ingest(&server, &user, &exp, &["loss", "acc"], 0..200_000, 50_000);
    let before = server.rss_kib();
    let watch = common::PeakRss::watch(&server);

    // 20 CSV downloads, 8 of /logs and 4 of /metrics, none of them read: far more than the 8 pooled
    // readers, which a download used to keep until its client took everything.
    let base = format!("/api/experiments/{exp}");
    let mut stalled = Vec::new();
    for i in 0..32 {
        let path = match i % 8 {
            0..=4 => format!("{base}/logs/csv"),
            5 | 6 => format!("{base}/logs"),
            _ => format!("{base}/metrics"),
        };
        stalled.push(never_read(&server, &path, &user.auth(), None));
    }
    wait_until_idle(&server);
    // Measured before the normal client signs in: a login's argon2 takes 19 MiB for a moment.
    let grown = watch.peak().saturating_sub(before);
    let took = a_normal_client_is_served(&mut server, &user, &exp);
    println!(
        "32 stalled downloads: RSS {before} KiB + {grown} KiB at peak; normal client {took:?}"
    );
    assert!(
        grown < 160 * 1024,
        "32 stalled downloads grew RSS by {grown} KiB"
    );

    // Each stalled download is still whole when its client finally reads it.
    let mut raw = String::new();
    stalled.swap_remove(0).read_to_string(&mut raw).unwrap();
    let (head, csv) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(" 200 "), "{head}");
    assert_eq!(
        csv.lines().count(),
        1 + 400_000,
        "the header and every point stored when the download began"
    );
    assert!(csv.lines().nth(1).unwrap().starts_with("acc,metric,0,0.0,"));
    drop(stalled);
    a_normal_client_is_served(&mut server, &user, &exp);
}

/// Counts the points of a `{"status": 200, "data": [...]}` body as they are parsed, checking
/// the order, without holding them.
struct Checked {
    count: usize,
}

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct P {
            id: i64,
            name: String,
            step: Option<i64>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Checked;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of points")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
                let mut last: Option<(i64, String, i64)> = None;
                let mut count = 0;
                while let Some(p) = seq.next_element::<P>()? {
                    let key = (p.step.unwrap_or(-1), p.name, p.id);
                    if let Some(prev) = &last
                        && *prev >= key
                    {
                        return Err(de::Error::custom(format!("{prev:?} before {key:?}")));
                    }
                    last = Some(key);
                    count += 1;
                }
                Ok(Checked { count })
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    status: u16,
    data: Checked,
}

#[test]
fn metrics_of_a_million_point_run_stream_in_order_in_bounded_memory() {
    let mut server = TestServer::start();
    let user = server.user("metrics@lab.org");
    let exp = server.experiment(&user, "million", None);
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    ingest(&server, &user, &exp, &names, 0..100_000, 100_000);
    // A resumed run: lower steps again, so one series is out of step order.
    ingest(&server, &user, &exp, &["a"], 50_000..60_000, 10_000);
    let before = server.rss_kib();
    let watch = common::PeakRss::watch(&server);

    let mut s = never_read(
        &server,
        &format!("/api/experiments/{exp}/metrics"),
        &user.auth(),
        None,
    );
    let start = Instant::now();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let body: Envelope = serde_json::from_reader(BufReader::new(s)).unwrap();
    let took = start.elapsed();
    assert_eq!(body.status, 200);
    assert_eq!(
        body.data.count, 1_010_000,
        "every point, in (step, name, id) order"
    );
    let grown = watch.peak().saturating_sub(before);
    println!("GET /metrics of 1,010,000 points: {took:?}, RSS {before} KiB + {grown} KiB at peak");
    assert!(grown < 64 * 1024, "GET /metrics grew RSS by {grown} KiB");
    a_normal_client_is_served(&mut server, &user, &exp);
}

#[test]
fn a_stalled_stream_is_dropped_and_a_replay_from_zero_is_complete_and_bounded() {
    let mut server = TestServer::start();
    let user = server.user("live@lab.org");
    let exp = server.experiment(&user, "live", None);
    ingest(&server, &user, &exp, &["loss"], 0..100_000, 100_000);
    let token = stream_token(&server, &user, &exp);
    let path = format!("/api/experiments/{exp}/stream?token={token}");
    let stalled = never_read(&server, &path, &Auth::None, None);
    // Enough to fill the stalled stream's socket and its queue, and to warm ingest up.
    ingest(&server, &user, &exp, &["loss"], 100_000..300_000, 100_000);
    let before = server.rss_kib();
    let watch = common::PeakRss::watch(&server);

    // 700k more points while the stream is never read: the old channel kept up to 256 batches
    // for it, so memory grew with every batch (by ~15 MB a 100k-point batch).
    ingest(&server, &user, &exp, &["loss"], 300_000..1_000_000, 100_000);
    let grown = watch.peak().saturating_sub(before);
    println!(
        "a stalled stream while 700k more points were published: RSS {before} KiB + {grown} KiB at peak"
    );
    assert!(
        grown < 48 * 1024,
        "a stalled stream grew RSS by {grown} KiB"
    );
    a_normal_client_is_served(&mut server, &user, &exp);

    // Its client finally reads: what was queued, then the end of the stream (it was dropped).
    let mut dropped = Sse::from(stalled);
    let (event, _, hello) = dropped.next().unwrap();
    assert_eq!(
        (event.as_str(), hello.as_str()),
        ("hello", r#"{"cursor":100000}"#)
    );
    let got = dropped.ids(usize::MAX);
    assert!(got.len() < 700_000, "the stream was dropped, not kept");
    assert_ids(&got, 100_001, 100_000 + got.len() as i64, "before the drop");
    let resume_at = got.last().copied().unwrap_or(100_000);

    // It reconnects with its cursor and gets exactly the rest from the database (the normal
    // client's result included).
    let total = 1_000_001;
    let token = stream_token(&server, &user, &exp);
    let path = format!("/api/experiments/{exp}/stream?token={token}");
    let mut again = open_sse(&server, &path, &Auth::None, Some(resume_at));
    let rest = again.ids((total - resume_at) as usize);
    assert_ids(&rest, resume_at + 1, total, "after reconnecting");
    drop(again);

    // A replay of the whole run from cursor 0 that its client does not read holds a page or
    // so, not the history; read later, it is complete.
    let before = server.rss_kib();
    let watch = common::PeakRss::watch(&server);
    let token = stream_token(&server, &user, &exp);
    let path = format!("/api/experiments/{exp}/stream?token={token}");
    let stalled = never_read(&server, &path, &Auth::None, Some(0));
    wait_until_idle(&server);
    let grown = watch.peak().saturating_sub(before);
    a_normal_client_is_served(&mut server, &user, &exp);
    println!("a stalled replay from 0 of 1M points: RSS {before} KiB + {grown} KiB at peak");
    assert!(
        grown < 24 * 1024,
        "a stalled replay grew RSS by {grown} KiB"
    );
    let mut replay = Sse::from(stalled);
    let all = replay.ids(total as usize + 1);
    assert_ids(&all, 1, total + 1, "the replay from 0");
}

#[test]
fn a_replay_that_falls_behind_the_live_queue_catches_up_instead_of_ending() {
    let server = TestServer::start();
    let user = server.user("catchup@lab.org");
    let exp = server.experiment(&user, "catch up", None);
    ingest(&server, &user, &exp, &["loss"], 0..100_000, 100_000);
    let token = stream_token(&server, &user, &exp);
    let path = format!("/api/experiments/{exp}/stream?token={token}");
    // Replaying from 0, not read yet, while batches far beyond the live queue's bound arrive.
    let replaying = never_read(&server, &path, &Auth::None, Some(0));
    wait_until_idle(&server);
    ingest(&server, &user, &exp, &["loss"], 100_000..400_000, 100_000);
    let mut sse = Sse::from(replaying);
    let ids = sse.ids(400_000);
    assert_ids(&ids, 1, 400_000, "all, once, in order");
    // And it is live: the next batch comes as it is stored.
    ingest(&server, &user, &exp, &["loss"], 400_000..400_010, 10);
    assert_ids(&sse.ids(10), 400_001, 400_010, "live after catching up");
}

#[test]
fn concurrent_writers_reach_a_stream_in_id_order_with_no_gap() {
    let server = TestServer::start();
    let user = server.user("order@lab.org");
    let exp = server.experiment(&user, "order", None);
    let token = stream_token(&server, &user, &exp);
    let mut live = open_sse(
        &server,
        &format!("/api/experiments/{exp}/stream?token={token}"),
        &Auth::None,
        None,
    );
    let (event, _, hello) = live.next().unwrap();
    assert_eq!(
        (event.as_str(), hello.as_str()),
        ("hello", r#"{"cursor":0}"#)
    );

    let (writers, batches, per_batch) = (6, 40, 50);
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let client = server.client.clone();
            let (key, exp) = (user.auth(), exp.clone());
            std::thread::spawn(move || {
                for b in 0..batches {
                    let steps: Vec<i64> = (b * per_batch..(b + 1) * per_batch).collect();
                    let values: Vec<f64> = steps.iter().map(|&s| s as f64).collect();
                    let r = client.post(
                        &format!("/api/experiments/{exp}/points"),
                        &key,
                        json!({"metrics": [{"name": format!("w{w}"), "steps": steps, "values": values}]}),
                    );
                    assert_eq!(r.status, 201, "{}", r.text);
                }
            })
        })
        .collect();
    let total = (writers * batches * per_batch) as usize;
    let mut seen = Vec::new();
    while seen.len() < total {
        let (event, _, data) = live.next().expect("the stream stays open");
        assert_eq!(event, "logs");
        let points: serde_json::Value = serde_json::from_str(&data).unwrap();
        for p in points.as_array().unwrap() {
            seen.push((
                p["id"].as_i64().unwrap(),
                p["name"].as_str().unwrap().to_string(),
                p["step"].as_i64().unwrap(),
            ));
        }
    }
    for h in handles {
        h.join().unwrap();
    }
    let ids: Vec<i64> = seen.iter().map(|p| p.0).collect();
    assert_ids(&ids, 1, total as i64, "every id once, in order");
    let stored = server.get(&format!("/api/experiments/{exp}/logs"), &user.auth());
    let stored: Vec<(i64, String, i64)> = stored
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_i64().unwrap(),
                p["name"].as_str().unwrap().to_string(),
                p["step"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, stored, "the stream delivered what was stored");
}

#[test]
fn shutdown_ends_open_streams_at_once() {
    let mut server = TestServer::start();
    let user = server.user("bye@lab.org");
    let exp = server.experiment(&user, "bye", None);
    let token = stream_token(&server, &user, &exp);
    let path = format!("/api/experiments/{exp}/stream?token={token}");
    let mut open: Vec<Sse> = (0..3)
        .map(|_| open_sse(&server, &path, &Auth::None, None))
        .collect();
    for s in &mut open {
        assert_eq!(s.next().unwrap().0, "hello");
    }
    let start = Instant::now();
    server.sigterm();
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "shutdown took {took:?} with streams open"
    );
    for s in &mut open {
        assert!(s.next().is_none(), "the stream ended");
    }
}

/// `server::MAX_DOWNLOADS`, as the README documents it.
const MAX_DOWNLOADS: usize = 64;

#[test]
fn past_the_download_limit_a_newcomer_gets_503_until_a_place_frees() {
    let mut server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let exp = server.experiment(&alice, "big", None);
    // 300,000 points: each download is ~50 MB, far past what socket buffers hold.
    ingest(
        &server,
        &alice,
        &exp,
        &["loss", "acc", "lr"],
        0..100_000,
        50_000,
    );
    let stalled: Vec<TcpStream> = (0..MAX_DOWNLOADS)
        .map(|i| {
            let path = if i % 2 == 0 { "logs" } else { "logs/csv" };
            never_read(
                &server,
                &format!("/api/experiments/{exp}/{path}"),
                &alice.auth(),
                None,
            )
        })
        .collect();
    // Every download has started, and holds its place, once the server has answered each.
    let mut stalled = stalled;
    for s in &mut stalled {
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.0 200");
    }
    // (A run's results are a small download: it would take a place for a moment.)
    let refused = server.get(&format!("/api/experiments/{exp}/results"), &alice.auth());
    assert!(refused.expect_error(503).contains("64 downloads"));
    assert!(refused.header("retry-after").is_some());
    // Once the downloads have filled their clients' buffers, everything else is served.
    wait_until_idle(&server);
    a_normal_client_is_served(&mut server, &alice, &exp);
    // A stalled download that goes away gives its place back.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = server.get(&format!("/api/experiments/{exp}/results"), &alice.auth());
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "places were not given back");
        std::thread::sleep(Duration::from_millis(100));
    }
}
