//! The Python SDK from the server itself: `tora serve` says how to install it and where the API
//! is, and real pip in a fresh venv installs it from the server, as a lab machine without PyPI
//! would.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Auth, BIN, Response, TempDir, TestServer};

/// The SDK version python/pyproject.toml declares.
fn pyproject_version() -> String {
    let toml = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("python/pyproject.toml"),
    )
    .unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("version = "))
        .expect("a version line")
        .trim_matches('"')
        .to_string()
}

/// The first `n` lines `tora serve ARGS` prints, and the running server (killed on drop).
fn first_lines(args: &[&str], n: usize) -> (Vec<String>, std::process::Child, TempDir) {
    let dir = TempDir::new();
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .arg("--db")
        .arg(dir.join("tora.db"))
        .env_remove("TORA_PUBLIC_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let lines = (0..n)
        .map(|_| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim_end().to_string()
        })
        .collect();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (lines, child, dir)
}

#[test]
fn serve_prints_the_api_address_and_the_pip_command_after_its_first_line() {
    let (lines, mut child, _dir) = first_lines(&["--bind", "127.0.0.1:0"], 3);
    let base = lines[0]
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the first line stays `listening on`: {lines:?}"));
    assert_eq!(lines[1], format!("TORA_BASE_URL={base}/api"));
    assert_eq!(
        lines[2],
        format!("pip install --index-url {base}/sdk/simple/ tora")
    );
    let _ = child.kill();
    let _ = child.wait();

    // With a public URL, that is the address people get; plain http from another machine
    // needs pip told to trust it.
    let (lines, mut child, _dir) = first_lines(
        &[
            "--bind",
            "127.0.0.1:0",
            "--public-url",
            "http://tora.lab:8080",
        ],
        3,
    );
    assert!(
        lines[0].starts_with("listening on http://127.0.0.1:"),
        "{lines:?}"
    );
    assert_eq!(lines[1], "TORA_BASE_URL=http://tora.lab:8080/api");
    assert_eq!(
        lines[2],
        "pip install --index-url http://tora.lab:8080/sdk/simple/ --trusted-host tora.lab tora"
    );
    let _ = child.kill();
    let _ = child.wait();

    // Listening on every address: the address to use on this machine, and a word about others.
    let (lines, mut child, _dir) = first_lines(&["--bind", "0.0.0.0:0"], 4);
    let port = lines[0].rsplit(':').next().unwrap();
    assert_eq!(
        lines[1],
        format!("TORA_BASE_URL=http://127.0.0.1:{port}/api")
    );
    assert!(lines[3].contains("from other machines"), "{lines:?}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_sdk_pages_are_public_and_carry_the_dashboard_headers_and_host_check() {
    let server = TestServer::start();
    let version = pyproject_version();
    let wheel = format!("tora-{version}-py3-none-any.whl");

    let page = server.get("/sdk/", &Auth::None);
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'self'")
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let base = server.url();
    assert!(
        page.text
            .contains(&format!("pip install --index-url {base}/sdk/simple/ tora")),
        "{}",
        page.text
    );
    assert!(
        page.text
            .contains(&format!("export TORA_BASE_URL={base}/api")),
        "{}",
        page.text
    );
    assert!(
        page.text.contains(&format!("{base}/sdk/{wheel}")),
        "{}",
        page.text
    );

    let index = server.get("/sdk/simple/", &Auth::None);
    assert_eq!(index.status, 200);
    assert!(
        index.text.contains("<a href=\"tora/\">tora</a>"),
        "{}",
        index.text
    );
    let links = server.get("/sdk/simple/tora/", &Auth::None);
    assert_eq!(links.status, 200);
    assert!(
        links
            .text
            .contains(&format!("href=\"../../{wheel}#sha256=")),
        "{}",
        links.text
    );
    assert!(
        links.text.contains("data-requires-python=\"&gt;=3.9\""),
        "{}",
        links.text
    );
    assert_eq!(
        server
            .get("/sdk/simple/tora", &Auth::None)
            .header("location"),
        Some("/sdk/simple/tora/")
    );
    assert_eq!(
        server.get("/sdk", &Auth::None).header("location"),
        Some("/sdk/")
    );

    let file = server.get(&format!("/sdk/{wheel}"), &Auth::None);
    assert_eq!(file.status, 200);
    assert_eq!(file.header("content-type"), Some("application/zip"));
    assert_eq!(file.header("x-content-type-options"), Some("nosniff"));

    // pip refuses a wheel URL whose file name is not a wheel's (`tora.whl`), so there is no
    // such alias: the answer names the URLs that work.
    let alias = server.get("/sdk/tora.whl", &Auth::None);
    assert_eq!(alias.status, 404);
    assert!(
        alias.text.contains(&wheel) && alias.text.contains("/sdk/simple/"),
        "{}",
        alias.text
    );

    // A loopback server answers only for loopback names here too (DNS rebinding).
    let mut stream = std::net::TcpStream::connect(&server.addr).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /sdk/ HTTP/1.0\r\nHost: evil.example\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    assert!(
        Response::parse(&raw).status == 421,
        "{}",
        String::from_utf8_lossy(&raw)
    );
}

/// Runs `sh -c SCRIPT` with the venv first on PATH; returns stdout, panics with the output if
/// it fails.
fn sh(venv: &Path, script: &str) -> String {
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let out = Command::new("sh")
        .args(["-c", script])
        .env("PATH", path)
        .env("VIRTUAL_ENV", venv)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_CACHE_DIR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{script}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn pip_installs_the_sdk_from_the_server_into_a_fresh_venv() {
    let server = TestServer::start();
    let dir = TempDir::new();
    let venv = dir.join("venv");
    let made = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .status()
        .unwrap();
    assert!(made.success(), "python3 -m venv");
    let base = server.url();
    let version = pyproject_version();

    // The command `tora serve` prints, as printed.
    sh(
        &venv,
        &format!("pip install --index-url {base}/sdk/simple/ tora"),
    );
    let check = format!(
        r##"
import hashlib, pathlib, sys, tora, urllib.request, zipfile, io, base64, re
assert tora.__version__ == "{version}", tora.__version__
# The installed files are python/src/tora as it is now (build.rs rebuilt the wheel).
src = pathlib.Path(sys.argv[1])
installed = pathlib.Path(tora.__file__).parent
for f in sorted(src.rglob("*")):
    if f.is_file() and "__pycache__" not in f.parts:
        assert (installed / f.relative_to(src)).read_bytes() == f.read_bytes(), f
# The wheel's RECORD hashes every file as pip expects, and the index gives its sha256.
links = urllib.request.urlopen("{base}/sdk/simple/tora/").read().decode()
href = re.search(r'href="../../([^"#]+)#sha256=([0-9a-f]+)"', links)
wheel = urllib.request.urlopen("{base}/sdk/" + href.group(1)).read()
assert hashlib.sha256(wheel).hexdigest() == href.group(2)
z = zipfile.ZipFile(io.BytesIO(wheel))
assert z.testzip() is None
record = z.read("tora-{version}.dist-info/RECORD").decode().splitlines()
for line in record:
    path, digest, size = line.rsplit(",", 2)
    if path.endswith("RECORD"):
        continue
    data = z.read(path)
    want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert digest == want and int(size) == len(data), line
assert len(record) == len(z.namelist())
print("ok", tora.__version__)
"##
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/src/tora");
    let out = sh(
        &venv,
        &format!("python - {} <<'EOF'\n{check}\nEOF", src.display()),
    );
    assert_eq!(out.trim(), format!("ok {version}"));

    // The wheel's own URL works as well (pip needs its full file name).
    sh(&venv, "pip uninstall -y -q tora");
    sh(
        &venv,
        &format!("pip install {base}/sdk/tora-{version}-py3-none-any.whl"),
    );
    let out = sh(&venv, "python -c 'import tora; print(tora.__version__)'");
    assert_eq!(out.trim(), version);
}
