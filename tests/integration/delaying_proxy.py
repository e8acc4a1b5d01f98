"""A TCP proxy on loopback that can hold what a client sends to the API server: a slow network path.

TLS passes through untouched (the API server's certificate names 127.0.0.1, so a client pointed at
the proxy still verifies it). What the client sends is delivered `hold_s` after it arrived (the value
when it arrived); the answers come back at once. When the client closes its side (its request timeout
passed), bytes still held are either delivered anyway, the server side kept open until it answered
(`deliver_after_close`: bytes already sent do reach a server that way, e.g. through TCP
retransmission or a buffering middlebox), or dropped with the server side closed (a proxy that aborts
the upstream request when its client goes).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from dataclasses import dataclass, field

CLOSED = b""  # queued after the client's last bytes


@dataclass
class Chunk:
    received: float  # monotonic
    release: float
    data: bytes


@dataclass
class Delivery:
    connection: int
    received: float  # monotonic, when the proxy got it from the client
    delivered: float | None  # when it went on to the server (None: dropped)
    size: int


@dataclass
class DelayingProxy:
    upstream: tuple[str, int]
    hold_s: float = 0.0
    deliver_after_close: bool = True
    connections: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sockets: list[socket.socket] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _held: int = 0  # chunks received and not yet delivered or dropped

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._spawn(self._accept)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def held(self) -> int:
        with self._lock:
            return self._held

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self.connections += 1
                n = self.connections
                self._sockets += [downstream, upstream]
            chunks: queue.Queue[Chunk] = queue.Queue()
            gone, answered = threading.Event(), threading.Event()
            self._spawn(self._read_client, downstream, chunks, gone)
            self._spawn(self._send_server, n, upstream, chunks, gone, answered)
            self._spawn(self._answer_client, upstream, downstream, answered)

    def _read_client(self, downstream: socket.socket, chunks: queue.Queue[Chunk], gone: threading.Event) -> None:
        while True:
            try:
                data = downstream.recv(65536)
            except OSError:
                data = CLOSED
            now = time.monotonic()
            if not data:
                gone.set()
                chunks.put(Chunk(now, now, CLOSED))
                return
            with self._lock:
                self._held += 1
            chunks.put(Chunk(now, now + self.hold_s, data))

    def _send_server(
        self,
        n: int,
        upstream: socket.socket,
        chunks: queue.Queue[Chunk],
        gone: threading.Event,
        answered: threading.Event,
    ) -> None:
        while True:
            chunk = chunks.get()
            if not chunk.data:
                break  # the client hung up, and everything it sent before is delivered or dropped
            wait = chunk.release - time.monotonic()
            if wait > 0 and self._stopped.wait(wait):
                return
            if gone.is_set() and not self.deliver_after_close:
                self._record(Delivery(n, chunk.received, None, len(chunk.data)))
                continue
            answered.clear()
            try:
                upstream.sendall(chunk.data)
            except OSError:
                self._record(Delivery(n, chunk.received, None, len(chunk.data)))
                continue
            self._record(Delivery(n, chunk.received, time.monotonic(), len(chunk.data)))
        if self.deliver_after_close:
            answered.wait(5.0)  # the server answers what it was sent last (to nobody), then we hang up
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_RDWR)
        upstream.close()

    def _answer_client(self, upstream: socket.socket, downstream: socket.socket, answered: threading.Event) -> None:
        while True:
            try:
                data = upstream.recv(65536)
            except OSError:
                data = b""
            answered.set()
            if not data:
                with contextlib.suppress(OSError):
                    downstream.close()
                return
            with contextlib.suppress(OSError):
                downstream.sendall(data)

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)
            self._held -= 1

    def close(self) -> None:
        self._stopped.set()
        self.listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for thread in self._threads:
            thread.join(5)
