//! A lab sharing one server: invitations, member roles, the admin CLI, and the hardening around
//! tokens, hosts and origins.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Auth, BIN, TestServer, User};
use serde_json::{Value, json};

const OWNER: i64 = 1;
const EDITOR: i64 = 2;
const VIEWER: i64 = 3;

fn invite(server: &TestServer, by: &User, ws: &str, email: &str, role: i64) -> common::Response {
    server.post(
        "/api/workspace-invitations",
        &by.auth(),
        json!({"workspaceId": ws, "email": email, "roleId": role}),
    )
}

fn answer(server: &TestServer, who: &User, id: &str, action: &str) -> common::Response {
    server.call(
        "PUT",
        &format!("/api/workspaces/any/invitations?invitationId={id}&action={action}"),
        &who.auth(),
        None,
    )
}

/// An invitation made before the account exists waits; an account the admin made with
/// `tora user add` has a vouched-for address, so it finds and accepts the invitation by address.
#[test]
fn an_account_made_by_the_admin_accepts_an_invitation_sent_before_it_existed() {
    let server = TestServer::start();
    let owner = server.user("pi@lab.org");
    let ws = server.workspace(&owner, "vision-lab");
    let exp = server.experiment(&owner, "baseline", Some(&ws));
    let r = invite(&server, &owner, &ws, "Student@Lab.org", VIEWER);
    assert_eq!(r.status, 201, "{}", r.text);

    let student = server.admin_user("student@lab.org");
    let pending = server
        .get("/api/workspace-invitations", &student.auth())
        .data();
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 1);
    let inv = &pending[0];
    assert_eq!(inv["workspaceId"], ws.as_str());
    assert_eq!(inv["workspaceName"], "vision-lab");
    assert_eq!(inv["role"], "VIEWER");
    assert_eq!(inv["from"], "pi@lab.org");
    assert!(inv["created_at"].is_string());
    assert!(inv["expires_at"].is_string());
    assert!(
        inv.get("token").is_none(),
        "the link is shown only to the OWNER, once"
    );

    server
        .get(&format!("/api/experiments/{exp}"), &student.auth())
        .expect_error(404);
    let r = answer(&server, &student, inv["id"].as_str().unwrap(), "accept");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        server
            .get(&format!("/api/experiments/{exp}"), &student.auth())
            .data()["name"],
        "baseline"
    );
    assert_eq!(
        server
            .get("/api/workspace-invitations", &student.auth())
            .data(),
        json!([])
    );
    // As a viewer, still read-only.
    server
        .call(
            "PUT",
            &format!("/api/experiments/{exp}"),
            &student.auth(),
            Some(&json!({"name": "x"})),
        )
        .expect_error(403);
}

#[test]
fn invitations_can_be_declined_cancelled_and_only_answered_by_the_addressee() {
    let server = TestServer::start();
    let owner = server.user("owner@lab.org");
    let alice = server.user("alice@lab.org");
    let mallory = server.user("mallory@lab.org");
    // The admin vouches for both addresses: a proven address still answers only invitations
    // made for it.
    server.confirm("alice@lab.org");
    server.confirm("mallory@lab.org");
    let ws = server.workspace(&owner, "lab");

    let inv = invite(&server, &owner, &ws, "alice@lab.org", EDITOR).data();
    let id = inv["id"].as_str().unwrap().to_string();
    invite(&server, &owner, &ws, "alice@lab.org", VIEWER).expect_error(409);
    invite(&server, &owner, &ws, "owner@lab.org", VIEWER).expect_error(409);
    // Only an OWNER invites; a stranger cannot even see the workspace.
    invite(&server, &mallory, &ws, "mallory@lab.org", OWNER).expect_error(404);

    // Someone else cannot answer alice's invitation.
    answer(&server, &mallory, &id, "accept").expect_error(404);
    server
        .get(&format!("/api/workspaces/{ws}"), &mallory.auth())
        .expect_error(404);

    let r = answer(&server, &alice, &id, "deny");
    assert_eq!(r.status, 200, "{}", r.text);
    server
        .get(&format!("/api/workspaces/{ws}"), &alice.auth())
        .expect_error(404);
    answer(&server, &alice, &id, "accept").expect_error(404);

    // The owner lists pending invitations and cancels one.
    let second = invite(&server, &owner, &ws, "alice@lab.org", EDITOR).data();
    let listed = server
        .get(&format!("/api/workspaces/{ws}/invitations"), &owner.auth())
        .data();
    assert_eq!(listed[0]["id"], second["id"]);
    server
        .get(&format!("/api/workspaces/{ws}/invitations"), &alice.auth())
        .expect_error(404);
    let second_id = second["id"].as_str().unwrap();
    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}/invitations/{second_id}"),
        &owner.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        server
            .get("/api/workspace-invitations", &alice.auth())
            .data(),
        json!([])
    );
    answer(&server, &alice, "not-a-uuid", "accept").expect_error(400);
    answer(&server, &alice, second_id, "maybe").expect_error(400);
}

