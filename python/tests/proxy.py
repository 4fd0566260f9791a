"""A proxy between the SDK and the real server, for tests that need the network to misbehave.

It forwards each request whole and records the batches of points that pass (bodies of POST
.../points and .../logs/batch, with the server's answers). It can hold the answers to batches
until the test lets them go (a slow server), or drop them (the server stored the batch, and the
client never hears so: its connection just closes). It can answer 404 to heartbeats and
finishes, as a server older than run state does.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Any

SAFETY = 60
"""Seconds before a held answer is let go anyway, so a bug fails the test instead of hanging it."""


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length and (chunk := conn.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


class Proxy:
    """Listens on ``port``; the SDK talks to ``api`` instead of the server's."""

    def __init__(self, upstream_port: int, *, hold: bool = False, drop: int = 0, old_server: bool = False) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.batches: list[bytes] = []
        """Bodies of the batches the client sent, in the order they arrived."""
        self.answers: list[Any] = []
        """The server's answers (parsed JSON; None when it was down) to those batches, in the same order
        (the SDK sends one batch at a time), whether the client got them or not."""
        self.answered = 0
        """Answers to batches passed back to the client."""
        self.batch_arrived = threading.Event()
        self.stored = threading.Event()
        """Set when the server has answered a batch (it may still be held or dropped here)."""
        self._drop = drop
        self._old_server = old_server
        self.not_found: list[bytes] = []
        """First lines of the requests answered 404 as a server without run state would."""
        self._released = threading.Event()
        if not hold:
            self._released.set()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Let the held answers go, and pass every later one straight on."""
        self._released.set()

    def close(self) -> None:
        self.release()
        self._closing.set()
        self._thread.join()
        self.listener.close()

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
        with client:
            request = _read_request(client)
            first_line = request.split(b"\r\n", 1)[0]
            if self._old_server and (b"/heartbeat " in first_line or b"/finish " in first_line):
                with self._lock:
                    self.not_found.append(first_line)
                body = b'{"error":"NOT_FOUND","message":"no such route","status":404}'
                head = f"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                client.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
                return
            is_batch = first_line.startswith(b"POST ") and (b"/points " in first_line or b"/logs/batch " in first_line)
            if is_batch:
                with self._lock:
                    self.batches.append(request.partition(b"\r\n\r\n")[2])
                self.batch_arrived.set()
            try:
                answer = self._forward(request)
            except OSError:  # the server is down: the client's connection closes with no answer
                answer = b""
            if not is_batch:
                client.sendall(answer)
                return
            try:
                parsed = json.loads(answer.partition(b"\r\n\r\n")[2])
            except ValueError:
                parsed = None
            with self._lock:
                self.answers.append(parsed)
                drop = self._drop > 0 and bool(answer)
                self._drop -= drop
            if answer:
                self.stored.set()
            if drop or not answer:
                return
            if not self._released.wait(SAFETY):
                self.release()  # the client is stuck waiting for this answer: let it fail, not hang
            with self._lock:
                self.answered += 1
            with contextlib.suppress(OSError):  # the client may be gone: a test killed it
                client.sendall(answer)

    def _forward(self, request: bytes) -> bytes:
        # One request per connection here: ask the server to close after answering, so the
        # answer ends where the stream does, and the client (whose sender keeps connections
        # alive) sees "connection: close" and opens a new one for its next request.
        head, _, body = request.partition(b"\r\n\r\n")
        lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
        request = b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body
        with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            upstream.sendall(request)
            answer = b""
            while chunk := upstream.recv(65536):
                answer += chunk
            return answer
