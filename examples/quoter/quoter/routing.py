"""The routing ConfigMap: parse `data["routing.json"]` and watch it through the Kubernetes API.

The rule every strategy app must follow: trade key K only when `assignments[K]` is exactly
your own version. Another version, "draining", "none" or a missing key all mean hands off,
and so does a missing or unreadable ConfigMap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

ROUTING_KEY = "routing.json"


@dataclass(frozen=True)
class Routing:
    strategy: str = ""
    stable_version: str = ""
    canary_version: str = ""
    weight: float = 0.0
    assignments: dict[str, str] = field(default_factory=dict)
    size_multiplier: float = 1.0
    entries_enabled: bool = True
    revision: int = 0

    def keys_for(self, version: str) -> list[str]:
        """The keys this version may trade, sorted."""
        return sorted(key for key, owner in self.assignments.items() if owner == version)


# What a process trades with when nothing is published: nothing at all.
HANDS_OFF = Routing(size_multiplier=0.0, entries_enabled=False, revision=0)


def parse_routing(text: str) -> Routing:
    """Parse routing.json; ValueError with the offending field on bad input."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"routing.json is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("routing.json must be a JSON object")
    assignments = doc.get("assignments") or {}
    if not isinstance(assignments, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in assignments.items()
    ):
        raise ValueError("routing.json: assignments must map key -> version string")
    try:
        return Routing(
            strategy=str(doc.get("strategy") or ""),
            stable_version=str(doc.get("stableVersion") or ""),
            canary_version=str(doc.get("canaryVersion") or ""),
            weight=float(doc.get("weight") or 0.0),
            assignments=dict(assignments),
            size_multiplier=float(doc.get("sizeMultiplier", 1.0)),
            entries_enabled=_as_bool(doc.get("entriesEnabled", True)),
            revision=int(doc.get("revision") or 0),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"routing.json: {exc}") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"entriesEnabled must be a boolean, got {value!r}")


def routing_from_configmap(configmap: Any, strategy: str) -> Routing:
    """The routing a ConfigMap object (kubernetes client model, or None) publishes for `strategy`."""
    if configmap is None:
        return HANDS_OFF
    text = (configmap.data or {}).get(ROUTING_KEY)
    if text is None:
        log.warning("routing ConfigMap %s has no %s: hands off", configmap.metadata.name, ROUTING_KEY)
        return HANDS_OFF
    try:
        routing = parse_routing(text)
    except ValueError as exc:
        log.error("routing ConfigMap %s: %s: hands off", configmap.metadata.name, exc)
        return HANDS_OFF
    if routing.strategy and routing.strategy != strategy:
        log.error("routing ConfigMap is for strategy %r, not %r: hands off", routing.strategy, strategy)
        return Routing(revision=routing.revision, size_multiplier=0.0, entries_enabled=False)
    return routing


def _kubernetes() -> Any:
    """The kubernetes client package, imported late (it is heavy) and untyped on purpose."""
    import kubernetes

    return kubernetes


class RoutingWatcher:
    """Keeps `current` equal to the ConfigMap's routing: list, then watch, relist on any error."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str,
        strategy: str,
        on_change: Callable[[Routing], None] = lambda _r: None,
        watch_timeout_seconds: int = 30,
    ) -> None:
        self._k8s = _kubernetes()
        self._core = self._k8s.client.CoreV1Api(api_client)
        self._namespace = namespace
        self._name = name
        self._strategy = strategy
        self._on_change = on_change
        self._timeout = watch_timeout_seconds
        self._stop = threading.Event()
        self._watch: Any = None
        self._thread = threading.Thread(target=self._run, name="routing-watch", daemon=True)
        self.current: Routing = HANDS_OFF
        self.synced = threading.Event()  # set after the first successful list

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _apply(self, configmap: Any) -> None:
        routing = routing_from_configmap(configmap, self._strategy)
        if routing.revision == 0:  # missing or unreadable: hands off, but remember the last revision
            routing = dataclasses.replace(routing, revision=self.current.revision)
        if routing != self.current:
            log.info("routing revision %d: %s", routing.revision, routing.assignments)
        self.current = routing
        self._on_change(routing)

    def _run(self) -> None:
        api_exception: type[Exception] = self._k8s.client.exceptions.ApiException
        selector = f"metadata.name={self._name}"
        backoff = 0.2
        while not self._stop.is_set():
            try:
                listed = self._core.list_namespaced_config_map(
                    self._namespace, field_selector=selector, _request_timeout=10
                )
                self._apply(listed.items[0] if listed.items else None)
                self.synced.set()
                backoff = 0.2
                self._watch = self._k8s.watch.Watch()
                for event in self._watch.stream(
                    self._core.list_namespaced_config_map,
                    self._namespace,
                    field_selector=selector,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=self._timeout,
                    _request_timeout=self._timeout + 15,
                ):
                    if self._stop.is_set():
                        break
                    kind = event["type"]
                    if kind in ("ADDED", "MODIFIED"):
                        self._apply(event["object"])
                    elif kind == "DELETED":
                        self._apply(None)
                    elif kind == "ERROR":
                        break  # e.g. 410 Gone: relist
            except Exception as exc:
                if self._stop.is_set():
                    break
                if isinstance(exc, api_exception) and getattr(exc, "status", None) == 410:
                    continue  # our resourceVersion is too old: relist at once
                log.warning("routing watch: %s: %s; retrying", type(exc).__name__, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
