//! Two things the binary embeds are prepared here, so a plain `cargo build` makes a complete
//! binary:
//!
//! - The dashboard's one npm dependency (uPlot), embedded from `assets/node_modules` and pinned
//!   by `assets/package-lock.json`. A fresh clone has no node_modules yet: `npm ci` installs it.
//! - The Python SDK as a wheel (`tora-VERSION-py3-none-any.whl`), built from `python/` (the
//!   version and metadata from `pyproject.toml`, the files from `src/tora`), which the server
//!   hands out under `/sdk/`. A wheel is a zip with a `.dist-info` folder; this writes one
//!   itself (stored entries, fixed timestamps, files in sorted order, so the same sources make
//!   the same bytes), with no Python and no network.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use sha2::{Digest, Sha256};

fn main() {
    println!("cargo:rerun-if-changed=assets");
    println!("cargo:rerun-if-changed=build.rs");
    uplot();
    sdk_wheel();
}

fn uplot() {
    let uplot = Path::new("assets/node_modules/uplot/dist/uPlot.esm.js");
    if uplot.exists() {
        return;
    }
    let status = Command::new("npm")
        .args([
            "ci",
            "--prefix",
            "assets",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .status();
    match status {
        Ok(s) if s.success() && uplot.exists() => {}
        Ok(s) => panic!(
            "`npm ci --prefix assets` failed ({s}); the dashboard needs uPlot from assets/package-lock.json"
        ),
        Err(e) => panic!(
            "could not run npm ({e}); install Node.js and npm, then `npm ci --prefix assets`"
        ),
    }
}

/// What the wheel's METADATA needs from `python/pyproject.toml`.
#[derive(Default)]
struct Project {
    name: String,
    version: String,
    description: String,
    requires_python: Option<String>,
    license: Option<String>,
    dependencies: Vec<String>,
    classifiers: Vec<String>,
}

fn sdk_wheel() {
    for watched in [
        "python/pyproject.toml",
        "python/README.md",
        "python/src/tora",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let toml = std::fs::read_to_string("python/pyproject.toml")
        .unwrap_or_else(|e| panic!("python/pyproject.toml: {e}"));
    let project = parse_project(&toml);
    assert_eq!(
        project.name, "tora",
        "python/pyproject.toml: the SDK package is called tora"
    );
    let readme = std::fs::read_to_string("python/README.md").unwrap_or_default();

    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut sources = Vec::new();
    walk(Path::new("python/src/tora"), &mut sources);
    sources.sort();
    for path in sources {
        let rel = path
            .strip_prefix("python/src")
            .expect("under python/src")
            .to_str()
            .expect("SDK file names are UTF-8")
            .replace('\\', "/");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        files.push((rel, bytes));
    }
    assert!(
        files.iter().any(|(p, _)| p == "tora/__init__.py"),
        "python/src/tora/__init__.py is missing"
    );

    let dist_info = format!("{}-{}.dist-info", project.name, project.version);
    files.push((format!("{dist_info}/METADATA"), metadata(&project, &readme)));
    files.push((
        format!("{dist_info}/WHEEL"),
        b"Wheel-Version: 1.0\nGenerator: tora build.rs\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            .to_vec(),
    ));
    // RECORD lists every other file with its hash (sha256, urlsafe base64 without padding,
    // as pip checks) and size; its own line has neither.
    let mut record = String::new();
    for (path, bytes) in &files {
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(bytes));
        record.push_str(&format!("{path},sha256={hash},{}\n", bytes.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    files.push((format!("{dist_info}/RECORD"), record.into_bytes()));

    let wheel = zip_stored(&files);
    let name = format!("{}-{}-py3-none-any.whl", project.name, project.version);
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join(&name);
    std::fs::write(&out, &wheel).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    println!("cargo:rustc-env=TORA_SDK_WHEEL_PATH={}", out.display());
    println!("cargo:rustc-env=TORA_SDK_WHEEL={name}");
    println!("cargo:rustc-env=TORA_SDK_VERSION={}", project.version);
    println!(
        "cargo:rustc-env=TORA_SDK_REQUIRES_PYTHON={}",
        project.requires_python.as_deref().unwrap_or("")
    );
}

/// Every file of the package, skipping Python's byte-code caches.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("read python/src/tora").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "__pycache__" || name.ends_with(".pyc") || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn metadata(p: &Project, readme: &str) -> Vec<u8> {
    let mut m = format!(
        "Metadata-Version: 2.1\nName: {}\nVersion: {}\nSummary: {}\n",
        p.name, p.version, p.description
    );
    if let Some(license) = &p.license {
        m.push_str(&format!("License: {license}\n"));
    }
    if let Some(requires) = &p.requires_python {
        m.push_str(&format!("Requires-Python: {requires}\n"));
    }
    for c in &p.classifiers {
        m.push_str(&format!("Classifier: {c}\n"));
    }
    for d in &p.dependencies {
        m.push_str(&format!("Requires-Dist: {d}\n"));
    }
    if !readme.is_empty() {
        m.push_str("Description-Content-Type: text/markdown\n\n");
        m.push_str(readme);
    }
    m.into_bytes()
}

/// Reads the `[project]` table of pyproject.toml: the plain keys the SDK uses. Anything this
/// small reader does not handle (entry points, optional dependencies, dynamic fields) stops the
/// build, rather than making a wheel that silently lacks it.
fn parse_project(toml: &str) -> Project {
    let mut p = Project::default();
    let mut in_project = false;
    let mut lines = toml.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line.starts_with('[') {
            in_project = line == "[project]";
            // Links change nothing in an install; entry points would need entry_points.txt (and
            // a `tora` script would shadow the server's binary in a venv), extras their markers.
            assert!(
                !line.starts_with("[project.") || line == "[project.urls]",
                "python/pyproject.toml has {line}, which build.rs's wheel builder does not handle yet"
            );
            continue;
        }
        if !in_project || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, mut value) = (key.trim(), value.trim().to_string());
        if value.starts_with('[') {
            while !value.contains(']') {
                let next = lines
                    .next()
                    .unwrap_or_else(|| panic!("pyproject.toml: {key} never closes its ["));
                value.push_str(next.split('#').next().unwrap_or(""));
            }
        }
        match key {
            "name" => p.name = string(&value),
            "version" => p.version = string(&value),
            "description" => p.description = string(&value),
            "requires-python" => p.requires_python = Some(string(&value)),
            "license" => p.license = value.split_once("text").map(|(_, t)| string(t)),
            "dependencies" => p.dependencies = strings(&value),
            "classifiers" => p.classifiers = strings(&value),
            "readme" | "keywords" | "authors" | "urls" => {}
            other => panic!(
                "python/pyproject.toml: build.rs's wheel builder does not handle [project] {other} yet"
            ),
        }
    }
    assert!(
        !p.name.is_empty() && !p.version.is_empty(),
        "python/pyproject.toml: [project] needs a name and a version"
    );
    assert!(
        p.version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.'),
        "python/pyproject.toml: version {:?} is not a plain release number",
        p.version
    );
    p
}

/// The first double-quoted string in `s`.
fn string(s: &str) -> String {
    strings(s).into_iter().next().unwrap_or_default()
}

/// Every double-quoted string in `s`, in order (TOML basic strings, with \" and \\ escapes).
fn strings(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut text = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => text.extend(chars.next()),
                c => text.push(c),
            }
        }
        out.push(text);
    }
    out
}

