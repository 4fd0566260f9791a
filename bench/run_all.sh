#!/usr/bin/env bash
# Every benchmark, one after another (never two at once: the machine has 2 cores), then one table.
#
#   bash bench/run_all.sh            # ~35 min; writes bench/results/*.json and bench/results/summary.md
#   bash bench/run_all.sh --quick    # small sizes, ~7 min: checks that everything runs
#
# TORA_BIN (default target/release/tora) is the server under test. The peers (MLflow, trackio)
# go into a venv outside the repository, PEERS_VENV (default /tmp/tora-peers-venv), made on the
# first run and reused after. Every server listens on 127.0.0.1 and is stopped by its PID.
set -u
cd "$(dirname "$0")/.."
export TORA_BIN=${TORA_BIN:-target/release/tora}
PY=${PY:-python3}
PEERS_VENV=${PEERS_VENV:-/tmp/tora-peers-venv}
PEERS="mlflow==3.17.2 trackio==0.43.0 psutil"   # the versions shared/bench/peers measured
RESULTS=bench/results
LOGS=$RESULTS/logs
mkdir -p "$LOGS"

if [ ! -x "$TORA_BIN" ]; then
    echo "no tora binary at $TORA_BIN: cargo build --release, or set TORA_BIN" >&2
    exit 1
fi

quick=0
[ "${1:-}" = "--quick" ] && quick=1
if [ $quick = 1 ]; then
    ingest_args=(--points 100000 --repeats 1)
    writers_args=(--points 20000)
    growth_args=(--points 1000000 --per-experiment 100000 --slice 100000)
    query_args=(--scale 0.02)
    stream_args=(--streams 50 --batches 20)
    firstrun_args=(--runs 1 --table-runs 1000 --heartbeats 400 --live-runs 10)
    attacks_args=(--quick)
    peers_args=(--repeats 1 --mlflow-repeats 1 --starts 2 --idle-wait 3 --no-mlflow-nojobs --chart-points 10000)
    mlflow_client_args=(--runs 1 --points 10000 --search-runs 1000 --search-calls 5 --artifact-mib 64)
else
    ingest_args=()
    writers_args=()
    growth_args=()
    query_args=()
    stream_args=()
    firstrun_args=()
    attacks_args=()
    peers_args=(--repeats 3 --mlflow-repeats 2)
    mlflow_client_args=()
fi

if ! "$PEERS_VENV/bin/python" -c "import mlflow, trackio, psutil" 2>/dev/null; then
    echo "== making $PEERS_VENV ($PEERS)"
    python3 -m venv "$PEERS_VENV" &&
        "$PEERS_VENV/bin/pip" install -q -U pip &&
        "$PEERS_VENV/bin/pip" install -q $PEERS || { echo "venv failed" >&2; exit 1; }
fi

failed=()
run() {  # run NAME CMD...: output to the terminal and to $LOGS/NAME.log
    local name=$1
    shift
    echo "== $name  (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    "$@" 2>&1 | tee "$LOGS/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] || failed+=("$name (exit $rc)")
}

echo "tora: $TORA_BIN ($("$TORA_BIN" --version)); $(nproc) CPUs; $(date '+%F %T')"
run ingest "$PY" bench/ingest.py "${ingest_args[@]}" --out $RESULTS/ingest.json
run writers "$PY" bench/writers.py "${writers_args[@]}" --out $RESULTS/writers.json
run growth "$PY" bench/growth.py "${growth_args[@]}" --out $RESULTS/growth.json
run query "$PY" bench/query.py "${query_args[@]}" --out $RESULTS/query.json
run stream "$PY" bench/stream.py "${stream_args[@]}" --out $RESULTS/stream.json
run firstrun "$PY" bench/firstrun.py "${firstrun_args[@]}" --out $RESULTS/firstrun.json
run attacks "$PY" bench/attacks.py "${attacks_args[@]}" --out $RESULTS/attacks.json
run peers "$PEERS_VENV/bin/python" bench/peers.py "${peers_args[@]}" --out $RESULTS/peers.json
run mlflow_client "$PEERS_VENV/bin/python" bench/mlflow_client.py "${mlflow_client_args[@]}" --out $RESULTS/mlflow_client.json

echo "== summary"
"$PY" bench/summary.py $RESULTS
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]} (logs in $LOGS/)" >&2
    exit 1
fi
