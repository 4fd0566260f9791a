//! Invitations bound to a proven address (issue 11, item 1): knowing or claiming an e-mail
//! address is never enough to join a workspace. An invitation is a single-use link the OWNER
//! shares (or the server mails); without the link, only an account whose address is proven
//! (confirmed through a mailed link, or made or vouched for by the admin) finds it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::{Auth, TestServer, User};
use serde_json::{Value, json};

const EDITOR: i64 = 2;
const VIEWER: i64 = 3;
const PASSWORD: &str = "correct horse battery";
const DEAD_LINK: &str = "this invitation link is invalid, was already used, or has expired";

fn invite(server: &TestServer, by: &User, ws: &str, email: &str, role: i64) -> Value {
    let r = server.post(
        "/api/workspace-invitations",
        &by.auth(),
        json!({"workspaceId": ws, "email": email, "roleId": role}),
    );
    assert_eq!(r.status, 201, "invite: {}", r.text);
    r.data()
}

fn answer(server: &TestServer, who: &User, id: &str, action: &str) -> common::Response {
    server.call(
        "PUT",
        &format!("/api/workspaces/any/invitations?invitationId={id}&action={action}"),
        &who.auth(),
        None,
    )
}

/// `POST /api/invitations/{accept|decline} {token}`.
fn use_link(server: &TestServer, who: &Auth, action: &str, token: &str) -> common::Response {
    server.post(
        &format!("/api/invitations/{action}"),
        who,
        json!({"token": token}),
    )
}

fn preview(server: &TestServer, who: &Auth, token: &str) -> common::Response {
    server.get(&format!("/api/invitations/{token}"), who)
}

fn signup(server: &TestServer, email: &str) -> Value {
    let r = server.post(
        "/api/signup",
        &Auth::None,
        json!({"email": email, "password": PASSWORD}),
    );
    assert_eq!(r.status, 201, "signup: {}", r.text);
    r.data()
}

