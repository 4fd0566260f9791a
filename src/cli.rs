//! The command line: `tora serve`, `tora backup`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    /// Write a consistent copy of the database, safe while a server is running and writing.
    Backup {
        /// Where to write the copy; an existing file is never overwritten.
        dest: PathBuf,
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
