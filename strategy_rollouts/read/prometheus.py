"""Prometheus adapter: prometheus-api-client off the event loop, every failure mapped to a cause.

Unreachable, timed out, empty, NaN or unparseable answers are Inconclusive (never Pass);
a query Prometheus rejects (HTTP 400, bad_data) is Error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import math
import re
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.parity import Series

T = TypeVar("T")
C = TypeVar("C", bound=HTTPConnection)


PER_OBJECT: Final = 4  # queries one object may have in flight: a hung endpoint delays only its own object


class Pool:
    """The process's Prometheus clients (Context.prometheus): one client and HTTP session per distinct
    connection, reused across reconciles; bounded concurrency whatever the number of objects (`limit`),
    and a budget per object (`budget`) so one object's slow endpoint cannot take every slot."""

    def __init__(self, limit: int = 16) -> None:
        self.size = limit
        self.limit = asyncio.Semaphore(limit)
        self.clients: dict[Connection, PrometheusConnect] = {}
        # Queries run on their own threads: a hung or slow-dripping Prometheus then never delays the
        # Kubernetes calls (a stop's writes) that share asyncio's default executor.
        self.executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="prometheus")
        self.budgets: dict[tuple[str, ...], asyncio.Semaphore] = {}
        # The socket each call in flight reads from, so its deadline can close it (see `_call`).
        self.sockets: dict[int, socket.socket] = {}
        self.local = threading.local()
        self.calls = itertools.count()

    def budget(self, owner: tuple[str, ...]) -> asyncio.Semaphore:
        """The object's own slots (created on first use; `forget` drops them with the object)."""
        if owner not in self.budgets:
            self.budgets[owner] = asyncio.Semaphore(PER_OBJECT)
        return self.budgets[owner]

    def forget(self, owner: tuple[str, ...]) -> None:
        self.budgets.pop(owner, None)


async def _call(conn: Connection, fn: Callable[..., T], *args: Any) -> T:
    """`fn` on the pool's threads within the object's budget, with a TOTAL deadline: requests' timeout
    is per read, so a server that drips one byte a second would otherwise hold a query (its thread and
    its slot) for ever. At the deadline the call's socket is shut down: the thread's read fails at once
    and the thread is free again."""
    pool = conn.pool
    call = next(pool.calls)

    def run() -> T:
        pool.local.call = call  # the connection registers its socket under this call (_DeadlineAdapter)
        try:
            return fn(*args)
        finally:
            pool.local.call = None
            pool.sockets.pop(call, None)

    # The object's budget first, then a slot of the pool: an object waiting for its own budget holds
    # no slot another object could use.
    async with conn.budget if conn.budget is not None else contextlib.nullcontext(), pool.limit:
        future = asyncio.wrap_future(pool.executor.submit(run))
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=conn.timeout_s + 1.0)
        except TimeoutError:
            sock = pool.sockets.pop(call, None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):  # the thread ends now; its slot is the object's until then
                await asyncio.wait_for(future, timeout=5.0)
            raise requests.Timeout(f"no complete answer within {conn.timeout_s:g}s") from None


def _deadline_adapter(pool: Pool, size: int) -> HTTPAdapter:
    """requests' adapter whose connections register, per call, the socket they read from (pool.sockets),
    so `_call` can end a call at its deadline whatever the server does."""

    def registering(base: type[C]) -> type[C]:
        class Registering(base):  # type: ignore[valid-type,misc]
            def request(self, *args: Any, **kwargs: Any) -> None:
                super().request(*args, **kwargs)
                call = getattr(pool.local, "call", None)
                if call is not None and self.sock is not None:
                    pool.sockets[call] = self.sock

        return Registering

    class Plain(HTTPConnectionPool):
        ConnectionCls = registering(HTTPConnection)

    class Tls(HTTPSConnectionPool):
        ConnectionCls = registering(HTTPSConnection)

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Plain, "https": Tls}

    return Adapter(max_retries=Retry(total=0), pool_maxsize=size)


@dataclass(frozen=True)
class Connection:
    address: str
    timeout_s: float = 10.0
    bearer_token: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    pool: Pool = field(default_factory=Pool, compare=False, hash=False, repr=False)
    budget: asyncio.Semaphore | None = field(default=None, compare=False, hash=False, repr=False)

    def for_object(self, *owner: str) -> Connection:
        """This connection within `owner`'s budget of queries in flight (Pool.budget)."""
        return dataclasses.replace(self, budget=self.pool.budget(owner))


