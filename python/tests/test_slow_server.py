"""A slow server does not slow metric(): a proxy holds every answer back, the caller never notices."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import ToraServer

from tora import Tora

DELAY = 0.4


class SlowProxy:
    """Forwards each connection to the server and holds the server's answer back DELAY seconds."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            answer = b""
            while chunk := upstream.recv(65536):  # the SDK asks for Connection: close
                answer += chunk
            time.sleep(DELAY)
            client.sendall(answer)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(server: ToraServer) -> Iterator[SlowProxy]:
    p = SlowProxy(server.port)
    yield p
    p.close()


def test_slow_server_does_not_slow_metric(server: ToraServer, proxy: SlowProxy) -> None:
    # max_buffer_len=1 is setup()'s default: 0.0.12 sent a request per point, DELAY each.
    t = Tora.create_experiment("slow-server", max_buffer_len=1, server_url=f"http://127.0.0.1:{proxy.port}/api")
    durations = []
    for step in range(5000):
        before = time.perf_counter()
        t.metric("loss", 1.0 / (step + 1), step)
        durations.append(time.perf_counter() - before)
        if step % 1000 == 0:
            time.sleep(0.05)  # a training step; the sender is mid-request most of the time
    logging_time = sum(durations)
    assert logging_time < DELAY / 4, f"5000 metric() calls took {logging_time:.2f}s behind a {DELAY}s server"
    assert statistics.median(durations) < 50e-6
    assert t.shutdown(timeout=30) == 0
    assert 2 <= proxy.requests < 50, "points must travel in batches"
    assert sorted(m["step"] for m in server.metrics(t.experiment_id)) == list(range(5000))
