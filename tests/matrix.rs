//! The authorization matrix: every endpoint that touches a workspace's objects, called by every
//! kind of caller. Allowed callers get their answer; refused ones get 401/403/404 with a body that
//! does not mention the object, and the database is exactly as it was.

mod common;

use common::{Auth, TestServer, User};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Owner,
    Editor,
    Viewer,
    Outsider,
    Anonymous,
    RevokedKey,
    DisabledUser,
    ForgedToken,
}

const CALLERS: [Caller; 8] = [
    Caller::Owner,
    Caller::Editor,
    Caller::Viewer,
    Caller::Outsider,
    Caller::Anonymous,
    Caller::RevokedKey,
    Caller::DisabledUser,
    Caller::ForgedToken,
];

/// The weakest role an endpoint needs (1 OWNER, 2 EDITOR, 3 VIEWER).
#[derive(Clone, Copy, Debug)]
enum Needs {
    Owner = 1,
    Editor = 2,
    Viewer = 3,
}

/// Fresh objects for one call: a workspace with an editor and a viewer, an experiment with logs,
/// and a pending invitation. Named so a leak in a response body is easy to spot.
struct Fixture {
    ws: String,
    exp: String,
    invitation: String,
    /// The invitation's link secret.
    token: String,
}

const SECRET: &str = "matrix-secret";

struct World {
    server: TestServer,
    owner: User,
    editor: User,
    viewer: User,
    outsider: User,
    disabled: User,
    revoked_key: String,
    forged: String,
}

fn world() -> World {
    let server = TestServer::start();
    let owner = server.user("owner@matrix.org");
    let editor = server.user("editor@matrix.org");
    let viewer = server.user("viewer@matrix.org");
    let outsider = server.user("outsider@matrix.org");
    let disabled = server.user("disabled@matrix.org");
    let r = server.post("/api/api-keys", &owner.auth(), json!({"name": "to revoke"}));
    let revoked_key = r.data()["key"].as_str().unwrap().to_string();
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert_eq!(
        server
            .call(
                "DELETE",
                &format!("/api/api-keys/{id}"),
                &owner.auth(),
                None
            )
            .status,
        200
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": owner.id, "iat": now, "exp": now + 600, "typ": "access"}),
        &jsonwebtoken::EncodingKey::from_secret(b"a guess at the server's secret.."),
    )
    .unwrap();
    let conn = rusqlite::Connection::open(&server.db).unwrap();
    conn.execute(
        "UPDATE users SET disabled = 1 WHERE id = ?1",
        [&disabled.id],
    )
    .unwrap();
    World {
        server,
        owner,
        editor,
        viewer,
        outsider,
        disabled,
        revoked_key,
        forged,
    }
}

impl World {
    fn fixture(&self) -> Fixture {
        let s = &self.server;
        let ws = s.workspace(&self.owner, &format!("{SECRET}-workspace"));
        s.add_member(&ws, &self.editor, 2);
        s.add_member(&ws, &self.viewer, 3);
        // The disabled user is even an OWNER: being disabled must beat any role.
        s.add_member(&ws, &self.disabled, 1);
        let exp = s.experiment(&self.owner, &format!("{SECRET}-experiment"), Some(&ws));
        let logs = json!({"logs": [
            {"name": format!("{SECRET}-loss"), "value": 0.5, "step": 1},
            {"name": format!("{SECRET}-acc"), "value": 0.9},
        ]});
        assert_eq!(
            s.post(
                &format!("/api/experiments/{exp}/logs/batch"),
                &self.owner.auth(),
                logs
            )
            .status,
            201
        );
        let inv = s.post(
            "/api/workspace-invitations",
            &self.owner.auth(),
            json!({"workspaceId": ws, "email": "newcomer@matrix.org", "roleId": 3}),
        );
        assert_eq!(inv.status, 201, "{}", inv.text);
        Fixture {
            ws,
            exp,
            invitation: inv.data()["id"].as_str().unwrap().to_string(),
            token: inv.data()["token"].as_str().unwrap().to_string(),
        }
    }

