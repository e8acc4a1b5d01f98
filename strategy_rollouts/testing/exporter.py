"""One /metrics endpoint for many synthetic gauge series, for Prometheus to scrape in tests and benchmarks.

Far cheaper than one quoter process per strategy: a gate input is a gauge the test sets, a noisy
return series is drawn afresh (seeded) at every scrape.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily

from strategy_rollouts.testing.operator_process import free_port

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Series:
    value: float
    noise: float = 0.0  # stdev of a normal draw added at every scrape


class Exporter:
    def __init__(self, seed: int = 0) -> None:
        self._series: dict[tuple[str, Labels], Series] = {}
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self.port = free_port()
        self._server, self._thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)

    @property
    def target(self) -> str:
        """ "127.0.0.1:PORT", as Prometheus scrape targets are written."""
        return f"127.0.0.1:{self.port}"

    def gauge(self, name: str, value: float, noise: float = 0.0, **labels: str) -> None:
        """Set (or replace) the series `name{labels}`: `value`, plus N(0, noise) drawn at each scrape."""
        with self._lock:
            self._series[(name, tuple(sorted(labels.items())))] = Series(value, noise)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            items = sorted(self._series.items())
            drawn = [s.value + (self._rng.gauss(0.0, s.noise) if s.noise else 0.0) for _, s in items]
        families: dict[tuple[str, tuple[str, ...]], GaugeMetricFamily] = {}
        for ((name, labels), _), value in zip(items, drawn, strict=True):
            names = tuple(k for k, _ in labels)
            family = families.get((name, names))
            if family is None:
                family = families[(name, names)] = GaugeMetricFamily(name, "synthetic test series", labels=names)
            family.add_metric([v for _, v in labels], value)
        yield from families.values()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
