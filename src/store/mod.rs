//! All SQL lives here, one module per resource. Functions are synchronous and take a
//! `&Connection` (a `&Transaction` derefs to one); they never see axum or tokio.

pub mod api_keys;
pub mod experiments;
pub mod invitations;
pub mod logs;
pub mod series;
pub mod settings;
pub mod tokens;
pub mod users;
pub mod workspaces;

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
