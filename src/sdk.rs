//! The Python SDK, served by the server itself: `build.rs` builds its wheel from `python/` and
//! the binary embeds it, so any machine that reaches the server can `pip install` the SDK that
//! matches it, without PyPI (offline lab networks) and without a checkout.
//!
//! - `/sdk/`: a short page with the install commands for this server
//! - `/sdk/tora-VERSION-py3-none-any.whl`: the wheel (pip needs that file name in the URL: it
//!   reads the name and version from it before downloading, so a shorter alias cannot work)
//! - `/sdk/simple/` and `/sdk/simple/tora/`: a PEP 503 simple index, for
//!   `pip install --index-url http://SERVER/sdk/simple/ tora`, the command that stays the same
//!   from one version to the next
//!
//! Public code, so no authentication; the Host check and the dashboard's headers apply.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::Digest;

use crate::server::AppState;

/// The wheel's bytes, built by build.rs.
pub static WHEEL: &[u8] = include_bytes!(env!("TORA_SDK_WHEEL_PATH"));
/// Its file name: `tora-VERSION-py3-none-any.whl`.
pub const WHEEL_NAME: &str = env!("TORA_SDK_WHEEL");
/// The SDK's version, from python/pyproject.toml.
pub const VERSION: &str = env!("TORA_SDK_VERSION");
const REQUIRES_PYTHON: &str = env!("TORA_SDK_REQUIRES_PYTHON");
/// Where the simple index lives, under the server's URL.
pub const INDEX_PATH: &str = "/sdk/simple/";

/// The pip command that installs the SDK from the server at `base` (scheme://host[:port]).
/// pip refuses an index over plain http unless it is on this machine or named trusted.
pub fn pip_command(base: &str) -> String {
    let host = base
        .split("://")
        .nth(1)
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let local = name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let trust = if base.starts_with("http://") && !local {
        format!(" --trusted-host {name}")
    } else {
        String::new()
    };
    format!("pip install --index-url {base}{INDEX_PATH}{trust} tora")
}

/// `/sdk` and everything under it.
pub async fn serve(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let wheel = format!("/sdk/{WHEEL_NAME}");
    match path {
        "/sdk" => Redirect::permanent("/sdk/").into_response(),
        "/sdk/" => page(&state.public_url(&headers)),
        "/sdk/simple" => Redirect::permanent("/sdk/simple/").into_response(),
        "/sdk/simple/tora" => Redirect::permanent("/sdk/simple/tora/").into_response(),
        "/sdk/simple/" => html("Simple index".into(), "<a href=\"tora/\">tora</a>\n".into()),
        "/sdk/simple/tora/" => {
            let requires = if REQUIRES_PYTHON.is_empty() {
                String::new()
            } else {
                format!(" data-requires-python=\"{}\"", escape(REQUIRES_PYTHON))
            };
            html(
                "Links for tora".into(),
                format!(
                    "<a href=\"../../{WHEEL_NAME}#sha256={}\"{requires}>{WHEEL_NAME}</a>\n",
                    sha256_hex()
                ),
            )
        }
        p if p == wheel => {
            let mut response = (StatusCode::OK, WHEEL).into_response();
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/zip"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename={WHEEL_NAME}")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            crate::assets::secure(h);
            response
        }
        _ => {
            let mut response = (
                StatusCode::NOT_FOUND,
                format!("not found; the SDK is at /sdk/{WHEEL_NAME}, its index at {INDEX_PATH}\n"),
            )
                .into_response();
            crate::assets::secure(response.headers_mut());
            response
        }
    }
}

fn sha256_hex() -> String {
    sha2::Sha256::digest(WHEEL)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn page(base: &str) -> Response {
    let pip = escape(&pip_command(base));
    let base = escape(base);
    html(
        format!("Tora Python SDK {VERSION}"),
        format!(
            "<h1>Tora Python SDK {VERSION}</h1>\n\
             <p>The SDK that matches this server, served by the server itself. Install it into a \
             virtual environment (Debian and Ubuntu refuse pip outside one):</p>\n\
             <pre>python3 -m venv ~/.venvs/tora &amp;&amp; . ~/.venvs/tora/bin/activate\n{pip}</pre>\n\
             <p>or from the wheel itself: <code>pip install {base}/sdk/{WHEEL_NAME}</code></p>\n\
             <p>Then point your scripts at this server, with an API key from the dashboard's \
             settings page (or <code>tora api-key create --user EMAIL</code>):</p>\n\
             <pre>export TORA_BASE_URL={base}/api\nexport TORA_API_KEY=tora_sk_...</pre>\n\
             <p><a href=\"{WHEEL_NAME}\">{WHEEL_NAME}</a> (sha256 {}) · \
             <a href=\"simple/\">simple index</a> · <a href=\"/\">dashboard</a></p>\n",
            sha256_hex()
        ),
    )
}

fn html(title: String, body: String) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body>\n{body}</body>\n</html>\n"
    );
    let mut response = (StatusCode::OK, page).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    crate::assets::secure(h);
    response
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_trusts_a_plain_http_index_only_when_told_unless_it_is_local() {
        assert_eq!(
            pip_command("http://127.0.0.1:8080"),
            "pip install --index-url http://127.0.0.1:8080/sdk/simple/ tora"
        );
        assert_eq!(
            pip_command("http://localhost:8080"),
            "pip install --index-url http://localhost:8080/sdk/simple/ tora"
        );
        assert_eq!(
            pip_command("http://tora.lab:8080"),
            "pip install --index-url http://tora.lab:8080/sdk/simple/ --trusted-host tora.lab tora"
        );
        assert_eq!(
            pip_command("https://tora.lab.example"),
            "pip install --index-url https://tora.lab.example/sdk/simple/ tora"
        );
    }

    #[test]
    fn the_embedded_wheel_is_a_zip_named_for_its_version() {
        assert!(WHEEL.starts_with(b"PK\x03\x04"));
        assert_eq!(WHEEL_NAME, format!("tora-{VERSION}-py3-none-any.whl"));
    }
}
