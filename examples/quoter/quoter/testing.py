"""Run quoter processes from tests and demos: start one, wait for READY, turn knobs, stop it.

    from quoter.testing import start_quoter

    with start_quoter("fib_rsi", "v2.0.0", namespace=ns, routing_configmap="fib-rsi-routing",
                      kubeconfig=cluster.kubeconfig, redis_url=cluster.redis_url) as q:
        cluster.add_scrape_target(f"quoter-{ns}-v2", q.metrics_target)
        q.set_knobs(latency_ms=300)
        ...

Standard library plus prometheus_client only; the process runs with `sys.executable` and this
directory's parent on PYTHONPATH, so callers need only the quoter's own dependencies installed.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

QUOTER_ROOT = Path(__file__).resolve().parent.parent  # the directory holding the `quoter` package
READY_PREFIX = "QUOTER READY "

_running: set[QuoterProcess] = set()
_pending: set[PendingQuoter] = set()
T = TypeVar("T")


class QuoterEndpoints:
    """What a test reads and turns on a running quoter, wherever it runs: its metrics and control endpoints."""

    host: str
    metrics_port: int
    control_port: int

    @property
    def metrics_target(self) -> str:
        """ "HOST:PORT", as Prometheus scrape targets are written."""
        return f"{self.host}:{self.metrics_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    # -- control endpoint -----------------------------------------------------------------------

    def _request(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.control_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            exc.close()
            raise ValueError(f"{method} {path}: HTTP {exc.code}: {detail}") from None

    def knobs(self) -> dict[str, float]:
        """GET /knobs."""
        result: dict[str, float] = self._request("GET", "/knobs")
        return result

    def set_knobs(self, **knobs: float) -> dict[str, float]:
        """POST /knobs; returns every knob after the change. ValueError on an unknown/bad knob."""
        result: dict[str, float] = self._request("POST", "/knobs", knobs)
        return result

    def state(self) -> dict[str, Any]:
        """GET /state: tick, keys traded now, routing in force, knobs."""
        result: dict[str, Any] = self._request("GET", "/state")
        return result

    # -- metrics --------------------------------------------------------------------------------

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:
            text: str = resp.read().decode()
            return text

    def metric(self, name: str, **labels: str) -> float | None:
        """Sum of the samples called `name` (e.g. "ticks_total") whose labels include `labels`."""
        from prometheus_client.parser import text_string_to_metric_families

        values = [
            sample.value
            for family in text_string_to_metric_families(self.metrics_text())
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        ]
        return sum(values) if values else None


class QuoterProcess(QuoterEndpoints):
    """A running `python -m quoter`. Use as a context manager, or call stop()."""

    def __init__(
        self,
        proc: subprocess.Popen[str],
        *,
        strategy: str,
        version: str,
        metrics_port: int,
        control_port: int,
        log_path: Path,
        argv: list[str],
        reader: threading.Thread,
    ) -> None:
        self.proc = proc
        self.host = "127.0.0.1"
        self.strategy = strategy
        self.version = version
        self.metrics_port = metrics_port
        self.control_port = control_port
        self.log_path = log_path
        self.argv = argv
        self._reader = reader

    def __repr__(self) -> str:
        return (
            f"QuoterProcess({self.strategy} {self.version} pid={self.proc.pid} "
            f"metrics={self.metrics_target} control=127.0.0.1:{self.control_port})"
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        """What the process wrote to stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- lifecycle ------------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code. Safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=2)
        _running.discard(self)
        return self.proc.returncode

    def __enter__(self) -> QuoterProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def quoter_command(
    strategy: str,
    version: str,
    *,
    namespace: str | None = None,
    routing_configmap: str | None = None,
    symbols: Iterable[str] | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    redis_url: str | None = None,
    tick_interval: float = 0.2,
    shadow: bool = False,
    knobs: Mapping[str, float] | None = None,
    extra_args: Iterable[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """The argv start_quoter runs (ports 0, exit with the parent)."""
    argv = [python, "-m", "quoter", "--strategy", strategy, "--version", version]
    argv += ["--metrics-port", "0", "--control-port", "0", "--tick-interval", repr(float(tick_interval))]
    argv += ["--exit-with-parent"]
    if namespace is not None:
        argv += ["--namespace", namespace]
    if routing_configmap is not None:
        argv += ["--routing-configmap", routing_configmap]
    if symbols is not None:
        argv += ["--symbols", ",".join(symbols)]
    if kubeconfig is not None:
        argv += ["--kubeconfig", str(kubeconfig)]
    if redis_url is not None:
        argv += ["--redis-url", redis_url]
    if shadow:
        argv += ["--shadow"]
    for name, value in (knobs or {}).items():
        argv += ["--" + name.replace("_", "-"), repr(float(value))]
    return [*argv, *extra_args]


def start_quoter(
    strategy: str,
    version: str,
    *,
    namespace: str | None = None,
    routing_configmap: str | None = None,
    symbols: Iterable[str] | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    redis_url: str | None = None,
    tick_interval: float = 0.2,
    shadow: bool = False,
    knobs: Mapping[str, float] | None = None,
    env: Mapping[str, str] | None = None,
    extra_args: Iterable[str] = (),
    ready_timeout: float = 30.0,
    log_dir: str | os.PathLike[str] | None = None,
    python: str = sys.executable,
) -> QuoterProcess:
    """Start `python -m quoter` and return once it printed its READY line (RuntimeError if it
    exits first, TimeoutError after `ready_timeout`; both include its log).

    `shadow=True` also sets SHADOW_MODE=true unless `env` sets SHADOW_MODE itself. `env` is
    added to os.environ. stderr goes to `log_dir` (default: the temp dir); see `.log()`.
    To start several at once (each takes a second or more to import the Kubernetes client),
    use spawn_quoter() for each, then `.ready()` on each.
    """
    return spawn_quoter(
        strategy,
        version,
        namespace=namespace,
        routing_configmap=routing_configmap,
        symbols=symbols,
        kubeconfig=kubeconfig,
        redis_url=redis_url,
        tick_interval=tick_interval,
        shadow=shadow,
        knobs=knobs,
        env=env,
        extra_args=extra_args,
        log_dir=log_dir,
        python=python,
    ).ready(ready_timeout)


def spawn_quoter(
    strategy: str,
    version: str,
    *,
    namespace: str | None = None,
    routing_configmap: str | None = None,
    symbols: Iterable[str] | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    redis_url: str | None = None,
    tick_interval: float = 0.2,
    shadow: bool = False,
    knobs: Mapping[str, float] | None = None,
    env: Mapping[str, str] | None = None,
    extra_args: Iterable[str] = (),
    log_dir: str | os.PathLike[str] | None = None,
    python: str = sys.executable,
) -> PendingQuoter:
    """Start `python -m quoter` without waiting; call `.ready()` on the result (same arguments
    as start_quoter)."""
    argv = quoter_command(
        strategy,
        version,
        namespace=namespace,
        routing_configmap=routing_configmap,
        symbols=symbols,
        kubeconfig=kubeconfig,
        redis_url=redis_url,
        tick_interval=tick_interval,
        shadow=shadow,
        knobs=knobs,
        extra_args=extra_args,
        python=python,
    )
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(QUOTER_ROOT), full_env.get("PYTHONPATH")) if p)
    full_env["PYTHONUNBUFFERED"] = "1"
    if shadow:
        full_env["SHADOW_MODE"] = "true"
    full_env.update(env or {})
    log_path = Path(log_dir or tempfile.gettempdir()) / f"quoter-{strategy}-{version}-{uuid.uuid4().hex[:8]}.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, text=True, env=full_env
        )
    return PendingQuoter(proc, strategy=strategy, version=version, log_path=log_path, argv=argv)


