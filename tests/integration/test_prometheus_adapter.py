"""The Prometheus adapter against the real Prometheus, and against an endpoint that answers garbage.

Every answer that is not one finite number is Inconclusive (or Error for a query Prometheus
rejects): never a Pass, never an exception.
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from strategy_rollouts.read import prometheus
from strategy_rollouts.testing.operator_process import free_port
from tests.integration.conftest import wait_for

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster


async def measure(url: str, query: str) -> prometheus.Measurement:
    return await prometheus.instant(prometheus.Connection(url, timeout_s=2), query)


@pytest.mark.parametrize(
    ("query", "outcome", "value", "needle"),
    [
        ("vector(42)", "ok", 42.0, ""),
        ("scalar(vector(7))", "ok", 7.0, ""),
        ("vector(0) / 0", "inconclusive", None, "nan"),
        ('absent_metric_for_sure{job="nope"}', "inconclusive", None, "empty result"),
        # two series whatever Prometheus scrapes (a fresh session may hold a single `up`)
        (
            'label_replace(vector(1), "s", "a", "", "") or label_replace(vector(2), "s", "b", "", "")',
            "error",
            None,
            "aggregate",
        ),
        ("sum(rate(", "error", None, "rejected the query"),
    ],
    ids=["number", "scalar", "nan", "empty", "several-series", "bad-query"],
)
async def test_real_prometheus_answers(
    cluster: DevCluster, query: str, outcome: str, value: float | None, needle: str
) -> None:
    m = await measure(cluster.prometheus_url, query)
    assert m.outcome == outcome, m
    assert m.value == value
    assert needle.lower() in m.message.lower()


async def test_unreachable_prometheus_is_inconclusive() -> None:
    m = await measure(f"http://127.0.0.1:{free_port()}", "vector(1)")
    assert (m.outcome, m.value) == ("inconclusive", None)
    assert "unreachable" in m.message


class _Garbage(http.server.BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {
        "notjson": (200, b"<html>proxy error</html>"),
        "nodata": (200, b'{"status":"success"}'),
        "wrongshape": (200, b'{"status":"success","data":{"resultType":"vector","result":[{"value":"x"}]}}'),
        "notanumber": (
            200,
            b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}',
        ),
        "server-error": (503, b"overloaded"),
    }

    def do_GET(self) -> None:
        query = self.path.split("query=", 1)[-1].split("&", 1)[0]
        status, body = self.answers.get(query, (404, b"?"))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def garbage_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("query", sorted(_Garbage.answers))
async def test_garbage_answers_are_inconclusive_with_a_cause(garbage_server: str, query: str) -> None:
    m = await measure(garbage_server, query)
    assert m.outcome == "inconclusive", m
    assert m.value is None
    assert m.message and ("unparseable" in m.message or "error" in m.message)


class _Slow(http.server.BaseHTTPRequestHandler):
    """Answers one number after 0.3 s over kept-alive HTTP/1.1 connections, and records each connection."""

    protocol_version = "HTTP/1.1"
    connections: set[tuple[str, int]] = set()
    body = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"3"]}]}}'

    def do_GET(self) -> None:
        self.connections.add(self.client_address)
        time.sleep(0.3)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


async def test_queries_in_flight_keep_their_connections() -> None:
    """As many queries in flight as the pool allows (16) reuse as many connections, burst after burst:
    the client's default pool of 10 dropped one connection per query beyond the tenth."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=48))  # as the operator runs (main.py)
    conn = prometheus.Connection(f"http://127.0.0.1:{server.server_address[1]}", timeout_s=5)
    try:
        for _ in range(3):
            got = await asyncio.gather(*(prometheus.instant(conn, "q") for _ in range(conn.pool.size)))
            assert [m.value for m in got] == [3.0] * conn.pool.size, got
        assert conn.pool.size == 16
        assert len(_Slow.connections) == conn.pool.size, sorted(_Slow.connections)
    finally:
        server.shutdown()
        server.server_close()


class _Hostile:
    """A TCP endpoint that accepts and then never completes an answer: `drip` sends one byte of a
    response every 100 ms, for ever (every read succeeds within requests' per-read timeout); otherwise
    it never answers. Counts connections open at once."""

    def __init__(self, drip: bool) -> None:
        self.drip, self.open, self.peak, self.lock = drip, 0, 0, threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.peak = max(self.peak, self.open)
        try:
            client.recv(65536)
            if self.drip:
                client.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            while True:
                time.sleep(0.1 if self.drip else 1)  # each byte well within any per-read timeout
                if self.drip:
                    client.sendall(b" ")
                elif not client.recv(1):
                    return
        except OSError:
            return  # the client closed it: the call's deadline ended it
        finally:
            with self.lock:
                self.open -= 1
            client.close()

    def close(self) -> None:
        self.server.close()


async def test_a_dripping_server_is_cut_at_the_deadline_and_frees_its_thread(cluster: DevCluster) -> None:
    """requests' timeout is per read: one byte a second holds a plain call for ever. At the total
    deadline the call's socket is shut down, so the one thread of this pool is free for the next query."""
    drip = _Hostile(drip=True)
    pool = prometheus.Pool(limit=1)
    try:
        started = time.monotonic()
        # 3 s per read (never reached: a byte every 100 ms), 4 s in total: the total deadline cuts it
        m = await prometheus.instant(prometheus.Connection(drip.url, timeout_s=3, pool=pool), "vector(1)")
        assert (m.outcome, m.value) == ("inconclusive", None) and "timed out" in m.message
        assert time.monotonic() - started < 10
        assert pool.sockets == {}
        wait_for(lambda: drip.open == 0, 10, what="the dripping connection closed by the client")
        ok = await prometheus.instant(
            prometheus.Connection(cluster.prometheus_url, timeout_s=5, pool=pool), "vector(2)"
        )
        assert ok.value == 2.0, ok
    finally:
        drip.close()


async def test_one_objects_hung_endpoint_takes_only_its_own_budget(cluster: DevCluster) -> None:
    """Object A asks 12 queries of an endpoint that never answers: at most PER_OBJECT of them are in
    flight; object B, on the same pool, is answered at once meanwhile."""
    hole = _Hostile(drip=False)
    pool = prometheus.Pool()
    a = prometheus.Connection(hole.url, timeout_s=3, pool=pool).for_object("StrategyRollout", "ns", "a")
    b = prometheus.Connection(cluster.prometheus_url, timeout_s=5, pool=pool).for_object("StrategyRollout", "ns", "b")
    try:
        hung = asyncio.gather(*(prometheus.instant(a, f"vector({i})") for i in range(12)))
        await asyncio.sleep(1)
        started = time.monotonic()
        answers = await asyncio.gather(*(prometheus.instant(b, f"vector({i})") for i in range(6)))
        assert [m.value for m in answers] == [float(i) for i in range(6)]
        assert time.monotonic() - started < 2, "object B waited behind object A's hung endpoint"
        results = await hung
        assert {m.outcome for m in results} == {"inconclusive"}
        assert hole.peak == prometheus.PER_OBJECT, hole.peak
    finally:
        hole.close()
