//! Artifacts: files kept with a run. A researcher uploads checkpoints and plots, gets the same
//! bytes back, and the server never holds a whole file in memory; limits, path rules and roles
//! hold, and deleting a run gives its space back.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Auth, TestServer, User};
use serde_json::Value;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// Deterministic, incompressible-looking bytes: `len` of them starting at `offset`.
fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn head(method: &str, server: &TestServer, path: &str, auth: &Auth) -> String {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        server.addr
    );
    match auth {
        Auth::None => {}
        Auth::Key(k) => head += &format!("x-api-key: {k}\r\n"),
        Auth::Bearer(t) => head += &format!("Authorization: Bearer {t}\r\n"),
    }
    head
}

/// Reads a response: status, headers (lower-case names), and the body fed to `sink`.
fn read_response(stream: TcpStream, mut sink: impl FnMut(&[u8])) -> (u16, Vec<(String, String)>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let status: u16 = status.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut buf = vec![0u8; 1 << 16];
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut left = n;
            while left > 0 {
                let take = left.min(buf.len());
                reader.read_exact(&mut buf[..take]).unwrap();
                sink(&buf[..take]);
                left -= take;
            }
            let mut crlf = String::new();
            reader.read_line(&mut crlf).unwrap();
        }
    } else {
        loop {
            let n = reader.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            sink(&buf[..n]);
        }
    }
    (status, headers)
}

/// PUTs `len` pattern bytes as one body (Content-Length up front, or chunked when `declare`
/// is false), sent a MiB at a time; returns the status, the JSON answer and the bytes' SHA-256.
fn upload(
    server: &TestServer,
    path: &str,
    auth: &Auth,
    len: usize,
    declare: bool,
) -> (u16, Value, String) {
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    let mut h = head("PUT", server, path, auth);
    h += "Content-Type: application/octet-stream\r\n";
    if declare {
        h += &format!("Content-Length: {len}\r\n\r\n");
    } else {
        h += "Transfer-Encoding: chunked\r\n\r\n";
    }
    stream.write_all(h.as_bytes()).unwrap();
    let mut hash = Sha256::new();
    let mut sent = 0;
    while sent < len {
        let piece = pattern(sent, MIB.min(len - sent));
        hash.update(&piece);
        let wrote = if declare {
            stream.write_all(&piece)
        } else {
            stream
                .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .and_then(|_| stream.write_all(&piece))
                .and_then(|_| stream.write_all(b"\r\n"))
        };
        if wrote.is_err() {
            break; // the server answered early (413) and closed
        }
        sent += piece.len();
    }
    if !declare {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let mut body = Vec::new();
    let (status, _) = read_response(stream, |b| body.extend_from_slice(b));
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, json, hex(&hash.finalize()))
}