#[test]
fn owners_change_roles_and_remove_members_but_never_the_last_owner() {
    let server = TestServer::start();
    let owner = server.user("o@lab.org");
    let member = server.user("m@lab.org");
    let ws = server.workspace(&owner, "lab");
    server.add_member(&ws, &member, VIEWER);

    let path = format!("/api/workspaces/{ws}/members/{}", member.id);
    server
        .call(
            "PUT",
            &path,
            &member.auth(),
            Some(&json!({"roleId": OWNER})),
        )
        .expect_error(403);
    let r = server.call(
        "PUT",
        &path,
        &owner.auth(),
        Some(&json!({"roleId": EDITOR})),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let members = r.data();
    let promoted = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == member.id.as_str())
        .unwrap();
    assert_eq!(promoted["role"], "EDITOR");
    server
        .call("PUT", &path, &owner.auth(), Some(&json!({"roleId": 9})))
        .expect_error(400);

    let own = format!("/api/workspaces/{ws}/members/{}", owner.id);
    let msg = server
        .call("PUT", &own, &owner.auth(), Some(&json!({"roleId": VIEWER})))
        .expect_error(400);
    assert!(msg.contains("last OWNER"), "{msg}");
    let msg = server
        .call("DELETE", &own, &owner.auth(), None)
        .expect_error(400);
    assert!(msg.contains("last OWNER"), "{msg}");

    // With a second owner, the first may step down.
    server.call("PUT", &path, &owner.auth(), Some(&json!({"roleId": OWNER})));
    let r = server.call("PUT", &own, &owner.auth(), Some(&json!({"roleId": VIEWER})));
    assert_eq!(r.status, 200, "{}", r.text);
    let r = server.call("DELETE", &own, &member.auth(), None);
    assert_eq!(r.status, 200, "{}", r.text);
    server
        .get(&format!("/api/workspaces/{ws}"), &owner.auth())
        .expect_error(404);
}

