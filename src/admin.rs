//! Admin commands that work on the database directly (a file, or a PostgreSQL URL), with or
//! without a server running (WAL lets both write; each command is one short transaction).

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use crate::auth;
use crate::db;
use crate::error::{Error, Result};
use crate::store::{api_keys, tokens, users, workspaces};
use crate::time::{now_ms, rfc3339};

fn open(path: &Path) -> Result<crate::sql::Connection> {
    let arg = crate::config::DbArg {
        path: path.to_path_buf(),
    };
    if let Some(url) = arg.postgres_url() {
        let mut conn = db::connect_postgres(url, &arg.shown())?;
        db::migrate(&mut conn)?;
        return Ok(conn);
    }
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

fn user_by_email(conn: &crate::sql::Connection, email: &str) -> Result<users::User> {
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

/// Every API key (or one account's): never the key itself, which only its holder ever saw.
pub fn api_key_list(path: &Path, email: Option<&str>) -> Result<()> {
    let conn = open(path)?;
    let user = email.map(|e| user_by_email(&conn, e)).transpose()?;
    let keys = api_keys::list_all(&conn, user.as_ref().map(|u| u.id.as_str()))?;
    println!(
        "{:<36}  {:<7}  {:<24}  {:<24}  {:<24}  name",
        "id", "status", "created", "last used", "user"
    );
    for k in keys {
        let status = if k.key.revoked { "revoked" } else { "live" };
        let used = k.key.last_used.map_or("never".to_string(), rfc3339);
        println!(
            "{:<36}  {:<7}  {:<24}  {:<24}  {:<24}  {}",
            k.key.id,
            status,
            rfc3339(k.key.created_at),
            used,
            k.email,
            k.key.name
        );
    }
    Ok(())
}

/// Revokes a key by its id (from `tora api-key list`): it stops working at its next request.
pub fn api_key_revoke(path: &Path, id: &str) -> Result<()> {
    let mut conn = open(path)?;
    let id = id.trim().to_string();
    let key = db::write_tx(&mut conn, |tx| api_keys::revoke_any(tx, &id))?.ok_or_else(|| {
        Error::NotFound(format!(
            "no API key has the id {id} (`tora api-key list` shows them)"
        ))
    })?;
    if key.key.revoked {
        println!(
            "API key '{}' ({}) of {} was already revoked",
            key.key.name, key.key.id, key.email
        );
    } else {
        println!(
            "revoked API key '{}' ({}) of {}: it stops working at its next request",
            key.key.name, key.key.id, key.email
        );
    }
    Ok(())
}

/// What happens to an account's workspaces when it is deleted; see [`user_delete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure<'a> {
    /// Only if nothing is lost: no runs in a workspace that goes, no workspace left without an
    /// OWNER.
    Refuse,
    /// The workspaces only this account uses go, with their runs.
    DeleteRuns,
    /// Every workspace that would go or lose its last OWNER is handed to this account.
    NewOwner(&'a str),
}

/// Deletes an account. Its keys, sessions and memberships go with it; runs it made in
/// workspaces that stay, stay (with no creator). Its Personal workspace would go too (the
/// database deletes it with the account), and a workspace where it is the last OWNER would be
/// left with nobody to manage it, so unless told otherwise (`departure`) this refuses when
/// either holds runs or other members, and changes nothing.
pub fn user_delete(path: &Path, email: &str, departure: Departure) -> Result<()> {
    let mut conn = open(path)?;
    let report = db::write_tx(&mut conn, |tx| {
        let user = user_by_email(tx, email)?;
        let heir = match departure {
            Departure::NewOwner(heir) => {
                let heir = user_by_email(tx, heir)?;
                if heir.id == user.id {
                    return Err(Error::bad_request(
                        "--new-owner names the account being deleted; name another",
                    ));
                }
                Some(heir)
            }
            _ => None,
        };
        let held = workspaces::held_by(tx, &user.id)?;
        let mut report = Vec::new();
        let mut blocked = Vec::new();
        for w in &held {
            let what = if w.personal {
                "their Personal workspace".to_string()
            } else {
                format!("workspace '{}', of which they are the last OWNER,", w.name)
            };
            if let Some(heir) = &heir {
                let name = if w.personal {
                    format!("Personal workspace of {}", user.email)
                } else {
                    w.name.clone()
                };
                workspaces::hand_over(tx, &w.id, &heir.id, &name, now_ms())?;
                report.push(format!(
                    "'{name}' ({}) now belongs to {} as OWNER",
                    count(w.runs, "run"),
                    heir.email
                ));
            } else if w.runs == 0 && (w.personal || w.others == 0) {
                // Nothing in it: it goes without loss (an empty Personal workspace always
                // does, whoever else was in it).
                workspaces::delete(tx, &w.id)?;
            } else if departure == Departure::DeleteRuns && (w.personal || w.others == 0) {
                workspaces::delete(tx, &w.id)?;
                report.push(format!(
                    "deleted '{}' and its {}",
                    w.name,
                    count(w.runs, "run")
                ));
            } else if w.others > 0 && !w.personal {
                blocked.push(format!(
                    "{what} has {} and {}: it needs a new OWNER",
                    count(w.others, "other member"),
                    count(w.runs, "run")
                ));
            } else {
                blocked.push(format!("{what} holds {}", count(w.runs, "run")));
            }
        }
        if !blocked.is_empty() {
            return Err(Error::Conflict(format!(
                "not deleting {}; nothing was changed:\n  - {}\nAdd --new-owner EMAIL to hand these workspaces and their runs to another account; or --delete-runs to delete, with their runs, the ones only {} uses (a workspace with other members still needs --new-owner); or move the runs to another workspace in the dashboard first.",
                user.email,
                blocked.join("\n  - "),
                user.email
            )));
        }
        let keys = api_keys::list(tx, &user.id)?.len() as i64;
        users::delete(tx, &user.id)?;
        report.insert(
            0,
            format!(
                "deleted {}, their {} and sessions; runs they made in other workspaces stay",
                user.email,
                count(keys, "API key")
            ),
        );
        Ok(report)
    })?;
    for line in report {
        println!("{line}");
    }
    Ok(())
}

/// "1 run", "2 runs".
fn count(n: i64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