/// GETs a download; returns the status, headers, byte count and SHA-256 of the body (never
/// holding it whole).
fn download(
    server: &TestServer,
    path: &str,
    auth: &Auth,
) -> (u16, Vec<(String, String)>, usize, String) {
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .write_all((head("GET", server, path, auth) + "\r\n").as_bytes())
        .unwrap();
    let mut hash = Sha256::new();
    let mut n = 0;
    let (status, headers) = read_response(stream, |b| {
        hash.update(b);
        n += b.len();
    });
    (status, headers, n, hex(&hash.finalize()))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn count(server: &TestServer, sql: &str) -> i64 {
    let conn = server.sql();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn setup(server: &TestServer) -> (User, String) {
    let owner = server.user("pi@lab.org");
    let exp = server.experiment(&owner, "resnet", None);
    (owner, exp)
}

#[test]
fn a_checkpoint_of_many_chunks_comes_back_byte_for_byte() {
    let server = TestServer::start();
    let (pi, exp) = setup(&server);
    let len = 3 * MIB + 12_345; // 13 chunks of 256 KiB, the last one short
    let path = format!("/api/experiments/{exp}/artifacts/checkpoints/epoch-3.pt");
    let (status, body, sha) = upload(&server, &path, &pi.auth(), len, true);
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["path"], "checkpoints/epoch-3.pt");
    assert_eq!(body["data"]["size"], len);
    assert_eq!(body["data"]["sha256"], sha);

    let (status, headers, n, got) = download(&server, &path, &pi.auth());
    assert_eq!(status, 200);
    assert_eq!((n, got.as_str()), (len, sha.as_str()));
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        header(&headers, "content-disposition"),
        Some("attachment; filename=\"epoch-3.pt\"")
    );
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&headers, "content-security-policy"), Some("sandbox"));

    // Sent chunked (no length up front), a file arrives just the same, and a new upload to the
    // same path replaces the old one.
    let (status, body, sha2) = upload(&server, &path, &pi.auth(), MIB + 1, false);
    assert_eq!(status, 201, "{body}");
    let (_, _, n, got) = download(&server, &path, &pi.auth());
    assert_eq!((n, got), (MIB + 1, sha2));
    let list = server.get(&format!("/api/experiments/{exp}/artifacts"), &pi.auth());
    assert_eq!(list.status, 200, "{}", list.text);
    let files = list.data();
    assert_eq!(files.as_array().unwrap().len(), 1, "{files}");
    assert_eq!(files[0]["size"], MIB + 1);
    // The replaced file's chunks go a few per transaction, just after the reply.
    let purged = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        count(&server, "SELECT count(*) FROM artifact_chunks") == 5
            && count(&server, "SELECT count(*) FROM artifacts") == 1
    });
    assert!(purged, "the replaced file's chunks are gone");

    // An image may be shown inline when asked; HTML never is.
    let png = format!("/api/experiments/{exp}/artifacts/plots/loss.png");
    assert_eq!(upload(&server, &png, &pi.auth(), 100, true).0, 201);
    let (_, headers, ..) = download(&server, &format!("{png}?inline=1"), &pi.auth());
    assert_eq!(header(&headers, "content-type"), Some("image/png"));
    assert!(
        header(&headers, "content-disposition")
            .unwrap()
            .starts_with("inline")
    );
    let html = format!("/api/experiments/{exp}/artifacts/report.html");
    assert_eq!(upload(&server, &html, &pi.auth(), 100, true).0, 201);
    let (_, headers, ..) = download(&server, &format!("{html}?inline=1"), &pi.auth());
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/octet-stream")
    );
    assert!(
        header(&headers, "content-disposition")
            .unwrap()
            .starts_with("attachment")
    );

    // Deleted, it is gone.
    let r = server.call("DELETE", &png, &pi.auth(), None);
    assert_eq!(r.status, 200, "{}", r.text);
    server.get(&png, &pi.auth()).expect_error(404);
}

#[test]
fn limits_refuse_with_a_413_and_store_nothing() {
    let server = TestServer::start_with(&[
        "--max-artifact-size",
        "1MiB",
        "--max-workspace-artifacts",
        "3MiB",
    ]);
    let (pi, exp) = setup(&server);
    let at = |name: &str| format!("/api/experiments/{exp}/artifacts/{name}");

    // Declared too large: refused before a byte is read.
    let (status, body, _) = upload(&server, &at("big.bin"), &pi.auth(), MIB + 1, true);
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("1 MiB"),
        "{body}"
    );
    // Sent chunked, with no length to check up front: refused as it passes the limit.
    let (status, body, _) = upload(&server, &at("big.bin"), &pi.auth(), 2 * MIB, false);
    assert_eq!(status, 413, "{body}");
    // Exactly at the limit is fine; the workspace fills up to its own limit.
    for name in ["a.bin", "b.bin", "c.bin"] {
        let (status, body, _) = upload(&server, &at(name), &pi.auth(), MIB, true);
        assert_eq!(status, 201, "{body}");
    }
    let (status, body, _) = upload(&server, &at("d.bin"), &pi.auth(), 10, true);
    assert_eq!(status, 413, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("workspace"),
        "{body}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let files = server
        .get(&format!("/api/experiments/{exp}/artifacts"), &pi.auth())
        .data();
    let names: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.bin", "b.bin", "c.bin"]);
    assert_eq!(count(&server, "SELECT count(*) FROM artifact_chunks"), 12);
    assert_eq!(
        count(&server, "SELECT count(*) FROM artifacts WHERE path IS NULL"),
        0
    );
}

