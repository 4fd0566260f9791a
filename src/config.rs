//! Every setting of `tora serve`, once: its flag, its TORA_* variable, its default. The doc
//! comments are the `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

pub use crate::logging::{LogFormat, LogLevel};

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address and port to listen on; port 0 picks a free one. Use 0.0.0.0:8080 to serve a LAN.
    #[arg(long, env = "TORA_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    #[command(flatten)]
    pub db: DbArg,

    /// The URL people open the dashboard at, used in experiment links (e.g. http://tora.lab:8080).
    /// Defaults to the scheme and Host of each request.
    #[arg(long, env = "TORA_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// Allow browser pages from this origin (e.g. https://notebooks.lab:8888) to call the API.
    /// Repeat for more. Without it the API is same-origin only.
    #[arg(long = "cors-origin", env = "TORA_CORS_ORIGIN", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,

    /// Whether anyone who can reach the server may create an account.
    #[arg(long, env = "TORA_SIGNUP", value_enum, default_value_t = Signup::Open)]
    pub signup: Signup,

    /// The most connections open at once. At the limit a new connection takes the place of the
    /// one idle the longest; if every connection is busy it gets a 503. Lowered to fit the
    /// open-file limit if that is smaller.
    #[arg(long, env = "TORA_MAX_CONNECTIONS", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Send mail through this SMTP relay, smtp://HOST[:PORT] (port 25 by default): signup then
    /// mails a link that confirms the address, and an invitation mails its link to the invitee.
    /// Plain SMTP without TLS or login: point it at a relay on this machine or the lab's LAN
    /// (postfix, msmtpd, the department's relay) that handles the outside world. Needs
    /// --mail-from. Without it Tora sends no mail and invitations travel as links people share.
    #[arg(long, env = "TORA_SMTP_URL", value_parser = parse_smtp_url, requires = "mail_from")]
    pub smtp_url: Option<SmtpServer>,

    /// The sender address of Tora's mail (e.g. tora@lab.org).
    #[arg(long, env = "TORA_MAIL_FROM", value_parser = parse_mail_from, requires = "smtp_url")]
    pub mail_from: Option<String>,

    /// The largest artifact (file kept with a run) one upload may store: bytes, or with a
    /// KiB/MiB/GiB suffix. A larger upload gets a 413 and stores nothing.
    #[arg(long, env = "TORA_MAX_ARTIFACT_SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub max_artifact_size: u64,

    /// The most bytes of artifacts one workspace may hold, uploads in progress included: bytes,
    /// or with a KiB/MiB/GiB suffix. An upload past it gets a 413 and stores nothing.
    #[arg(long, env = "TORA_MAX_WORKSPACE_ARTIFACTS", default_value = "10GiB", value_parser = parse_size)]
    pub max_workspace_artifacts: u64,

    /// Keep the bytes of new artifacts as files in this directory (created owner-only; files
    /// named by number) instead of inside the database file. Files stored before stay where
    /// they are; `tora backup --artifacts-dir DIR` copies the directory's files with the
    /// database.
    #[arg(long, env = "TORA_ARTIFACTS_DIR")]
    pub artifacts_dir: Option<PathBuf>,

    /// Write a backup of the database into this directory (created owner-only) every
    /// --backup-every, each checked like `tora doctor` and named by its time
    /// (tora-YYYYMMDDTHHMMSS.mmmZ.db); with --artifacts-dir, that directory's files go with it.
    #[arg(long, env = "TORA_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,

    /// How often to back up into --backup-dir: a number with s, m, h or d (30m, 6h, 1d).
    #[arg(long, env = "TORA_BACKUP_EVERY", default_value = "1d", value_parser = parse_interval, requires = "backup_dir")]
    pub backup_every: std::time::Duration,

    /// How many backups to keep in --backup-dir; older ones are deleted after a new one passes
    /// its check.
    #[arg(long, env = "TORA_BACKUP_KEEP", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=100_000), requires = "backup_dir")]
    pub backup_keep: u32,

    /// How the log on stderr is written: text (one line per event) or json (one object per
    /// line). Every request gets a line: method, route, status, milliseconds, user, bytes.
    #[arg(long, env = "TORA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The least severe events logged: error, warn, info (one line per request), debug or
    /// trace. RUST_LOG, when set, overrides it with tracing's filter syntax
    /// (`tora=info,tora::request=warn`).
    #[arg(long, env = "TORA_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Let clients on other machines read GET /metrics (Prometheus) with this Bearer token;
    /// clients on this machine need none. Without it, /metrics answers loopback only.
    #[arg(long, env = "TORA_METRICS_TOKEN", hide_env_values = true, value_parser = parse_token)]
    pub metrics_token: Option<String>,
}

fn parse_token(raw: &str) -> Result<String, String> {
    let token = raw.trim();
    if token.len() < 16 || !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("the metrics token must be at least 16 printable characters, no spaces".into());
    }
    Ok(token.to_string())
}

