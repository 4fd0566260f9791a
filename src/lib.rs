//! Tora: a self-hosted ML experiment tracker in one binary. The modules, in the order a
//! request meets them:

/// Admin commands on the database file: users, API keys.
pub mod admin;
/// The HTTP API under /api, one module per resource.
pub mod api;
/// `--artifacts-dir`: artifacts as files named by id, and the sweep of files whose rows are gone.
pub mod artifact_files;
/// The embedded dashboard and its security headers.
pub mod assets;
/// Who is calling: passwords, tokens, API keys, the `AuthUser` extractor.
pub mod auth;
/// Scheduled backups (`--backup-dir`) and `tora restore`.
pub mod backups;
/// A byte budget shared by concurrent requests (the request bodies being read).
pub mod budget;
/// The command line: `serve`, `user`, `api-key`, `backup`.
pub mod cli;
/// Every `serve` setting: flag, TORA_* variable, default.
pub mod config;
/// Open connections: the cap, which idle one makes room, the open-file limit.
pub mod connections;
/// Pools, PRAGMAs, migrations, backup: the only doors to a connection.
pub mod db;
/// `tora doctor FILE`: whether a database file (a copy, a backup) is complete and intact.
pub mod doctor;
/// The one error type, and the only place that picks an HTTP status.
pub mod error;
/// Live streams across servers sharing one PostgreSQL database: LISTEN/NOTIFY into the hub.
pub mod fanout;
/// Rate limits for login, signup and refresh.
pub mod limits;
/// Live updates: per-experiment broadcast of committed batches.
pub mod live;
/// The server's log: text or JSON lines, one per request.
pub mod logging;
/// Outgoing mail (optional): a small SMTP client for confirmation and invitation links.
pub mod mail;
/// `tora migrate`: a whole database copied between SQLite and PostgreSQL, and checked.
pub mod migrate;
/// MLflow's tracking REST API under /api/2.0/mlflow, over the same store.
pub mod mlflow_api;
/// MLflow's run search syntax, parsed into `query`'s expressions.
pub mod mlflow_query;
/// The experiment filter language and sort orders (pure parsing).
pub mod query;
/// Applies the workspaces' retention policies: at start, hourly, and when one is set.
pub mod retention;
/// A run's state (running, finished, failed, crashed): the one rule, derived when read.
pub mod run_state;
/// The Python SDK's wheel, built by build.rs, and the pages that serve it under /sdk/.
pub mod sdk;
/// AppState, the router, and serving with a graceful shutdown.
pub mod server;
/// `tora service`: the hardened systemd unit, and installing it.
pub mod service;
/// The engine-neutral connection (SQLite or PostgreSQL) that all SQL goes through.
pub mod sql;
/// All SQL, one module per resource.
pub mod store;
/// What the server counts about itself, and `GET /metrics` (Prometheus).
pub mod telemetry;
/// Unix milliseconds and RFC 3339.
pub mod time;
/// Input rules the API and the CLI share: e-mail addresses.
pub mod validate;
/// Folds the WAL into the database file whenever the server is idle: copying the file is a backup.
pub mod wal;
