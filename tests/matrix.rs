//! The authorization matrix: every endpoint that touches a workspace's objects, called by every
//! kind of caller. Allowed callers get their answer; refused ones get 401/403/404 with a body that
//! does not mention the object, and the database is exactly as it was.
//!
//! The server's own description (`/api/openapi.json`, built from its router) says which endpoints
//! take credentials; `every_authenticated_operation_has_a_row` fails when one of them has no row
//! here and is not in [`OWN`] or [`ELSEWHERE`], so a new endpoint cannot skip the matrix.

mod common;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Auth, Response, TestServer, User};
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
    let conn = server.sql();
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
        let file = s.raw(
            "PUT",
            &format!("/api/experiments/{exp}/artifacts/{SECRET}-notes.txt"),
            &self.owner.auth(),
            Some(format!("{SECRET} notes").as_bytes()),
            Some("text/plain"),
        );
        assert_eq!(file.status, 201, "{}", file.text);
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
        let conn = self.server.sql();
        let mut out = String::new();
        for sql in [
            "SELECT id, name, coalesce(description, '') FROM workspaces ORDER BY id",
            "SELECT workspace_id, user_id, role_id FROM workspace_members ORDER BY 1, 2",
            "SELECT id, workspace_id, email, role_id, token_hash, expires_at FROM invitations ORDER BY id",
            "SELECT id, coalesce(email_confirmed_at, 0) FROM users ORDER BY id",
            "SELECT uuid, workspace_id, name, coalesce(description, ''), hyperparams, tags, next_seq FROM experiments ORDER BY uuid",
            "SELECT id, experiment_id, kind, name FROM series ORDER BY id",
            "SELECT id, count, last_step, last_value FROM series ORDER BY id",
            "SELECT series_id, block, count, max_seq FROM series_blocks ORDER BY 1, 2",
            "SELECT id, data FROM chunks ORDER BY id",
            "SELECT experiment_id, batch_id FROM batches ORDER BY 1, 2",
            "SELECT id, disabled FROM users ORDER BY id",
            "SELECT id, experiment_id, path, size, sha256 FROM artifacts ORDER BY id",
            "SELECT artifact_id, seq, data FROM artifact_chunks ORDER BY 1, 2",
        ] {
            let mut stmt = conn.prepare(sql).unwrap();
            let cols = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for i in 0..cols {
                    let v: tora::sql::types::Value = row.get(i).unwrap();
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
            method: "GET",
            path: |f, _| format!("/api/workspaces/{}/experiments.csv", f.ws),
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
            method: "PATCH",
            path: |f, _| format!("/api/experiments/{}", f.exp),
            body: |_, _| Some(json!({"metadata": {"host": "changed"}})),
            needs: Needs::Editor,
        },
        Endpoint {
            method: "POST",
            path: |f, _| format!("/api/experiments/{}/heartbeat", f.exp),
            body: none,
            needs: Needs::Editor,
        },
        Endpoint {
            method: "POST",
            path: |f, _| format!("/api/experiments/{}/finish", f.exp),
            body: |_, _| Some(json!({"state": "failed"})),
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
            method: "GET",
            path: |f, _| format!("/api/experiments/{}/series", f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/experiments/{}/summary", f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| {
                format!(
                    "/api/series/groups?by=group&names={SECRET}-loss&points=10&workspace={}",
                    f.ws
                )
            },
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| {
                format!(
                    "/api/workspaces/{}/experiments/groups?by=group&cols=metric.{SECRET}-loss",
                    f.ws
                )
            },
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/workspaces/{}/experiments/rows?ids={}", f.ws, f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "POST",
            path: |f, _| format!("/api/experiments/{}/logs/stream-token", f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            // From the first point, so an allowed caller's stream replays the fixture's logs.
            path: |f, _| format!("/api/experiments/{}/stream?cursor=0", f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "POST",
            path: |f, _| format!("/api/workspaces/{}/stream-token", f.ws),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            // Its `hello` carries nothing: allowed callers are checked for the event instead.
            path: |f, _| format!("/api/workspaces/{}/stream?", f.ws),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "DELETE",
            path: |f, _| format!("/api/experiments/{}", f.exp),
            body: none,
            needs: Needs::Owner,
        },
        Endpoint {
            method: "POST",
            // Deleting needs the most; tag, untag and move are in tests/bulk.rs.
            path: |_, _| "/api/experiments/bulk".into(),
            body: |f, _| Some(json!({"ids": [f.exp], "action": "delete"})),
            needs: Needs::Owner,
        },
        Endpoint {
            method: "DELETE",
            path: |f, _| format!("/api/workspaces/{}", f.ws),
            body: none,
            needs: Needs::Owner,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/workspaces/{}/retention", f.ws),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "GET",
            path: |f, _| {
                format!(
                    "/api/workspaces/{}/retention/preview?delete_after_days=30&aggregate_after_days=7",
                    f.ws
                )
            },
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "PUT",
            path: |f, _| format!("/api/workspaces/{}/retention", f.ws),
            // Both modes: the aggregate one is the OWNER's as well.
            body: |_, _| Some(json!({"aggregate_after_days": 36499, "delete_after_days": 36500})),
            needs: Needs::Owner,
        },
        Endpoint {
            method: "DELETE",
            path: |f, _| format!("/api/workspaces/{}/retention", f.ws),
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
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/experiments/{}/artifacts", f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "PUT",
            path: |f, _| format!("/api/experiments/{}/artifacts/new.txt", f.exp),
            body: none,
            needs: Needs::Editor,
        },
        Endpoint {
            method: "GET",
            path: |f, _| format!("/api/experiments/{}/artifacts/{SECRET}-notes.txt", f.exp),
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "DELETE",
            path: |f, _| format!("/api/experiments/{}/artifacts/{SECRET}-notes.txt", f.exp),
            body: none,
            needs: Needs::Editor,
        },
        Endpoint {
            method: "GET",
            path: |f, _| {
                format!(
                    "/api/2.0/mlflow-artifacts/artifacts?path={}/{}/artifacts",
                    f.ws, f.exp
                )
            },
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "PUT",
            path: |f, _| {
                format!(
                    "/api/2.0/mlflow-artifacts/artifacts/{}/{}/artifacts/new.txt",
                    f.ws, f.exp
                )
            },
            body: none,
            needs: Needs::Editor,
        },
        Endpoint {
            method: "GET",
            path: |f, _| {
                format!(
                    "/api/2.0/mlflow-artifacts/artifacts/{}/{}/artifacts/{SECRET}-notes.txt",
                    f.ws, f.exp
                )
            },
            body: none,
            needs: Needs::Viewer,
        },
        Endpoint {
            method: "DELETE",
            path: |f, _| {
                format!(
                    "/api/2.0/mlflow-artifacts/artifacts/{}/{}/artifacts/{SECRET}-notes.txt",
                    f.ws, f.exp
                )
            },
            body: none,
            needs: Needs::Editor,
        },
    ]
}

/// Checks a refusal's status and body: `{"error", "message"}` on Tora's API, MLflow's
/// `{"error_code", "message"}` under /api/2.0/.
fn expect_refusal(r: &Response, path: &str, status: u16) {
    if path.starts_with("/api/2.0/") {
        assert_eq!(r.status, status, "{path}: {}", r.text);
        let body = r.json();
        assert!(body["error_code"].is_string(), "{path}: {}", r.text);
        assert!(body["message"].is_string(), "{path}: {}", r.text);
    } else {
        r.expect_error(status);
    }
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
            let r = call(
                &w.server,
                endpoint.method,
                &path,
                &w.auth(caller),
                body.as_ref(),
            );
            let what = format!("{caller:?} {} {path}", endpoint.method);
            match refusal(caller, endpoint.needs) {
                Some(status) => {
                    expect_refusal(&r, &path, status);
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
                    if is_workspace_stream(&path) {
                        assert!(r.text.contains("event: hello"), "{what}: {}", r.text);
                    } else if endpoint.method == "GET"
                        && !path.ends_with("/invitations")
                        && !path.ends_with("/members")
                        // A policy and counts: nothing of the object's own to show.
                        && !path.contains("/retention")
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
    assert_eq!(checked, 47 * 8);
}

#[test]
fn leaving_and_batch_reads_follow_the_same_rules() {
    let w = world();
    for caller in CALLERS {
        let f = w.fixture();
        // Comparing charts is a batch read too: runs the caller may not see are left out.
        let r = w.server.get(
            &format!("/api/series?experiments={}", f.exp),
            &w.auth(caller),
        );
        match caller {
            Caller::Owner | Caller::Editor | Caller::Viewer => {
                // Asked before leaving (below): a member sees the run's series.
                assert_eq!(r.status, 200, "{caller:?}: {}", r.text);
                assert!(r.text.contains(SECRET), "{caller:?}: {}", r.text);
            }
            Caller::Outsider => {
                assert_eq!(r.data(), json!([]), "{}", r.text);
                assert!(!r.text.contains(SECRET));
            }
            _ => {
                r.expect_error(401);
            }
        }

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

/// Calls an endpoint; a live stream (whose answer never ends) through [`open_stream`].
fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    auth: &Auth,
    body: Option<&Value>,
) -> Response {
    if path.contains("/stream?") {
        open_stream(server, path, auth)
    } else {
        server.call(method, path, auth, body)
    }
}

/// A workspace's stream, whose first event (`hello`, `{}`) names nothing.
fn is_workspace_stream(path: &str) -> bool {
    path.starts_with("/api/workspaces/") && path.contains("/stream?")
}

/// Opens a live stream and reads until the object's data shows (for a workspace stream: its
/// `hello`), the server closes (a refusal), or 10 s pass; then hangs up.
fn open_stream(server: &TestServer, path: &str, auth: &Auth) -> Response {
    let mut conn = TcpStream::connect(&server.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut head = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n", server.addr);
    match auth {
        Auth::None => {}
        Auth::Key(k) => head += &format!("x-api-key: {k}\r\n"),
        Auth::Bearer(t) => head += &format!("Authorization: Bearer {t}\r\n"),
    }
    head += "\r\n";
    conn.write_all(head.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let until = if is_workspace_stream(path) {
        "event: hello"
    } else {
        SECRET
    };
    while Instant::now() < deadline && !String::from_utf8_lossy(&raw).contains(until) {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A read timeout: look at the deadline and read on.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading {path}: {e}"),
        }
    }
    Response::parse(&raw)
}

/// Authenticated endpoints that act only on the caller's own account, or on nothing, so no
/// workspace role applies: (method, path, why, and where it is tested). Bad credentials on them
/// are refused like everywhere (`bad_credentials_are_refused_on_every_operation`).
///
/// `POST /api/logout` is not here because it takes no credentials: the refresh token in its body
/// is the credential, and ending it is its holder's right (tests/accounts.rs,
/// `logging_out_ends_that_login_and_signing_out_everywhere_ends_all`).
const OWN: &[(&str, &str, &str)] = &[
    ("GET", "/api/me", "the caller's own account (accounts.rs)"),
    (
        "PUT",
        "/api/me/password",
        "the caller's own password (accounts.rs, a_user_changes_their_password_and_other_sessions_end)",
    ),
    (
        "DELETE",
        "/api/me/sessions",
        "ends the caller's own sessions (accounts.rs, logging_out_ends_that_login_and_signing_out_everywhere_ends_all)",
    ),
    (
        "GET",
        "/api/api-keys",
        "the caller's own keys (accounts.rs)",
    ),
    (
        "POST",
        "/api/api-keys",
        "makes a key for the caller (accounts.rs)",
    ),
    (
        "DELETE",
        "/api/api-keys/{id}",
        "revokes only the caller's own keys, another's is 404 (accounts.rs, api_keys_are_shown_once_and_revoked_at_once)",
    ),
    (
        "GET",
        "/api/workspaces",
        "the caller's own memberships (workspaces_experiments.rs)",
    ),
    (
        "POST",
        "/api/workspaces",
        "makes a workspace the caller owns (workspaces_experiments.rs)",
    ),
    (
        "GET",
        "/api/workspace-roles",
        "the fixed list of roles, no object",
    ),
    (
        "GET",
        "/api/workspace-invitations",
        "invitations addressed to the caller (teams.rs)",
    ),
    (
        "PUT",
        "/api/workspaces/{id}/invitations",
        "answers an invitation addressed to the caller, {id} unused (teams.rs, invitations_can_be_declined_cancelled_and_only_answered_by_the_addressee; here, invitations_by_address_reach_no_one_else)",
    ),
    (
        "POST",
        "/api/me/confirmation",
        "mails the caller a new link to confirm their own address (invitations.rs)",
    ),
    (
        "GET",
        "/api/invitations/{token}",
        "a link answers any signed-in holder (here, invitation_links_answer_any_signed_in_holder_and_no_one_else)",
    ),
    (
        "POST",
        "/api/invitations/accept",
        "a link answers any signed-in holder (here, invitation_links_answer_any_signed_in_holder_and_no_one_else)",
    ),
    (
        "POST",
        "/api/invitations/decline",
        "a link answers any signed-in holder (here, invitation_links_answer_any_signed_in_holder_and_no_one_else)",
    ),
];

/// Endpoints whose rules differ from the matrix's, tested in
/// `leaving_and_batch_reads_follow_the_same_rules`: reads of many runs leave out those the
/// caller may not see (200, not 404), and any member may leave.
const ELSEWHERE: &[(&str, &str)] = &[
    ("POST", "/api/workspaces/{id}/leave"),
    ("POST", "/api/experiments/batch"),
    ("GET", "/api/series"),
];

/// Every (method, path, takes credentials) the server describes.
fn operations(spec: &Value) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(op) = item.get(method) else {
                continue;
            };
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            out.push((method.to_ascii_uppercase(), path.clone(), secured));
        }
    }
    out
}

/// The described path a concrete one (maybe with a query) is an instance of; a literal segment
/// beats a parameter (`/experiments/batch` over `/experiments/{id}`).
fn template_of(templates: &BTreeSet<String>, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();
    templates
        .iter()
        .filter(|t| {
            let ts: Vec<&str> = t.split('/').collect();
            // A trailing {path} (a catch-all in the router) takes the rest, slashes and all.
            let rest = ts.last() == Some(&"{path}") && segments.len() > ts.len();
            (ts.len() == segments.len() || rest)
                && ts
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || t.starts_with('{'))
        })
        .max_by_key(|t| t.split('/').filter(|s| !s.starts_with('{')).count())
        .unwrap_or_else(|| panic!("{path} is no described path"))
        .clone()
}

/// A described path with the fixture's objects in its parameters.
fn concrete(template: &str, f: &Fixture, w: &World) -> String {
    let mut out = Vec::new();
    let mut previous = "";
    for segment in template.split('/') {
        out.push(if segment.starts_with('{') {
            match previous {
                "experiments" => f.exp.clone(),
                "workspaces" => f.ws.clone(),
                "invitations" => f.invitation.clone(),
                "members" => w.viewer.id.clone(),
                _ => "00000000-0000-4000-8000-000000000000".to_string(),
            }
        } else {
            segment.to_string()
        });
        previous = segment;
    }
    out.join("/")
}

#[test]
fn every_authenticated_operation_has_a_row() {
    let w = world();
    let f = w.fixture();
    let spec = w.server.get("/api/openapi.json", &Auth::None).json();
    let operations = operations(&spec);
    let templates: BTreeSet<String> = operations.iter().map(|(_, p, _)| p.clone()).collect();
    let authenticated: BTreeSet<(String, String)> = operations
        .iter()
        .filter(|(_, _, secured)| *secured)
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert!(authenticated.len() > 30, "{authenticated:?}");

    let mut covered = BTreeSet::new();
    for endpoint in endpoints() {
        let path = (endpoint.path)(&f, &w);
        let row = (endpoint.method.to_string(), template_of(&templates, &path));
        assert!(covered.insert(row.clone()), "two rows for {row:?}");
    }
    let listed = OWN
        .iter()
        .map(|&(m, p, _)| (m, p))
        .chain(ELSEWHERE.iter().copied());
    for (method, path) in listed {
        let row = (method.to_string(), path.to_string());
        assert!(covered.insert(row.clone()), "{row:?} is listed twice");
    }
    let missing: Vec<_> = authenticated.difference(&covered).collect();
    let stale: Vec<_> = covered.difference(&authenticated).collect();
    assert!(
        missing.is_empty(),
        "authenticated endpoints without a matrix row (add one to endpoints(), or to OWN with the reason): {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "rows for endpoints the server does not describe as authenticated: {stale:?}"
    );
}

#[test]
fn bad_credentials_are_refused_on_every_operation() {
    let w = world();
    let f = w.fixture();
    let spec = w.server.get("/api/openapi.json", &Auth::None).json();
    let mut checked = 0;
    for (method, template, secured) in operations(&spec) {
        let path = concrete(&template, &f, &w);
        let body = matches!(method.as_str(), "POST" | "PUT").then(|| json!({}));
        if !secured {
            // Were it to ask for credentials, its description would lack `security`.
            let r = w.server.call(&method, &path, &Auth::None, body.as_ref());
            assert_ne!(
                r.status, 401,
                "{method} {path} is described as public but wants credentials: {}",
                r.text
            );
            continue;
        }
        for caller in [
            Caller::Anonymous,
            Caller::RevokedKey,
            Caller::DisabledUser,
            Caller::ForgedToken,
        ] {
            let before = w.snapshot();
            let r = w
                .server
                .call(&method, &path, &w.auth(caller), body.as_ref());
            let what = format!("{caller:?} {method} {path}");
            assert_eq!(r.status, 401, "{what}: {}", r.text);
            expect_refusal(&r, &path, 401);
            assert!(!r.text.contains(SECRET), "{what} leaked: {}", r.text);
            assert_eq!(before, w.snapshot(), "{what} changed the database");
            checked += 1;
        }
    }
    assert!(checked > 30 * 4, "{checked}");
}
