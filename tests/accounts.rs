//! Accounts, sessions and API keys over real HTTP.

mod common;

use common::{Auth, BIN, TestServer};
use serde_json::json;

#[test]
fn a_researcher_signs_up_logs_in_and_refreshes() {
    let server = TestServer::start();
    let r = server.post(
        "/api/signup",
        &Auth::None,
        json!({"email": "  Ada@Lab.org ", "password": "longenough"}),
    );
    // Stored in its one canonical form: trimmed, NFKC, lower case.
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.data()["email"], "ada@lab.org");

    // E-mails compare case-insensitively: the same address in other case is taken.
    server
        .post(
            "/api/signup",
            &Auth::None,
            json!({"email": "ada@lab.org", "password": "longenough"}),
        )
        .expect_error(409);

    let r = server.post(
        "/api/login",
        &Auth::None,
        json!({"email": "ADA@lab.org", "password": "longenough"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let s = r.data();
    assert_eq!(s["token_type"], "bearer");
    assert_eq!(s["user"]["email"], "ada@lab.org");
    assert!(s["expires_in"].as_i64().unwrap() > 0);
    assert!(s["expires_at"].as_i64().unwrap() > 1_700_000_000);
    let access = s["access_token"].as_str().unwrap().to_string();
    let refresh = s["refresh_token"].as_str().unwrap().to_string();

    let r = server.get("/api/workspaces", &Auth::Bearer(access));
    assert_eq!(r.status, 200, "{}", r.text);

    // Refresh rotates: the new token works, the old one is spent and now ends the login.
    let r = server.post(
        "/api/refresh",
        &Auth::None,
        json!({"refresh_token": refresh}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let rotated = r.data()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rotated, refresh);
    assert_eq!(
        server
            .get(
                "/api/workspaces",
                &Auth::Bearer(r.data()["access_token"].as_str().unwrap().into())
            )
            .status,
        200
    );
    server
        .post(
            "/api/refresh",
            &Auth::None,
            json!({"refresh_token": refresh}),
        )
        .expect_error(401);
    // Reuse of a rotated token revoked the whole family, including the newest token.
    server
        .post(
            "/api/refresh",
            &Auth::None,
            json!({"refresh_token": rotated}),
        )
        .expect_error(401);
}

#[test]
fn wrong_password_and_unknown_email_look_the_same() {
    let server = TestServer::start();
    server.user("bob@lab.org");
    let wrong = server
        .post(
            "/api/login",
            &Auth::None,
            json!({"email": "bob@lab.org", "password": "not the password"}),
        )
        .expect_error(401);
    let unknown = server
        .post(
            "/api/login",
            &Auth::None,
            json!({"email": "nobody@lab.org", "password": "not the password"}),
        )
        .expect_error(401);
    assert_eq!(wrong, unknown);
}

#[test]
fn signup_rejects_short_passwords_and_bad_emails() {
    let server = TestServer::start();
    let msg = server
        .post(
            "/api/signup",
            &Auth::None,
            json!({"email": "c@lab.org", "password": "short"}),
        )
        .expect_error(400);
    assert!(msg.contains("8 characters"), "{msg}");
    server
        .post(
            "/api/signup",
            &Auth::None,
            json!({"email": "not-an-email", "password": "longenough"}),
        )
        .expect_error(400);
    server
        .post("/api/signup", &Auth::None, json!({"email": "c@lab.org"}))
        .expect_error(400);
    // Nothing was created by the refused attempts.
    server
        .post(
            "/api/login",
            &Auth::None,
            json!({"email": "c@lab.org", "password": "short"}),
        )
        .expect_error(401);
}

#[test]
fn closed_signup_refuses_new_accounts() {
    let server = TestServer::start_with(&["--signup", "closed"]);
    let msg = server
        .post(
            "/api/signup",
            &Auth::None,
            json!({"email": "d@lab.org", "password": "longenough"}),
        )
        .expect_error(403);
    assert!(msg.contains("closed"), "{msg}");
}

/// Without mail nothing could carry a confirmation token but the signup reply, and a token in
/// the reply proves nothing: so none is made. Stored tokens (mailed ones, tests/invitations.rs)
/// work once and for 7 days; a forged one confirms nothing.
#[test]
fn without_mail_signup_makes_no_confirmation_token_and_forged_ones_pass_nothing() {
    use sha2::Digest;
    let server = TestServer::start();
    let r = server.post(
        "/api/signup",
        &Auth::None,
        json!({"email": "e@lab.org", "password": "longenough"}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.data()["mailed"], false);
    assert!(r.data().get("confirmation_token").is_none(), "{}", r.text);
    let conn = server.sql();
    let tokens: i64 = conn
        .query_row("SELECT count(*) FROM confirmations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tokens, 0);

    // Tokens as a mail would have carried them: one fresh, one 8 days old.
    let user: String = conn
        .query_row("SELECT id FROM users", [], |r| r.get(0))
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (token, made) in [("fresh-token", now), ("old-token", now - 8 * 86_400_000)] {
        conn.execute(
            "INSERT INTO confirmations (token_hash, user_id, created_at) VALUES (?1, ?2, ?3)",
            tora::sql::params![sha2::Sha256::digest(token).to_vec(), user, made],
        )
        .unwrap();
    }
    drop(conn);
    let confirm = |token: &str| {
        server.get(
            &format!("/api/signup/confirm?token_hash={token}&confirm_type=email"),
            &Auth::None,
        )
    };
    confirm("old-token").expect_error(400);
    confirm("forged").expect_error(400);
    let r = confirm("fresh-token");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["email"], "e@lab.org");
    assert_eq!(r.data()["email_confirmed"], true);
    confirm("fresh-token").expect_error(400);
    server
        .get("/api/signup/confirm", &Auth::None)
        .expect_error(400);
    // Nothing can carry a new link either.
    assert_eq!(server.get("/api/setup", &Auth::None).data()["mail"], false);
    let user = server.login("e@lab.org", "longenough");
    let msg = server
        .post("/api/me/confirmation", &user.auth(), json!({}))
        .expect_error(400);
    assert!(msg.contains("tora user confirm"), "{msg}");
}

#[test]
fn nothing_is_readable_without_credentials() {
    let server = TestServer::start();
    let user = server.user("f@lab.org");
    let exp = server.experiment(&user, "private", None);
    for path in [
        "/api/workspaces".to_string(),
        "/api/experiments".to_string(),
        "/api/api-keys".to_string(),
        "/api/workspace-roles".to_string(),
        format!("/api/experiments/{exp}"),
        format!("/api/experiments/{exp}/logs"),
        format!("/api/experiments/{exp}/logs/csv"),
    ] {
        for auth in [
            Auth::None,
            Auth::Key("tora_sk_thisisnotarealkeyatall000000000000000".into()),
            Auth::Bearer("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".into()),
            Auth::Bearer(format!("{}x", user.token)),
        ] {
            let r = server.get(&path, &auth);
            r.expect_error(401);
            assert!(!r.text.contains("private"), "{path}: {}", r.text);
        }
    }
}

#[test]
fn api_keys_are_shown_once_and_revoked_at_once() {
    let server = TestServer::start();
    let user = server.user("g@lab.org");
    let r = server.post("/api/api-keys", &user.bearer(), json!({"name": "laptop"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let key = r.data()["key"].as_str().unwrap().to_string();
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("tora_sk_") && key.len() >= 40, "{key}");
    assert_eq!(r.data()["revoked"], false);

    assert_eq!(
        server
            .get("/api/experiments", &Auth::Key(key.clone()))
            .status,
        200
    );
    let list = server.get("/api/api-keys", &user.bearer());
    assert!(
        !list.text.contains(&key),
        "the key must never be shown again"
    );
    let listed = list.data();
    let laptop = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert_eq!(laptop["name"], "laptop");
    assert!(
        laptop["last_used"].is_string(),
        "last use is tracked: {laptop}"
    );

    // The database holds only a hash of the key.
    let conn = server.sql();
    let stored: Vec<u8> = conn
        .query_row("SELECT key_hash FROM api_keys WHERE id = ?1", [&id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored.len(), 32);
    assert!(!String::from_utf8_lossy(&stored).contains(&key[8..]));

    // Someone else cannot revoke it.
    let other = server.user("h@lab.org");
    server
        .call(
            "DELETE",
            &format!("/api/api-keys/{id}"),
            &other.bearer(),
            None,
        )
        .expect_error(404);
    assert_eq!(
        server
            .get("/api/experiments", &Auth::Key(key.clone()))
            .status,
        200
    );

    let r = server.call(
        "DELETE",
        &format!("/api/api-keys/{id}"),
        &user.bearer(),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    server
        .get("/api/experiments", &Auth::Key(key))
        .expect_error(401);
}

#[test]
fn the_sign_in_page_learns_whether_this_is_a_first_run() {
    let server = TestServer::start();
    let r = server.get("/api/setup", &Auth::None);
    assert_eq!(
        r.data(),
        json!({"has_accounts": false, "signup": "open", "mail": false})
    );
    let user = server.user("first@lab.org");
    assert_eq!(
        server.get("/api/setup", &Auth::None).data()["has_accounts"],
        true
    );
    assert_eq!(
        server.get("/api/me", &user.bearer()).data()["email"],
        "first@lab.org"
    );
}

#[test]
fn a_user_changes_their_password_and_other_sessions_end() {
    let server = TestServer::start();
    let user = server.user("pw@lab.org");
    let body = json!({"current_password": "wrong password", "new_password": "brand new password"});
    server
        .call("PUT", "/api/me/password", &user.bearer(), Some(&body))
        .expect_error(403);
    let short = json!({"current_password": "correct horse battery", "new_password": "short"});
    server
        .call("PUT", "/api/me/password", &user.bearer(), Some(&short))
        .expect_error(400);
    let body =
        json!({"current_password": "correct horse battery", "new_password": "brand new password"});
    let r = server.call("PUT", "/api/me/password", &user.bearer(), Some(&body));
    assert_eq!(r.status, 200, "{}", r.text);
    server
        .post(
            "/api/refresh",
            &Auth::None,
            json!({"refresh_token": user.refresh}),
        )
        .expect_error(401);
    server
        .post(
            "/api/login",
            &Auth::None,
            json!({"email": "pw@lab.org", "password": "correct horse battery"}),
        )
        .expect_error(401);
    let r = server.post(
        "/api/login",
        &Auth::None,
        json!({"email": "pw@lab.org", "password": "brand new password"}),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn look_alike_addresses_cannot_make_a_second_account() {
    let server = TestServer::start();
    server.user("alice@lab.org");
    let signup = |email: &str| {
        server.post(
            "/api/signup",
            &Auth::None,
            json!({"email": email, "password": "correct horse battery"}),
        )
    };
    // The same address written differently is the same account: taken.
    for same in [
        "ALICE@lab.org",
        "ａｌｉｃｅ@ｌａｂ.ｏｒｇ",
        "alice@lab.org.",
    ] {
        signup(same).expect_error(409);
    }
    // Addresses that only look the same are refused, saying why.
    for (fake, says) in [
        ("alice\u{200B}@lab.org", "invisible character"),
        ("\u{430}lice@lab.org", "mixes Cyrillic and Latin"),
        ("alice@lab.org\u{2060}", "invisible character"),
    ] {
        assert!(signup(fake).expect_error(400).contains(says), "{fake:?}");
    }
    // The admin CLI applies the same rules.
    let out = std::process::Command::new(BIN)
        .args(["user", "add", "\u{430}lice@lab.org", "--db"])
        .arg(&server.db)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mixes Cyrillic and Latin"));
    // Alice signs in with any way of writing her address.
    for same in ["Alice@Lab.org", "ａｌｉｃｅ@lab.org", "alice@lab.org."] {
        let r = server.post(
            "/api/login",
            &Auth::None,
            json!({"email": same, "password": "correct horse battery"}),
        );
        assert_eq!(r.status, 200, "{same}: {}", r.text);
    }
}

#[test]
fn logging_out_ends_that_login_and_signing_out_everywhere_ends_all() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let login = || {
        let r = server.post(
            "/api/login",
            &Auth::None,
            json!({"email": "alice@lab.org", "password": "correct horse battery"}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        // Token answers are never stored by a browser or proxy.
        assert_eq!(r.header("cache-control"), Some("no-store"));
        r.data()["refresh_token"].as_str().unwrap().to_string()
    };
    let refresh =
        |token: &str| server.post("/api/refresh", &Auth::None, json!({"refresh_token": token}));
    let laptop = login();
    let phone = login();
    let r = server.post("/api/logout", &Auth::None, json!({"refresh_token": laptop}));
    assert_eq!(r.status, 200, "{}", r.text);
    refresh(&laptop).expect_error(401);
    // The other login lives on; an unknown token gets the same answer as a real one.
    let r = refresh(&phone);
    assert_eq!(r.status, 200, "{}", r.text);
    let phone = r.data()["refresh_token"].as_str().unwrap().to_string();
    let r = server.post(
        "/api/logout",
        &Auth::None,
        json!({"refresh_token": "tora_rt_nope"}),
    );
    assert_eq!(r.status, 200);

    let r = server.call("DELETE", "/api/me/sessions", &alice.bearer(), None);
    assert_eq!(r.status, 200, "{}", r.text);
    refresh(&phone).expect_error(401);
    refresh(&alice.refresh).expect_error(401);
    // Nobody else can end Alice's sessions without being her.
    server
        .call("DELETE", "/api/me/sessions", &Auth::None, None)
        .expect_error(401);
}
