//! Attacks on a shared server's memory and availability, over real sockets: each asserts that
//! the process stays up, still serves a normal client promptly, and keeps its resident memory
//! under a stated bound.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{TestServer, User};
use serde_json::{Value, json};

/// `tora::server::BODY_LIMIT` and `tora::api::BODY_BUDGET`, as a client sees them.
const BODY_LIMIT: usize = 32 << 20;
const BODY_BUDGET: usize = 256 << 20;

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

#[test]
fn a_request_at_the_bucket_cap_costs_a_bounded_amount_of_memory() {
    let mut server = TestServer::start();
    let user = server.user("atcap@lab.org");
    let exp = server.experiment(&user, "many metrics", None);
    store_metrics(&server, &user, &exp, 250, 2_000);
    let idle = server.rss_kib();
    // 250 series × 1000 points: exactly the cap.
    let r = server.get(&format!("/api/experiments/{exp}/series"), &user.auth());
    assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(300)]);
    let series = r.data()["series"].as_array().unwrap().len();
    assert_eq!(series, 250);
    let grown = server.rss_kib().saturating_sub(idle);
    eprintln!(
        "at the cap: {} bytes of JSON, RSS grew {grown} KiB",
        r.text.len()
    );
    assert!(grown < 96 << 10, "RSS grew by {grown} KiB");
    assert!(server.alive());
    server.assert_serves_within(SERVED_WITHIN);
}

/// Opens a connection and sends a login request's head (`Connection: close`, so the answer ends
/// at EOF) with `length` as its Content-Length, or chunked without one, and `first` body bytes.
fn send_head(server: &TestServer, length: Option<usize>, first: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(&server.addr).expect("connect");
    let framing = match length {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".to_string(),
    };
    let head = format!(
        "POST /api/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nConnection: close\r\n{framing}\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(first).unwrap();
    stream
}

/// The status line, headers (lowercase names) and body of a whole answer read to EOF, or None
/// if nothing arrived within `wait`.
fn answer(stream: &mut TcpStream, wait: Duration) -> Option<(u16, String, Value)> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if raw.is_empty() {
                    return None;
                }
                break;
            }
            Err(e) if raw.is_empty() => panic!("read: {e}"),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    Some((status, head.to_ascii_lowercase(), json))
}

