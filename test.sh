#!/usr/bin/env bash
# Runs every test suite against freshly built code, installing what the suites need:
#   1. Rust: formatting, clippy, unit tests and integration tests (the real binary over HTTP), and
#      both again with the database on PostgreSQL
#   2. the published SDK tora==0.0.12 against the binary (compatibility), on SQLite and again
#      (with schemathesis and the Python SDK's own tests) on PostgreSQL
#   3. the OpenAPI description checked against the live binary by schemathesis
#   4. the Python SDK in python/: ruff, mypy --strict, pytest against the binary
#   5. the framework integrations: each framework from PyPI trains a little with its callback
#   6. the importers: MLflow, TensorBoard, W&B, trackio and CSV files written by the real packages
#   7. the README's quickstart, run as written (install.sh, tora serve, the SDK from the server)
#   8. the dashboard end to end in headless Chromium (Debian's chromium, driven by playwright-core),
#      and its main story again on PostgreSQL
#   9. the static build run alone in an empty root, and the Dockerfile's image built by buildah and
#      run (deploy/image.sh --check, which runs deploy/static.sh --check first)
# Python tools live in venvs under target/, so nothing is installed system-wide.
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)
step() { printf '\n==> [%s] %s\n' "$(date +%T)" "$*"; }
# A fresh clone builds once: incremental state would only take time and disk (~1.5 GB).
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

step "rust: fmt, clippy"
cargo fmt --all -- --check
# Clippy also holds our own code to Cargo.toml's rust-version (incompatible_msrv, denied there).
cargo clippy --all-targets --locked --quiet -- -D warnings

step "rust: every locked dependency builds on our rust-version"
# Only one toolchain is installed, so the MSRV cannot be built; what can be checked is that no
# dependency in Cargo.lock declares a newer rust-version than ours. (scheduled-thread-pool is held
# at 0.2.7 in the lock: 0.2.8 pulls parking_lot 0.13, which needs Rust 1.95.)
host=$(rustc -vV | sed -n 's/^host: //p')
cargo metadata --locked --format-version 1 --filter-platform "$host" | python3 -c '
import json, sys
meta = json.load(sys.stdin)
version = lambda v: (tuple(int(x) for x in v.split(".")) + (0, 0))[:3]  # 1.88 == 1.88.0
ours = next(p for p in meta["packages"] if p["name"] == "tora")["rust_version"]
newer = sorted("%s %s needs %s" % (p["name"], p["version"], p["rust_version"]) for p in meta["packages"]
               if p["rust_version"] and version(p["rust_version"]) > version(ours))
sys.exit("dependencies newer than rust-version " + ours + ": " + "; ".join(newer) if newer else 0)
'

step "rust: unit and integration tests"
# tests/service.rs checks the systemd unit with systemd-analyze (Debian's systemd package).
if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
  else
    echo "test.sh: tests/service.rs needs systemd-analyze: sudo apt-get install systemd" >&2
  fi
fi
cargo build --locked --quiet
cargo test --locked