    fn auth(&self, caller: Caller) -> Auth {
        match caller {
            Caller::Owner => self.owner.auth(),
            Caller::Editor => self.editor.auth(),
            Caller::Viewer => self.viewer.bearer(),
            Caller::Outsider => self.outsider.auth(),
            Caller::Anonymous => Auth::None,
            Caller::RevokedKey => Auth::Key(self.revoked_key.clone()),
            Caller::DisabledUser => self.disabled.auth(),
            Caller::ForgedToken => Auth::Bearer(self.forged.clone()),
        }
    }

    /// Everything an authorization mistake could change, as text.
    fn snapshot(&self) -> String {
        let conn = rusqlite::Connection::open(&self.server.db).unwrap();
        let mut out = String::new();
        for sql in [
            "SELECT id, name, coalesce(description, '') FROM workspaces ORDER BY id",
            "SELECT workspace_id, user_id, role_id FROM workspace_members ORDER BY 1, 2",
            "SELECT id, workspace_id, email, role_id, hex(token_hash), expires_at FROM invitations ORDER BY id",
            "SELECT id, coalesce(email_confirmed_at, 0) FROM users ORDER BY id",
            "SELECT uuid, workspace_id, name, coalesce(description, ''), hyperparams, tags, next_seq FROM experiments ORDER BY uuid",
            "SELECT id, experiment_id, kind, name FROM series ORDER BY id",
            "SELECT id, count, last_step, coalesce(last_value, 'nan') FROM series ORDER BY id",
            "SELECT series_id, block, count, max_seq FROM series_blocks ORDER BY 1, 2",
            "SELECT id, hex(data) FROM chunks ORDER BY id",
            "SELECT experiment_id, batch_id FROM batches ORDER BY 1, 2",
            "SELECT id, disabled FROM users ORDER BY id",
        ] {
            let mut stmt = conn.prepare(sql).unwrap();
            let cols = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for i in 0..cols {
                    let v: rusqlite::types::Value = row.get(i).unwrap();
                    out += &format!("{v:?}|");
                }
                out.push('\n');
            }
        }
        out
    }
}

struct Endpoint {
    method: &'static str,
    path: fn(&Fixture, &World) -> String,
    body: fn(&Fixture, &World) -> Option<Value>,
    needs: Needs,
}

fn endpoints() -> Vec<Endpoint> {
    fn none(_: &Fixture, _: &World) -> Option<Value> {
        None
    }
    vec![
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/workspaces/{}", f.ws),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/workspaces/{}/members", f.ws),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/workspaces/{}/experiments", f.ws),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/experiments?workspace={}", f.ws),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/experiments/{}", f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/experiments/{}/logs", f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/experiments/{}/metrics", f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/experiments/{}/results", f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/experiments/{}/logs/csv", f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "POST",
            path: |_, _| "/api/experiments".into(),
            body: |f, _| Some(json!({"name": "new", "workspaceId": f.ws})),
            needs: Needs::Editor,
        },
        Endpoint {
            method: "PUT",
            path: |f, _| format!("/api/experiments/{}", f.exp),
            body: |_, _| Some(json!({"description": "changed"})),
            needs: Needs::Editor,
        },
        Endpoint {
            method: "POST",
            path: |f, _| format!("/api/experiments/{}/logs", f.exp),
            body: |_, _| Some(json!({"name": "x", "value": 1, "step": 9})),
            needs: Needs::Editor,
        },
        Endpoint {
            method: "POST",
            path: |f, _| format!("/api/experiments/{}/logs/batch", f.exp),
            body: |_, _| Some(json!({"logs": [{"name": "x", "value": 1, "step": 9}]})),
            needs: Needs::Editor,
        },
        Endpoint {
            method: "POST",
            path: |f, _| format!("/api/experiments/{}/points", f.exp),
            body: |_, _| {
                Some(
                    json!({"batch_id": "b", "metrics": [{"name": "x", "steps": [9], "values": [1]}]}),
                )
            },
            needs: Needs::Editor,
        },
        Endpoint {
            method: "DELETE",
            path: |f, _| format!("/api/experiments/{}", f.exp),
            body: none,
            needs: Needs::Owner,
        },
        Endpoint {
            method: "DELETE",
            path: |f, _| format!("/api/workspaces/{}", f.ws),
            body: none,
            needs: Needs::Owner,
        },
        Endpoint {
            method: "PUT",
            path: |f, w| format!("/api/workspaces/{}/members/{}", f.ws, w.viewer.id),
            body: |_, _| Some(json!({"roleId": 2})),
            needs: Needs::Owner,
        },
        Endpoint {
            method: "DELETE",
            path: |f, w| format!("/api/workspaces/{}/members/{}", f.ws, w.editor.id),
            body: none,
            needs: Needs::Owner,
        },
        Endpoint {
            method: "POST",
            path: |_, _| "/api/workspace-invitations".into(),
            body: |f, _| {
                Some(json!({"workspaceId": f.ws, "email": "another@matrix.org", "roleId": 2}))
            },
            needs: Needs::Owner,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/workspaces/{}/invitations", f.ws),
            body: none,
            needs: Needs::Owner,
        },
        Endpoint {
            method: "DELETE",
            path: |f, _| format!("/api/workspaces/{}/invitations/{}", f.ws, f.invitation),
            body: none,
            needs: Needs::Owner,
        },
    ]
}