fn tora(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn the_admin_cli_manages_users_and_keys_beside_a_running_server() {
    let server = TestServer::start_with(&["--signup", "closed"]);
    let db = server.db.to_str().unwrap().to_string();

    let (ok, out, err) = tora(
        &["user", "add", "Lab@Lead.org", "--db", &db],
        Some("a good password\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("created user lab@lead.org"), "{out}");
    assert!(
        !out.contains("a good password"),
        "a password from stdin is never echoed"
    );
    let (ok, out, _) = tora(&["user", "add", "second@lead.org", "--db", &db], None);
    assert!(ok);
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .expect("a generated password is printed")
        .to_string();
    let (ok, _, err) = tora(
        &["user", "add", "lab@lead.org", "--db", &db],
        Some("another password\n"),
    );
    assert!(!ok && err.contains("already exists"), "{err}");

    let login = |email: &str, password: &str| {
        server.post(
            "/api/login",
            &Auth::None,
            json!({"email": email, "password": password}),
        )
    };
    let session = login("lab@lead.org", "a good password");
    assert_eq!(session.status, 200, "{}", session.text);
    assert_eq!(login("second@lead.org", &generated).status, 200);

    let (ok, out, err) = tora(
        &[
            "api-key",
            "create",
            "--user",
            "lab@lead.org",
            "--name",
            "cluster",
            "--db",
            &db,
        ],
        None,
    );
    assert!(ok, "{err}");
    // stdout is the key and nothing else: `export TORA_API_KEY=$(tora api-key create ...)`.
    let key = out.trim_end_matches('\n').to_string();
    assert!(
        key.starts_with("tora_sk_") && !key.contains(char::is_whitespace),
        "stdout must be exactly the key, got {out:?}"
    );
    assert!(err.contains("created API key 'cluster'"), "{err}");
    let key_auth = Auth::Key(key.clone());
    let token = Auth::Bearer(session.data()["access_token"].as_str().unwrap().to_string());
    let refresh = session.data()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(server.get("/api/workspaces", &key_auth).status, 200);

    let (ok, out, _) = tora(&["user", "list", "--db", &db], None);
    assert!(
        ok && out.contains("lab@lead.org") && out.contains("active"),
        "{out}"
    );
    assert!(
        out.contains("confirmed"),
        "an account the admin made has a vouched-for address: {out}"
    );

    // Disabling stops the access token, the refresh token and the API key at once.
    let (ok, _, err) = tora(&["user", "disable", "lab@lead.org", "--db", &db], None);
    assert!(ok, "{err}");
    server.get("/api/workspaces", &key_auth).expect_error(401);
    server.get("/api/workspaces", &token).expect_error(401);
    server
        .post(
            "/api/refresh",
            &Auth::None,
            json!({"refresh_token": refresh}),
        )
        .expect_error(401);
    login("lab@lead.org", "a good password").expect_error(401);
    let (ok, out, _) = tora(&["user", "list", "--db", &db], None);
    assert!(ok && out.contains("disabled"), "{out}");

    let (ok, _, _) = tora(&["user", "enable", "lab@lead.org", "--db", &db], None);
    assert!(ok);
    assert_eq!(server.get("/api/workspaces", &key_auth).status, 200);
    assert_eq!(login("lab@lead.org", "a good password").status, 200);

    let (ok, _, err) = tora(
        &["user", "passwd", "lab@lead.org", "--db", &db],
        Some("the new password\n"),
    );
    assert!(ok, "{err}");
    login("lab@lead.org", "a good password").expect_error(401);
    assert_eq!(login("lab@lead.org", "the new password").status, 200);
    let (ok, _, err) = tora(&["user", "disable", "nobody@lead.org", "--db", &db], None);
    assert!(!ok && err.contains("not found"), "{err}");
}

#[test]
fn login_is_rate_limited_per_account_with_retry_after() {
    let server = TestServer::start();
    server.user("target@lab.org");
    let mut limited = None;
    for attempt in 0..15 {
        let r = server.post(
            "/api/login",
            &Auth::None,
            json!({"email": "target@lab.org", "password": "guess-guess"}),
        );
        if r.status == 429 {
            limited = Some((attempt, r));
            break;
        }
        r.expect_error(401);
    }
    let (attempt, r) = limited.expect("guessing must be rate limited");
    assert!(attempt <= 11, "limited only after {attempt} attempts");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1);
    r.expect_error(429);
    // Even the right password waits now, from this address: the limit is on tries at the
    // account from here, not on wrong guesses (tests/rate_limits.rs: other addresses).
    server
        .post(
            "/api/login",
            &Auth::None,
            json!({"email": "target@lab.org", "password": "correct horse battery"}),
        )
        .expect_error(429);
    // Another account is unaffected.
    server.user("other@lab.org");
}

#[test]
fn signup_is_rate_limited_per_address() {
    let server = TestServer::start();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let r = server.post(
            "/api/signup",
            &Auth::None,
            json!({"email": format!("bot{i}@spam.org"), "password": "longenough"}),
        );
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..10], &[201; 10]);
    assert_eq!(statuses[10], 429);
}

