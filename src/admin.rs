//! Admin commands that work on the database file directly, with or without a server running
//! (WAL lets both write; each command is one short transaction).

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use crate::auth;
use crate::db;
use crate::error::{Error, Result};
use crate::store::{api_keys, tokens, users};
use crate::time::{now_ms, rfc3339};

fn open(path: &Path) -> Result<rusqlite::Connection> {
    if !path.exists() {
        return Err(Error::bad_request(format!(
            "no database at {} (start `tora serve --db {}` once, or pass --db)",
            path.display(),
            path.display()
        )));
    }
    let mut conn = db::open_connection(path)?;
    db::migrate(&mut conn)?;
    Ok(conn)
}

/// A password piped on stdin (first line), or a generated one when stdin is a terminal or empty.
/// Returns (password, generated?).
fn password_from_stdin() -> Result<(String, bool)> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if !line.is_empty() {
            if line.chars().count() < auth::MIN_PASSWORD_LEN {
                return Err(Error::bad_request(format!(
                    "the password must be at least {} characters",
                    auth::MIN_PASSWORD_LEN
                )));
            }
            return Ok((line, false));
        }
    }
    Ok((auth::random_token("", 20), true))
}

fn user_by_email(conn: &rusqlite::Connection, email: &str) -> Result<users::User> {
    let normal = crate::validate::normalize_email(email).unwrap_or_else(|_| email.trim().into());
    users::by_email(conn, &normal)?
        .ok_or_else(|| Error::not_found(&format!("user {}", email.trim())))
}

pub fn user_add(path: &Path, email: &str) -> Result<()> {
    let email = crate::validate::normalize_email(email)?;
    let (password, generated) = password_from_stdin()?;
    let hash = auth::hash_password(&password)?;
    let mut conn = open(path)?;
    let user = db::write_tx(&mut conn, |tx| {
        let now = now_ms();
        let user = users::create(tx, &email, &hash, now)?;
        // The admin who makes an account vouches for its address: invitations sent to it count.
        users::confirm_email(tx, &user.id, now)?;
        Ok(user)
    })?;
    println!("created user {} ({})", user.email, user.id);
    if generated {
        println!("password: {password}");
    }
    Ok(())
}

pub fn user_list(path: &Path) -> Result<()> {
    let conn = open(path)?;
    let list = users::list(&conn)?;
    println!(
        "{:<36}  {:<8}  {:<9}  {:<24}  email",
        "id", "status", "address", "created"
    );
    for u in list {
        let status = if u.disabled { "disabled" } else { "active" };
        let address = if u.email_confirmed_at.is_some() {
            "confirmed"
        } else {
            "unproven"
        };
        println!(
            "{:<36}  {:<8}  {:<9}  {:<24}  {}",
            u.id,
            status,
            address,
            rfc3339(u.created_at),
            u.email
        );
    }
    Ok(())
}

pub fn user_passwd(path: &Path, email: &str) -> Result<()> {
    let (password, generated) = password_from_stdin()?;
    let hash = auth::hash_password(&password)?;
    let mut conn = open(path)?;
    let user = db::write_tx(&mut conn, |tx| {
        let user = user_by_email(tx, email)?;
        users::set_password(tx, &user.id, &hash)?;
        // A new password ends every existing login.
        tokens::revoke_user(tx, &user.id)?;
        Ok(user)
    })?;
    println!(
        "password changed for {}; their sessions were signed out",
        user.email
    );
    if generated {
        println!("password: {password}");
    }
    Ok(())
}

pub fn user_set_disabled(path: &Path, email: &str, disabled: bool) -> Result<()> {
    let mut conn = open(path)?;
    let user = db::write_tx(&mut conn, |tx| {
        let user = user_by_email(tx, email)?;
        users::set_disabled(tx, &user.id, disabled)?;
        if disabled {
            tokens::revoke_user(tx, &user.id)?;
        }
        Ok(user)
    })?;
    let what = if disabled {
        "disabled: their tokens and API keys stop working now"
    } else {
        "enabled"
    };
    println!("{} {what}", user.email);
    Ok(())
}

/// The admin vouches that the account's address belongs to its holder: invitations addressed
/// to it can then be accepted without a link.
pub fn user_confirm(path: &Path, email: &str) -> Result<()> {
    let mut conn = open(path)?;
    let user = db::write_tx(&mut conn, |tx| {
        let user = user_by_email(tx, email)?;
        users::confirm_email(tx, &user.id, now_ms())?;
        Ok(user)
    })?;
    println!(
        "{} confirmed: invitations sent to this address can now be accepted by this account",
        user.email
    );
    Ok(())
}

pub fn api_key_create(path: &Path, email: &str, name: &str) -> Result<()> {
    let name = crate::api::clean_name(name, "the key name", 255)?;
    let key = auth::new_api_key();
    let hash = auth::sha256(&key);
    let mut conn = open(path)?;
    let stored = db::write_tx(&mut conn, |tx| {
        let user = user_by_email(tx, email)?;
        api_keys::create(tx, &user.id, &name, &hash, now_ms())
    })?;
    // Only the key on stdout, so `export TORA_API_KEY=$(tora api-key create ...)` holds the
    // key and nothing else; the rest is for the person at the terminal.
    eprintln!(
        "created API key '{}' ({}) for {}; it is shown once: store it now (e.g. export TORA_API_KEY=...)",
        stored.name,
        stored.id,
        email.trim()
    );
    println!("{key}");
    Ok(())
}
