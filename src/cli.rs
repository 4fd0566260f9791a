//! The command line: `tora serve`, `tora user ..`, `tora api-key create`, `tora backup`.

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
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(config) => {
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
        },
        Command::ApiKey(ApiKeyCommand::Create { user, name, db }) => {
            admin::api_key_create(&db.path, &user, &name)
        }
        Command::Backup { dest, db } => {
            let bytes = crate::db::backup(&db.path, &dest)?;
            println!(
                "wrote {} ({bytes} bytes), a consistent copy of {}",
                dest.display(),
                db.path.display()
            );
            Ok(())
        }
    }
}
