//! All SQL lives here, one module per resource. Functions are synchronous and take a
//! `&Connection` (a `&Transaction` derefs to one); they never see axum or tokio.

pub mod api_keys;
pub mod artifacts;
pub mod experiments;
pub mod groups;
pub mod invitations;
pub mod logs;
pub mod packed;
pub mod retention;
pub mod series;
pub mod settings;
pub mod summaries;
pub mod tokens;
pub mod units;
pub mod users;
pub mod workspaces;

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A user, their personal workspace and one experiment created at t = 0, for store tests.
#[cfg(test)]
pub fn test_experiment(conn: &crate::sql::Connection) -> experiments::Experiment {
    let u = users::create(conn, "test@example.org", "h", 0).unwrap();
    let ws = workspaces::personal(conn, &u.id, 0).unwrap();
    let new = experiments::NewExperiment {
        id: "00000000-0000-4000-8000-000000000001",
        workspace_id: &ws,
        created_by: &u.id,
        name: "run",
        description: None,
        hyperparams: "[]",
        tags: "[]",
        metadata: "{}",
        group: None,
        created_at: None,
    };
    experiments::create(conn, &new, 0).unwrap()
}
