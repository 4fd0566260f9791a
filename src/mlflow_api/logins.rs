//! HTTP Basic sign-in for MLflow's client (`MLFLOW_TRACKING_USERNAME` / `PASSWORD`), which
//! sends the e-mail and password with every request. Checking the password is an argon2 hash
//! (deliberately slow), so a successful check is remembered in memory for a short while, keyed
//! by the SHA-256 of the credentials. An entry also keeps the password hash it was checked
//! against, and every use re-reads the account: a changed password or a disabled account stops
//! working at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::error::{Error, Result};
use crate::limits::{self, Action, Key};
use crate::server::AppState;
use crate::store::users;

/// Credentials remembered at most; past it, expired entries go, then the oldest.
pub const MAX_LOGINS: usize = 1_024;
/// How long a successful check is remembered.
pub const LOGIN_TTL: Duration = Duration::from_secs(300);

struct Entry {
    user_id: String,
    password_hash: String,
    until: Instant,
}

/// The remembered checks. One per process: an entry is only ever used together with a
/// database read that confirms its account and password hash, so servers in one process
/// (tests) cannot mix them up.
static LOGINS: Mutex<Option<HashMap<Vec<u8>, Entry>>> = Mutex::new(None);

fn remembered(key: &[u8]) -> Option<(String, String)> {
    let mut guard = LOGINS.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    match map.get(key) {
        Some(e) if e.until > Instant::now() => Some((e.user_id.clone(), e.password_hash.clone())),
        Some(_) => {
            map.remove(key);
            None
        }
        None => None,
    }
}

fn remember(key: Vec<u8>, user_id: String, password_hash: String) {
    let mut guard = LOGINS.lock().unwrap_or_else(|p| p.into_inner());
    let map = guard.get_or_insert_with(HashMap::new);
    if map.len() >= MAX_LOGINS {
        let now = Instant::now();
        map.retain(|_, e| e.until > now);
    }
    if map.len() >= MAX_LOGINS
        && let Some(oldest) = map
            .iter()
            .min_by_key(|(_, e)| e.until)
            .map(|(k, _)| k.clone())
    {
        map.remove(&oldest);
    }
    map.insert(
        key,
        Entry {
            user_id,
            password_hash,
            until: Instant::now() + LOGIN_TTL,
        },
    );
}

fn forget(key: &[u8]) {
    let mut guard = LOGINS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(map) = guard.as_mut() {
        map.remove(key);
    }
}

/// The account that `credentials` (base64 of `email:password`) sign in as.
pub async fn check(state: &AppState, credentials: &str, ip: IpAddr) -> Result<String> {
    let refused = || Error::Unauthorized("invalid email or password".into());
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            Error::Unauthorized("the Basic credentials are not base64 of email:password".into())
        })?;
    let (email, password) = decoded.split_once(':').ok_or_else(refused)?;
    let key = crate::auth::sha256(&decoded);
    if let Some((user_id, hash)) = remembered(&key) {
        let lookup = user_id.clone();
        let user = state.db.read(move |c| users::by_id(c, &lookup)).await?;
        match user {
            Some(u) if !u.disabled && u.password_hash == hash => return Ok(user_id),
            _ => forget(&key),
        }
    }
    let email =
        crate::validate::normalize_email(email).unwrap_or_else(|_| email.trim().to_string());
    // As for /login: refused before the hash is computed, so guessing stays slow.
    state.limits.check_all(&[
        (Key::address(Action::Login, ip), limits::LOGIN_PER_ADDRESS),
        (
            Key::account_address(Action::Login, &email, ip),
            limits::LOGIN_PER_ACCOUNT_ADDRESS,
        ),
        (
            Key::account(Action::Login, &email),
            limits::LOGIN_PER_ACCOUNT,
        ),
    ])?;
    let user = state.db.read(move |c| users::by_email(c, &email)).await?;
    let valid = state
        .auth
        .verify_password(
            user.as_ref().map(|u| u.password_hash.clone()),
            password.to_string(),
        )
        .await?;
    match user {
        Some(u) if valid && !u.disabled => {
            remember(key, u.id.clone(), u.password_hash);
            Ok(u.id)
        }
        _ => Err(refused()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_sign_ins_are_bounded_and_the_newest_stay() {
        for i in 0..MAX_LOGINS + 50 {
            remember(
                crate::auth::sha256(&format!("user{i}:pw")),
                format!("u{i}"),
                "hash".into(),
            );
        }
        let len = LOGINS.lock().unwrap().as_ref().map_or(0, HashMap::len);
        assert!(len <= MAX_LOGINS, "{len}");
        let last = crate::auth::sha256(&format!("user{}:pw", MAX_LOGINS + 49));
        assert_eq!(
            remembered(&last).map(|(u, _)| u),
            Some(format!("u{}", MAX_LOGINS + 49))
        );
        forget(&last);
        assert!(remembered(&last).is_none());
    }
}
