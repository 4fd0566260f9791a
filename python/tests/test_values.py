"""What metric(), result() and log_metrics() accept, and what they refuse at once (no server needed)."""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tora
from tora import Tora, ToraMetricError, ToraValidationError
from tora._sender import encode


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tora]:
    """An offline client: validation runs exactly as online, and nothing needs a server. Its
    queue is spilled to disk only at shutdown, so the tests can read what was queued even on a
    machine slow enough to take more than the usual 1 s flush interval over a loop."""
    monkeypatch.setenv("TORA_FLUSH_INTERVAL", "3600")
    t = Tora.create_experiment("values", mode="offline")
    yield t
    t.shutdown()


class Scalar:
    """Like a 0-d tensor: no __float__, only .item()."""

    def __init__(self, v: float) -> None:
        self.v = v

    def item(self) -> float:
        return self.v


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (3, 3),
        (2.5, 2.5),
        (True, 1),
        (False, 0),
        (np.float32(0.5), 0.5),
        (np.float64(1.25), 1.25),
        (np.int64(7), 7),
        (np.array(4.5), 4.5),
        (Decimal("1.5"), 1.5),
        (Scalar(0.75), 0.75),
        (-(2**63), -(2**63)),
    ],
)
def test_numbers_are_accepted(client: Tora, raw: object, expected: float) -> None:
    client.metric("m", raw, 1)  # type: ignore[arg-type]
    name, value, step = client._sender.queue[-1]
    assert (name, value, step) == ("m", expected, 1)
    assert type(value) is type(expected)


@pytest.mark.parametrize("raw", [float("nan"), float("inf"), float("-inf"), np.float32("nan"), np.float64("-inf")])
def test_nan_and_infinities_are_accepted(client: Tora, raw: float) -> None:
    client.metric("m", raw, 0)
    client.result("r", raw)
    assert len(client._sender.queue) == 2


@pytest.mark.parametrize(
    "raw", ["1.5", "abc", b"1", None, [1.0], (1.0,), {"v": 1}, np.array([1.0, 2.0]), complex(1, 2), object(), 2**64]
)
def test_non_numbers_raise_in_the_caller(client: Tora, raw: object) -> None:
    with pytest.raises(ToraValidationError):
        client.metric("m", raw, 0)  # type: ignore[arg-type]
    with pytest.raises(ToraValidationError):
        client.result("m", raw)  # type: ignore[arg-type]
    with pytest.raises(ToraValidationError):
        client.log_metrics({"m": raw}, step=0)  # type: ignore[dict-item]
    assert len(client._sender.queue) == 0


@pytest.mark.parametrize("raw", [-1, "3", None, 1.5, [1], float("nan")])
def test_bad_steps_raise(client: Tora, raw: object) -> None:
    with pytest.raises(ToraValidationError):
        client.metric("m", 1.0, raw)  # type: ignore[arg-type]
    assert len(client._sender.queue) == 0


@pytest.mark.parametrize(("raw", "expected"), [(np.int32(5), 5), (3.0, 3), (True, 1), (np.array(2), 2)])
def test_integer_like_steps_are_accepted(client: Tora, raw: object, expected: int) -> None:
    client.metric("m", 1.0, raw)  # type: ignore[arg-type]
    assert client._sender.queue[-1][2] == expected


@pytest.mark.parametrize("raw", ["", "   ", 5, None])
def test_names_that_are_not_names_raise(client: Tora, raw: object) -> None:
    with pytest.raises(ToraValidationError):
        client.metric(raw, 1.0, 0)  # type: ignore[arg-type]
    with pytest.raises(ToraValidationError):
        client.result(raw, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("val loss", "val_loss"),
        ("x" * 101, "x" * 100),
        ('q"uote', "q_uote"),
        ("back\\slash", "back_slash"),
        ("précision@5", "pr_cision_5"),
        ("loss\n", "loss"),
        (" train/loss (ema) ", "train/loss__ema_"),
    ],
)
def test_names_with_other_characters_are_sanitised(client: Tora, raw: str, sent: str) -> None:
    client.metric(raw, 1.0, 0)
    client.result(raw, 2.0)
    client.log_metrics({raw: 3.0}, step=1)
    assert [p[0] for p in client._sender.queue] == [sent] * 3


