//! PostgreSQL over TLS, as a managed database asks: a cluster that refuses unencrypted
//! connections (tests/postgres/cluster.sh with TORA_PG_TLS), certificates made here with the
//! openssl command by a test CA. `sslmode` and `sslrootcert` mean what they mean to libpq.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use common::pg::{connect, database_in, tls_cluster};
use common::{BIN, TempDir, TestServer};
use serde_json::json;

/// The test CA, another CA, and the server's certificate (signed by the first, naming only
/// `localhost`), made once.
fn certs() -> &'static Path {
    static DIR: OnceLock<TempDir> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = TempDir::new();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir.0)
                .output()
                .expect("openssl");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "other-ca"] {
            let (key, crt, subject) = (
                format!("{ca}.key"),
                format!("{ca}.crt"),
                format!("/CN=Tora test {ca}"),
            );
            let mut args = vec![
                "req", "-x509", "-days", "2", "-subj", &subject, "-keyout", &key, "-out", &crt,
            ];
            args.extend(ec);
            openssl(&args);
        }
        let mut args = vec![
            "req",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ];
        args.extend(ec);
        openssl(&args);
        std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        dir
    })
    .0
}

/// A fresh database of the TLS cluster: its URL with `host` for the cluster's address and
/// `options` (such as `sslmode=require`) as the query.
fn database(host: &str, options: &str) -> String {
    let url = database_in(tls_cluster(certs()));
    let url = url.replacen("127.0.0.1", host, 1);
    if options.is_empty() {
        url
    } else {
        format!("{url}?{options}")
    }
}

/// `tora user list --db URL`: (success, stdout + stderr).
fn user_list(url: &str) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["user", "list", "--db", url])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn root(name: &str) -> String {
    certs().join(name).display().to_string()
}

#[test]
fn a_server_is_served_over_tls_and_plain_connections_are_refused() {
    let url = database("127.0.0.1", "sslmode=require");
    let server = TestServer::start_on(Path::new(&url), &[]);
    let user = server.user("ada@lab.org");
    let run = server.experiment(&user, "over tls", None);
    let r = server.post(
        &format!("/api/experiments/{run}/logs/batch"),
        &user.auth(),
        json!({"logs": [{"name": "loss", "value": 0.5, "step": 1}]}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = server.get(&format!("/api/experiments/{run}/summary"), &user.auth());
    assert_eq!(r.status, 200, "{}", r.text);

    // Every connection the server holds to its database is encrypted.
    let name = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string();
    let admin = tls_cluster(certs());
    let (encrypted, plain): (i64, i64) = {
        let row = connect(admin)
            .query_one(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1",
                &[&name],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(
        encrypted >= 2 && plain == 0,
        "{encrypted} encrypted, {plain} plain"
    );

    // Without TLS the cluster refuses, and the server says so in a sentence.
    let plain_url = url.replace("sslmode=require", "sslmode=disable");
    let out = Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--db", &plain_url])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("no encryption") || said.contains("pg_hba.conf"),
        "{said}"
    );
    // The default (prefer) encrypts when the server offers it.
    let (ok, said) = user_list(&url.replace("?sslmode=require", ""));
    assert!(ok, "{said}");
}

#[test]
fn sslrootcert_decides_which_certificates_are_trusted_and_verify_full_checks_the_name() {
    let ca = root("ca.crt");
    let other = root("other-ca.crt");
    // The certificate chains to the test CA and names localhost, not 127.0.0.1.
    for (host, options, accepted) in [
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            true,
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            false,
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
            true,
        ),
        (
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={ca}"),
            true,
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={other}"),
            false,
        ),
        (
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={other}"),
            false,
        ),
        ("127.0.0.1", "sslmode=require".to_string(), true),
        // allow and prefer: encrypted (the cluster refuses anything else), nothing checked.
        ("127.0.0.1", "sslmode=allow".to_string(), true),
        ("127.0.0.1", "sslmode=prefer".to_string(), true),
        // The built-in (Mozilla) roots do not know the test CA.
        ("localhost", "sslmode=verify-full".to_string(), false),
        ("localhost", "sslrootcert=system".to_string(), false),
    ] {
        let url = database(host, &options);
        let (ok, said) = user_list(&url);
        assert_eq!(ok, accepted, "{host} {options}: {said}");
        if !accepted {
            assert!(said.contains("cannot connect to"), "{options}: {said}");
            assert!(
                said.to_lowercase().contains("certificate"),
                "{options}: {said}"
            );
        }
    }
    let (ok, said) = user_list(&database("127.0.0.1", "sslmode=sometimes"));
    assert!(
        !ok && said.contains("sslmode=sometimes is not one of"),
        "{said}"
    );
}

#[test]
fn migrate_moves_a_lab_into_a_database_that_takes_only_tls_and_back() {
    let mut first = TestServer::start_file(&[]);
    let user = first.user("ada@lab.org");
    let run = first.experiment(&user, "moved over tls", None);
    first.sigterm();
    let url = database(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", root("ca.crt")),
    );
    let migrate = |from: &str, to: &str| {
        let out = Command::new(BIN)
            .args(["migrate", "--from", from, "--to", to])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "migrate --from {from} --to {to}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    migrate(first.db.to_str().unwrap(), &url);
    let dir = TempDir::new();
    let back = dir.join("back.db");
    migrate(&url, back.to_str().unwrap());
    let again = TestServer::start_on(&back, &[]);
    let user = again.login("ada@lab.org", "correct horse battery");
    let r = again.get(&format!("/api/experiments/{run}"), &user.auth());
    assert_eq!(r.status, 200, "{}", r.text);
}
