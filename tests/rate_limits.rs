//! The rate limits slow down guessing without becoming a way to lock people out: each story
//! has an attacker at another address (127.0.0.2) and the account's owner at their own
//! (127.0.0.1), and checks the numbers the README documents.

mod common;

use common::*;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery";

fn login_from(server: &TestServer, source: &str, email: &str, password: &str) -> Response {
    server.call_from(
        source,
        "POST",
        "/api/login",
        &Auth::None,
        Some(&json!({"email": email, "password": password})),
    )
}

#[test]
fn a_guesser_elsewhere_cannot_lock_the_owner_out() {
    let server = TestServer::start();
    server.user("alice@lab.org");
    // Ten wrong passwords (the per-account-and-address burst), then the eleventh waits...
    for _ in 0..10 {
        assert_eq!(
            login_from(&server, "127.0.0.2", "alice@lab.org", "wrong-password").status,
            401
        );
    }
    let r = login_from(&server, "127.0.0.2", "alice@lab.org", PASSWORD);
    r.expect_error(429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=6).contains(&wait), "{wait}");
    // ...even with the right password, from that address. Alice, from hers, signs in at once.
    let r = login_from(&server, "127.0.0.1", "alice@lab.org", PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn an_account_named_like_an_address_does_not_drain_that_address() {
    let server = TestServer::start();
    server.user("bob@lab.org");
    // Twenty logins for the "e-mail" 127.0.0.1 (the per-address burst) from elsewhere.
    for _ in 0..30 {
        login_from(&server, "127.0.0.2", "127.0.0.1", "whatever-password");
    }
    // The client at 127.0.0.1 has its whole per-address burst of 20 (one of which went on
    // `server.user`'s login).
    for i in 0..19 {
        let r = login_from(&server, "127.0.0.1", &format!("u{i}@lab.org"), "nope-nope");
        assert_eq!(r.status, 401, "try {i}: {}", r.text);
    }
    login_from(&server, "127.0.0.1", "bob@lab.org", PASSWORD).expect_error(429);
}

#[test]
fn refresh_allows_twenty_per_account_then_refuses_without_spending_the_token() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let refresh =
        |token: &str| server.post("/api/refresh", &Auth::None, json!({"refresh_token": token}));
    // `server.user` logged in, which costs no refresh; the documented 20 pass.
    let mut token = alice.refresh.clone();
    for i in 0..20 {
        let r = refresh(&token);
        assert_eq!(r.status, 200, "refresh {i}: {}", r.text);
        token = r.data()["refresh_token"].as_str().unwrap().to_string();
    }
    let r = refresh(&token);
    r.expect_error(429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    // The refused token was not spent: after the wait it still works, and is not taken for a
    // stolen copy (which would end the login).
    std::thread::sleep(std::time::Duration::from_secs(wait));
    let r = refresh(&token);
    assert_eq!(r.status, 200, "{}", r.text);
    let data: Value = r.data();
    assert!(data["access_token"].is_string());
    assert_eq!(data["user"]["email"], "alice@lab.org");
}