#[test]
fn paths_must_be_relative_plain_and_short() {
    let server = TestServer::start();
    let (pi, exp) = setup(&server);
    let long = "a".repeat(1025);
    for bad in [
        "a//b",
        "a/./b",
        "a/../b",
        "..",
        "a/",
        "%2Fetc%2Fpasswd",
        "a%00b",
        "a%0Ab",
        long.as_str(),
    ] {
        let r = server.raw(
            "PUT",
            &format!("/api/experiments/{exp}/artifacts/{bad}"),
            &pi.auth(),
            Some(b"x"),
            Some("application/octet-stream"),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        r.expect_error(400);
    }
    let ok = "a".repeat(1024);
    let r = server.raw(
        "PUT",
        &format!("/api/experiments/{exp}/artifacts/{ok}"),
        &pi.auth(),
        Some(b"x"),
        Some("application/octet-stream"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(count(&server, "SELECT count(*) FROM artifacts"), 1);
}

#[test]
fn a_viewer_reads_but_cannot_write_and_an_outsider_sees_nothing() {
    let server = TestServer::start();
    let pi = server.user("pi@lab.org");
    let ws = server.workspace(&pi, "lab");
    let exp = server.experiment(&pi, "run", Some(&ws));
    let viewer = server.user("viewer@lab.org");
    let outsider = server.user("outsider@lab.org");
    server.add_member(&ws, &viewer, 3);
    let path = format!("/api/experiments/{exp}/artifacts/config.json");
    let put = |auth: &Auth| {
        server.raw(
            "PUT",
            &path,
            auth,
            Some(b"{\"lr\": 0.1}"),
            Some("application/json"),
        )
    };
    assert_eq!(put(&pi.auth()).status, 201);

    let (status, headers, n, _) = download(&server, &path, &viewer.auth());
    assert_eq!((status, n), (200, 11));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(
        server
            .get(&format!("/api/experiments/{exp}/artifacts"), &viewer.auth())
            .status,
        200
    );
    put(&viewer.auth()).expect_error(403);
    server
        .call("DELETE", &path, &viewer.auth(), None)
        .expect_error(403);

    for r in [
        put(&outsider.auth()),
        server.get(&path, &outsider.auth()),
        server.get(
            &format!("/api/experiments/{exp}/artifacts"),
            &outsider.auth(),
        ),
        server.call("DELETE", &path, &outsider.auth(), None),
    ] {
        let msg = r.expect_error(404);
        assert!(!msg.contains("config"), "{msg}");
    }
    put(&Auth::None).expect_error(401);
    assert_eq!(count(&server, "SELECT count(*) FROM artifacts"), 1);
}

#[test]
fn an_upload_cut_off_half_way_leaves_nothing_behind() {
    let server = TestServer::start();
    let (pi, exp) = setup(&server);
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    let path = format!("/api/experiments/{exp}/artifacts/model.bin");
    let h =
        head("PUT", &server, &path, &pi.auth()) + &format!("Content-Length: {}\r\n\r\n", 4 * MIB);
    stream.write_all(h.as_bytes()).unwrap();
    stream.write_all(&pattern(0, 2 * MIB)).unwrap();
    // Wait until the first chunks are in the database, then go away.
    let staged = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        count(&server, "SELECT count(*) FROM artifact_chunks") > 0
    });
    assert!(
        staged,
        "the upload's first chunks were written as it arrived"
    );
    drop(stream);
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        count(&server, "SELECT count(*) FROM artifacts") == 0
            && count(&server, "SELECT count(*) FROM artifact_chunks") == 0
    });
    assert!(gone, "a cut-off upload's staged chunks are removed");
    let list = server.get(&format!("/api/experiments/{exp}/artifacts"), &pi.auth());
    assert_eq!(list.data(), serde_json::json!([]));
}

