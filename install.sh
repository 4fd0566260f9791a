#!/usr/bin/env bash
# Builds Tora in release mode and installs the `tora` binary into cargo's bin directory
# (~/.cargo/bin, or $CARGO_HOME/bin, or $CARGO_INSTALL_ROOT/bin). Reuses ./target so later builds
# are incremental.
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo >/dev/null || { echo "install.sh: cargo is needed (https://rustup.rs)" >&2; exit 1; }
cargo install --path . --locked --target-dir target --force --quiet
bin="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin/tora"
echo "installed $("$bin" --version) to $bin"
case ":$PATH:" in
  *":$(dirname "$bin"):"*) ;;
  *) echo "note: $(dirname "$bin") is not on your PATH; run $bin directly or add it" ;;
esac
