//! A real PostgreSQL for the tests that need one (tests/postgres/cluster.sh: Debian's
//! postgresql in a temp dir): one cluster per test binary, a database per test.

#[path = "../postgres/cluster.rs"]
mod cluster;
#[allow(unused_imports)] // the TLS tests' alone
pub use cluster::{database_in, tls_cluster};

/// A new, empty database of this test's own; its URL.
pub fn database() -> String {
    cluster::database()
}

/// A plain client to the database at `url`.
pub fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}
