//! Who is calling: password hashing (argon2id), access tokens (HS256 JWTs), refresh tokens and
//! API keys (random, stored as SHA-256), and the [`AuthUser`] extractor that handlers take.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Argon2, Block, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

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
    /// "access", or "stream" for a token that only opens one live stream.
    typ: String,
    /// For an experiment's stream token: the experiment it opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    experiment: Option<String>,
    /// For a workspace's stream token: the workspace it opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workspace: Option<String>,
}

/// What a stream token opens: one experiment's stream, or one workspace's.
#[derive(Clone, Copy)]
pub enum Stream<'a> {
    Experiment(&'a str),
    Workspace(&'a str),
}

impl Stream<'_> {
    fn claims(self) -> (Option<String>, Option<String>) {
        match self {
            Stream::Experiment(id) => (Some(id.to_string()), None),
            Stream::Workspace(id) => (None, Some(id.to_string())),
        }
    }
}

/// Stream tokens travel in a URL (EventSource cannot send headers): short-lived, read-only,
/// one experiment's or one workspace's stream.
pub const STREAM_TOKEN_TTL_SECS: i64 = 60;

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    hasher: Hasher,
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
            hasher: Hasher::start()?,
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
            workspace: None,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("jwt encode: {e}")))?;
        Ok((token, claims.exp))
    }

    /// Returns (token, expires_at in unix seconds).
    pub fn issue_stream(&self, user_id: &str, opens: Stream) -> Result<(String, i64)> {
        let now = crate::time::now_ms() / 1000;
        let (experiment, workspace) = opens.claims();
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now,
            exp: now + STREAM_TOKEN_TTL_SECS,
            typ: "stream".into(),
            experiment,
            workspace,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("jwt encode: {e}")))?;
        Ok((token, claims.exp))
    }

    /// The user a stream token was issued to, if it is valid for the stream it `opens`.
    pub fn verify_stream(&self, token: &str, opens: Stream) -> Result<String> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| Error::Unauthorized("invalid or expired stream token".into()))?;
        let (experiment, workspace) = opens.claims();
        if data.claims.typ != "stream"
            || data.claims.experiment != experiment
            || data.claims.workspace != workspace
        {
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
        self.hasher
            .run(move |memory| hash_with(memory, password.as_bytes()))
            .await
    }

    /// Checks `password` against `hash`; with no hash (unknown e-mail) it still spends the same
    /// time on a dummy hash, so response time does not tell which e-mails have accounts.
    pub async fn verify_password(&self, hash: Option<String>, password: String) -> Result<bool> {
        self.hasher
            .run(move |memory| match hash {
                Some(stored) => verify_with(memory, &stored, password.as_bytes()),
                None => hash_with(memory, password.as_bytes()).map(|_| false),
            })
            .await
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

/// Password hashes computed at once. Each holds ~19 MiB and a core for tens of ms; two keep a
/// login flood from starving the 2-core box of CPU or memory.
const HASHERS: usize = 2;
/// Hash requests that may wait for a hasher: a class signing in at once fits, and the last
/// waits well under a second (~20 ms a hash, two at a time); past it a 503.
const HASH_QUEUE: usize = 64;
/// The blocks of one hash are allocated as one piece of at least this many bytes, past glibc's
/// largest mmap threshold (32 MiB): such a piece is mapped afresh and unmapped when freed,
/// instead of staying in the heap of whichever thread freed it. Pages never touched (all but
/// the ~19 MiB a hash uses) cost address space only.
const MAPPED_BYTES: usize = 33 << 20;

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The threads that compute password hashes, fed by a bounded queue. The bound on concurrent
/// hashes lives in the threads themselves, so it holds when a request is cancelled (its client
/// gone) half-way: the hash in progress finishes on its thread, and a queued job whose
/// requester has gone is skipped.
struct Hasher {
    queue: Arc<Queue>,
}

#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

impl Hasher {
    fn start() -> Result<Hasher> {
        let queue = Arc::new(Queue::default());
        for n in 0..HASHERS {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("tora-argon2-{n}"))
                .spawn(move || hash_jobs(&queue))?;
        }
        Ok(Hasher { queue })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(work(memory));
        });
        {
            let mut jobs = self
                .queue
                .jobs
                .lock()
                .map_err(|_| Error::Internal("password hash queue poisoned".into()))?;
            if jobs.len() >= HASH_QUEUE {
                return Err(Error::Unavailable {
                    message: "the server is busy checking passwords; try again shortly".into(),
                    retry_after: 1,
                });
            }
            jobs.push_back(job);
        }
        self.queue.ready.notify_one();
        answer
            .await
            .map_err(|_| Error::Internal("a password hasher dropped a job".into()))?
    }
}