class PendingQuoter:
    """A quoter process that may not have printed READY yet."""

    def __init__(self, proc: subprocess.Popen[str], *, strategy: str, version: str, log_path: Path, argv: list[str]):
        self.proc = proc
        self.strategy = strategy
        self.version = version
        self.log_path = log_path
        self.argv = argv
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=_drain, args=(proc, self._lines), name=f"quoter-{proc.pid}", daemon=True)
        self._reader.start()
        _pending.add(self)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(timeout=2)
        _pending.discard(self)

    def _fail(self, error: type[Exception], why: str) -> Exception:
        self.kill()
        tail = self.log_path.read_text(errors="replace")[-4000:]
        return error(
            f"quoter {self.strategy} {self.version} {why}\nargv: {self.argv}\n--- log {self.log_path} ---\n{tail}"
        )

    def ready(self, timeout: float = 30.0) -> QuoterProcess:
        """Wait for the READY line; RuntimeError if the process exits first, TimeoutError after
        `timeout` (both include its log; the process is killed)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise self._fail(TimeoutError, f"printed no READY line within {timeout}s") from None
            if line is None:
                raise self._fail(RuntimeError, f"exited with {self.proc.wait()} before READY")
            if line.startswith(READY_PREFIX):
                fields = dict(part.split("=", 1) for part in line[len(READY_PREFIX) :].split())
                q = QuoterProcess(
                    self.proc,
                    strategy=self.strategy,
                    version=self.version,
                    metrics_port=int(fields["metrics"].rsplit(":", 1)[1]),
                    control_port=int(fields["control"].rsplit(":", 1)[1]),
                    log_path=self.log_path,
                    argv=self.argv,
                    reader=self._reader,
                )
                _pending.discard(self)
                _running.add(q)
                return q


def _drain(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    """Read the child's stdout to EOF (so it never blocks on a full pipe), then close it."""
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            lines.put(line.strip())
    lines.put(None)


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.2, what: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy, and return that; TimeoutError otherwise.
    Exceptions raised by the predicate count as "not yet" (the last one is reported)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


@atexit.register
def _stop_all() -> None:
    for q in list(_running):
        q.stop(timeout=2)
    for p in list(_pending):
        p.kill()
