"""The Prometheus adapter against the real Prometheus, and against an endpoint that answers garbage.

Every answer that is not one finite number is Inconclusive (or Error for a query Prometheus
rejects): never a Pass, never an exception.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from strategy_rollouts.read import prometheus
from strategy_rollouts.testing.operator_process import free_port

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