fn count(server: &TestServer, sql: &str) -> i64 {
    let conn = server.sql();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn a_stranger_who_signs_up_with_the_invited_address_cannot_join() {
    let server = TestServer::start();
    let owner = server.user("pi@lab.org");
    let ws = server.workspace(&owner, "secret-lab");
    let exp = server.experiment(&owner, "secret-run", Some(&ws));
    let inv = invite(&server, &owner, &ws, "bob@lab.org", VIEWER);
    let token = inv["token"].as_str().unwrap().to_string();
    assert!(
        token.starts_with("tora_inv_") && token.len() == 49,
        "{token}"
    );
    assert!(token[9..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        inv["link"].as_str().unwrap(),
        format!("{}/invitations/{token}", server.url())
    );
    assert_eq!(inv["mailed"], false);
    assert_eq!(
        count(
            &server,
            "SELECT count(*) FROM invitations WHERE token_hash IS NOT NULL"
        ),
        1
    );

    // The stranger claims Bob's address in another case. The reply carries no token that
    // could confirm it, and without mail none is even made.
    let signed_up = signup(&server, "BOB@lab.org");
    assert_eq!(signed_up["email"], "bob@lab.org");
    assert_eq!(signed_up["mailed"], false);
    assert!(signed_up.get("confirmation_token").is_none(), "{signed_up}");
    assert_eq!(count(&server, "SELECT count(*) FROM confirmations"), 0);
    let stranger = server.login("bob@lab.org", PASSWORD);
    assert_eq!(
        server.get("/api/me", &stranger.auth()).data()["email_confirmed"],
        false
    );

    // To an unproven account, invitations addressed to it do not exist.
    let mine = server.get("/api/workspace-invitations", &stranger.auth());
    assert_eq!(mine.data(), json!([]));
    let id = inv["id"].as_str().unwrap();
    for action in ["accept", "decline"] {
        let r = answer(&server, &stranger, id, action);
        r.expect_error(404);
        assert!(!r.text.contains("secret"), "{}", r.text);
    }
    for path in [
        format!("/api/workspaces/{ws}"),
        format!("/api/experiments/{exp}"),
    ] {
        let r = server.get(&path, &stranger.auth());
        r.expect_error(404);
        assert!(!r.text.contains("secret"), "{}", r.text);
    }
    let listed = server.get("/api/workspaces", &stranger.auth());
    assert!(!listed.text.contains(&ws), "{}", listed.text);
    // Nothing was spent: the owner still sees the invitation pending.
    let pending = server
        .get(&format!("/api/workspaces/{ws}/invitations"), &owner.auth())
        .data();
    assert_eq!(pending[0]["id"], id);

    // The other side: the owner shares the link with the real Bob, who joins under another
    // address and reads the run.
    let bob = server.user("robert@home.org");
    let r = use_link(&server, &bob.auth(), "accept", &token);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["workspaceId"], ws.as_str());
    assert_eq!(
        server
            .get(&format!("/api/experiments/{exp}"), &bob.auth())
            .data()["name"],
        "secret-run"
    );
    // The link is spent; the stranger still reads nothing.
    let r = use_link(&server, &stranger.auth(), "accept", &token);
    assert_eq!(r.expect_error(404), DEAD_LINK);
    server
        .get(&format!("/api/experiments/{exp}"), &stranger.auth())
        .expect_error(404);
}

#[test]
fn an_invitation_link_works_once_and_not_after_it_expires() {
    let server = TestServer::start();
    let owner = server.user("pi@lab.org");
    let carol = server.user("carol@lab.org");
    let dave = server.user("dave@lab.org");
    let ws = server.workspace(&owner, "vision-lab");
    let first = invite(&server, &owner, &ws, "a@lab.org", VIEWER);
    let token = first["token"].as_str().unwrap();

    // Anyone signed in who holds the link sees what it offers; nobody else does.
    preview(&server, &Auth::None, token).expect_error(401);
    let offer = preview(&server, &carol.auth(), token).data();
    assert_eq!(offer["workspaceName"], "vision-lab");
    assert_eq!(offer["workspaceId"], ws.as_str());
    assert_eq!(offer["role"], "VIEWER");
    assert_eq!(offer["email"], "a@lab.org");
    assert_eq!(offer["from"], "pi@lab.org");
    assert_eq!(offer["member"], false);
    assert_eq!(offer["expires_at"], first["expires_at"]);
    // An OWNER trying their own link is told so, and does not spend it.
    assert_eq!(
        preview(&server, &owner.auth(), token).data()["member"],
        true
    );
    use_link(&server, &owner.auth(), "accept", token).expect_error(409);

    let r = use_link(&server, &carol.auth(), "accept", token);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["action"], "accepted");
    let members = server
        .get(&format!("/api/workspaces/{ws}/members"), &carol.auth())
        .data();
    let joined = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == carol.id.as_str())
        .expect("carol is a member");
    assert_eq!(joined["role"], "VIEWER");

    // Used once: preview, accept and decline all answer as for a link that never existed.
    let unknown = "tora_inv_0000000000000000000000000000000000000000";
    for t in [token, unknown] {
        assert_eq!(
            preview(&server, &dave.auth(), t).expect_error(404),
            DEAD_LINK
        );
        for action in ["accept", "decline"] {
            let r = use_link(&server, &dave.auth(), action, t);
            assert_eq!(r.expect_error(404), DEAD_LINK);
        }
    }
    server
        .get(&format!("/api/workspaces/{ws}"), &dave.auth())
        .expect_error(404);

    // An expired link is dead too, and out of the owner's list; the address can be invited
    // again, with a new link.
    let second = invite(&server, &owner, &ws, "b@lab.org", EDITOR);
    let expired = second["token"].as_str().unwrap();
    let conn = server.sql();
    conn.execute(
        "UPDATE invitations SET expires_at = 1 WHERE email = 'b@lab.org'",
        [],
    )
    .unwrap();
    drop(conn);
    assert_eq!(
        preview(&server, &dave.auth(), expired).expect_error(404),
        DEAD_LINK
    );
    assert_eq!(
        use_link(&server, &dave.auth(), "accept", expired).expect_error(404),
        DEAD_LINK
    );
    server
        .get(&format!("/api/workspaces/{ws}"), &dave.auth())
        .expect_error(404);
    let pending = server
        .get(&format!("/api/workspaces/{ws}/invitations"), &owner.auth())
        .data();
    assert_eq!(pending, json!([]));
    let third = invite(&server, &owner, &ws, "b@lab.org", EDITOR);
    assert_ne!(third["token"], second["token"]);

    // Declining spends the link as well.
    let declined = third["token"].as_str().unwrap();
    let r = use_link(&server, &dave.auth(), "decline", declined);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["action"], "declined");
    use_link(&server, &dave.auth(), "accept", declined).expect_error(404);
    server
        .get(&format!("/api/workspaces/{ws}"), &dave.auth())
        .expect_error(404);
}

/// What the SMTP sink received in one DATA section.
struct Captured {
    from: String,
    to: Vec<String>,
    data: String,
}

impl Captured {
    /// The first line of the body that holds `needle`.
    fn line_with(&self, needle: &str) -> String {
        self.data
            .split("\r\n")
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in {}", self.data))
            .to_string()
    }
}

