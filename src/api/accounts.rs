//! Local accounts: signup, e-mail confirmation, login and token refresh.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[allow(unused_imports)]
use super::openapi::{Envelope, Errors};
use super::{Json, Query, Reply, created, ok};
use crate::auth::{self, MIN_PASSWORD_LEN, REFRESH_TTL_SECS};
use crate::config::Signup;
use crate::error::{Error, Result};
use crate::limits::{self, Action, Key};
use crate::server::AppState;
use crate::store::{tokens, users, workspaces};
use crate::time::now_ms;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(confirm))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(end_sessions))
        .routes(routes!(setup))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(resend_confirmation))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct UserOut {
    id: String,
    email: String,
    /// The address is proven (a mailed link was opened, or an admin vouched): invitations
    /// addressed to it reach this account without a link.
    email_confirmed: bool,
}

impl From<&users::User> for UserOut {
    fn from(u: &users::User) -> Self {
        UserOut {
            id: u.id.clone(),
            email: u.email.clone(),
            email_confirmed: u.email_confirmed_at.is_some(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct SignedUp {
    id: String,
    email: String,
    /// Whether a link that confirms the address was mailed to it (only when the server has
    /// mail). The account works at once either way; a confirmed address also receives the
    /// invitations sent to it.
    mailed: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Session {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    expires_at: i64,
    refresh_token: String,
    user: UserOut,
}

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::bad_request(format!(
            "the password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > 1024 {
        return Err(Error::bad_request(
            "the password must be at most 1024 bytes",
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/signup", tag = "accounts", request_body = Credentials, responses((status = 201, body = Envelope<SignedUp>), Errors))]
async fn signup(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> Result<Reply<SignedUp>> {
    if state.config.signup == Signup::Closed {
        return Err(Error::Forbidden(
            "signup is closed on this server; ask an admin for an account or an invitation".into(),
        ));
    }
    state.limits.check(
        Key::address(Action::Signup, client.ip()),
        limits::SIGNUP_PER_ADDRESS,
    )?;
    let email = crate::validate::normalize_email(&body.email)?;
    check_password(&body.password)?;
    let hash = state.auth.hash_password(body.password).await?;
    // The token goes only into a mail: whoever opens the link reads that mailbox, which is the
    // proof. Without mail no token is made, as nothing could carry it but this reply.
    let token = state.mailer.is_some().then(|| auth::random_token("", 40));
    let token_hash = token.as_deref().map(auth::sha256);
    let user = state
        .db
        .write(move |tx| {
            let now = now_ms();
            let user = users::create(tx, &email, &hash, now)?;
            if let Some(token_hash) = &token_hash {
                tokens::insert_confirmation(tx, token_hash, &user.id, now)?;
            }
            Ok(user)
        })
        .await?;
    let mailed = match token {
        Some(token) => mail_confirmation(&state, &headers, &user.email, &token).await,
        None => false,
    };
    Ok(created(SignedUp {
        id: user.id,
        email: user.email,
        mailed,
    }))
}

/// Mails the link that confirms `email` with `token`; false without mail or when it failed.
async fn mail_confirmation(
    state: &AppState,
    headers: &HeaderMap,
    email: &str,
    token: &str,
) -> bool {
    let Some(mailer) = &state.mailer else {
        return false;
    };
    let link = format!(
        "{}/confirm?token_hash={token}&confirm_type=email",
        state.public_url(headers)
    );
    mailer.send(crate::mail::confirmation(email, &link)).await
}

#[derive(Serialize, utoipa::ToSchema)]
struct Mailed {
    /// Whether the relay took the mail.
    mailed: bool,
}

/// Mails the caller a new confirmation link (the first was lost, or its 7 days passed); only
/// the newest link works. Counts against the account's mail limit.
#[utoipa::path(post, path = "/me/confirmation", tag = "accounts", security(("api_key" = []), ("bearer" = [])), responses((status = 200, body = Envelope<Mailed>), Errors))]
async fn resend_confirmation(
    State(state): State<AppState>,
    user: crate::auth::AuthUser,
    headers: HeaderMap,
) -> Result<Reply<Mailed>> {
    if state.mailer.is_none() {
        return Err(Error::bad_request(
            "this server sends no mail: ask an admin to run `tora user confirm EMAIL`, or ask for the invitation's link",
        ));
    }
    let id = user.id.clone();
    let found = state.db.read(move |c| users::by_id(c, &id)).await?;
    let me = found.ok_or_else(|| Error::Unauthorized("account gone".into()))?;
    if me.email_confirmed_at.is_some() {
        return Err(Error::Conflict("your address is already confirmed".into()));
    }
    state
        .limits
        .check(Key::account(Action::Mail, &me.id), limits::MAIL_PER_ACCOUNT)?;
    let token = auth::random_token("", 40);
    let hash = auth::sha256(&token);
    state
        .db
        .write(move |tx| {
            tokens::clear_confirmations(tx, &user.id)?;
            tokens::insert_confirmation(tx, &hash, &user.id, now_ms())
        })
        .await?;
    let mailed = mail_confirmation(&state, &headers, &me.email, &token).await;
    Ok(ok(Mailed { mailed }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ConfirmQuery {
    token_hash: Option<String>,
    confirm_type: Option<String>,
}

#[utoipa::path(get, path = "/signup/confirm", tag = "accounts", params(ConfirmQuery), responses((status = 200, body = Envelope<UserOut>), Errors))]
async fn confirm(
    State(state): State<AppState>,
    Query(q): Query<ConfirmQuery>,
) -> Result<Reply<UserOut>> {
    if q.confirm_type.as_deref().unwrap_or("email") != "email" {
        return Err(Error::bad_request("confirm_type must be 'email'"));
    }
    let token = q
        .token_hash
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::bad_request("token_hash is required"))?;
    let hash = auth::sha256(&token);
    let user = state
        .db
        .write(move |tx| {
            let now = now_ms();
            let Some(user_id) = tokens::take_confirmation(tx, &hash, now)? else {
                return Ok(None);
            };
            users::confirm_email(tx, &user_id, now)?;
            users::by_id(tx, &user_id)
        })
        .await?;
    let user = user.ok_or_else(|| {
        Error::bad_request("this confirmation link is invalid, was already used, or has expired")
    })?;
    Ok(ok(UserOut::from(&user)))
}

#[utoipa::path(post, path = "/login", tag = "accounts", request_body = Credentials, responses((status = 200, body = Envelope<Session>), Errors))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Json(body): Json<Credentials>,
) -> Result<Reply<Session>> {
    // The signup rules make the stored form; an address they refuse can match no account, and
    // still costs a hash below, so the answer does not say which addresses exist.
    let email = crate::validate::normalize_email(&body.email)
        .unwrap_or_else(|_| body.email.trim().to_string());
    // Checked before the password hash is computed: refusing is cheap, guessing stays slow.
    let ip = client.ip();
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
            body.password,
        )
        .await?;
    // One answer for an unknown e-mail and a wrong password: nobody learns who has an account.
    let user = match user {
        Some(u) if valid && !u.disabled => u,
        _ => return Err(Error::Unauthorized("invalid email or password".into())),
    };
    let family = crate::store::new_id();
    let auth = state.auth.clone();
    let session = state
        .db
        .write(move |tx| {
            // A first login gives the user somewhere to put experiments straight away.
            workspaces::personal(tx, &user.id, now_ms())?;
            new_session(tx, &auth, &user, &family)
        })
        .await?;
    Ok(ok(session))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct RefreshBody {
    refresh_token: String,
}

#[utoipa::path(post, path = "/refresh", tag = "accounts", request_body = RefreshBody, responses((status = 200, body = Envelope<Session>), Errors))]
async fn refresh(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Json(body): Json<RefreshBody>,
) -> Result<Reply<Session>> {
    state.limits.check(
        Key::address(Action::Refresh, client.ip()),
        limits::REFRESH_PER_ADDRESS,
    )?;
    let hash = auth::sha256(body.refresh_token.trim());
    let limiter = state.limits.clone();
    let auth = state.auth.clone();
    // Spending the old token and issuing the new one are one transaction: a refresh either
    // happens whole or not at all, so a client that gets an error still holds a live token.
    let outcome = state
        .db
        .write(move |tx| {
            let now = now_ms();
            let Some(token) = tokens::refresh_by_hash(tx, &hash)? else {
                return Ok(Err("invalid refresh token"));
            };
            // Charged once, before the token is spent: a refused client keeps its token.
            limiter.check(
                Key::account(Action::Refresh, &token.user_id),
                limits::REFRESH_PER_ACCOUNT,
            )?;
            if token.used_at.is_some() || !tokens::mark_refresh_used(tx, &hash, now)? {
                // A rotated token came back: someone holds a copy. End that whole login.
                tokens::revoke_family(tx, &token.family)?;
                return Ok(Err("this refresh token was already used; sign in again"));
            }
            if token.expires_at <= now {
                return Ok(Err("the refresh token has expired; sign in again"));
            }
            match users::by_id(tx, &token.user_id)? {
                Some(u) if !u.disabled => Ok(Ok(new_session(tx, &auth, &u, &token.family)?)),
                _ => Ok(Err("this account is disabled or gone")),
            }
        })
        .await?;
    let session = outcome.map_err(|m| Error::Unauthorized(m.into()))?;
    Ok(ok(session))
}

#[derive(Serialize, utoipa::ToSchema)]
struct SignedOut {
    signed_out: bool,
}

/// Ends the login a refresh token belongs to (every token rotated from it too). The access
/// token lives on until it expires (15 minutes at most): clients drop it themselves. Answers
/// the same for an unknown or spent token, so it tells nothing about tokens.
#[utoipa::path(post, path = "/logout", tag = "accounts", request_body = RefreshBody, responses((status = 200, body = Envelope<SignedOut>), Errors))]
async fn logout(
    State(state): State<AppState>,
    Json(body): Json<RefreshBody>,
) -> Result<Reply<SignedOut>> {
    let hash = auth::sha256(body.refresh_token.trim());
    state
        .db
        .write(move |tx| match tokens::refresh_by_hash(tx, &hash)? {
            Some(token) => tokens::revoke_family(tx, &token.family),
            None => Ok(()),
        })
        .await?;
    Ok(ok(SignedOut { signed_out: true }))
}

/// Signs the caller out everywhere: every refresh token of the account ends (API keys stay;
/// revoke those one by one).
#[utoipa::path(delete, path = "/me/sessions", tag = "accounts", security(("api_key" = []), ("bearer" = [])), responses((status = 200, body = Envelope<SignedOut>), Errors))]
async fn end_sessions(
    State(state): State<AppState>,
    user: crate::auth::AuthUser,
) -> Result<Reply<SignedOut>> {
    state
        .db
        .write(move |tx| tokens::revoke_user(tx, &user.id))
        .await?;
    Ok(ok(SignedOut { signed_out: true }))
}

/// Issues an access token and a refresh token in login `family`, inside the caller's write
/// transaction.
fn new_session(
    tx: &crate::sql::Transaction,
    auth: &auth::Auth,
    user: &users::User,
    family: &str,
) -> Result<Session> {
    let (access_token, expires_at) = auth.issue_access(&user.id)?;
    let refresh_token = auth::new_refresh_token();
    let now = now_ms();
    tokens::insert_refresh(
        tx,
        &auth::sha256(&refresh_token),
        &user.id,
        family,
        now + REFRESH_TTL_SECS * 1000,
        now,
    )?;
    Ok(Session {
        access_token,
        token_type: "bearer",
        expires_in: auth::ACCESS_TTL_SECS,
        expires_at,
        refresh_token,
        user: UserOut::from(user),
    })
}

#[derive(Serialize, utoipa::ToSchema)]
struct Setup {
    /// False on a fresh server: the dashboard shows how to create the first account.
    has_accounts: bool,
    /// "open" or "closed"
    signup: &'static str,
    /// Whether the server sends mail (confirmation and invitation links).
    mail: bool,
}

/// What the sign-in page needs to know before anyone signs in.
#[utoipa::path(get, path = "/setup", tag = "accounts", responses((status = 200, body = Envelope<Setup>), Errors))]
async fn setup(State(state): State<AppState>) -> Result<Reply<Setup>> {
    let users = state.db.read(users::count).await?;
    Ok(ok(Setup {
        has_accounts: users > 0,
        signup: if state.config.signup == Signup::Open {
            "open"
        } else {
            "closed"
        },
        mail: state.mailer.is_some(),
    }))
}

/// The signed-in account.
#[utoipa::path(get, path = "/me", tag = "accounts", security(("api_key" = []), ("bearer" = [])), responses((status = 200, body = Envelope<UserOut>), Errors))]
async fn me(State(state): State<AppState>, user: crate::auth::AuthUser) -> Result<Reply<UserOut>> {
    let found = state.db.read(move |c| users::by_id(c, &user.id)).await?;
    let u = found.ok_or_else(|| Error::Unauthorized("account gone".into()))?;
    Ok(ok(UserOut::from(&u)))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// Changes the caller's password and ends every session's refresh token, this one's too:
/// the client signs in again with the new password (its access token lives on for minutes).
#[utoipa::path(put, path = "/me/password", tag = "accounts", security(("api_key" = []), ("bearer" = [])),
    request_body = PasswordChange, responses((status = 200, body = Envelope<UserOut>), Errors))]
async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    user: crate::auth::AuthUser,
    Json(body): Json<PasswordChange>,
) -> Result<Reply<UserOut>> {
    check_password(&body.new_password)?;
    // Login's limits: this endpoint also checks a password.
    let ip = client.ip();
    state.limits.check_all(&[
        (
            Key::address(Action::Password, ip),
            limits::LOGIN_PER_ADDRESS,
        ),
        (
            Key::account(Action::Password, &user.id),
            limits::LOGIN_PER_ACCOUNT_ADDRESS,
        ),
    ])?;
    let id = user.id.clone();
    let found = state.db.read(move |c| users::by_id(c, &id)).await?;
    let u = found.ok_or_else(|| Error::Unauthorized("account gone".into()))?;
    if !state
        .auth
        .verify_password(Some(u.password_hash.clone()), body.current_password)
        .await?
    {
        return Err(Error::Forbidden("the current password is wrong".into()));
    }
    let hash = state.auth.hash_password(body.new_password).await?;
    let id = u.id.clone();
    state
        .db
        .write(move |tx| {
            users::set_password(tx, &id, &hash)?;
            tokens::revoke_user(tx, &id)
        })
        .await?;
    Ok(ok(UserOut::from(&u)))
}