fn sign(claims: &Value, secret: &[u8], alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[test]
fn forged_expired_and_wrong_kind_tokens_are_refused() {
    let server = TestServer::start();
    let user = server.user("t@lab.org");
    let secret: Vec<u8> = server
        .sql()
        .query_row(
            "SELECT value FROM settings WHERE key = 'jwt_secret'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let good = json!({"sub": user.id, "iat": now, "exp": now + 600, "typ": "access"});
    // Sanity: a token the server would sign itself passes, so the refusals below are meaningful.
    assert_eq!(
        server
            .get(
                "/api/workspaces",
                &Auth::Bearer(sign(&good, &secret, jsonwebtoken::Algorithm::HS256))
            )
            .status,
        200
    );

    let expired = json!({"sub": user.id, "iat": now - 7200, "exp": now - 3600, "typ": "access"});
    let wrong_kind = json!({"sub": user.id, "iat": now, "exp": now + 600, "typ": "refresh"});
    let no_iat = json!({"sub": user.id, "exp": now + 600, "typ": "access"});
    let b64 = |s: &str| {
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = s.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let alg_none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&good.to_string())
    );
    let real = sign(&good, &secret, jsonwebtoken::Algorithm::HS256);
    let mut parts: Vec<String> = real.split('.').map(str::to_string).collect();
    parts[1] = b64(
        &json!({"sub": user.id, "iat": now, "exp": now + 999_999, "typ": "access"}).to_string(),
    );
    let tampered = parts.join(".");
    for (what, token) in [
        (
            "expired",
            sign(&expired, &secret, jsonwebtoken::Algorithm::HS256),
        ),
        (
            "wrong secret",
            sign(
                &good,
                b"not the server secret at all....",
                jsonwebtoken::Algorithm::HS256,
            ),
        ),
        (
            "other HMAC algorithm",
            sign(&good, &secret, jsonwebtoken::Algorithm::HS512),
        ),
        (
            "not an access token",
            sign(&wrong_kind, &secret, jsonwebtoken::Algorithm::HS256),
        ),
        (
            "no iat",
            sign(&no_iat, &secret, jsonwebtoken::Algorithm::HS256),
        ),
        ("alg none", alg_none),
        ("tampered payload", tampered),
        ("refresh token as access token", user.refresh.clone()),
        ("api key as bearer", user.key.clone()),
    ] {
        let r = server.get("/api/workspaces", &Auth::Bearer(token));
        assert_eq!(r.status, 401, "{what}: {}", r.text);
    }
}

#[test]
fn a_loopback_server_refuses_foreign_host_names() {
    let server = TestServer::start();
    let get = |host: &str| {
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        write!(s, "GET /api/health HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out
    };
    assert!(get("localhost:8080").starts_with("HTTP/1.0 200"));
    assert!(get(&server.addr).starts_with("HTTP/1.0 200"));
    let refused = get("attacker.example:8080");
    assert!(refused.starts_with("HTTP/1.0 421"), "{refused}");
    assert!(refused.contains("MISDIRECTED_REQUEST"));
}

#[test]
fn cross_origin_calls_need_an_allowed_origin() {
    let preflight = |server: &TestServer, origin: &str| {
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        write!(
            s,
            "OPTIONS /api/experiments HTTP/1.0\r\nHost: {}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-api-key, content-type\r\n\r\n",
            server.addr
        )
        .unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).unwrap();
        out.to_ascii_lowercase()
    };
    let closed = TestServer::start();
    assert!(
        !preflight(&closed, "http://notebook.lab:8888").contains("access-control-allow-origin")
    );
    let open = TestServer::start_with(&["--cors-origin", "http://notebook.lab:8888"]);
    let allowed = preflight(&open, "http://notebook.lab:8888");
    assert!(
        allowed.contains("access-control-allow-origin: http://notebook.lab:8888"),
        "{allowed}"
    );
    assert!(!preflight(&open, "http://evil.example").contains("access-control-allow-origin"));
}

#[test]
fn a_personal_workspace_always_keeps_its_owner() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let mallory = server.user("mallory@lab.org");
    // Alice's run without a workspace lands in her Personal workspace...
    let run = server.experiment(&alice, "first", None);
    let ws = server
        .get(&format!("/api/experiments/{run}"), &alice.auth())
        .data()["workspace_id"]
        .as_str()
        .unwrap()
        .to_string();
    // ...which she shares with Mallory as a co-OWNER.
    server.add_member(&ws, &mallory, OWNER);

    let me = format!("/api/workspaces/{ws}/members/{}", alice.id);
    let r = server.call("DELETE", &me, &mallory.auth(), None);
    assert!(r.expect_error(400).contains("Personal workspace"));
    let r = server.call(
        "PUT",
        &me,
        &mallory.auth(),
        Some(&json!({"roleId": VIEWER})),
    );
    assert!(r.expect_error(400).contains("Personal workspace"));
    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}"),
        &mallory.auth(),
        None,
    );
    r.expect_error(403);
    let r = server.post(
        &format!("/api/workspaces/{ws}/leave"),
        &alice.auth(),
        json!({}),
    );
    r.expect_error(400);

    // Alice is still OWNER there, and her next run without a workspace lands there too.
    let members = server
        .get(&format!("/api/workspaces/{ws}/members"), &alice.auth())
        .data();
    let alice_row = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == alice.id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(alice_row["role"], "OWNER", "{alice_row}");
    let second = server.experiment(&alice, "second", None);
    let r = server.get(&format!("/api/experiments/{second}"), &alice.auth());
    assert_eq!(r.data()["workspace_id"], ws.as_str());
    // Mallory may leave it, and Alice may delete it.
    let r = server.post(
        &format!("/api/workspaces/{ws}/leave"),
        &mallory.auth(),
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = server.call(
        "DELETE",
        &format!("/api/workspaces/{ws}"),
        &alice.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn a_personal_workspace_taken_from_its_owner_before_the_rule_is_mended() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let run = server.experiment(&alice, "first", None);
    let ws = server
        .get(&format!("/api/experiments/{run}"), &alice.auth())
        .data()["workspace_id"]
        .as_str()
        .unwrap()
        .to_string();
    // What an older Tora allowed: a co-owner removed her from it.
    let conn = server.sql();
    conn.execute(
        "DELETE FROM workspace_members WHERE workspace_id = ?1 AND user_id = ?2",
        [&ws, &alice.id],
    )
    .unwrap();
    drop(conn);
    // Her next run without a workspace still lands where she is OWNER: there, mended.
    let next = server.experiment(&alice, "next", None);
    let r = server.get(&format!("/api/experiments/{next}"), &alice.auth());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["workspace_id"], ws.as_str());
    let r = server.call(
        "DELETE",
        &format!("/api/experiments/{next}"),
        &alice.auth(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
}
