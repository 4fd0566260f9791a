#!/usr/bin/env bash
# Builds the Dockerfile's image and proves it serves, without a container registry: the final
# (FROM scratch) stage of the Dockerfile is built by buildah from the static executable that
# deploy/static.sh builds and checks (what the Dockerfile's build stage makes from a rust:1.95
# image, which this machine cannot pull). Then the image's own configuration is checked (user,
# entrypoint, volume, port, environment) and the image is run (buildah, chroot isolation):
# it must sign up, log in and log a point, with its database written as nobody into /data.
#   deploy/image.sh            the release executable; prints the image's size
#   deploy/image.sh --check    a debug executable, faster, for the test command
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = "--check" ]; then profile=debug; fi
deploy/static.sh "$@"
bin="target/static/x86_64-unknown-linux-gnu/$profile/tora"
if ! command -v buildah >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then echo "image.sh: needs buildah: sudo apt-get install buildah" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
fi
work=$(mktemp -d)
b() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }
cleanup() {
  if [ -n "${pid:-}" ]; then kill -- -"$pid" 2>/dev/null || true; fi
  b rm --all >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# The build context holds what the build stage leaves, at the same paths, so the final stage
# is the Dockerfile's own text with `--from=build` taken out.
mkdir -p "$work/context/out/x86_64-unknown-linux-gnu/release" "$work/context/data-dir"
cp "$bin" "$work/context/out/x86_64-unknown-linux-gnu/release/tora"
last=$(grep -n '^FROM ' Dockerfile | tail -1 | cut -d: -f1)
tail -n +"$last" Dockerfile | sed -E 's#^COPY --from=build (--chown=[^ ]+ )?/#COPY \1#' >"$work/Dockerfile"
if grep -q -- '--from=' "$work/Dockerfile"; then echo "image.sh: the final stage copies from a stage this script does not know" >&2; exit 1; fi
b bud --quiet --layers=false -f "$work/Dockerfile" -t localhost/tora:test "$work/context" >/dev/null
echo "image: $(b images --format '{{.Size}}' localhost/tora:test) ($profile executable)"
b inspect --type image localhost/tora:test | python3 -c '
import json, sys
c = json.load(sys.stdin)["OCIv1"]["config"]
want = {"User": "65534:65534", "Entrypoint": ["/tora"], "Cmd": ["serve"]}
for k, v in want.items():
    assert c.get(k) == v, (k, c.get(k))
assert "/data" in c.get("Volumes", {}), c
assert "8080/tcp" in c.get("ExposedPorts", {}), c
env = dict(e.split("=", 1) for e in c["Env"])
assert env["TORA_BIND"] == "0.0.0.0:8080" and env["TORA_DB"] == "/data/tora.db", env
'
ctr=$(b from --quiet localhost/tora:test)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# chroot isolation shares the host's network; the image's TORA_BIND is overridden to a free
# loopback port, everything else (user, entrypoint's binary, TORA_DB) is the image's.
# Its own session, so that stopping it stops the server too (buildah does not pass the signal on).
setsid buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs \
  run --isolation chroot --env "TORA_BIND=127.0.0.1:$port" "$ctr" -- /tora serve >"$work/out" 2>&1 &
pid=$!
python3 deploy/smoke.py "$port" || { cat "$work/out" >&2; exit 1; }
# The server is the session's process whose root is the container's; /data is the image's
# volume, which buildah mounts there for the run.
server=$(pgrep -s "$pid" -x tora)
owner=$(stat -c %u "/proc/$server/root/data/tora.db")
user=$(awk '/^Uid:/ {print $2}' "/proc/$server/status")
kill -- -"$pid"; wait "$pid" 2>/dev/null || true
if [ "$user" != 65534 ] || [ "$owner" != 65534 ]; then
  echo "image.sh: the server ran as uid $user and wrote /data/tora.db as uid $owner, not as nobody" >&2
  exit 1
fi
echo "image.sh: the image serves, as nobody, with its database in /data"
