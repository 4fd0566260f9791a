#!/usr/bin/env bash
# Builds Tora as one static Linux executable (glibc linked in: -C target-feature=+crt-static; no
# musl target is installable here) and proves it needs nothing from the machine: it is run as
# the only file in an empty root (chroot; /dev/null, /dev/random and /dev/urandom, as a container runtime
# provides), as a FROM-scratch container runs it, and must serve
# a signup, a login and a logged point there.
#   deploy/static.sh            release build (what the Dockerfile copies); prints its size
#   deploy/static.sh --check    a debug build, faster, for the test command
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
flag=--release
if [ "${1:-}" = "--check" ]; then profile=debug; flag=; fi
target=x86_64-unknown-linux-gnu
RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --quiet $flag \
  --target "$target" --target-dir target/static
bin="target/static/$target/$profile/tora"
echo "static binary: $bin, $(stat -c %s "$bin") bytes"
# No program interpreter and no shared libraries: nothing to find at run time.
if readelf -l "$bin" | grep -q 'INTERP'; then echo "static.sh: $bin asks for a dynamic loader" >&2; exit 1; fi
if readelf -d "$bin" | grep -q 'NEEDED'; then echo "static.sh: $bin needs shared libraries" >&2; exit 1; fi
if [ "$(id -u)" != 0 ]; then echo "static.sh: the empty-root run needs root (chroot)" >&2; exit 1; fi
root=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$root"' EXIT
cp "$bin" "$root/tora"
mkdir -p "$root/data" "$root/dev"
# What every container runtime gives a FROM-scratch image: /dev/null, /dev/random and /dev/urandom (a static
# binary cannot find the getrandom() wrapper at run time, so the random source is the file).
mknod -m 666 "$root/dev/null" c 1 3
mknod -m 444 "$root/dev/random" c 1 8
mknod -m 444 "$root/dev/urandom" c 1 9
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chroot "$root" /tora serve --bind "127.0.0.1:$port" --db /data/tora.db >"$root.out" 2>&1 &
pid=$!
python3 deploy/smoke.py "$port"
echo "static.sh: the static binary serves from an empty root"
kill "$pid"; wait "$pid" 2>/dev/null || true
test -s "$root/data/tora.db"
rm -f "$root.out"
