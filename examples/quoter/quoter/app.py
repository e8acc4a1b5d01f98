"""The process: tick loop, routing watch, metrics server, control endpoint, clean shutdown."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import MetricsHandler

from . import market, simulate
from .config import Config, parse_config
from .decisions import Decision, RedisPublisher, decide
from .knobs import KnobStore
from .metrics import QuoterMetrics
from .routing import Routing, RoutingWatcher

log = logging.getLogger("quoter")

MAX_CATCH_UP_TICKS = 25  # after a stall, replay at most this many missed ticks


class Publisher(Protocol):
    def publish(self, decisions: Sequence[Decision]) -> None: ...
    def close(self) -> None: ...


class Quoter:
    """One strategy version: each tick, decide on the keys it owns and report what happened."""

    def __init__(
        self,
        config: Config,
        knobs: KnobStore,
        routing: Callable[[], Routing],
        metrics: QuoterMetrics,
        publisher: Publisher | None = None,
    ) -> None:
        self.config = config
        self.knobs = knobs
        self.routing = routing
        self.metrics = metrics
        self.publisher = publisher
        self.last_tick: int | None = None
        self.orders_sent = 0
        self._publish_errors = 0
        self._symbols_reported: set[str] = set()

    def keys(self, routing: Routing) -> list[str]:
        return routing.keys_for(self.config.version)

    def process_tick(self, tick: int, late: bool = False) -> list[Decision]:
        cfg, knobs, routing, m = self.config, self.knobs.get(), self.routing(), self.metrics
        keys = self.keys(routing)
        decisions = decide(
            cfg.seed,
            tick,
            keys,
            knobs,
            size_multiplier=routing.size_multiplier,
            entries_enabled=routing.entries_enabled,
            ts=time.time(),
        )
        if self.publisher is not None:
            try:
                self.publisher.publish(decisions)
            except Exception as exc:
                m.publish_errors.inc()
                self._publish_errors += 1
                if self._publish_errors % 100 == 1:
                    log.warning("publishing decisions failed (%d so far): %s", self._publish_errors, exc)
        m.decisions.inc(len(decisions))
        if not cfg.shadow:  # side effects: only the live process "sends" orders
            for _ in decisions:
                self.orders_sent += 1
                m.orders.inc()
                if simulate.partially_filled(self.orders_sent, knobs.partial_fill_rate):
                    m.partial_fills.inc()

        # Simulated latency is observed, not slept: the loop keeps its cadence at any knob value.
        for stage, seconds in simulate.stage_durations(cfg.seed, tick, knobs.latency_ms).items():
            m.stage_duration[stage].observe(seconds)
            if stage == "tick_total":
                m.tick_duration.observe(seconds)
        m.ticks.inc()
        if late or simulate.deadline_missed(tick, knobs.deadline_miss_rate):
            m.deadline_misses.inc()

        m.routing_revision.set(routing.revision)
        m.assigned_keys.set(len(keys))
        m.size_multiplier.set(routing.size_multiplier)
        m.entries_enabled.set(1 if routing.entries_enabled else 0)
        m.capital_at_risk.set(knobs.risk_percent * routing.size_multiplier if keys else 0.0)
        for source, value in simulate.returns(cfg.seed, cfg.strategy, cfg.version, tick, knobs).items():
            m.returns[source].set(value)
        for key, bps in simulate.costs(knobs).items():
            m.costs[key].set(bps)
        for symbol in self._symbols_reported - set(keys):
            m.symbol_net_bps.remove(*m.labels.values(), symbol)
        for symbol in keys:
            bad = symbol in cfg.bad_symbols
            m.symbol_net_bps.labels(**m.labels, symbol=symbol).set(
                knobs.bad_symbol_net_bps if bad else knobs.symbol_net_bps
            )
        self._symbols_reported = set(keys)
        self.last_tick = tick
        return decisions

    def run(self, stop: threading.Event) -> None:
        """Process every tick as its interval starts, until `stop` is set."""
        interval = self.config.tick_interval
        parent = os.getppid()
        last: int | None = None
        while not stop.is_set():
            if self.config.exit_with_parent and os.getppid() != parent:
                log.warning("parent process is gone: exiting")
                break
            current = market.tick_number(time.time(), interval)
            if last is None or current > last:
                first = current if last is None else max(last + 1, current - MAX_CATCH_UP_TICKS + 1)
                for tick in range(first, current + 1):
                    self.process_tick(tick, late=tick < current)
                last = current
            stop.wait(max((last + 1) * interval - time.time(), 0.001))

    def state(self) -> dict[str, Any]:
        routing = self.routing()
        return {
            "strategy": self.config.strategy,
            "version": self.config.version,
            "shadow": self.config.shadow,
            "routed": self.config.routed,
            "tick": self.last_tick,
            "tickInterval": self.config.tick_interval,
            "keys": self.keys(routing),
            "routing": {
                "revision": routing.revision,
                "assignments": routing.assignments,
                "sizeMultiplier": routing.size_multiplier,
                "entriesEnabled": routing.entries_enabled,
            },
            "knobs": self.knobs.get().as_dict(),
        }


def control_server(bind: str, port: int, quoter: Quoter) -> ThreadingHTTPServer:
    """GET /knobs, POST /knobs (JSON object of knob -> number), GET /state, GET /healthz."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body, sort_keys=True).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/knobs":
                self._reply(200, quoter.knobs.get().as_dict())
            elif self.path == "/state":
                self._reply(200, quoter.state())
            elif self.path == "/healthz":
                self._reply(200, {"ok": True})
            else:
                self._reply(404, {"error": f"no such path {self.path}"})

        def do_POST(self) -> None:
            if self.path != "/knobs":
                self._reply(404, {"error": f"no such path {self.path}"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not isinstance(body, dict):
                    raise ValueError("body must be a JSON object of knob -> number")
                knobs = quoter.knobs.update(body)
            except ValueError as exc:  # JSONDecodeError is a ValueError
                self._reply(400, {"error": str(exc)})
                return
            log.info("knobs changed: %s", body)
            self._reply(200, knobs.as_dict())

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("control: " + format, *args)

    return serve(bind, port, Handler)


def serve(bind: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """An HTTP server on a daemon thread; port 0 picks a free port (see `server_port`)."""
    server = ThreadingHTTPServer((bind, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


def kube_api_client(kubeconfig: str | None) -> Any:
    """--kubeconfig, else $KUBECONFIG, else in-cluster, else ~/.kube/config."""
    import kubernetes

    k8s: Any = kubernetes  # only partly typed
    client, config = k8s.client, k8s.config
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    if not os.environ.get("KUBECONFIG") and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)
    return config.new_client_from_config()


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_config(argv)
    logging.basicConfig(
        level=cfg.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    metrics = QuoterMetrics(cfg.strategy, cfg.version)
    knobs = KnobStore(cfg.knobs)
    watcher: RoutingWatcher | None = None
    if cfg.routed:
        assert cfg.routing_configmap is not None
        try:
            api_client = kube_api_client(cfg.kubeconfig)
        except Exception as exc:
            log.error("cannot configure the Kubernetes client (--kubeconfig, KUBECONFIG, in-cluster): %s", exc)
            return 2
        watcher = RoutingWatcher(
            api_client,
            cfg.namespace,
            cfg.routing_configmap,
            cfg.strategy,
            watch_timeout_seconds=max(1, round(cfg.watch_timeout)),
        )
        watcher.start()
        if not watcher.synced.wait(5.0):
            log.warning("routing ConfigMap not read yet; hands off until it is")
        routing: Callable[[], Routing] = lambda: watcher.current  # noqa: E731
    else:
        everything = Routing(strategy=cfg.strategy, assignments=dict.fromkeys(cfg.symbols, cfg.version))
        routing = lambda: everything  # noqa: E731
    publisher = RedisPublisher(cfg.redis_url, cfg.strategy, cfg.version) if cfg.redis_url else None
    quoter = Quoter(cfg, knobs, routing, metrics, publisher)

    metrics_server = serve(cfg.bind, cfg.metrics_port, MetricsHandler.factory(metrics.registry))
    control = control_server(cfg.bind, cfg.control_port, quoter)
    host = "127.0.0.1" if cfg.bind in ("0.0.0.0", "::", "") else cfg.bind
    log.info(
        "%s %s %s; routing: %s",
        cfg.strategy,
        cfg.version,
        "SHADOW (no orders)" if cfg.shadow else "live",
        f"{cfg.namespace}/{cfg.routing_configmap}" if cfg.routed else f"all of {','.join(cfg.symbols)}",
    )
    print(
        f"QUOTER READY metrics={host}:{metrics_server.server_port} control={host}:{control.server_port}",
        flush=True,
    )
    try:
        quoter.run(stop)
    finally:
        if watcher is not None:
            watcher.stop()
        for server in (control, metrics_server):
            server.shutdown()
            server.server_close()
        if publisher is not None:
            publisher.close()
        log.info("stopped")
    return 0