/// A small SMTP server on a free port that accepts every mail and hands it to the test.
fn smtp_sink() -> (u16, mpsc::Receiver<Captured>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = smtp_session(conn, &tx);
            });
        }
    });
    (port, rx)
}

fn smtp_session(conn: TcpStream, tx: &mpsc::Sender<Captured>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    out.write_all(b"220 sink.test ESMTP\r\n")?;
    let (mut from, mut to) = (String::new(), Vec::new());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        assert!(
            line.ends_with("\r\n"),
            "an SMTP line ends in CRLF: {line:?}"
        );
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO ") {
            out.write_all(b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().to_string();
            out.write_all(b"250 ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            to.push(line[8..].trim().to_string());
            out.write_all(b"250 ok\r\n")?;
        } else if upper.starts_with("DATA") {
            out.write_all(b"354 end with a dot\r\n")?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l)? == 0 {
                    return Ok(());
                }
                if l == ".\r\n" {
                    break;
                }
                // Undo dot-stuffing, as a real server does.
                data.push_str(l.strip_prefix('.').unwrap_or(&l));
            }
            let _ = tx.send(Captured {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            out.write_all(b"250 queued\r\n")?;
        } else if upper.starts_with("QUIT") {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"502 not here\r\n")?;
        }
    }
}

fn next_mail(mails: &mpsc::Receiver<Captured>) -> Captured {
    mails
        .recv_timeout(Duration::from_secs(15))
        .expect("a mail within 15 s")
}