def test_a_bad_name_in_a_loop_is_warned_about_once(client: Tora, caplog: pytest.LogCaptureFixture) -> None:
    """Days into a run, a name built from data must not stop it: the point is logged, renamed, and
    the log says so once, not once per step."""
    caplog.set_level(logging.WARNING, logger="tora")
    for step in range(1000):
        client.metric("val acc@top 5", 0.5, step)
        client.log_metrics({"lr (sched)": 0.1, "ok": 1.0}, step=step)
    renames = [r.getMessage() for r in caplog.records if "is logged as" in r.getMessage()]
    assert renames == [
        "tora: metric name 'val acc@top 5' is logged as 'val_acc_top_5' (names are 1-100 letters, digits, _ - . /)",
        "tora: metric name 'lr (sched)' is logged as 'lr__sched_' (names are 1-100 letters, digits, _ - . /)",
    ]
    assert {p[0] for p in client._sender.queue} == {"val_acc_top_5", "lr__sched_", "ok"}
    assert len(client._sender.queue) == 3000


def test_names_are_stripped_like_0_0_12(client: Tora) -> None:
    client.metric("  train/loss ", 1.0, 0)
    client.metric("  train/loss ", 2.0, 1)
    assert [p[0] for p in client._sender.queue] == ["train/loss", "train/loss"]


def test_log_metrics_numbers_steps_per_name(client: Tora) -> None:
    client.log_metrics({"a": 1, "b": 2})
    client.log_metrics({"a": 3})
    client.log_metrics({"a": 4, "b": 5})
    client.log_metrics({"b": 6}, step=10)
    client.log_metrics({"b": 7})
    assert list(client._sender.queue) == [
        ("a", 1, 0),
        ("b", 2, 0),
        ("a", 3, 1),
        ("a", 4, 2),
        ("b", 5, 1),
        ("b", 6, 10),
        ("b", 7, 11),
    ]


def test_log_metrics_logs_nothing_when_one_value_is_bad(client: Tora) -> None:
    with pytest.raises(ToraValidationError):
        client.log_metrics({"a": 1.0, "b": "oops", "c": 2.0})
    assert len(client._sender.queue) == 0
    with pytest.raises(ToraValidationError):
        client.log_metrics([("a", 1.0)])  # type: ignore[arg-type]


def doubles(column: dict[str, Any]) -> list[float]:
    """The values of a metric column as the server reads them: base64 of little-endian doubles."""
    raw = base64.b64decode(column["values_f64"], validate=True)
    return list(struct.unpack(f"<{len(raw) // 8}d", raw))


def test_metric_values_travel_as_exact_doubles() -> None:
    values = [0.1, 1 / 3, 1e-300, 1.7976931348623157e308, 5e-324, -0.0, -2.5, float("nan"), float("inf"), -(2**63), 3]
    body = json.loads(encode([("m", v, i) for i, v in enumerate(values)], "s.0"))
    [column] = body["metrics"]
    assert column["steps"] == list(range(len(values)))
    assert [repr(v) for v in doubles(column)] == [repr(float(v)) for v in values], "every bit, -0.0 and NaN too"


def test_results_send_nan_and_infinities_as_strings() -> None:
    nan, inf = float("nan"), float("inf")
    values = {"r": -0.0, "q": nan, "i": inf, "j": -inf, "k": 7, "x": 0.1}
    body = json.loads(encode([(name, value, None) for name, value in values.items()], "s.0"))
    assert body["metrics"] == []
    assert body["results"] == [
        {"name": "r", "value": -0.0},
        {"name": "q", "value": "NaN"},
        {"name": "i", "value": "Infinity"},
        {"name": "j", "value": "-Infinity"},
        {"name": "k", "value": 7},
        {"name": "x", "value": 0.1},
    ]