step "rust: unit and integration tests again on PostgreSQL (Debian's postgresql, a throwaway cluster)"
# With TORA_TEST_ENGINE=postgres, db::memory() hands each unit test a fresh PostgreSQL database
# instead of an in-memory SQLite one, and tests/common's TestServer serves each integration test
# from a fresh PostgreSQL database instead of a file; tests/postgres/cluster.sh starts one cluster
# per test binary (as nobody when root) and installs postgresql. Not run twice: what tests the
# SQLite file itself (backups, file_copy, operations, space, storage, upgrades), what tests no
# database (connections: sockets and the HTTP layer; sdk: the wheel's pages; service: the systemd
# unit), and migrate, postgres_serve and postgres_tls, which choose their engines themselves; nor
# memory_bounds' body-deadline test (a minute of waiting for the HTTP layer's 408).
not_twice=" backups file_copy operations space storage upgrades connections sdk service migrate postgres_serve postgres_tls "
pg_tests=()
for f in tests/*.rs; do
  name=$(basename "$f" .rs)
  case "$not_twice" in *" $name "*) ;; *) pg_tests+=(--test "$name") ;; esac
done
TORA_TEST_ENGINE=postgres cargo test --locked --lib "${pg_tests[@]}" -- \
  --skip a_body_that_stops_half_way_gets_408_after_the_deadline

step "python: venvs (target/venv for our SDK, target/venv-0012 for the published one)"
if [ ! -x target/venv/bin/python ]; then python3 -m venv target/venv; fi
target/venv/bin/python -m pip install --quiet --upgrade pip
# Linters and schemathesis pinned: a new release may add default rules or change generated cases.
target/venv/bin/python -m pip install --quiet pytest ruff==0.17.6 mypy==2.4.1 numpy scikit-learn schemathesis==4.32.5 mlflow-skinny==3.17.2 pandas nvidia-ml-py
if [ -f python/pyproject.toml ]; then
  target/venv/bin/python -m pip install --quiet --force-reinstall --no-deps ./python
fi
if [ ! -x target/venv-0012/bin/python ]; then python3 -m venv target/venv-0012; fi
target/venv-0012/bin/python -m pip install --quiet "tora==0.0.12"

export TORA_BIN="$root/target/debug/tora"
export TORA_COMPAT_PYTHON="$root/target/venv-0012/bin/python"

step "python: lint"
target/venv/bin/ruff check tests bench deploy
target/venv/bin/ruff format --check tests bench deploy
if [ -d python ]; then
  target/venv/bin/ruff check python
  target/venv/bin/ruff format --check python
  target/venv/bin/mypy --strict python/src
fi

step "compatibility: tora==0.0.12 against tora serve"
target/venv/bin/pytest -q tests/compat

step "PostgreSQL: tora==0.0.12, MLflow's client, schemathesis and the SDK's tests against tora serve --db postgres:// (in the background)"
# tests/helpers/toraserver.py (and python/tests' conftest) give each server a fresh database in
# the cluster named by TORA_TEST_POSTGRES. These run beside the same suites on SQLite below (both
# mostly wait on their servers); their output is shown once they end. The cluster serves the
# dashboard's story on PostgreSQL too, then stops.
pgdir=$(mktemp -d)
pglog=$(mktemp)
trap 'tests/postgres/cluster.sh stop "$pgdir" >/dev/null 2>&1 || true; rm -rf "$pgdir" "$pglog"' EXIT
TORA_TEST_POSTGRES=$(tests/postgres/cluster.sh start "$pgdir")
(
  export TORA_TEST_POSTGRES
  target/venv/bin/pytest -q tests/compat
  target/venv/bin/pytest -q tests/mlflow
  target/venv/bin/pytest -q tests/artifacts
  target/venv/bin/pytest -q tests/openapi
  if [ -d python/tests ]; then
    (cd python && ../target/venv/bin/pytest -q tests)
  fi
) >"$pglog" 2>&1 &
pg_suites=$!

step "mlflow: the official client (mlflow-skinny 3.17.2) against tora serve"
target/venv/bin/pytest -q tests/mlflow

step "artifacts: MLflow's own client (mlflow-skinny) against tora serve's artifact proxy"
target/venv/bin/pytest -q tests/artifacts

step "openapi: schemathesis against tora serve"
target/venv/bin/pytest -q tests/openapi

if [ -d python/tests ]; then
  step "python SDK: pytest against tora serve"
  (cd python && ../target/venv/bin/pytest -q tests)
fi

step "PostgreSQL: the suites started above"
if ! wait "$pg_suites"; then
  cat "$pglog"
  echo "test.sh: a suite against tora serve --db postgres:// failed (above)" >&2
  exit 1
fi
cat "$pglog"

step "frameworks: Lightning, Transformers, Keras, XGBoost, LightGBM, Optuna, scikit-learn against tora serve"
# torch from PyPI is the CUDA build (~3 GB with its nvidia-* wheels; it runs on the CPU). The
# registry sends no caching headers, so pip's own cache keeps none of it: the wheels are kept in a
# wheelhouse outside the clone (TORA_WHEELHOUSE, default ~/.cache/tora-wheels), filled once by
# `pip download` and installed from without the network after that.
frameworks=tests/frameworks/requirements.txt
wheels=${TORA_WHEELHOUSE:-$HOME/.cache/tora-wheels}
fw=target/venv-frameworks/bin/python
if [ ! -x $fw ]; then python3 -m venv target/venv-frameworks; fi
if ! $fw -m pip install --quiet --no-index --find-links "$wheels" -r $frameworks 2>/dev/null; then
  $fw -m pip download --quiet --dest "$wheels" -r $frameworks
  $fw -m pip install --quiet --no-index --find-links "$wheels" -r $frameworks
fi
$fw -m pip install --quiet --force-reinstall --no-deps ./python
KERAS_BACKEND=jax HF_HUB_OFFLINE=1 target/venv-frameworks/bin/pytest -q tests/frameworks

step "importers: MLflow, TensorBoard, W&B, trackio, CSV files into tora"
# The real packages write the files (and run an MLflow tracking server); `python -m tora import`
# reads them with the standard library alone. Pinned: a new release may change what it writes.
if [ ! -x target/venv-importers/bin/python ]; then python3 -m venv target/venv-importers; fi
target/venv-importers/bin/python -m pip install --quiet --upgrade pip
target/venv-importers/bin/python -m pip install --quiet pytest mlflow==3.17.2 trackio==0.43.0 tensorboardX==2.6.5 tensorboard==2.21.0 wandb==0.31.0
target/venv-importers/bin/python -m pip install --quiet --force-reinstall --no-deps ./python
target/venv-importers/bin/pytest -q tests/importers

step "README quickstart: its marked blocks as written (install.sh, tora serve, venv, SDK from the server)"
# install.sh builds the release binary (minutes on a fresh machine) and installs it into a temp
# dir; the client block runs with a fresh HOME, port and database.
target/venv/bin/pytest -q tests/quickstart

if [ -d tests/e2e ]; then
  step "dashboard: end to end in headless Chromium"
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "test.sh: the browser tests need Debian's chromium: sudo apt-get install chromium" >&2
      exit 1
    fi
  fi
  npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error
  # One suite at a time: the speed suite prints timings that a parallel suite would skew.
  node --test --test-concurrency=1 tests/e2e/*.test.js

  step "dashboard on PostgreSQL: a researcher's story from signup to sharing, against tora serve --db postgres://"
  # tests/e2e/harness.js gives the server a fresh database in the cluster named by
  # TORA_TEST_POSTGRES; the API under the other suites is tested on PostgreSQL above.
  TORA_TEST_POSTGRES=$TORA_TEST_POSTGRES node --test tests/e2e/dashboard.test.js
fi
tests/postgres/cluster.sh stop "$pgdir"
rm -rf "$pgdir" "$pglog"
trap - EXIT

step "deploy: one static executable, run alone in an empty root, and the Dockerfile's image run by buildah"
deploy/image.sh --check

step "all suites passed"
