//! Who is calling: password hashing (argon2id), access tokens (HS256 JWTs), refresh tokens and
//! API keys (random, stored as SHA-256), and the [`AuthUser`] extractor that handlers take.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::server::AppState;
use crate::store::{settings, users};

/// Access tokens are short-lived: a stolen one is useful for minutes, and the dashboard renews
/// it with its refresh token.
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
pub const REFRESH_TTL_SECS: i64 = 30 * 24 * 3600;
pub const MIN_PASSWORD_LEN: usize = 8;
pub const API_KEY_PREFIX: &str = "tora_sk_";
const REFRESH_PREFIX: &str = "tora_rt_";
const SECRET_SETTING: &str = "jwt_secret";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
    /// "access", or "stream" for a token that only opens one experiment's live stream.
    typ: String,
    /// For stream tokens: the experiment they open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    experiment: Option<String>,
}

/// Stream tokens travel in a URL (EventSource cannot send headers): short-lived, read-only,
/// one experiment.
pub const STREAM_TOKEN_TTL_SECS: i64 = 60;

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Argon2 takes ~19 MiB and tens of ms per hash; two at a time keeps a login flood from
    /// starving the 2-core box.
    hashing: Semaphore,
    /// API key id → last use (ms). Saved to the database every minute and at shutdown, so
    /// authenticating a request never writes.
    key_uses: Mutex<HashMap<String, i64>>,
}

impl Auth {
    /// Loads the signing secret from the database, generating it on first start.
    pub async fn load(db: &Db) -> Result<Arc<Auth>> {
        let fresh = random_bytes::<32>();
        let secret = db
            .write(move |tx| settings::get_or_insert(tx, SECRET_SETTING, &fresh))
            .await?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        Ok(Arc::new(Auth {
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            validation,
            hashing: Semaphore::new(2),
            key_uses: Mutex::new(HashMap::new()),
        }))
    }

    /// Returns (token, expires_at in unix seconds).
    pub fn issue_access(&self, user_id: &str) -> Result<(String, i64)> {
        let now = crate::time::now_ms() / 1000;
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now,
            exp: now + ACCESS_TTL_SECS,
            typ: "access".into(),
            experiment: None,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("jwt encode: {e}")))?;
        Ok((token, claims.exp))
    }

    /// Returns (token, expires_at in unix seconds).
    pub fn issue_stream(&self, user_id: &str, experiment: &str) -> Result<(String, i64)> {
        let now = crate::time::now_ms() / 1000;
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now,
            exp: now + STREAM_TOKEN_TTL_SECS,
            typ: "stream".into(),
            experiment: Some(experiment.to_string()),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("jwt encode: {e}")))?;
        Ok((token, claims.exp))
    }

    /// The user a stream token was issued to, if it is valid for `experiment`.
    pub fn verify_stream(&self, token: &str, experiment: &str) -> Result<String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| Error::Unauthorized("invalid or expired stream token".into()))?;
        if data.claims.typ != "stream" || data.claims.experiment.as_deref() != Some(experiment) {
            return Err(Error::Unauthorized(
                "this token does not open this stream".into(),
            ));
        }
        Ok(data.claims.sub)
    }

    fn verify_access(&self, token: &str) -> Result<String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| Error::Unauthorized("invalid or expired access token".into()))?;
        if data.claims.typ != "access" {
            return Err(Error::Unauthorized("not an access token".into()));
        }
        Ok(data.claims.sub)
    }

    pub async fn hash_password(&self, password: String) -> Result<String> {
        let _slot = self
            .hashing
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || hash_password(&password))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Checks `password` against `hash`; with no hash (unknown e-mail) it still spends the same
    /// time on a dummy hash, so response time does not tell which e-mails have accounts.
    pub async fn verify_password(&self, hash: Option<String>, password: String) -> Result<bool> {
        let _slot = self
            .hashing
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let stored = hash.unwrap_or_else(|| dummy_hash().to_string());
            let parsed = PasswordHash::new(&stored)
                .map_err(|e| Error::Internal(format!("stored hash: {e}")))?;
            Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    fn note_key_use(&self, key_id: String) {
        if let Ok(mut uses) = self.key_uses.lock() {
            uses.insert(key_id, crate::time::now_ms());
        }
    }

    /// Last uses gathered since the previous call (emptied).
    pub fn take_key_uses(&self) -> Vec<(String, i64)> {
        match self.key_uses.lock() {
            Ok(mut uses) => uses.drain().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Last uses not yet saved, for showing fresh `last_used` values.
    pub fn pending_key_use(&self, key_id: &str) -> Option<i64> {
        self.key_uses
            .lock()
            .ok()
            .and_then(|u| u.get(key_id).copied())
    }
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| Error::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // The OS generator failing means the machine cannot make secrets at all; stop loudly.
    getrandom::fill(&mut buf).expect("the operating system's random generator failed");
    buf
}

/// `prefix` + `len` characters drawn uniformly from [A-Za-z0-9] by a CSPRNG (rejection sampling,
/// so no character is likelier than another).
pub fn random_token(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(prefix.len() + len);
    out.push_str(prefix);
    while out.len() < prefix.len() + len {
        for b in random_bytes::<64>() {
            // 248 = 4 * 62: bytes above it would bias the first characters.
            if b < 248 && out.len() < prefix.len() + len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}

pub fn new_api_key() -> String {
    random_token(API_KEY_PREFIX, 40)
}

pub fn new_refresh_token() -> String {
    random_token(REFRESH_PREFIX, 48)
}

pub fn sha256(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// The authenticated caller. Taking it as a handler argument is what makes a route private:
/// an `x-api-key` header or an `Authorization: Bearer` access token, for an enabled user.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        authenticate(state, &parts.headers).await
    }
}

/// The caller named by an `x-api-key` header or an `Authorization: Bearer` access token.
pub async fn authenticate(state: &AppState, headers: &axum::http::HeaderMap) -> Result<AuthUser> {
    if let Some(key) = headers.get("x-api-key") {
        let key = key
            .to_str()
            .map_err(|_| Error::Unauthorized("invalid API key".into()))?;
        let hash = sha256(key.trim());
        let found = state
            .db
            .read(move |c| crate::store::api_keys::owner_of(c, &hash))
            .await?;
        let (key_id, user_id) =
            found.ok_or_else(|| Error::Unauthorized("invalid or revoked API key".into()))?;
        state.auth.note_key_use(key_id);
        return Ok(AuthUser { id: user_id });
    }
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::Unauthorized("sign in: send an x-api-key header or a Bearer token".into())
        })?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| {
            Error::Unauthorized("the Authorization header must be 'Bearer <token>'".into())
        })?;
    let user_id = state.auth.verify_access(token.trim())?;
    enabled(state, user_id).await
}

/// `user_id` as an [`AuthUser`] if that account exists and is enabled: a token outlives
/// nothing, so a deleted or disabled account stops working at once.
pub async fn enabled(state: &AppState, user_id: String) -> Result<AuthUser> {
    let lookup = user_id.clone();
    let user = state.db.read(move |c| users::by_id(c, &lookup)).await?;
    match user {
        Some(u) if !u.disabled => Ok(AuthUser { id: user_id }),
        _ => Err(Error::Unauthorized(
            "this account is disabled or gone".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_long_random_and_prefixed() {
        let a = new_api_key();
        let b = new_api_key();
        assert!(a.starts_with("tora_sk_"));
        assert_eq!(a.len(), "tora_sk_".len() + 40);
        assert!(
            a["tora_sk_".len()..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn password_hashes_verify_only_the_right_password() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong horse", &parsed)
                .is_err()
        );
    }
}