#[test]
fn with_mail_signup_confirms_the_address_and_an_invitation_mails_its_link() {
    let (port, mails) = smtp_sink();
    let relay = format!("smtp://127.0.0.1:{port}");
    let server = TestServer::start_with(&["--smtp-url", &relay, "--mail-from", "tora@lab.org"]);
    let owner = server.user("pi@lab.org");
    let welcome = next_mail(&mails);
    assert_eq!(welcome.to, vec!["<pi@lab.org>"]);
    let ws = server.workspace(&owner, "vision-lab");

    // Inviting mails the link to the address; the OWNER gets the same link once.
    let inv = invite(&server, &owner, &ws, "bob@lab.org", EDITOR);
    assert_eq!(inv["mailed"], true);
    let mail = next_mail(&mails);
    assert_eq!(mail.from, "<tora@lab.org>");
    assert_eq!(mail.to, vec!["<bob@lab.org>"]);
    assert!(
        mail.data.contains("From: Tora <tora@lab.org>\r\n"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("To: <bob@lab.org>\r\n"));
    assert!(
        mail.data
            .contains("Subject: pi@lab.org invites you to vision-lab on Tora\r\n")
    );
    assert_eq!(
        mail.line_with("/invitations/"),
        inv["link"].as_str().unwrap()
    );

    // Bob signs up: a mail with a confirmation link, not a token in the reply.
    let signed_up = signup(&server, "bob@lab.org");
    assert_eq!(signed_up["mailed"], true);
    assert!(signed_up.get("confirmation_token").is_none());
    let mail = next_mail(&mails);
    assert_eq!(mail.to, vec!["<bob@lab.org>"]);
    assert!(
        mail.data
            .contains("Subject: Confirm your e-mail address for Tora\r\n")
    );
    let link = mail.line_with("/confirm?token_hash=");
    assert!(
        link.starts_with(&format!("{}/confirm?", server.url())),
        "{link}"
    );
    let token = link
        .split("token_hash=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let bob = server.login("bob@lab.org", PASSWORD);

    // Asking for the mail again makes a new link and retires the first.
    let r = server.post("/api/me/confirmation", &bob.auth(), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["mailed"], true);
    let again = next_mail(&mails);
    assert_eq!(again.to, vec!["<bob@lab.org>"]);
    let newer = again.line_with("/confirm?token_hash=");
    assert_ne!(newer, link);
    server
        .get(
            &format!("/api/signup/confirm?token_hash={token}&confirm_type=email"),
            &Auth::None,
        )
        .expect_error(400);
    let token = newer
        .split("token_hash=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    server
        .post("/api/me/confirmation", &Auth::None, json!({}))
        .expect_error(401);

    // Unconfirmed, the invitation by address is not there yet.
    assert_eq!(
        server.get("/api/workspace-invitations", &bob.auth()).data(),
        json!([])
    );
    let confirm = format!("/api/signup/confirm?token_hash={token}&confirm_type=email");
    let r = server.get(&confirm, &Auth::None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["email"], "bob@lab.org");
    assert_eq!(r.data()["email_confirmed"], true);
    server.get(&confirm, &Auth::None).expect_error(400);
    server
        .post("/api/me/confirmation", &bob.auth(), json!({}))
        .expect_error(409);
    assert_eq!(server.get("/api/setup", &Auth::None).data()["mail"], true);

    // Confirmed, Bob finds it by address and joins.
    let mine = server.get("/api/workspace-invitations", &bob.auth()).data();
    assert_eq!(mine[0]["id"], inv["id"]);
    let r = answer(&server, &bob, inv["id"].as_str().unwrap(), "accept");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        server
            .get(&format!("/api/workspaces/{ws}"), &bob.auth())
            .data()["role"],
        "EDITOR"
    );
}

#[test]
fn a_relay_that_is_down_fails_no_request() {
    // A port nothing listens on: the relay refuses at once.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = format!("smtp://127.0.0.1:{port}");
    let server = TestServer::start_with(&["--smtp-url", &relay, "--mail-from", "tora@lab.org"]);
    let signed_up = signup(&server, "pi@lab.org");
    assert_eq!(signed_up["mailed"], false);
    let owner = server.login("pi@lab.org", PASSWORD);
    let r = server.post("/api/me/confirmation", &owner.auth(), json!({}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.data()["mailed"], false);
    let ws = server.workspace(&owner, "lab");
    let inv = invite(&server, &owner, &ws, "bob@lab.org", VIEWER);
    assert_eq!(inv["mailed"], false);
    // The link still works: the OWNER shares it by hand.
    let bob = server.user("bob@lab.org");
    let r = use_link(
        &server,
        &bob.auth(),
        "accept",
        inv["token"].as_str().unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn serve_refuses_a_relay_without_a_sender() {
    let out = std::process::Command::new(common::BIN)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--smtp-url",
            "smtp://127.0.0.1:25",
        ])
        .env_remove("TORA_MAIL_FROM")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mail-from") || err.contains("mail_from"),
        "{err}"
    );
}

/// On an open server anyone may own a workspace: the mail an account makes the server send is
/// limited (20, then one a minute). Past it an invitation is still made, with its link, but not
/// mailed, and asking for a new confirmation link is a 429.
#[test]
fn an_owner_cannot_turn_the_relay_into_a_spam_cannon() {
    let (port, mails) = smtp_sink();
    let relay = format!("smtp://127.0.0.1:{port}");
    let server = TestServer::start_with(&["--smtp-url", &relay, "--mail-from", "tora@lab.org"]);
    let owner = server.user("spammer@lab.org");
    next_mail(&mails);
    let ws = server.workspace(&owner, "spam");
    for i in 0..20 {
        let inv = invite(&server, &owner, &ws, &format!("victim{i}@else.org"), VIEWER);
        assert_eq!(inv["mailed"], true, "invitation {i}");
        next_mail(&mails);
    }
    let over = invite(&server, &owner, &ws, "victim20@else.org", VIEWER);
    assert_eq!(over["mailed"], false);
    assert!(
        over["link"]
            .as_str()
            .unwrap()
            .contains("/invitations/tora_inv_")
    );
    let r = server.post("/api/me/confirmation", &owner.auth(), json!({}));
    r.expect_error(429);
    assert!(r.header("retry-after").is_some());
    assert!(
        mails.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing more was mailed"
    );
}

/// A non-ASCII address and workspace name travel intact: SMTPUTF8 for the address, an encoded
/// Subject, and a base64 body that decodes to the link.
#[test]
fn mail_to_a_non_ascii_address_arrives_whole() {
    use base64::Engine;
    let (port, mails) = smtp_sink();
    let relay = format!("smtp://127.0.0.1:{port}");
    let server = TestServer::start_with(&["--smtp-url", &relay, "--mail-from", "tora@lab.org"]);
    let owner = server.user("pi@lab.org");
    next_mail(&mails);
    let ws = server.workspace(&owner, "Träume");
    let inv = invite(&server, &owner, &ws, "Jürgen@uni.de", VIEWER);
    assert_eq!(inv["mailed"], true);
    let mail = next_mail(&mails);
    assert_eq!(mail.from, "<tora@lab.org> SMTPUTF8");
    assert_eq!(mail.to, vec!["<jürgen@uni.de>"]);
    let (head, body) = mail.data.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Subject: =?utf-8?B?"), "{head}");
    assert!(head.contains("Content-Transfer-Encoding: base64"), "{head}");
    let text = base64::engine::general_purpose::STANDARD
        .decode(body.replace("\r\n", ""))
        .unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("\"Träume\""), "{text}");
    assert!(text.contains(inv["link"].as_str().unwrap()), "{text}");
}
