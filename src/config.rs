//! Every setting of `tora serve`, once: its flag, its TORA_* variable, its default. The doc
//! comments are the `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

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
}

#[derive(Debug, Clone, Args)]
pub struct DbArg {
    /// The SQLite database file: the server's whole state.
    #[arg(long = "db", env = "TORA_DB", default_value = "tora.db")]
    pub path: PathBuf,
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