#[test]
fn deleting_a_run_deletes_its_artifacts_and_the_space_is_reused() {
    // The file's free pages are what this checks.
    let server = TestServer::start_file(&[]);
    let (pi, exp) = setup(&server);
    let path = format!("/api/experiments/{exp}/artifacts/weights.bin");
    assert_eq!(upload(&server, &path, &pi.auth(), 8 * MIB, true).0, 201);
    let r = server.call(
        "DELETE",
        &format!("/api/experiments/{exp}"),
        &pi.auth(),
        None,
    );
    assert!(r.status == 200 || r.status == 204, "{}", r.text);
    assert_eq!(count(&server, "SELECT count(*) FROM artifacts"), 0);
    assert_eq!(count(&server, "SELECT count(*) FROM artifact_chunks"), 0);
    // The freed pages go on SQLite's free list (auto_vacuum is off, so the file does not
    // shrink), and the next upload takes them instead of growing the file.
    assert!(count(&server, "PRAGMA freelist_count") * 4096 >= 7 * MIB as i64);
    let pages = count(&server, "PRAGMA page_count");
    let exp2 = server.experiment(&pi, "next", None);
    let path2 = format!("/api/experiments/{exp2}/artifacts/weights.bin");
    assert_eq!(upload(&server, &path2, &pi.auth(), 7 * MIB, true).0, 201);
    let grown = count(&server, "PRAGMA page_count") - pages;
    assert!(
        grown * 4096 < MIB as i64,
        "the file grew {grown} pages for a file that fit the free ones"
    );

    // Deleting a workspace deletes its runs' files too.
    let ws = server.workspace(&pi, "scratch");
    let exp3 = server.experiment(&pi, "in scratch", Some(&ws));
    let path3 = format!("/api/experiments/{exp3}/artifacts/a.bin");
    assert_eq!(upload(&server, &path3, &pi.auth(), MIB, true).0, 201);
    let r = server.call("DELETE", &format!("/api/workspaces/{ws}"), &pi.auth(), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        count(&server, "SELECT count(*) FROM artifacts"),
        1,
        "only the other run's file is left"
    );
    assert_eq!(count(&server, "SELECT count(*) FROM artifact_chunks"), 28);
}

/// A 200 MiB file goes in and out while the server's memory grows by a fraction of it: the
/// request and response bodies are streamed a chunk at a time. What growth there is, is mostly
/// SQLite's page caches (32 MB for the writer, and for each download connection).
#[test]
fn a_200_mib_file_streams_in_and_out_without_the_server_holding_it() {
    let server = TestServer::start();
    let (pi, exp) = setup(&server);
    let len = 200 * MIB;
    let path = format!("/api/experiments/{exp}/artifacts/big.bin");
    let idle = server.rss_kib();
    let peak = common::PeakRss::watch(&server);
    let (status, body, sha) = upload(&server, &path, &pi.auth(), len, true);
    assert_eq!(status, 201, "{body}");
    let (status, _, n, got) = download(&server, &path, &pi.auth());
    assert_eq!((status, n), (200, len));
    assert_eq!(got, sha);
    let grown = peak.stop().saturating_sub(idle);
    eprintln!("200 MiB up and down: idle {idle} KiB, peak growth {grown} KiB");
    assert!(
        grown < 100 * 1024,
        "RSS grew {grown} KiB for a 200 MiB file"
    );
}

