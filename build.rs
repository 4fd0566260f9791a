//! The dashboard's one npm dependency (uPlot) is embedded from `assets/node_modules`, pinned by
//! `assets/package-lock.json`. A fresh clone has no node_modules yet, so install it here with
//! `npm ci`; `cargo build` then works without a separate step.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=assets");
    println!("cargo:rerun-if-changed=build.rs");
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