def client(conn: Connection) -> PrometheusConnect:
    """The pool's client for this connection (created on first use)."""
    clients = conn.pool.clients
    if conn not in clients:
        session = requests.Session()
        session.max_redirects = 0  # a redirect is an error: the token goes to the named address only
        if conn.ca_file:
            session.verify = conn.ca_file
        headers = {"Authorization": f"Bearer {conn.bearer_token}"} if conn.bearer_token else None
        url = conn.address.rstrip("/")
        clients[conn] = PrometheusConnect(
            url=url,
            headers=headers,
            disable_ssl=conn.insecure_skip_verify,
            retry=Retry(total=0),
            session=session,
            timeout=conn.timeout_s,
        )
        # replaces the adapter the client mounts for its URL: one kept-alive connection per query in
        # flight (requests' default pool of 10 under a limit of 16 dropped a connection after each query
        # beyond the tenth: urllib3's "Connection pool is full" at N >= 100 in the scale benchmark)
        session.mount(url, _deadline_adapter(conn.pool, conn.pool.size))
    return clients[conn]


def _describe(exc: BaseException, address: str) -> tuple[str, str]:
    """(outcome, message) for an exception; the message names the cause, never a secret."""
    if isinstance(exc, PrometheusApiClientException):
        # The status code and our own words only: a remote's body is never shown (an address a spec
        # names must not become a way to read what answers there).
        code = re.search(r"HTTP Status Code (\d+)", str(exc))
        status = code.group(1) if code else "unknown"
        if status in ("400", "422"):
            return (
                "error",
                f"Prometheus at {address} rejected the query (HTTP {status}); check it in its UI",
            )
        return "inconclusive", f"Prometheus at {address} answered an error (HTTP {status})"
    if isinstance(exc, requests.Timeout):
        return "inconclusive", f"Prometheus at {address} timed out"
    if isinstance(exc, requests.ConnectionError):
        return "inconclusive", f"Prometheus at {address} unreachable"
    if isinstance(exc, ValueError | LookupError | TypeError):
        return (
            "inconclusive",
            f"Prometheus at {address} answered something unparseable ({type(exc).__name__})",
        )
    return "inconclusive", f"Prometheus at {address}: {type(exc).__name__}"


class SeveralSeries(Exception):
    """The query names more than one series: a gate needs one number, so the query must aggregate."""