#[test]
fn a_gigabyte_content_length_is_refused_before_the_body_is_read() {
    let mut server = TestServer::start();
    let idle = server.rss_kib();
    let started = Instant::now();
    let mut stream = send_head(&server, Some(1 << 30), b"");
    let (status, _, body) =
        answer(&mut stream, Duration::from_secs(5)).expect("an answer without sending the body");
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["status"], 413);
    assert!(
        body["message"].as_str().unwrap().contains("32 MiB"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let grown = server.rss_kib().saturating_sub(idle);
    assert!(grown < 4 << 10, "RSS grew by {grown} KiB");

    // A chunked body of ordinary size is read (and this login simply fails).
    let json = br#"{"email": "nobody@lab.org", "password": "wrong password"}"#;
    let mut first = format!("{:x}\r\n", json.len()).into_bytes();
    first.extend_from_slice(json);
    first.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut stream = send_head(&server, None, &first);
    let (status, _, body) = answer(&mut stream, Duration::from_secs(10)).expect("an answer");
    assert_eq!(status, 401, "{body}");

    assert!(server.alive());
    server.assert_serves_within(SERVED_WITHIN);
}

#[test]
fn bodies_past_the_shared_budget_get_503_and_memory_stays_bounded() {
    let mut server = TestServer::start();
    let idle = server.rss_kib();
    let fit = BODY_BUDGET / BODY_LIMIT;
    let mut open: Vec<TcpStream> = (0..fit + 12)
        .map(|_| send_head(&server, Some(BODY_LIMIT), b" "))
        .collect();

    // Each body is as large as allowed and has barely started: the budget holds `fit` of them,
    // the others are refused at once with a Retry-After.
    let mut refused = 0;
    let until = Instant::now() + Duration::from_secs(10);
    let mut waiting: Vec<TcpStream> = Vec::new();
    while refused < 12 && Instant::now() < until {
        waiting.clear();
        for mut stream in open.drain(..) {
            match answer(&mut stream, Duration::from_millis(20)) {
                Some((status, head, body)) => {
                    assert_eq!(status, 503, "{body}");
                    assert!(head.contains("retry-after: "), "{head}");
                    assert!(
                        body["message"].as_str().unwrap().contains("256 MiB"),
                        "{body}"
                    );
                    refused += 1;
                }
                None => waiting.push(stream),
            }
        }
        open.append(&mut waiting);
    }
    assert_eq!(refused, 12, "the bodies past the budget are refused");
    assert_eq!(
        open.len(),
        fit,
        "the bodies within the budget are being read"
    );

    // A chunked body is charged as it arrives: with the budget spent, its first chunk is refused.
    let mut chunked = send_head(&server, None, b"10\r\n{\"email\": \"a\",  \r\n");
    let (status, head, body) = answer(&mut chunked, Duration::from_secs(5)).expect("an answer");
    assert_eq!(status, 503, "{body}");
    assert!(head.contains("retry-after: "), "{head}");
    server.assert_serves_within(SERVED_WITHIN);

    // Now the admitted bodies arrive in full, all at once, while memory is watched.
    let peak = common::PeakRss::watch(&server);
    let senders: Vec<_> = open
        .into_iter()
        .map(|mut stream| {
            std::thread::spawn(move || {
                let spaces = vec![b' '; 1 << 20];
                let mut left = BODY_LIMIT - 1 - 2;
                while left > 0 {
                    let n = left.min(spaces.len());
                    stream.write_all(&spaces[..n]).unwrap();
                    left -= n;
                }
                stream.write_all(b"{}").unwrap();
                answer(&mut stream, Duration::from_secs(60)).expect("an answer")
            })
        })
        .collect();
    for sender in senders {
        let (status, _, body) = sender.join().unwrap();
        // Read whole and parsed: `{}` is not a login.
        assert_eq!(status, 400, "{body}");
    }
    let peak = peak.stop().saturating_sub(idle);
    eprintln!("{fit} concurrent 32 MiB bodies: idle {idle} KiB, peak growth {peak} KiB");
    let bound = (BODY_BUDGET + (64 << 20)) >> 10;
    assert!(
        peak < bound as u64,
        "RSS grew by {peak} KiB (bound {bound})"
    );

    // The budget was given back.
    let mut again = send_head(&server, Some(2), b"{}");
    let (status, _, body) = answer(&mut again, Duration::from_secs(5)).expect("an answer");
    assert_eq!(status, 400, "{body}");
    assert!(server.alive());
    server.assert_serves_within(SERVED_WITHIN);
}

#[test]
fn a_body_that_stops_half_way_gets_408_after_the_deadline() {
    let mut server = TestServer::start();
    let started = Instant::now();
    let mut stream = send_head(&server, Some(1000), &[b' '; 500]);
    server.assert_serves_within(SERVED_WITHIN);
    let (status, _, body) =
        answer(&mut stream, Duration::from_secs(90)).expect("an answer after the deadline");
    let took = started.elapsed();
    assert_eq!(status, 408, "{body}");
    assert!(body["message"].as_str().unwrap().contains("60 s"), "{body}");
    assert!(
        took >= Duration::from_secs(59) && took < Duration::from_secs(75),
        "answered after {took:?}"
    );
    assert!(server.alive());
    server.assert_serves_within(SERVED_WITHIN);
}

/// `count` wrong logins for unknown e-mails (each still costs a full hash, the timing-equalizing
/// dummy), spread over about a second, 15 per source address 127.0.0.2, .3, ... (under the
/// per-address limit). A vanishing client resets its connection 20 ms after sending, mid-hash;
/// otherwise each answer's status line and headers come back.
fn flood_logins(server: &TestServer, count: u16, vanish: bool) -> Vec<Option<String>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    runtime.block_on(async move {
        let mut flood = tokio::task::JoinSet::new();
        for i in 0..count {
            flood.spawn(async move {
                tokio::time::sleep(Duration::from_millis(4 * u64::from(i))).await;
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                let source = [127, 0, 0, 2 + (i / 15) as u8];
                socket
                    .bind(std::net::SocketAddr::from((source, 0)))
                    .unwrap();
                let stream = socket.connect(addr).await.unwrap();
                let body = format!(r#"{{"email": "nobody{i}@lab.org", "password": "wrong"}}"#);
                let request = format!(
                    "POST /api/login HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let mut left = request.as_bytes();
                while !left.is_empty() {
                    stream.writable().await.unwrap();
                    match stream.try_write(left) {
                        Ok(n) => left = &left[n..],
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => panic!("write: {e}"),
                    }
                }
                if vanish {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    stream.set_zero_linger().unwrap();
                    return None;
                }
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    stream.readable().await.unwrap();
                    match stream.try_read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => panic!("read: {e}"),
                    }
                }
                Some(String::from_utf8_lossy(&raw).to_ascii_lowercase())
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = flood.join_next().await {
            answers.push(joined.unwrap());
        }
        answers
    })
}

/// Waits (up to 30 s) for the server's RSS to come back within `margin` KiB of `idle`, and
/// returns the last reading.
fn settled_rss(server: &TestServer, idle: u64, margin: u64) -> u64 {
    let until = Instant::now() + Duration::from_secs(30);
    let mut rss = server.rss_kib();
    while rss > idle + margin && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        rss = server.rss_kib();
    }
    rss
}

/// RSS may stay this far above idle after a login flood (KiB).
const AFTER_FLOOD_MARGIN: u64 = 12 << 10;
/// Two hashes at a time, ~19 MiB each, plus the connections: RSS stays this far under idle + it.
const FLOOD_PEAK_MARGIN: u64 = 96 << 10;

#[test]
fn failed_logins_whose_clients_vanish_mid_hash_give_their_memory_back() {
    let mut server = TestServer::start();
    let user = server.user("known@lab.org");
    let idle = server.rss_kib();

    let peak = common::PeakRss::watch(&server);
    flood_logins(&server, 300, true);
    server.assert_serves_within(SERVED_WITHIN);
    // The hashes already started finish; then the hashers give their memory back.
    let after = settled_rss(&server, idle, AFTER_FLOOD_MARGIN);
    let peak = peak.stop();
    eprintln!("300 vanishing failed logins: idle {idle} KiB, peak {peak} KiB, after {after} KiB");
    assert!(
        after <= idle + AFTER_FLOOD_MARGIN,
        "RSS {after} KiB did not come back to within {AFTER_FLOOD_MARGIN} KiB of idle ({idle} KiB)"
    );
    assert!(
        peak <= idle + FLOOD_PEAK_MARGIN,
        "RSS peaked at {peak} KiB (idle {idle} KiB)"
    );

    assert!(server.alive());
    let r = server.post(
        "/api/login",
        &common::Auth::None,
        json!({"email": user.email, "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    server.assert_serves_within(SERVED_WITHIN);
}

#[test]
fn a_login_flood_past_the_hash_queue_gets_503_with_retry_after() {
    let mut server = TestServer::start();
    let user = server.user("known@lab.org");
    let idle = server.rss_kib();

    // 300 logins in about a second: ~20 ms a hash, two at a time, 64 waiting at most.
    let peak = common::PeakRss::watch(&server);
    let answers = flood_logins(&server, 300, false);
    let mut busy = 0;
    for answer in answers.iter().flatten() {
        if answer.starts_with("http/1.1 503") || answer.starts_with("http/1.0 503") {
            assert!(answer.contains("retry-after: 1"), "{answer}");
            assert!(
                answer.contains(r#""error":"service_unavailable""#),
                "{answer}"
            );
            busy += 1;
        } else {
            assert!(answer.contains(" 401 "), "{answer}");
        }
    }
    assert_eq!(answers.len(), 300);
    assert!(busy > 0, "a queue of 64 should have overflowed");
    assert!(busy < 300, "some logins were checked");
    let after = settled_rss(&server, idle, AFTER_FLOOD_MARGIN);
    let peak = peak.stop();
    eprintln!(
        "300 waiting failed logins ({busy} refused): idle {idle} KiB, peak {peak} KiB, after {after} KiB"
    );
    assert!(
        after <= idle + AFTER_FLOOD_MARGIN,
        "RSS {after} KiB, idle {idle} KiB"
    );
    assert!(peak <= idle + FLOOD_PEAK_MARGIN, "RSS peaked at {peak} KiB");

    let r = server.post(
        "/api/login",
        &common::Auth::None,
        json!({"email": user.email, "password": "correct horse battery"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(server.alive());
    server.assert_serves_within(SERVED_WITHIN);
}
