"""A slow server does not slow metric(): the server sits on a batch, the caller never notices.

How fast metric() is belongs to the benchmark (bench/bench_sdk.py). Here a proxy holds the
server's answers to batches until the test lets them go, so "the caller never waited for the
server" is a fact of ordering: every metric() call returned while a batch was still unanswered.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import ToraServer
from proxy import SAFETY, Proxy

from tora import Tora


@pytest.fixture
def proxy(server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    monkeypatch.setenv("TORA_TIMEOUT", str(SAFETY))  # the held request must not time out in the SDK instead
    p = Proxy(server.port, hold=True)
    yield p
    p.close()


def test_slow_server_does_not_slow_metric(server: ToraServer, proxy: Proxy) -> None:
    # max_buffer_len=1 is setup()'s default: 0.0.12 sent a request per point and waited for each answer.
    t = Tora.create_experiment("slow-server", max_buffer_len=1, server_url=proxy.api)
    t.metric("loss", 1.0, 0)
    assert proxy.batch_arrived.wait(SAFETY), "the first point must be sent"
    for step in range(1, 5000):
        t.metric("loss", 1.0 / (step + 1), step)

    # Every call above returned while the server sat on the first batch: none waited for it.
    assert len(proxy.batches) == 1, "the sender is still waiting for its first answer"
    assert proxy.answered == 0
    assert t.buffer_size == 5000, "no point has reached the server, and none is lost"

    proxy.release()
    assert t.shutdown(timeout=SAFETY) == 0
    assert proxy.answered == len(proxy.batches)
    assert 2 <= len(proxy.batches) < 50, "points must travel in batches"
    metrics = server.metrics(t.experiment_id)
    assert sorted(m["step"] for m in metrics) == list(range(5000))