/// With `--artifacts-dir`, the bytes are owner-only files named by number (nothing from the
/// client's path), not chunk rows; replaced and deleted files go from the directory, and
/// `tora backup --artifacts-dir` copies them with the database, so the copy serves them.
#[test]
fn artifacts_kept_as_files_are_owner_only_swept_and_backed_up() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = common::TempDir::new();
    let dir = scratch.join("files");
    // `tora backup` copies a file.
    let server = TestServer::start_file(&["--artifacts-dir", dir.to_str().unwrap()]);
    let (pi, exp) = setup(&server);
    let path = format!("/api/experiments/{exp}/artifacts/models/final.ckpt");
    let (status, body, sha) = upload(&server, &path, &pi.auth(), MIB + 5, true);
    assert_eq!(status, 201, "{body}");
    let files = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    let names = files(&dir);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].parse::<i64>().is_ok(), "named by id: {names:?}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(&names[0])), 0o600);
    assert_eq!(
        std::fs::metadata(dir.join(&names[0])).unwrap().len(),
        (MIB + 5) as u64
    );
    assert_eq!(count(&server, "SELECT count(*) FROM artifact_chunks"), 0);
    let (status, _, n, got) = download(&server, &path, &pi.auth());
    assert_eq!((status, n, got.as_str()), (200, MIB + 5, sha.as_str()));

    // Replaced: the old file leaves the directory.
    let (status, _, sha2) = upload(&server, &path, &pi.auth(), 300_000, false);
    assert_eq!(status, 201);
    let settled = |want: usize| {
        (0..150).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            files(&dir).len() == want
        })
    };
    assert!(settled(1), "{:?}", files(&dir));
    assert_ne!(files(&dir), names);

    // The backup takes the database and the files; a server on the copy serves them.
    let dest = scratch.join("copy.db");
    let (ok, out, err) = server.admin(
        &[
            "backup",
            dest.to_str().unwrap(),
            "--artifacts-dir",
            dir.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 artifact files"), "{out}");
    let copy_dir = scratch.join("copy.db.artifacts");
    assert_eq!(files(&copy_dir), files(&dir));
    assert_eq!(mode(&copy_dir), 0o700);
    let copy = TestServer::start_on(&dest, &["--artifacts-dir", copy_dir.to_str().unwrap()]);
    let (status, _, n, got) = download(&copy, &path, &pi.auth());
    assert_eq!((status, n, got), (200, 300_000, sha2));
    drop(copy);

    // Deleting the run removes its file too.
    let r = server.call(
        "DELETE",
        &format!("/api/experiments/{exp}"),
        &pi.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(settled(0), "{:?}", files(&dir));
}

/// A run keeps at most 10,000 files: the next new path is refused, replacing one is not.
#[test]
fn a_run_keeps_at_most_ten_thousand_files() {
    let server = TestServer::start();
    let (pi, exp) = setup(&server);
    let at = |name: &str| format!("/api/experiments/{exp}/artifacts/{name}");
    let put = |name: &str| {
        server.raw(
            "PUT",
            &at(name),
            &pi.auth(),
            Some(b"x"),
            Some("application/octet-stream"),
        )
    };
    assert_eq!(put("f0").status, 201);
    // 9,999 more, written straight into the file (10,000 uploads would only be slow).
    {
        let mut conn = server.sql();
        let tx = conn.transaction().unwrap();
        tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 9999)
             INSERT INTO artifacts (experiment_id, path, size, sha256, created_at)
             SELECT a.experiment_id, 'f' || n.i, 0, a.sha256, 0 FROM artifacts a, n",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let r = put("one-too-many");
    let msg = r.expect_error(400);
    assert!(msg.contains("10000 artifacts"), "{msg}");
    assert_eq!(
        put("f5").status,
        201,
        "replacing a file is fine at the limit"
    );
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM artifacts WHERE path IS NOT NULL"
        ),
        10_000
    );
}
