//! The dashboard, embedded in the binary (`debug-embed`, so debug builds serve the same bytes
//! as release). Any path that is not a file falls back to index.html, so dashboard URLs such as
//! `/experiments/{id}` open the app; `/api/...` never reaches here.

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "assets/"]
#[exclude = "node_modules/*"]
#[exclude = "package*.json"]
struct Assets;

/// uPlot, from the npm lockfile (build.rs runs `npm ci`), served under `/vendor/uplot/`.
#[derive(RustEmbed)]
#[folder = "assets/node_modules/uplot/dist/"]
#[include = "uPlot.esm.js"]
#[include = "uPlot.min.css"]
struct Uplot;

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Where versioned files live: `/v/<BUILD>/js/app.js` is `/js/app.js` of this build. index.html
/// names its scripts, styles and preloads there (see [`index`]), and the modules import each
/// other by relative paths, so the whole dashboard loads from one versioned tree whose files a
/// browser may keep for good: a new binary has a new build id, hence new URLs.
const VERSIONED: &str = "v/";

/// The dashboard's build id: a hash of every embedded file.
fn build() -> &'static str {
    static BUILD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        let mut names: Vec<String> = Assets::iter().map(|f| f.to_string()).collect();
        names.sort();
        for name in names {
            if let Some(f) = Assets::get(&name) {
                hash.update(name.as_bytes());
                hash.update(f.metadata.sha256_hash());
            }
        }
        for name in Uplot::iter() {
            if let Some(f) = Uplot::get(&name) {
                hash.update(name.as_bytes());
                hash.update(f.metadata.sha256_hash());
            }
        }
        hex(&hash.finalize()[..6])
    });
    &BUILD
}

/// index.html with its `/js/`, `/css/` and `/vendor/` references moved under this build's
/// versioned tree.
fn index() -> Option<&'static [u8]> {
    static INDEX: std::sync::LazyLock<Option<Vec<u8>>> = std::sync::LazyLock::new(|| {
        let raw = Assets::get("index.html")?;
        let text = String::from_utf8_lossy(&raw.data);
        let prefix = format!("/{VERSIONED}{}/", build());
        let mut out = text.into_owned();
        for dir in ["js/", "css/", "vendor/"] {
            for attr in ["src=\"/", "href=\"/"] {
                out = out.replace(
                    &format!("{attr}{dir}"),
                    &format!("{}{prefix}{dir}", &attr[..attr.len() - 1]),
                );
            }
        }
        Some(out.into_bytes())
    });
    INDEX.as_deref()
}

pub async fn serve(uri: Uri, headers: HeaderMap) -> Response {
    let mut path = uri.path().trim_start_matches('/');
    // A versioned file: the same file, cached for good when it is this build's.
    let mut immutable = false;
    if let Some(rest) = path.strip_prefix(VERSIONED)
        && let Some((id, file)) = rest.split_once('/')
    {
        immutable = id == build();
        path = file;
    }
    let found = match path.strip_prefix("vendor/uplot/") {
        Some(vendored) => Uplot::get(vendored),
        None => Assets::get(path),
    };
    let (path, etag, body) = match found {
        Some(f) if !path.is_empty() && path != "index.html" => (
            path,
            hex(&f.metadata.sha256_hash()[..12]),
            f.data.into_owned(),
        ),
        _ => match index() {
            Some(page) => {
                immutable = false;
                ("index.html", format!("i{}", build()), page.to_vec())
            }
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    "dashboard not built into this binary",
                )
                    .into_response();
            }
        },
    };
    let etag = format!("\"{etag}\"");
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // index.html (and any unversioned path) is revalidated, so a new binary's dashboard shows
    // up at once; this build's versioned files never change, so they are kept.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    secure(h);
    response
}

/// The headers every page and file outside the API carries: the strict CSP, no sniffing, no
/// framing, no referrer.
pub fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// index.html preloads every module the dashboard has (and uPlot), so the browser fetches
    /// them in one round instead of one import level at a time; a module added later without
    /// its line would bring the waterfall back.
    #[test]
    fn index_preloads_every_module() {
        let index = Assets::get("index.html").expect("index.html");
        let index = String::from_utf8_lossy(&index.data);
        let mut modules: Vec<String> = Assets::iter()
            .filter(|f| f.starts_with("js/") && f.ends_with(".js"))
            .map(|f| format!("/{f}"))
            .collect();
        modules.push("/vendor/uplot/uPlot.esm.js".into());
        for m in &modules {
            assert!(
                index.contains(&format!("<link rel=\"modulepreload\" href=\"{m}\">")),
                "index.html does not preload {m}"
            );
        }
        assert_eq!(
            index.matches("rel=\"modulepreload\"").count(),
            modules.len()
        );
    }
}