/// A zip archive of stored (uncompressed) entries: local headers and data, then the central
/// directory. Timestamps are the zip epoch (1980-01-01), so the bytes depend only on the files.
fn zip_stored(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    const DOS_DATE: u16 = 1 << 5 | 1; // 1980-01-01
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let offset = u32::try_from(out.len()).expect("the wheel stays under 4 GiB");
        let crc = crc32(data);
        let size = u32::try_from(data.len()).expect("SDK files are small");
        let name_len = u16::try_from(name.len()).expect("short file names");
        // local file header
        out.extend(0x0403_4b50u32.to_le_bytes());
        for v in [20u16, 0, 0, 0, DOS_DATE] {
            out.extend(v.to_le_bytes()); // version needed, flags, stored, time, date
        }
        for v in [crc, size, size] {
            out.extend(v.to_le_bytes());
        }
        out.extend(name_len.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(name.as_bytes());
        out.extend(data);
        // its central directory entry
        central.extend(0x0201_4b50u32.to_le_bytes());
        for v in [0x0314u16, 20, 0, 0, 0, DOS_DATE] {
            central.extend(v.to_le_bytes()); // made by unix 2.0, needed, flags, method, time, date
        }
        for v in [crc, size, size] {
            central.extend(v.to_le_bytes());
        }
        for v in [name_len, 0, 0, 0, 0] {
            central.extend(v.to_le_bytes()); // name, extra, comment, disk, internal attributes
        }
        central.extend((0o100644u32 << 16).to_le_bytes()); // a regular file, rw-r--r--
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let count = u16::try_from(files.len()).expect("a few files");
    let central_at = u32::try_from(out.len()).expect("small");
    let central_len = u32::try_from(central.len()).expect("small");
    out.extend(central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, count, count] {
        out.extend(v.to_le_bytes());
    }
    out.extend(central_len.to_le_bytes());
    out.extend(central_at.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// CRC-32 (IEEE 802.3, as zip uses), bit by bit: the SDK is a few hundred KiB at most.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                crc >> 1 ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