def scalar_from(result: Any) -> float | None:
    """One number from an instant query result; None when empty. Several series is an error."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return float(result[1])  # resultType scalar: [ts, "value"]
    if not isinstance(result, list):
        raise TypeError("result is not a list")
    if not result:
        return None
    if len(result) > 1:
        raise SeveralSeries(f"query returned {len(result)} series; aggregate it to one (e.g. sum or max)")
    return float(result[0]["value"][1])


async def instant(conn: Connection, query: str) -> Measurement:
    try:
        result = await _call(conn, client(conn).custom_query, query)
        value = scalar_from(result)
    except SeveralSeries as exc:
        return Measurement(None, outcome="error", message=str(exc))
    except Exception as exc:  # every failure becomes a measured cause, never a crash
        outcome, message = _describe(exc, conn.address)
        return Measurement(None, outcome=outcome, message=message)  # type: ignore[arg-type]
    if value is None:
        return Measurement(None, outcome="inconclusive", message="empty result", empty=True)
    if not math.isfinite(value):
        return Measurement(None, outcome="inconclusive", message=f"value is {value}", empty=True)
    return Measurement(value)


async def compare(conn: Connection, query: str, baseline: str) -> Measurement:
    """Compare mode: the value and the baseline measured together."""
    value, base = await asyncio.gather(instant(conn, query), instant(conn, baseline))
    if value.outcome != "ok":
        return value
    if base.outcome != "ok":
        return Measurement(value.value, None, base.outcome, f"baseline: {base.message}", empty=base.empty)
    return Measurement(value.value, base.value)


async def range_series(conn: Connection, query: str, start: datetime, end: datetime, step_s: float) -> Series:
    """A range query that must return exactly one series (NaN points dropped)."""
    try:
        result = await _call(conn, client(conn).custom_query_range, query, start, end, f"{step_s:g}s")
    except Exception as exc:
        return Series([], _describe(exc, conn.address)[1])
    try:
        if not result:
            return Series([])
        if len(result) > 1:
            return Series([], f"query returned {len(result)} series; aggregate it to one")
        points = [(float(ts), float(v)) for ts, v in result[0]["values"]]
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        return Series([], f"unparseable range answer ({type(exc).__name__})")
    return Series([(ts, v) for ts, v in points if math.isfinite(v)])


@dataclass(frozen=True)
class Vector:
    """An instant vector keyed by one label (NaN / non-finite samples dropped), or why not."""

    values: dict[str, float]
    error: str | None = None
    outcome: str = "ok"  # ok | inconclusive | error


async def vector(conn: Connection, query: str, label: str) -> Vector:
    """Instant query returning several series, keyed by `label` (e.g. a per-stage latency profile)."""
    try:
        result = await _call(conn, client(conn).custom_query, query)
    except Exception as exc:  # every failure becomes a cause, never a crash
        outcome, message = _describe(exc, conn.address)
        return Vector({}, message, outcome)
    if not isinstance(result, list):
        return Vector({}, f"Prometheus at {conn.address} answered a non-vector result", "inconclusive")
    values: dict[str, float] = {}
    try:
        for sample in result:
            key = (sample.get("metric") or {}).get(label)
            value = float(sample["value"][1])
            if key is not None and math.isfinite(value):
                values[str(key)] = value
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        return Vector({}, f"unparseable vector answer ({type(exc).__name__})", "inconclusive")
    return Vector(values)


async def per_key(conn: Connection, query: str, label: str, baseline: str | None = None) -> dict[str, Measurement]:
    """A per-key gate's measurements: one series per key, keyed by `label` (compare mode: the baseline
    keyed the same way). A key with several series is an error for that key (the query must aggregate
    `by (label)`); a failed query gives no key at all (the gate then judges none: Inconclusive)."""
    answers = await asyncio.gather(*(_keyed(conn, q, label) for q in (query, baseline) if q is not None))
    values = answers[0]
    bases = answers[1] if baseline is not None else {}
    out: dict[str, Measurement] = {}
    for key, value in values.items():
        if isinstance(value, str):
            out[key] = Measurement(None, outcome="error", message=value)
        elif baseline is None:
            out[key] = Measurement(value)
        else:
            base = bases.get(key)
            if isinstance(base, float):
                out[key] = Measurement(value, base)
            else:
                why = base if isinstance(base, str) else f"baseline: no series with {label}={key}"
                out[key] = Measurement(value, None, "inconclusive", why, empty=base is None)
    return out


async def _keyed(conn: Connection, query: str, label: str) -> dict[str, float | str]:
    """key -> its value, or why it has none (several series); {} when the query failed."""
    try:
        result = await _call(conn, client(conn).custom_query, query)
    except Exception:  # every failure becomes "not measured", never a crash
        return {}
    out: dict[str, float | str] = {}
    seen: set[str] = set()
    for sample in result if isinstance(result, list) else []:
        try:
            key = (sample.get("metric") or {}).get(label)
            value = float(sample["value"][1])
        except (TypeError, ValueError, KeyError, IndexError, AttributeError):
            continue
        if key is None:
            continue
        key = str(key)
        if key in seen:
            out[key] = f"several series with {label}={key}; aggregate the query by ({label})"
        elif math.isfinite(value):
            out[key] = value
        seen.add(key)
    return out


@dataclass(frozen=True)
class Samples:
    """Every finite point of every series of a range query (a judge's population), or why not; `times`
    (unix seconds) parallel to `values`, a timestamp repeated once per series that has a point there."""

    values: tuple[float, ...]
    error: str | None = None
    outcome: str = "ok"  # ok | inconclusive | error
    times: tuple[float, ...] = ()


async def range_samples(conn: Connection, query: str, start: datetime, end: datetime, step_s: float) -> Samples:
    try:
        result = await _call(conn, client(conn).custom_query_range, query, start, end, f"{step_s:g}s")
    except Exception as exc:  # every failure becomes a cause, never a crash
        outcome, message = _describe(exc, conn.address)
        return Samples((), message, outcome)
    try:
        points = [(float(t), float(v)) for series in result for t, v in series["values"]]
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        return Samples((), f"unparseable range answer ({type(exc).__name__})", "inconclusive")
    kept = [(t, v) for t, v in points if math.isfinite(v)]
    return Samples(tuple(v for _, v in kept), times=tuple(t for t, _ in kept))
