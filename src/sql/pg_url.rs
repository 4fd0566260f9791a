//! A `postgres://` URL as a connection: the driver's settings and its TLS, with libpq's meaning
//! of `sslmode` and `sslrootcert` (which the driver alone does not have: it knows `disable`,
//! `prefer` and `require`, and verifies nothing itself).
//!
//! - `disable`: no TLS.
//! - `allow`, `prefer` (the default): TLS when the server offers it, else plain; the server's
//!   certificate is not checked (libpq's `prefer` checks nothing either).
//! - `require`: TLS or no connection; the certificate is checked against `sslrootcert` when one
//!   is given (libpq: as `verify-ca`), else not at all.
//! - `verify-ca`: TLS, the certificate must chain to `sslrootcert` (default: the Mozilla roots
//!   built in, `webpki-roots`, since a static binary has no system store); any host name.
//! - `verify-full`: as `verify-ca`, and the certificate must name the host connected to.
//!
//! `sslrootcert=PATH` is a PEM file of the certificates to trust (instead of the built-in
//! roots); `sslrootcert=system` means the built-in roots and, as in libpq, `verify-full`.
//! TLS is rustls with ring (no OpenSSL: the static build links nothing else).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The TLS connector every PostgreSQL connection of Tora's is made with.
pub type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub config: postgres::Config,
    pub tls: Tls,
}

impl Target {
    /// One new connection.
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        self.config.connect(self.tls.clone())
    }

    /// One new connection; the error is a sentence naming the database as `shown` (the URL
    /// with its password hidden) and the driver's causes ([`describe`]).
    pub fn open(&self, shown: &str) -> Result<postgres::Client, String> {
        self.connect()
            .map_err(|e| format!("cannot connect to {shown}: {}", describe(&e)))
    }
}

/// A driver error with its causes (its own text is only the kind: `db error`, `error
/// performing TLS handshake`), such as `db error: FATAL: no pg_hba.conf entry ...` or `error
/// performing TLS handshake: invalid peer certificate: UnknownIssuer`.
pub fn describe(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        // Wrappers often repeat their cause's text.
        if !text.ends_with(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// Reads a `postgres://` (or `postgresql://`) URL; the error is a sentence without the URL
/// (which may hold a password).
pub fn parse(url: &str) -> Result<Target, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = "prefer".to_string();
    let mut root: Option<String> = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = decode(value)?,
            "sslrootcert" => root = Some(decode(value)?),
            _ => kept.push(pair),
        }
    }
    const MODES: [&str; 6] = [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ];
    // Before anything else reads it: `sslrootcert=system` must not make a typo a mode.
    if !MODES.contains(&mode.as_str()) {
        return Err(format!("sslmode={mode} is not one of {}", MODES.join(", ")));
    }
    let (driver_mode, check) = match (mode.as_str(), root.as_deref()) {
        ("disable", _) => ("disable", Check::Nothing),
        (_, Some("system")) => ("require", Check::ChainAndName),
        ("allow" | "prefer", _) => ("prefer", Check::Nothing),
        ("require", None) => ("require", Check::Nothing),
        ("require" | "verify-ca", _) => ("require", Check::Chain),
        _ => ("require", Check::ChainAndName), // verify-full
    };
    kept.push(match driver_mode {
        "disable" => "sslmode=disable",
        "prefer" => "sslmode=prefer",
        _ => "sslmode=require",
    });
    let rebuilt = format!("{base}?{}", kept.join("&"));
    let config: postgres::Config = rebuilt
        .parse()
        .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
    let roots = match (check, root.as_deref()) {
        (Check::Nothing, _) => None,
        (_, Some(path)) if path != "system" => Some(read_roots(path)?),
        _ => Some(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let chain = roots
        .map(|roots| {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("TLS: {e}"))
        })
        .transpose()?;
    let verifier: Arc<dyn ServerCertVerifier> = match (check, chain) {
        (Check::ChainAndName, Some(full)) => full,
        (_, chain) => Arc::new(Lenient { chain, provider }),
    };
    let tls = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Target {
        config,
        tls: Tls::new(tls),
    })
}

/// The certificates of the PEM file at `path`.
fn read_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("sslrootcert {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("sslrootcert {path}: no certificate in it"));
    }
    Ok(roots)
}

/// A URL's percent-encoded value.
fn decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a bad %-escape in {value:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} is not UTF-8"))
}

/// The checks weaker than rustls' own (which `verify-full` uses as it is): `prefer`, and
/// `require` without roots, check no certificate (libpq's meaning); `verify-ca` checks the chain
/// to a trusted root but not the name in it. Either way the handshake's signatures are checked,
/// so the session is the one the certificate's key signed.
#[derive(Debug)]
struct Lenient {
    /// None: no certificate is checked.
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> postgres::config::SslMode {
        parse(url)
            .map_err(|e| e.to_string())
            .unwrap()
            .config
            .get_ssl_mode()
    }

    #[test]
    fn sslmode_takes_libpq_s_words_and_the_driver_gets_what_it_knows() {
        use postgres::config::SslMode;
        assert_eq!(mode("postgres://u@h/db"), SslMode::Prefer);
        assert_eq!(mode("postgres://u@h/db?sslmode=disable"), SslMode::Disable);
        assert_eq!(mode("postgres://u@h/db?sslmode=allow"), SslMode::Prefer);
        assert_eq!(mode("postgres://u@h/db?sslmode=require"), SslMode::Require);
        assert_eq!(
            mode("postgres://u@h/db?sslmode=verify-ca"),
            SslMode::Require
        );
        assert_eq!(
            mode("postgres://u@h/db?application_name=x&sslmode=verify-full"),
            SslMode::Require
        );
        // As libpq: the system's roots mean a full check, whatever the mode said.
        assert_eq!(
            mode("postgres://u@h/db?sslmode=prefer&sslrootcert=system"),
            SslMode::Require
        );
        let e = parse("postgres://u:secret@h/db?sslmode=maybe")
            .err()
            .unwrap();
        assert!(e.contains("sslmode=maybe") && !e.contains("secret"), "{e}");
        // The system's roots do not make a misspelt mode a full check.
        let e = parse("postgres://u@h/db?sslmode=verify_full&sslrootcert=system")
            .err()
            .unwrap();
        assert!(e.contains("sslmode=verify_full"), "{e}");
        let e = parse("postgres://u@h/db?sslmode=require&sslrootcert=/nonexistent.pem")
            .err()
            .unwrap();
        assert!(e.contains("sslrootcert /nonexistent.pem"), "{e}");
        assert_eq!(decode("%2Fetc%2Fca.pem").unwrap(), "/etc/ca.pem");
        assert!(decode("%zz").is_err());
    }

    /// ARCHITECTURE's invariant: no connection of the server's or the CLI's is made around
    /// [`Target`] (which would ignore the URL's sslmode). Test code (after `#[cfg(test)]`) may.
    #[test]
    fn every_postgres_connection_outside_tests_goes_through_target() {
        fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    files(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let mut all = Vec::new();
        files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut all,
        );
        assert!(all.len() > 20, "read src/");
        for path in all.iter().filter(|p| !p.ends_with("sql/pg_url.rs")) {
            let text = std::fs::read_to_string(path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for plain in [
                "NoTls",
                "Client::connect(",
                "connect_raw(",
                ": postgres::Config",
            ] {
                assert!(
                    !code.contains(plain),
                    "{} connects around pg_url::Target ({plain})",
                    path.display()
                );
            }
        }
    }
}