/// The status a caller must get; None when the call is allowed.
fn refusal(caller: Caller, needs: Needs) -> Option<u16> {
    let role = match caller {
        Caller::Anonymous | Caller::RevokedKey | Caller::DisabledUser | Caller::ForgedToken => {
            return Some(401);
        }
        Caller::Outsider => return Some(404),
        Caller::Owner => 1,
        Caller::Editor => 2,
        Caller::Viewer => 3,
    };
    (role > needs as i64).then_some(403)
}

#[test]
fn every_endpoint_admits_exactly_the_callers_it_should() {
    let w = world();
    let mut checked = 0;
    for endpoint in endpoints() {
        for caller in CALLERS {
            // A fresh fixture per call: an allowed DELETE must not spoil the next caller's try.
            let f = w.fixture();
            let path = (endpoint.path)(&f, &w);
            let body = (endpoint.body)(&f, &w);
            let before = w.snapshot();
            let r = w
                .server
                .call(endpoint.method, &path, &w.auth(caller), body.as_ref());
            let what = format!("{caller:?} {} {path}", endpoint.method);
            match refusal(caller, endpoint.needs) {
                Some(status) => {
                    r.expect_error(status);
                    assert!(!r.text.contains(SECRET), "{what} leaked: {}", r.text);
                    assert_eq!(before, w.snapshot(), "{what} changed the database");
                }
                None => {
                    assert!(
                        (200..300).contains(&r.status),
                        "{what}: {} {}",
                        r.status,
                        r.text
                    );
                    if endpoint.method == "GET"
                        && !path.ends_with("/invitations")
                        && !path.ends_with("/members")
                    {
                        assert!(
                            r.text.contains(SECRET),
                            "{what} answered without the object: {}",
                            r.text
                        );
                    }
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 21 * 8);
}

#[test]
fn leaving_and_batch_reads_follow_the_same_rules() {
    let w = world();
    for caller in CALLERS {
        let f = w.fixture();
        let before = w.snapshot();
        let r = w.server.post(
            &format!("/api/workspaces/{}/leave", f.ws),
            &w.auth(caller),
            json!({}),
        );
        match caller {
            // Any member may leave; the owner too, as the fixture's disabled co-owner remains
            // (the last-owner rule has its own test).
            Caller::Owner | Caller::Editor | Caller::Viewer => {
                assert_eq!(r.status, 200, "{caller:?}: {}", r.text)
            }
            other => {
                r.expect_error(refusal(other, Needs::Viewer).unwrap());
                assert_eq!(before, w.snapshot(), "{other:?} changed the database");
            }
        }

        let r = w.server.post(
            "/api/experiments/batch",
            &w.auth(caller),
            json!({"ids": [f.exp]}),
        );
        match caller {
            Caller::Owner | Caller::Editor | Caller::Viewer => {
                // A member who just left (above) sees nothing any more.
                assert_eq!(r.data(), json!([]), "{caller:?}");
                let other = w.fixture();
                let r = w.server.post(
                    "/api/experiments/batch",
                    &w.auth(caller),
                    json!({"ids": [other.exp]}),
                );
                assert_eq!(r.data()[0]["id"], other.exp.as_str(), "{caller:?}");
            }
            Caller::Outsider => {
                assert_eq!(r.data(), json!([]));
                assert!(!r.text.contains(SECRET));
            }
            _ => {
                r.expect_error(401);
            }
        }
    }
}

/// The callers a link or an address cannot help: no valid credentials, or a disabled account.
fn unauthenticated(caller: Caller) -> bool {
    matches!(
        caller,
        Caller::Anonymous | Caller::RevokedKey | Caller::DisabledUser | Caller::ForgedToken
    )
}

fn member(caller: Caller) -> bool {
    matches!(caller, Caller::Owner | Caller::Editor | Caller::Viewer)
}

/// An invitation link is a capability: any signed-in holder may see it and answer it (a member
/// gets a 409 for accepting and the link stays usable); without valid credentials, 401 and
/// nothing changes; an unknown token is a 404 that says nothing.
#[test]
fn invitation_links_answer_any_signed_in_holder_and_no_one_else() {
    let w = world();
    for caller in CALLERS {
        let auth = w.auth(caller);
        let f = w.fixture();
        let what = |call: &str| format!("{caller:?} {call}");

        let before = w.snapshot();
        let r = w
            .server
            .get(&format!("/api/invitations/{}", f.token), &auth);
        if unauthenticated(caller) {
            r.expect_error(401);
            assert!(
                !r.text.contains(SECRET),
                "{} leaked: {}",
                what("preview"),
                r.text
            );
        } else {
            assert_eq!(r.status, 200, "{}: {}", what("preview"), r.text);
            assert!(r.text.contains(SECRET), "{}: {}", what("preview"), r.text);
            assert_eq!(r.data()["member"], member(caller), "{}", what("preview"));
        }
        assert_eq!(
            before,
            w.snapshot(),
            "{} changed the database",
            what("preview")
        );

        for action in ["accept", "decline"] {
            let unknown = w.server.post(
                &format!("/api/invitations/{action}"),
                &auth,
                json!({"token": "tora_inv_unknown"}),
            );
            unknown.expect_error(if unauthenticated(caller) { 401 } else { 404 });
            assert!(!unknown.text.contains(SECRET));
            assert_eq!(
                before,
                w.snapshot(),
                "{} changed the database",
                what(action)
            );
        }

        let r = w
            .server
            .post("/api/invitations/accept", &auth, json!({"token": f.token}));
        if unauthenticated(caller) {
            r.expect_error(401);
            assert_eq!(
                before,
                w.snapshot(),
                "{} changed the database",
                what("accept")
            );
        } else if member(caller) {
            r.expect_error(409);
            assert!(!r.text.contains(SECRET));
            assert_eq!(
                before,
                w.snapshot(),
                "{} changed the database",
                what("accept")
            );
        } else {
            assert_eq!(r.status, 200, "{}: {}", what("accept"), r.text);
            let ws = w.server.get(&format!("/api/workspaces/{}", f.ws), &auth);
            assert_eq!(ws.data()["role"], "VIEWER", "{}", what("accept"));
        }

        let other = w.fixture();
        let before = w.snapshot();
        let r = w.server.post(
            "/api/invitations/decline",
            &auth,
            json!({"token": other.token}),
        );
        if unauthenticated(caller) {
            r.expect_error(401);
            assert_eq!(
                before,
                w.snapshot(),
                "{} changed the database",
                what("decline")
            );
        } else {
            assert_eq!(r.status, 200, "{}: {}", what("decline"), r.text);
            let gone = w
                .server
                .get(&format!("/api/invitations/{}", other.token), &auth);
            gone.expect_error(404);
        }
    }
}

/// By address, an invitation reaches only the proven account it was made for: every caller
/// here (none is newcomer@matrix.org) sees none and cannot answer one.
#[test]
fn invitations_by_address_reach_no_one_else() {
    let w = world();
    for caller in CALLERS {
        let auth = w.auth(caller);
        let f = w.fixture();
        let before = w.snapshot();
        let r = w.server.get("/api/workspace-invitations", &auth);
        if unauthenticated(caller) {
            r.expect_error(401);
        } else {
            assert_eq!(r.data(), json!([]), "{caller:?}");
        }
        for action in ["accept", "decline"] {
            let r = w.server.call(
                "PUT",
                &format!(
                    "/api/workspaces/any/invitations?invitationId={}&action={action}",
                    f.invitation
                ),
                &auth,
                None,
            );
            r.expect_error(if unauthenticated(caller) { 401 } else { 404 });
            assert!(!r.text.contains(SECRET), "{caller:?} {action}: {}", r.text);
        }
        assert_eq!(before, w.snapshot(), "{caller:?} changed the database");
    }
}
