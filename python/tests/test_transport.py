"""The sender's keep-alive connection: one connection for many batches, and a connection the
server closed while idle is replaced without losing or repeating a request."""

from __future__ import annotations

import socket
import threading

import pytest
from conftest import ToraServer

from tora import _transport
from tora._exceptions import ToraNetworkError


def test_a_session_sends_every_batch_on_one_connection(server: ToraServer) -> None:
    session = _transport.Session()
    answers = [session.request("GET", f"{server.api}/health", timeout=5) for _ in range(5)]
    assert [a.status for a in answers] == [200] * 5
    first = session._conn
    assert first is not None
    assert first.sock is not None
    session.request("GET", f"{server.api}/health", timeout=5)
    assert session._conn is first, "the connection was reused, not reopened"
    session.close()
    assert session._conn is None


class ClosesAfterEachAnswer:
    """An HTTP server that says keep-alive but closes every connection after one answer, as a
    server does with a connection that sat idle past its timeout."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/api/health"
        self.connections = 0
        self.requests = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(4096)):
                    data += chunk
                if data:
                    self.requests += 1
                    body = b'{"status":200,"data":{"n":%d}}' % self.requests
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                    )

    def close(self) -> None:
        self.listener.close()


def test_a_connection_closed_while_idle_is_replaced_and_the_request_sent_once() -> None:
    peer = ClosesAfterEachAnswer()
    try:
        session = _transport.Session()
        first = session.request("GET", peer.url, timeout=5)
        second = session.request("GET", peer.url, timeout=5)
        assert (first.data, second.data) == ({"n": 1}, {"n": 2})
        assert peer.requests == 2, "each request reached the server exactly once"
        assert peer.connections == 2
    finally:
        peer.close()


def test_a_fresh_connection_that_fails_is_an_error_not_a_retry() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there any more
    with pytest.raises(ToraNetworkError):
        _transport.Session().request("GET", f"http://127.0.0.1:{port}/api/health", timeout=5)
