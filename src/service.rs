//! `tora service unit|install`: running Tora under systemd, hardened. The unit runs the server as
//! its own system user, keeps the database in the StateDirectory (owner-only), backs it up every
//! day beside it, restarts on failure, and takes from the process every privilege a web server
//! that writes one directory does not need (`systemd-analyze security` rates it; the tests run
//! `systemd-analyze verify` on it).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Address and port the service listens on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub bind: std::net::SocketAddr,

    /// The URL people open the dashboard at (passed to `tora serve --public-url`).
    #[arg(long)]
    pub public_url: Option<String>,

    /// The system user the service runs as (created by `install` if missing).
    #[arg(long, default_value = "tora", value_parser = parse_user)]
    pub user: String,

    /// The binary the unit starts (`install` copies this one there).
    #[arg(long, default_value = "/usr/local/bin/tora")]
    pub binary: PathBuf,
}

/// A system user name: what useradd accepts, nothing a unit file could misread.
fn parse_user(raw: &str) -> std::result::Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 32
        && raw.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(raw.to_string())
    } else {
        Err(format!(
            "'{raw}' is not a system user name (lower-case letters, digits, _ and -)"
        ))
    }
}

/// The directory systemd makes for the service (StateDirectory=tora).
pub const STATE_DIR: &str = "/var/lib/tora";
pub const UNIT_PATH: &str = "/etc/systemd/system/tora.service";

/// The unit file for `args`.
pub fn unit(args: &ServiceArgs) -> Result<String> {
    let binary = args.binary.to_str().filter(|b| {
        b.starts_with('/') && !b.contains(|c: char| c.is_whitespace() || c == '%' || c == '"')
    });
    let Some(binary) = binary else {
        return Err(Error::bad_request(format!(
            "--binary must be an absolute path without spaces or %: {}",
            args.binary.display()
        )));
    };
    let mut exec = format!(
        "{binary} serve --bind {} --db {STATE_DIR}/tora.db --backup-dir {STATE_DIR}/backups",
        args.bind
    );
    if let Some(url) = &args.public_url {
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.contains(|c: char| c.is_whitespace() || c == '%' || c == '"')
        {
            return Err(Error::bad_request(format!(
                "--public-url must be an http:// or https:// URL: {url}"
            )));
        }
        exec.push_str(&format!(" --public-url {url}"));
    }
    let user = &args.user;
    // Ports below 1024 need the one capability that allows binding them, and nothing else.
    let bind_cap = if args.bind.port() < 1024 {
        "CAP_NET_BIND_SERVICE"
    } else {
        ""
    };
    Ok(format!(
        "# Tora experiment tracker, written by `tora service unit`.
[Unit]
Description=Tora experiment tracker
Documentation=https://pypi.org/project/tora/
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User={user}
Group={user}
ExecStart={exec}
# The database, its -wal/-shm and the backups: made by systemd, owned by {user}, mode 0700.
StateDirectory=tora
StateDirectoryMode=0700
WorkingDirectory={STATE_DIR}
UMask=0077
Restart=on-failure
RestartSec=2
# SIGTERM lets requests finish (10 s) and folds the WAL into tora.db.
KillSignal=SIGTERM
TimeoutStopSec=30
LimitNOFILE=65536
Environment=TORA_LOG_FORMAT=text

# Hardening: the server reads its binary and writes {STATE_DIR}, nothing else.
NoNewPrivileges=yes
CapabilityBoundingSet={bind_cap}
AmbientCapabilities={bind_cap}
ProtectSystem=strict
ReadWritePaths={STATE_DIR}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateUsers={private_users}
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RemoveIPC=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
",
        // A private user namespace cannot hold CAP_NET_BIND_SERVICE for the host's ports.
        private_users = if bind_cap.is_empty() { "yes" } else { "no" },
    ))
}

/// One step of `install`: what it says, then what it does.
type Step = Box<dyn FnOnce() -> Result<()>>;

/// What `install` does, step by step, so `--dry-run` can print exactly that.
pub fn install(args: &ServiceArgs, dry_run: bool) -> Result<()> {
    let text = unit(args)?;
    let systemd = Path::new("/run/systemd/system").is_dir();
    let me = std::env::current_exe()
        .map_err(|e| Error::Internal(format!("cannot find this binary: {e}")))?;
    let mut steps: Vec<(String, Step)> = Vec::new();
    let user = args.user.clone();
    if !user_exists(&user) {
        steps.push((
            format!("useradd --system --home-dir {STATE_DIR} --no-create-home --shell /usr/sbin/nologin {user}"),
            Box::new(move || {
                run(Command::new("useradd").args([
                    "--system",
                    "--home-dir",
                    STATE_DIR,
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    &user,
                ]))
            }),
        ));
    }
    if me != args.binary {
        let (from, to) = (me.clone(), args.binary.clone());
        steps.push((
            format!("install -m 0755 {} {}", from.display(), to.display()),
            Box::new(move || {
                run(Command::new("install")
                    .args(["-m", "0755"])
                    .arg(&from)
                    .arg(&to))
            }),
        ));
    }
    if Path::new(UNIT_PATH).exists() {
        return Err(Error::Conflict(format!(
            "{UNIT_PATH} already exists: remove it (or compare it with `tora service unit`) first"
        )));
    }
    steps.push((
        format!("write {UNIT_PATH} (`tora service unit` prints it)"),
        Box::new(move || {
            std::fs::write(UNIT_PATH, text)
                .map_err(|e| Error::Internal(format!("cannot write {UNIT_PATH}: {e}")))
        }),
    ));
    if systemd {
        steps.push((
            "systemctl daemon-reload && systemctl enable --now tora".into(),
            Box::new(|| {
                run(Command::new("systemctl").arg("daemon-reload"))?;
                run(Command::new("systemctl").args(["enable", "--now", "tora"]))
            }),
        ));
    }
    for (what, step) in steps {
        println!("{}{what}", if dry_run { "would: " } else { "" });
        if !dry_run {
            step()?;
        }
    }
    if !systemd {
        println!(
            "systemd is not running here: start it with `systemctl daemon-reload && systemctl enable --now tora` on a systemd machine"
        );
    } else if !dry_run {
        println!(
            "tora is running: `journalctl -u tora -f` for its log; the first account: `sudo -u {} {} user add EMAIL --db {STATE_DIR}/tora.db`",
            args.user,
            args.binary.display()
        );
    }
    Ok(())
}

fn user_exists(user: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .map(|p| p.lines().any(|l| l.split(':').next() == Some(user)))
        .unwrap_or(false)
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .map_err(|e| Error::Internal(format!("cannot run {command:?}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Internal(format!("{command:?} failed ({status})")))
    }
}