/// One hashing thread: runs jobs while there are any, reusing its blocks from one to the next,
/// and gives the blocks back to the OS whenever the queue runs dry.
fn hash_jobs(queue: &Queue) {
    let mut memory = Vec::new();
    let Ok(mut jobs) = queue.jobs.lock() else {
        return;
    };
    loop {
        if let Some(job) = jobs.pop_front() {
            drop(jobs);
            job(&mut memory);
            let Ok(again) = queue.jobs.lock() else { return };
            jobs = again;
        } else {
            memory = Vec::new();
            let Ok(woken) = queue.ready.wait(jobs) else {
                return;
            };
            jobs = woken;
        }
    }
}

/// `count` blocks from `memory`, allocating them (mapped, see [`MAPPED_BYTES`]) if it has fewer.
fn blocks(memory: &mut Vec<Block>, count: usize) -> Result<&mut [Block]> {
    if memory.len() < count {
        *memory = Vec::new();
        let capacity = count.max(MAPPED_BYTES / Block::SIZE);
        memory
            .try_reserve_exact(capacity)
            .map_err(|e| Error::Internal(format!("argon2 memory: {e}")))?;
        memory.resize(count, Block::default());
    }
    Ok(&mut memory[..count])
}

fn argon2_error(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("argon2: {e}"))
}

/// A new PHC string for `password` (argon2id, the crate's default parameters, a random salt),
/// exactly as `Argon2::default().hash_password` writes it, computed in `memory`.
fn hash_with(memory: &mut Vec<Block>, password: &[u8]) -> Result<String> {
    let salt_bytes = random_bytes::<16>();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(argon2_error)?;
    let argon2 = Argon2::default();
    let params = argon2.params().clone();
    let blocks = blocks(memory, params.block_count())?;
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let hash = Output::init_with(len, |out| {
        Ok(argon2.hash_password_into_with_memory(password, &salt_bytes, out, &mut *blocks)?)
    })
    .map_err(argon2_error)?;
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(argon2_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(hash),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `stored` (whatever argon2 parameters it names),
/// computed in `memory` and compared in constant time.
fn verify_with(memory: &mut Vec<Block>, stored: &str, password: &[u8]) -> Result<bool> {
    let stored_error =
        |e: argon2::password_hash::Error| Error::Internal(format!("stored hash: {e}"));
    let parsed = PasswordHash::new(stored).map_err(stored_error)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(Error::Internal("stored hash has no salt or no hash".into()));
    };
    let algorithm = argon2::Algorithm::try_from(parsed.algorithm).map_err(stored_error)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(argon2_error)?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(stored_error)?;
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(stored_error)?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let blocks = blocks(memory, params.block_count())?;
    let computed = Output::init_with(expected.len(), |out| {
        Ok(argon2.hash_password_into_with_memory(password, salt_bytes, out, &mut *blocks)?)
    })
    .map_err(argon2_error)?;
    // `Output`'s == compares in constant time.
    Ok(computed == expected)
}

/// A new password hash, for the admin commands (one hash, then the process ends).
pub fn hash_password(password: &str) -> Result<String> {
    hash_with(&mut Vec::new(), password.as_bytes())
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
        let user = authenticate(state, &parts.headers).await?;
        if let Some(note) = parts
            .extensions
            .get::<std::sync::Arc<crate::logging::RequestNote>>()
        {
            note.set_user(&user.id);
        }
        Ok(user)
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
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut memory = Vec::new();
        let ours = hash_password("correct horse").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(verify_with(&mut memory, &ours, b"correct horse").unwrap());
        assert!(!verify_with(&mut memory, &ours, b"wrong horse").unwrap());
        // Hashes in existing databases were written by the crate's own API, and the other way
        // round: both formats are one.
        let parsed = PasswordHash::new(&ours).unwrap();
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
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert_eq!(theirs.len(), ours.len());
        assert!(verify_with(&mut memory, &theirs, b"correct horse").unwrap());
        assert!(!verify_with(&mut memory, &theirs, b"correct horsf").unwrap());
        // Other parameters (a smaller m) verify too, in the same memory.
        let small = Argon2::new(
            argon2::Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let small = small.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(verify_with(&mut memory, &small, b"pw").unwrap());
        assert!(verify_with(&mut memory, "not a hash", b"pw").is_err());
    }
}