def test_a_batch_is_one_column_per_name_in_order_of_first_appearance() -> None:
    """What log_metrics({"loss": ..., "acc": ...}) per step looks like on the wire."""
    logged = [("loss", 0.9, 0), ("acc", 0.1, 0), ("loss", 0.8, 1), ("best", 0.5, None), ("acc", 0.2, 1), ("lr", 3, 7)]
    body = encode(logged, "0123456789abcdef.42")
    sent = json.loads(body)
    assert sent["batch_id"] == "0123456789abcdef.42"
    assert [(c["name"], c["steps"], doubles(c)) for c in sent["metrics"]] == [
        ("loss", [0, 1], [0.9, 0.8]),
        ("acc", [0, 1], [0.1, 0.2]),
        ("lr", [7], [3.0]),
    ]
    assert sent["results"] == [{"name": "best", "value": 0.5}]
    assert encode(logged, "0123456789abcdef.42") == body, "a batch encoded again must be the same bytes"
    assert b" " not in body


def test_closed_client_refuses_to_log(client: Tora) -> None:
    client.shutdown()
    assert client.is_closed
    with pytest.raises(ToraMetricError):
        client.metric("m", 1.0, 0)
    with pytest.raises(ToraMetricError):
        client.result("m", 1.0)
    with pytest.raises(ToraMetricError):
        client.flush()
    assert client.shutdown() == 0


def test_experiment_arguments_are_validated_before_any_request() -> None:
    with pytest.raises(ToraValidationError):
        Tora.create_experiment("")
    with pytest.raises(ToraValidationError):
        Tora.create_experiment("bad/name")
    with pytest.raises(ToraValidationError):
        Tora.create_experiment("ok", hyperparams={"lr": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ToraValidationError):
        Tora.create_experiment("ok", tags="not-a-list")  # type: ignore[arg-type]
    with pytest.raises(ToraValidationError):
        Tora.create_experiment("ok", workspace_id="not a valid id!")
    with pytest.raises(tora.ToraConfigurationError):
        Tora.create_experiment("ok", mode="sometimes")


def test_max_buffer_len_setter_validates(client: Tora) -> None:
    client.max_buffer_len = 100
    assert client.max_buffer_len == 100
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ToraValidationError):
            client.max_buffer_len = bad  # type: ignore[assignment]


def test_global_api_before_setup() -> None:
    assert not tora.is_initialized()
    assert tora.get_experiment_id() is None
    assert tora.get_experiment_url() is None
    with pytest.raises(tora.ToraError):
        tora.tmetric("m", 1.0, 0)
    with pytest.raises(tora.ToraError):
        tora.tresult("m", 1.0)
    assert tora.flush() == 0
    assert tora.shutdown() == 0


def test_public_names_match_0_0_12() -> None:
    published = {
        "Tora",
        "ToraAPIError",
        "ToraAuthenticationError",
        "ToraConfigurationError",
        "ToraError",
        "ToraExperimentError",
        "ToraMetricError",
        "ToraNetworkError",
        "ToraTimeoutError",
        "ToraValidationError",
        "ToraWorkspaceError",
        "create_workspace",
        "flush",
        "get_experiment_id",
        "get_experiment_url",
        "is_initialized",
        "setup",
        "shutdown",
        "tmetric",
        "tresult",
    }
    added = {"finish", "log_artifact", "list_artifacts", "download_artifact"}
    wandb_style = {"init", "log", "login", "config", "summary", "define_metric", "save", "Run", "Config", "Summary"}
    wandb_style |= {"TORA_NAMESPACE", "ToraUnsupportedError"}
    assert set(tora.__all__) == published | added | wandb_style, (
        "0.0.12's names, the run's end and files, and the W&B-style API added"
    )
    assert issubclass(tora.ToraAPIError, tora.ToraNetworkError)
    assert issubclass(tora.ToraTimeoutError, tora.ToraNetworkError)
    for name in published - {"Tora", "create_workspace"} - {n for n in published if n[0].islower()}:
        assert issubclass(getattr(tora, name), tora.ToraError)
    assert (Path(tora.__file__).parent / "py.typed").exists()
