"""A training-style script written against the published SDK, tora==0.0.12, unmodified.

Run it with a python that has tora==0.0.12 installed and TORA_BASE_URL / TORA_API_KEY set
(0.0.12 reads both at import time). It uses only the public 0.0.12 API and prints, as its
last stdout line, `RESULT {json}` with the ids it created.

The expected data (names, steps, values) lives here as plain functions so that
test_published_sdk.py can import this file without importing tora.
"""

import json
import logging
import math
import sys

WORKSPACE = {"name": "compat-0.0.12", "description": "made by the published SDK"}
MAIN = {
    "name": "compat-main",
    "description": "tora 0.0.12 against tora serve",
    "hyperparams": {"lr": 0.001, "batch": 32, "opt": "adam"},
    "tags": ["compat", "sdk-0.0.12"],
}
GLOBAL = {
    "name": "compat-global",
    "description": "the setup()/tmetric() wrapper",
    "hyperparams": {"seed": 7, "schedule": "cosine"},
    "tags": ["global"],
}
N_STEPS = 500  # x 2 metric names = 1,000 metric() calls
RESULT_NAME, RESULT_VALUE = "final_acc", 0.9375
RESUMED_STEPS = [
    N_STEPS,
    N_STEPS + 1,
    10**12,
]  # logged after load_experiment; 10**12 needs 64-bit steps
# Values at the edges of what 0.0.12 accepts (it rejects NaN/inf and |x| > 1e308).
EDGE_VALUES = [1e308, -1e308, 5e-324, 2**53, 123456789, 0.1 + 0.2]


def loss(step: int) -> float:
    # Full-precision doubles (not round decimals), so a lossy number path on the server shows.
    return 2.0 / (step + 1) + math.sin(step) * 1e-3


def acc(step: int) -> float:
    return step / 1000


def expected_main_metrics() -> dict[str, list[tuple[int, float]]]:
    """(step, value) per metric name, in step order, for the main experiment after resuming."""
    return {
        "train/loss": [(s, loss(s)) for s in range(N_STEPS)]
        + [(s, loss(s)) for s in RESUMED_STEPS],
        # Even steps only, so the two names have different step sets.
        "val/acc": [(2 * i, acc(2 * i)) for i in range(N_STEPS)],
    }


def expected_global_metrics() -> dict[str, list[tuple[int, float]]]:
    return {
        "g/loss": [(s, 1 / (s + 3)) for s in range(10)],
        "g/edge": list(enumerate(EDGE_VALUES)),
    }


GLOBAL_RESULT = ("g/best", 0.123456789012345678)


def main() -> None:
    # Make the SDK's swallowed write errors visible on stderr; the test checks for them.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import tora
    from tora import Tora

    ws = tora.create_workspace(WORKSPACE["name"], description=WORKSPACE["description"])

    run = Tora.create_experiment(
        MAIN["name"],
        workspace_id=ws["id"],
        description=MAIN["description"],
        hyperparams=MAIN["hyperparams"],
        tags=MAIN["tags"],
    )
    for step in range(N_STEPS):
        run.metric("train/loss", loss(step), step)
        run.metric("val/acc", acc(2 * step), 2 * step)
    run.result(RESULT_NAME, RESULT_VALUE)
    run.flush()
    # 0.0.12 keeps a batch buffered when its POST fails, so this must be 0.
    buffered_after_flush = run.buffer_size
    run.shutdown()

    resumed = Tora.load_experiment(run.experiment_id)
    for step in RESUMED_STEPS:
        resumed.metric("train/loss", loss(step), step)
    resumed.shutdown()

    global_id = tora.setup(
        GLOBAL["name"],
        description=GLOBAL["description"],
        hyperparams=GLOBAL["hyperparams"],
        tags=GLOBAL["tags"],
    )
    for name, points in expected_global_metrics().items():
        for step, value in points:
            tora.tmetric(name, value, step)
    tora.tresult(*GLOBAL_RESULT)
    tora.shutdown()

    ids = {
        "tora_version": tora.__version__,
        "tora_file": tora.__file__,
        "workspace_id": ws["id"],
        "main_id": run.experiment_id,
        "main_url": run.url,
        "resumed_id": resumed.experiment_id,
        "resumed_url": resumed.url,
        "global_id": global_id,
        "buffered_after_flush": buffered_after_flush,
    }
    print("RESULT " + json.dumps(ids))


if __name__ == "__main__":
    main()