/// A time interval: a whole number followed by s, m, h or d; at least one second.
pub fn parse_interval(raw: &str) -> Result<std::time::Duration, String> {
    let text = raw.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds: u64 = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "'{raw}' is not an interval (a number with s, m, h or d: 30m, 6h, 1d)"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(seconds))
        .filter(|&n| n > 0 && n <= 366 * 86_400)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("'{raw}' is not an interval from 1s to 366d"))
}

/// A size in bytes: a number, optionally followed by KiB, MiB or GiB (or K, M, G: the same).
fn parse_size(raw: &str) -> Result<u64, String> {
    let text = raw.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        _ => {
            return Err(format!(
                "'{raw}' is not a size (a number of bytes, or with KiB, MiB or GiB)"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            format!("'{raw}' is not a size (a positive number of bytes, or with KiB, MiB or GiB)")
        })
}

/// Where `--smtp-url` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "smtp://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "smtp://{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct DbArg {
    /// The database, the server's whole state: a SQLite file, or a PostgreSQL database as a
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/NAME URL.
    #[arg(long = "db", env = "TORA_DB", default_value = "tora.db")]
    pub path: PathBuf,
}

impl DbArg {
    /// The PostgreSQL URL, when `--db` is one (postgres:// or postgresql://).
    pub fn postgres_url(&self) -> Option<&str> {
        let raw = self.path.to_str()?;
        (raw.starts_with("postgres://") || raw.starts_with("postgresql://")).then_some(raw)
    }

    /// For messages: the file, or the URL with any password replaced by ***.
    pub fn shown(&self) -> String {
        match self.postgres_url() {
            Some(url) => crate::migrate::redact(url),
            None => self.path.display().to_string(),
        }
    }

    /// Refuses a PostgreSQL URL for a command that works on a SQLite file itself (`what`), saying
    /// what to use instead.
    pub fn file_only(&self, what: &str, instead: &str) -> crate::error::Result<&std::path::Path> {
        match self.postgres_url() {
            Some(_) => Err(crate::error::Error::bad_request(format!(
                "{what} works on a SQLite database file, not on PostgreSQL ({}): {instead}",
                self.shown()
            ))),
            None => Ok(&self.path),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Signup {
    Open,
    Closed,
}

fn parse_public_url(raw: &str) -> Result<String, String> {
    let url = raw.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len()
    {
        return Err(format!("'{raw}' is not an http:// or https:// URL"));
    }
    Ok(url.to_string())
}

fn parse_origin(raw: &str) -> Result<String, String> {
    let origin = parse_public_url(raw)?;
    if origin["https://".len()..].contains('/') {
        return Err(format!(
            "'{raw}' is not an origin (scheme://host[:port], no path)"
        ));
    }
    Ok(origin)
}

fn parse_smtp_url(raw: &str) -> Result<SmtpServer, String> {
    let raw = raw.trim();
    let Some(rest) = raw.strip_prefix("smtp://") else {
        return Err(format!(
            "'{raw}' is not smtp://HOST[:PORT] (no TLS or login: use a local relay that has them)"
        ));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['@', '/', '?', '#']) {
        return Err(format!(
            "'{raw}': only smtp://HOST[:PORT]; Tora does not log in to the relay"
        ));
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("'{raw}': an IPv6 address needs its closing ]"))?;
            (host, after.strip_prefix(':'))
        }
        None => match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
    {
        return Err(format!("'{raw}' names no valid host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("'{raw}': the port must be 1 to 65535"))?,
        None => 25,
    };
    Ok(SmtpServer {
        host: host.to_string(),
        port,
    })
}

fn parse_mail_from(raw: &str) -> Result<String, String> {
    let email = crate::validate::normalize_email(raw).map_err(|e| e.message().to_string())?;
    if !email.is_ascii() {
        return Err(format!(
            "'{raw}': the sender address must be plain ASCII, as every relay accepts"
        ));
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_name_a_host_and_a_port_and_nothing_else() {
        let server = |host: &str, port| SmtpServer {
            host: host.into(),
            port,
        };
        assert_eq!(
            parse_smtp_url("smtp://relay.lab"),
            Ok(server("relay.lab", 25))
        );
        assert_eq!(
            parse_smtp_url("smtp://127.0.0.1:2525/"),
            Ok(server("127.0.0.1", 2525))
        );
        assert_eq!(parse_smtp_url("smtp://[::1]:587"), Ok(server("::1", 587)));
        assert_eq!(parse_smtp_url("smtp://[::1]"), Ok(server("::1", 25)));
        for bad in [
            "smtps://relay.lab",
            "relay.lab:25",
            "smtp://user:pw@relay.lab",
            "smtp://relay.lab:0",
            "smtp://relay.lab:99999",
            "smtp://",
            "smtp://relay lab",
            "smtp://[::1",
        ] {
            assert!(parse_smtp_url(bad).is_err(), "{bad}");
        }
        assert_eq!(server("::1", 25).to_string(), "smtp://[::1]:25");
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1000"), Ok(1000));
        for bad in ["", "0", "-1", "1TiB", "GiB", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
