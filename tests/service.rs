//! An admin putting Tora on a lab server under systemd: the unit `tora service unit` prints is
//! one systemd accepts, is rated well hardened by systemd itself, and starts a server with the
//! flags `tora serve` really has.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{BIN, TempDir};

fn unit(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["service", "unit", "--binary", BIN])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn systemd_analyze(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze (Debian's systemd package; test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_unit_passes_systemds_own_checks_and_is_rated_hardened() {
    let dir = TempDir::new();
    let path = dir.join("tora.service");
    std::fs::write(&path, unit(&["--public-url", "http://tora.lab:8080"])).unwrap();
    let (ok, text) = systemd_analyze(&["verify", path.to_str().unwrap()]);
    assert!(ok && !text.contains("Unknown"), "{text}");

    let (_, text) = systemd_analyze(&["security", "--offline=true", path.to_str().unwrap()]);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for tora.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no rating in:\n{text}"))
        .parse()
        .unwrap();
    // 0 is a sandbox nothing escapes, 10 a process with every right; 2 is systemd's "OK".
    assert!(exposure <= 2.0, "exposure {exposure}:\n{text}");
}

#[test]
fn the_units_command_line_starts_a_server_that_backs_up_into_its_state_directory() {
    let text = unit(&[]);
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    for line in [
        "User=tora",
        "StateDirectory=tora",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "Restart=on-failure",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(text.contains(line), "{line:?} missing:\n{text}");
    }
    // The same command, in a temporary state directory and on a free loopback port.
    let dir = TempDir::new();
    let state = dir.0.to_str().unwrap();
    let exec = exec
        .replace("/var/lib/tora", state)
        .replace("0.0.0.0:8080", "127.0.0.1:0");
    let words: Vec<&str> = exec.split_whitespace().collect();
    let mut child = Command::new(words[0])
        .args(&words[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    lines.read_line(&mut first).unwrap();
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    assert!(
        first.starts_with("listening on http://127.0.0.1:"),
        "{first}"
    );
    // The first backup is written at start into the state directory.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let backups = dir.join("backups");
    while std::fs::read_dir(&backups).map_or(0, |d| d.count()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no backup in {backups:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(dir.join("tora.db").exists());
}

#[test]
fn a_privileged_port_gets_only_the_capability_to_bind_it() {
    let text = unit(&["--bind", "0.0.0.0:80"]);
    assert!(
        text.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"),
        "{text}"
    );
    assert!(
        text.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE\n"),
        "{text}"
    );
    assert!(text.contains("PrivateUsers=no\n"), "{text}");
    let dir = TempDir::new();
    let path = dir.join("tora.service");
    std::fs::write(&path, &text).unwrap();
    let (ok, out) = systemd_analyze(&["verify", path.to_str().unwrap()]);
    assert!(ok, "{out}");
}

#[test]
fn install_says_each_step_and_refuses_what_a_unit_could_misread() {
    let out = Command::new(BIN)
        .args([
            "service",
            "install",
            "--dry-run",
            "--user",
            "tora-test-nobody",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("would: useradd --system"), "{text}");
    assert!(text.contains("would: install -m 0755"), "{text}");
    assert!(
        text.contains("would: write /etc/systemd/system/tora.service"),
        "{text}"
    );
    assert!(!std::path::Path::new("/etc/systemd/system/tora.service").exists());

    for (flag, value, says) in [
        ("--user", "root; rm -rf /", "not a system user name"),
        ("--binary", "relative/tora", "absolute path"),
        ("--public-url", "http://x y", "http:// or https:// URL"),
    ] {
        let out = Command::new(BIN)
            .args(["service", "unit", flag, value])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}
