"""Chaos harness: observers that record every change of the objects under test, and a monkey that
SIGKILLs the operator (and restarts the API server once) at seeded random moments.

The observers run in threads of the test process, from before the first object until the end:
- `Watcher`: one watch per (resource, namespace), resumed from the last resourceVersion after any
  error (the API server restart included), so it sees every resourceVersion; a relist is recorded
  as a gap (only a 410 forces one).
- `Sampler`: reads the routing ConfigMaps every `period` seconds, as an app polling them would.
What they saw is checked afterwards by the pure functions in `strategy_rollouts.testing.invariants`.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from strategy_rollouts.testing.operator_process import OperatorProcess

GROUP, VERSION = "strategyrollouts.io", "v1alpha1"
Body = dict[str, Any]
Key = tuple[str, str, str]  # (resource, namespace, name)
Lister = Callable[..., Any]  # a generated list_* call bound to its namespace; takes the list/watch kwargs


@dataclass(frozen=True)
class Seen:
    t: float  # time.monotonic()
    resource_version: str
    body: Body
    deleted: bool = False


@dataclass
class Record:
    """Every version of every object, in the order seen; thread safe."""

    versions: dict[Key, list[Seen]] = field(default_factory=dict)
    gaps: list[tuple[float, str, str]] = field(default_factory=list)  # (t, resource, namespace) relisted
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, resource: str, body: Body, t: float, deleted: bool = False) -> None:
        meta = body.get("metadata") or {}
        key = (resource, str(meta.get("namespace", "")), str(meta.get("name", "")))
        rv = str(meta.get("resourceVersion", ""))
        with self.lock:
            seen = self.versions.setdefault(key, [])
            if not seen or seen[-1].resource_version != rv or deleted:
                seen.append(Seen(t, rv, body, deleted))

    def gap(self, t: float, resource: str, namespace: str) -> None:
        with self.lock:
            self.gaps.append((t, resource, namespace))

    def of(self, resource: str, namespace: str, name: str) -> list[Seen]:
        with self.lock:
            return list(self.versions.get((resource, namespace, name), []))


def statuses(record: Record, plural: str, namespace: str, name: str) -> list[tuple[float, Body]]:
    return [(s.t, dict(s.body.get("status") or {})) for s in record.of(plural, namespace, name) if not s.deleted]


def routing_docs(record: Record, namespace: str, config_map: str) -> list[tuple[float, Body]]:
    """Every `routing.json` seen in a ConfigMap, in order (a ConfigMap without it is left out)."""
    out = []
    for s in record.of("configmaps", namespace, config_map):
        text = (s.body.get("data") or {}).get("routing.json")
        if text and not s.deleted:
            out.append((s.t, dict(json.loads(text))))
    return out


def replica_counts(record: Record, namespace: str, deployment: str) -> list[tuple[float, int]]:
    seen = record.of("deployments", namespace, deployment)
    return [(s.t, int((s.body.get("spec") or {}).get("replicas", 0))) for s in seen if not s.deleted]


def listers(api: client.ApiClient, namespace: str, plurals: Iterable[str]) -> dict[str, Lister]:
    """The watched resources of one namespace: ConfigMaps, Deployments and our custom resources."""
    core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    out: dict[str, Lister] = {
        "configmaps": lambda **kw: core.list_namespaced_config_map(namespace, **kw),
        "deployments": lambda **kw: apps.list_namespaced_deployment(namespace, **kw),
    }
    for plural in plurals:
        out[plural] = lambda p=plural, **kw: custom.list_namespaced_custom_object(GROUP, VERSION, namespace, p, **kw)
    return out


class Watcher(threading.Thread):
    """List once, then watch from that resourceVersion on, resuming after every error."""

    def __init__(self, resource: str, namespace: str, lister: Lister, record: Record, stop: threading.Event) -> None:
        super().__init__(name=f"watch-{resource}-{namespace}", daemon=True)
        self.resource, self.namespace, self.lister = resource, namespace, lister
        self.record, self.stop = record, stop
        self.ready = threading.Event()  # the first listing is recorded

    def run(self) -> None:
        rv: str | None = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    rv = self._list()
                rv = self._watch(rv)
            except Exception:  # the API server is restarting, or a stream broke: resume from rv
                time.sleep(0.2)

    def _list(self) -> str:
        resp = self.lister(_preload_content=False, _request_timeout=10)
        doc = json.loads(resp.data)
        t = time.monotonic()
        for item in doc.get("items", []):
            self.record.add(self.resource, item, t)
        if self.ready.is_set():
            self.record.gap(t, self.resource, self.namespace)
        self.ready.set()
        return str(doc["metadata"]["resourceVersion"])

    def _watch(self, rv: str) -> str | None:
        resp = self.lister(
            watch=True,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=5,
            _preload_content=False,
            _request_timeout=15,
        )
        try:
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    return None if obj.get("code") == 410 else rv  # 410 Gone: only a relist helps
                rv = str(obj["metadata"]["resourceVersion"])
                if kind != "BOOKMARK":
                    self.record.add(self.resource, obj, time.monotonic(), deleted=kind == "DELETED")
                if self.stop.is_set():
                    break
        finally:
            resp.release_conn()
        return rv


class Sampler(threading.Thread):
    """Reads every ConfigMap of the namespaces every `period` seconds into its own Record."""

    def __init__(
        self, api: client.ApiClient, namespaces: Iterable[str], record: Record, stop: threading.Event, period: float
    ) -> None:
        super().__init__(name="routing-sampler", daemon=True)
        self.core, self.namespaces, self.record = client.CoreV1Api(api), list(namespaces), record
        self.stop, self.period = stop, period
        self.samples = 0

    def run(self) -> None:
        while not self.stop.wait(self.period):
            for ns in self.namespaces:
                with contextlib.suppress(Exception):  # API server restarting: the next sample
                    resp: Any = self.core.list_namespaced_config_map(ns, _preload_content=False, _request_timeout=5)
                    t = time.monotonic()
                    for item in json.loads(resp.data).get("items", []):
                        self.record.add("configmaps", item, t)
                    self.samples += 1


@dataclass(frozen=True)
class Disruption:
    t: float
    what: str  # "kill" | "start" | "apiserver"
    detail: str = ""


class Monkey(threading.Thread):
    """`kills` times: wait a random gap, SIGKILL the operator, wait a random moment, start it again.
    After kill number `apiserver_after` (1-based; None: never) it also restarts the API server."""

    def __init__(
        self,
        operator: OperatorProcess,
        restart_apiserver: Callable[[], float],
        kills: int,
        seed: int,
        apiserver_after: int | None,
        gap: tuple[float, float] = (1.0, 4.0),
        down: tuple[float, float] = (0.0, 1.5),
    ) -> None:
        super().__init__(name="chaos-monkey", daemon=True)
        self.operator, self.restart_apiserver = operator, restart_apiserver
        self.kills, self.apiserver_after = kills, apiserver_after
        self.rng = random.Random(seed)
        self.gap, self.down = gap, down
        self.log: list[Disruption] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def count(self, what: str) -> int:
        return sum(1 for d in self.log if d.what == what)

    def run(self) -> None:
        try:
            for n in range(1, self.kills + 1):
                if self.stop.wait(self.rng.uniform(*self.gap)):
                    return
                self.operator.kill()
                self.log.append(Disruption(time.monotonic(), "kill", f"#{n}"))
                time.sleep(self.rng.uniform(*self.down))
                self.operator.start()
                self.log.append(Disruption(time.monotonic(), "start", f"#{n}"))
                if n == self.apiserver_after:
                    time.sleep(self.rng.uniform(*self.gap))
                    took = self.restart_apiserver()
                    self.log.append(Disruption(time.monotonic(), "apiserver", f"unavailable {took:.1f}s"))
        except BaseException as exc:  # reported by the test
            self.error = exc
