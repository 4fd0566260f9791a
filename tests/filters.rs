//! Run-list filters are client input that shapes a tree. However a lab member shapes one
//! (nested thousands deep, thousands of terms wide), the server answers with a 400 that names
//! the limit, keeps running, and never parses anything for someone who may not read the runs.

mod common;

use std::time::Duration;

use common::*;

fn list(server: &TestServer, user: &User, ws: &str, q: &str) -> Response {
    // Spaces as '+' and every reserved character escaped, as an HTML form sends them.
    let encoded: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    server.get(
        &format!("/api/workspaces/{ws}/experiments?q={encoded}"),
        &user.auth(),
    )
}

fn names(r: &Response) -> Vec<String> {
    let mut names: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn hostile_filters_get_a_400_naming_the_limit_and_the_server_keeps_serving() {
    let mut server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let ws = server.workspace(&alice, "lab");
    for name in ["resnet-a", "resnet-b", "vit"] {
        server.experiment(&alice, name, Some(&ws));
    }

    let nested = |n: usize| format!("{}resnet{}", "(".repeat(n), ")".repeat(n));
    let attacks = [
        (nested(2_400), "characters long; the limit is 2000"),
        (nested(600), "nest deeper than 32 levels"),
        (
            format!("{}resnet", "not ".repeat(5_000)),
            "the limit is 2000",
        ),
        (
            format!("{}resnet", "not ".repeat(400)),
            "nest deeper than 32",
        ),
        (vec!["a"; 12_000].join(" or "), "the limit is 2000"),
        (vec!["a"; 1_100].join(" or "), "the limit is 2000"),
        (vec!["a"; 101].join(" or "), "more than 100 conditions"),
    ];
    for (q, says) in attacks {
        let r = list(&server, &alice, &ws, &q);
        let message = r.expect_error(400);
        assert!(message.contains(says), "{}...: {message}", &q[..12]);
        assert!(message.starts_with("q"), "{message}");
        server.assert_serves_within(Duration::from_secs(2));
    }

    // A request head (line and headers) over 64 KiB is refused by the HTTP layer itself,
    // before any handler: 431.
    let huge = format!(
        "/api/workspaces/{ws}/experiments?q={}",
        vec!["a"; 12_000].join("%20or%20")
    );
    assert_eq!(server.get(&huge, &alice.auth()).status, 431);
    server.assert_serves_within(Duration::from_secs(2));

    // At the limits the filter runs and answers correctly: 32 levels deep, and 100 terms
    // that each test a hyperparameter or a result (two subqueries apiece for SQLite).
    let r = list(&server, &alice, &ws, &nested(32));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(names(&r), ["resnet-a", "resnet-b"]);
    let wide = (0..99)
        .map(|i| format!("lr{i} < 0.5"))
        .chain(["name ~ vit".to_string()])
        .collect::<Vec<_>>()
        .join(" or ");
    let r = list(&server, &alice, &ws, &wide);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(names(&r), ["vit"]);
    let r = list(&server, &alice, &ws, &format!("{}vit", "not ".repeat(32)));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(names(&r), ["vit"], "an even number of 'not's");
    assert!(server.alive());
}

#[test]
fn an_outsider_gets_404_before_the_filter_is_even_read() {
    let server = TestServer::start();
    let alice = server.user("alice@lab.org");
    let mallory = server.user("mallory@elsewhere.org");
    let ws = server.workspace(&alice, "lab");
    server.experiment(&alice, "secret-run", Some(&ws));

    for q in ["(((((", "secret", &"(".repeat(2_400)] {
        let r = list(&server, &mallory, &ws, q);
        let message = r.expect_error(404);
        assert!(!message.contains("q:"), "{message}");
        assert!(!r.text.contains("secret-run"));
    }
    // The owner gets the parse error for the same malformed filter.
    let r = list(&server, &alice, &ws, "(((((");
    assert!(r.expect_error(400).contains("q:"));
}
