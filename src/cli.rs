//! The command line: `tora serve`, `tora user ..`, `tora api-key ..`, `tora backup`,
//! `tora restore`, `tora doctor`, `tora vacuum`, `tora migrate`, `tora service`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::admin;
use crate::config::{DbArg, ServeConfig};
use crate::error::Result;

#[derive(Debug, Parser)]
#[command(
    name = "tora",
    version,
    about = "Fast, self-hosted ML experiment tracker",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: the REST API under /api and the dashboard at /.
    Serve(ServeConfig),
    /// Manage accounts directly in the database file (with or without a server running).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys directly in the database file.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Write a consistent copy of the database, safe while a server is running and writing.
    Backup {
        /// Where to write the copy; an existing file is never overwritten.
        dest: PathBuf,
        #[command(flatten)]
        db: DbArg,
        /// The server's --artifacts-dir: its files that the copy names are copied to
        /// DEST.artifacts/ (serve the copy with --artifacts-dir DEST.artifacts).
        #[arg(long, env = "TORA_ARTIFACTS_DIR")]
        artifacts_dir: Option<PathBuf>,
    },
    /// Put a backup in place as the database: checks the backup first, refuses while a server
    /// uses the database, and keeps the current file (with its -wal and -shm) aside as
    /// DB.replaced-TIME.
    Restore {
        /// The backup to restore (from `tora backup`, --backup-dir, or a copy).
        backup: PathBuf,
        #[command(flatten)]
        db: DbArg,
        /// The server's --artifacts-dir: the files the backup names are put back into it from
        /// BACKUP.artifacts/ (what `tora backup --artifacts-dir` and --backup-dir write), and
        /// the directory they replace is kept aside as DIR.replaced-TIME.
        #[arg(long, env = "TORA_ARTIFACTS_DIR")]
        artifacts_dir: Option<PathBuf>,
    },
    /// Check that a database file alone (a copy, a backup) is complete and intact: SQLite's
    /// integrity check, the schema version, and every stored point. Exits 1 if it is not.
    Doctor {
        /// The file to check; it is only read (nothing is created beside it).
        file: PathBuf,
    },
    /// Give a database file's free space back to the filesystem, and make it do so by itself
    /// from then on (files made before Tora did this need it once). The server must be stopped.
    Vacuum {
        /// Only say how much would be given back.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        db: DbArg,
    },
    /// Copy a whole database between SQLite and PostgreSQL (either way), exactly, then check
    /// the copy table by table. The server must be stopped. The copy is one transaction: if it
    /// is interrupted nothing is left, and running it again starts over; a destination that
    /// already holds the same data is left as it is, one with other data is refused.
    Migrate {
        /// The database to copy: a SQLite file, or a postgres:// URL.
        #[arg(long, value_name = "FILE|URL")]
        from: String,
        /// Where to copy it: a new SQLite file, or a postgres:// URL of an empty database.
        #[arg(long, value_name = "FILE|URL")]
        to: String,
    },
    /// Run Tora as a systemd service: print the hardened unit, or install it.
    #[command(subcommand)]
    Service(ServiceCommand),
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Print the systemd unit (its own user, StateDirectory /var/lib/tora, daily backups there,
    /// restart on failure, hardened).
    Unit(crate::service::ServiceArgs),
    /// As root: create the system user, copy this binary to --binary, write
    /// /etc/systemd/system/tora.service and start it (never overwriting a unit).
    Install {
        #[command(flatten)]
        args: crate::service::ServiceArgs,
        /// Print each step instead of doing it.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account, its address vouched for by you (invitations sent to it count). The
    /// password is read from stdin (first line) or, if none is piped, generated and printed.
    Add {
        email: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        db: DbArg,
    },
    /// Vouch for the address of an existing account: invitations sent to that address can then
    /// be accepted by it without a link. Only for an account you know belongs to that person.
    Confirm {
        email: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Set a new password (from stdin, or generated and printed) and sign out every session.
    Passwd {
        email: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Disable an account: its tokens, refresh tokens and API keys stop working at once.
    Disable {
        email: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Enable a disabled account again.
    Enable {
        email: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// Delete an account: its API keys, sessions and memberships go; runs it made in workspaces
    /// that stay, stay. Its Personal workspace goes with it, and a workspace where it is the
    /// last OWNER would have nobody to manage it: if any of those holds runs (or has other
    /// members), nothing is deleted unless --new-owner or --delete-runs says what to do.
    Delete {
        email: String,
        /// Hand its Personal workspace (renamed, as an ordinary workspace) and every workspace
        /// where it is the last OWNER, runs included, to this account as OWNER.
        #[arg(long, value_name = "EMAIL", conflicts_with = "delete_runs")]
        new_owner: Option<String>,
        /// Delete its Personal workspace and the workspaces only it uses, with their runs.
        #[arg(long)]
        delete_runs: bool,
        #[command(flatten)]
        db: DbArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key for a user and print it (once: only its hash is stored).
    Create {
        /// The e-mail of the account the key acts as.
        #[arg(long)]
        user: String,
        /// A label to recognise the key by.
        #[arg(long, default_value = "cli")]
        name: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// List API keys (never the keys themselves): id, live or revoked, created, last used (a
    /// running server saves last use every minute), account, name.
    List {
        /// Only this account's keys.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        db: DbArg,
    },
    /// Revoke an API key by its id (see `tora api-key list`): it stops working at its next
    /// request, server running or not.
    Revoke {
        id: String,
        #[command(flatten)]
        db: DbArg,
    },
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(config) => {
            crate::logging::init(config.log_format, config.log_level)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| crate::error::Error::Internal(format!("tokio runtime: {e}")))?;
            runtime.block_on(crate::server::serve(config))
        }
        Command::User(cmd) => match cmd {
            UserCommand::Add { email, db } => admin::user_add(&db.path, &email),
            UserCommand::List { db } => admin::user_list(&db.path),
            UserCommand::Confirm { email, db } => admin::user_confirm(&db.path, &email),
            UserCommand::Passwd { email, db } => admin::user_passwd(&db.path, &email),
            UserCommand::Disable { email, db } => admin::user_set_disabled(&db.path, &email, true),
            UserCommand::Enable { email, db } => admin::user_set_disabled(&db.path, &email, false),
            UserCommand::Delete {
                email,
                new_owner,
                delete_runs,
                db,
            } => {
                let departure = match (&new_owner, delete_runs) {
                    (Some(heir), _) => admin::Departure::NewOwner(heir),
                    (None, true) => admin::Departure::DeleteRuns,
                    (None, false) => admin::Departure::Refuse,
                };
                admin::user_delete(&db.path, &email, departure)
            }
        },
        Command::ApiKey(cmd) => match cmd {
            ApiKeyCommand::Create { user, name, db } => {
                admin::api_key_create(&db.path, &user, &name)
            }
            ApiKeyCommand::List { user, db } => admin::api_key_list(&db.path, user.as_deref()),
            ApiKeyCommand::Revoke { id, db } => admin::api_key_revoke(&db.path, &id),
        },
        Command::Vacuum { dry_run, db } => {
            // PostgreSQL gives space back with its own (auto)vacuum.
            db.file_only("tora vacuum", "PostgreSQL's autovacuum does this job")?;
            let done = crate::db::vacuum(&db.path, dry_run)?;
            let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
            if dry_run {
                println!(
                    "{}: {}, of which {} free pages a vacuum would give back; {}",
                    db.path.display(),
                    mib(done.before),
                    mib(done.reclaimable),
                    if done.incremental {
                        "the server already gives free pages back by itself"
                    } else {
                        "after a vacuum the server gives free pages back by itself"
                    }
                );
            } else {
                println!(
                    "{}: {} -> {}; free pages are now given back by the server as runs are deleted",
                    db.path.display(),
                    mib(done.before),
                    mib(done.after)
                );
            }
            Ok(())
        }
        Command::Migrate { from, to } => {
            let done = crate::migrate::run(&from, &to)?;
            let (from, to) = (
                crate::migrate::Place::parse(&from).shown(),
                crate::migrate::Place::parse(&to).shown(),
            );
            let rows: u64 = done.tables.iter().map(|t| t.1).sum();
            let bytes: u64 = done.tables.iter().map(|t| t.2).sum();
            if done.already {
                println!(
                    "{to} already holds exactly what {from} holds ({} tables, {rows} rows, checked); nothing was written",
                    done.tables.len()
                );
            } else {
                println!("{:<24} {:>12} {:>14}", "table", "rows", "bytes");
                for (name, rows, bytes) in &done.tables {
                    println!("{name:<24} {rows:>12} {bytes:>14}");
                }
                println!(
                    "copied {from} to {to}: {} tables, {rows} rows, {:.1} MiB in {:.1} s; every table's row count and SHA-256 match",
                    done.tables.len(),
                    bytes as f64 / 1048576.0,
                    done.seconds
                );
            }
            if done.external_artifacts > 0 {
                eprintln!(
                    "note: {} artifacts are files in the server's --artifacts-dir, not rows: keep that directory and pass the same --artifacts-dir to the server on {to}",
                    done.external_artifacts
                );
            }
            Ok(())
        }
        Command::Service(ServiceCommand::Unit(args)) => {
            print!("{}", crate::service::unit(&args)?);
            Ok(())
        }
        Command::Service(ServiceCommand::Install { args, dry_run }) => {
            crate::service::install(&args, dry_run)
        }
        Command::Restore {
            backup,
            db,
            artifacts_dir,
        } => {
            db.file_only(
                "tora restore",
                "restore with `tora migrate --from BACKUP.db --to URL` into an empty database",
            )?;
            let done = crate::backups::restore(&backup, &db.path, artifacts_dir.as_deref())?;
            if let Some(aside) = &done.aside {
                println!(
                    "moved the database that was there to {} (with its -wal and -shm, if any)",
                    aside.display()
                );
            }
            if let (Some((files, replaced)), Some(dir)) = (&done.artifacts, &artifacts_dir) {
                println!("put {files} artifact files back into {}", dir.display());
                if let Some(old) = replaced {
                    println!(
                        "moved the artifact files that were there to {}",
                        old.display()
                    );
                }
            }
            if done.artifacts_left > 0 {
                eprintln!(
                    "warning: the backup names {} artifact files kept as files beside it, in {}.artifacts/; copy them into the server's --artifacts-dir (or restore with --artifacts-dir DIR)",
                    done.artifacts_left,
                    backup.display()
                );
            }
            println!(
                "restored {} to {} ({} bytes); start tora serve on it",
                backup.display(),
                db.path.display(),
                done.bytes
            );
            Ok(())
        }
        Command::Doctor { file } => {
            crate::config::DbArg { path: file.clone() }.file_only(
                "tora doctor",
                "PostgreSQL checks its own pages (amcheck, pg_amcheck)",
            )?;
            let report = crate::doctor::check(&file)?;
            for fact in &report.facts {
                println!("  {fact}");
            }
            for warning in &report.warnings {
                println!("warning: {warning}");
            }
            if report.ok() {
                println!("{} is a complete, intact Tora database", file.display());
                Ok(())
            } else {
                for problem in &report.problems {
                    eprintln!("problem: {problem}");
                }
                Err(crate::error::Error::bad_request(format!(
                    "{} is not a complete, intact Tora database; restore from a `tora backup` copy",
                    file.display()
                )))
            }
        }
        Command::Backup {
            dest,
            db,
            artifacts_dir,
        } => {
            db.file_only(
                "tora backup",
                "use pg_dump, or `tora migrate --from URL --to FILE` for a SQLite copy",
            )?;
            let bytes = crate::db::backup(&db.path, &dest)?;
            println!(
                "wrote {} ({bytes} bytes), a consistent copy of {}",
                dest.display(),
                db.path.display()
            );
            match artifacts_dir {
                Some(dir) => {
                    let mut name = dest.as_os_str().to_owned();
                    name.push(".artifacts");
                    let files_dest = PathBuf::from(name);
                    let (copied, bytes, missing) =
                        crate::artifact_files::backup(&dest, &dir, &files_dest)?;
                    println!(
                        "wrote {} ({copied} artifact files, {bytes} bytes) from {}",
                        files_dest.display(),
                        dir.display()
                    );
                    if missing > 0 {
                        println!(
                            "{missing} artifact files were deleted after the database was copied; the copy lists them, and downloading them from it fails"
                        );
                    }
                }
                None => {
                    let external = crate::artifact_files::external_count(&dest).unwrap_or(0);
                    if external > 0 {
                        eprintln!(
                            "warning: {external} artifacts are kept as files in the server's --artifacts-dir, which this copy does not include; run again with --artifacts-dir DIR"
                        );
                    }
                }
            }
            Ok(())
        }
    }
}
