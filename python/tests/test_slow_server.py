"""A slow server does not slow metric(): the server sits on a batch, the caller never notices.

How fast metric() is belongs to the benchmark (bench/bench_sdk.py). Here a proxy holds the
server's answers to log batches until the test lets them go, so "the caller never waited for the
server" is a fact of ordering: every metric() call returned while a batch was still unanswered.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from conftest import ToraServer

from tora import Tora

SAFETY = 60
"""Seconds before a wait gives up, so a bug fails the test instead of hanging it; never reached."""


class HoldingProxy:
    """Forwards each connection to the server; holds the answers to log batches until release()."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.batches = 0
        """Log batches the SDK sent."""
        self.answered = 0
        """Answers to log batches passed back to the SDK."""
        self.batch_arrived = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Let the held answers go, and pass every later one straight on."""
        self._released.set()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            head = b""
            while b"\r\n" not in head and (chunk := client.recv(65536)):
                head += chunk
            upstream.sendall(head)
            is_batch = b"/logs/batch " in head.split(b"\r\n", 1)[0]
            if is_batch:
                with self._lock:
                    self.batches += 1
                self.batch_arrived.set()
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            answer = b""
            while chunk := upstream.recv(65536):  # the SDK asks for Connection: close
                answer += chunk
            if is_batch:
                if not self._released.wait(SAFETY):
                    self.release()  # the caller is stuck waiting for this answer: let it fail, not hang
                with self._lock:
                    self.answered += 1
            client.sendall(answer)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass

    def close(self) -> None:
        self.release()
        self._closing.set()
        self._thread.join()
        self.listener.close()


@pytest.fixture
def proxy(server: ToraServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HoldingProxy]:
    monkeypatch.setenv("TORA_TIMEOUT", str(SAFETY))  # the held request must not time out in the SDK instead
    p = HoldingProxy(server.port)
    yield p
    p.close()


def test_slow_server_does_not_slow_metric(server: ToraServer, proxy: HoldingProxy) -> None:
    # max_buffer_len=1 is setup()'s default: 0.0.12 sent a request per point and waited for each answer.
    t = Tora.create_experiment("slow-server", max_buffer_len=1, server_url=f"http://127.0.0.1:{proxy.port}/api")
    t.metric("loss", 1.0, 0)
    assert proxy.batch_arrived.wait(SAFETY), "the first point must be sent"
    for step in range(1, 5000):
        t.metric("loss", 1.0 / (step + 1), step)

    # Every call above returned while the server sat on the first batch: none waited for it.
    assert proxy.batches == 1, "the sender is still waiting for its first answer"
    assert proxy.answered == 0
    assert t.buffer_size == 5000, "no point has reached the server, and none is lost"

    proxy.release()
    assert t.shutdown(timeout=SAFETY) == 0
    assert proxy.answered == proxy.batches
    assert 2 <= proxy.batches < 50, "points must travel in batches"
    metrics = server.metrics(t.experiment_id)
    assert sorted(m["step"] for m in metrics) == list(range(5000))
    assert len({m["msg_id"] for m in metrics}) == 5000
