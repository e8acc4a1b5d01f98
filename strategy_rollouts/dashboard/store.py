"""The dashboard's view of the cluster: ONE list+watch per kind, shared by every browser.

A thread per kind runs the sync `kubernetes` watch (relisting on 410 Gone) and hands each event to
the event loop, where the objects are kept and every subscriber (one per open page) is told which
object changed. Browsers never cause API requests of their own: pages read this store.

GateTemplates and ClusterGateTemplates are watched too (for the charts of `templateRef` gates), but
optionally: credentials that may not list them leave those gates unresolved, never the page unready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from strategy_rollouts.api.common import GROUP, VERSION
from strategy_rollouts.dashboard.views import JSON, KINDS
from strategy_rollouts.engine.gate_templates import Template, TemplateKey, template_of

log = logging.getLogger(__name__)
WATCH_TIMEOUT_S = 300  # the server ends a watch after this; we resume from the last resourceVersion
MATCH_SAMPLES = 720  # per ShadowRun: match rate as seen by the watch, for the chart when Prometheus has none
GATE_SAMPLES = 240  # per webhook (or templateRef) gate: its results as seen by the watch
TEMPLATE_KINDS = {"gatetemplates": "GateTemplate", "clustergatetemplates": "ClusterGateTemplate"}
CLUSTER_SCOPED = frozenset({"clustergatetemplates"})
FORBIDDEN_RETRY_S = 60.0  # an optional watch these credentials may not make: ask again this rarely
Key = tuple[str, str, str]  # (kind, namespace, name)


@dataclass
class Change:
    kind: str
    namespace: str
    name: str
    deleted: bool = False


@dataclass(eq=False)  # hashed by identity: kept in a set
class Subscriber:
    """One open page: the changes it has not been sent yet (coalesced per object)."""

    loop: asyncio.AbstractEventLoop
    pending: dict[Key, Change] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, change: Change) -> None:
        self.pending[(change.kind, change.namespace, change.name)] = change
        self.wake.set()

    async def changes(self) -> list[Change]:
        await self.wake.wait()
        self.wake.clear()
        out, self.pending = list(self.pending.values()), {}
        return out


class Store:
    def __init__(self, api: client.ApiClient, namespace: str | None = None) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace  # None: every namespace (in-cluster, or a user who may list them all)
        self.objects: dict[str, dict[tuple[str, str], JSON]] = {k: {} for k in (*KINDS, *TEMPLATE_KINDS)}
        self.synced: dict[str, bool] = dict.fromkeys(KINDS, False)  # templates are optional: not waited for
        self.errors: dict[str, str] = {}
        self.template_errors: dict[str, str] = {}
        self.match_rates: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        # (namespace, name) -> gate -> (evaluatedAt, result, value), for the webhook result timeline
        self.gate_results: dict[tuple[str, str], dict[str, deque[tuple[float, str, float | None]]]] = {}
        self.subscribers: set[Subscriber] = set()
        self.api_requests = 0  # lists + watches started: constant in the number of browsers
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- reading ---------------------------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        return self.objects[kind].get((namespace, name))

    def items(self, kind: str) -> list[JSON]:
        return [self.objects[kind][k] for k in sorted(self.objects[kind])]

    def template(self, key: TemplateKey) -> Template | None:
        """A (Cluster)GateTemplate as the watch holds it (None: not seen, or its spec does not parse)."""
        kind, namespace, name = key
        plural = next(p for p, k in TEMPLATE_KINDS.items() if k == kind)
        body = self.objects[plural].get((namespace, name))
        return None if body is None else template_of(kind, body)

    @property
    def ready(self) -> bool:
        return all(self.synced.values())

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscriber]:
        sub = Subscriber(asyncio.get_running_loop())
        self.subscribers.add(sub)
        try:
            yield sub
        finally:
            self.subscribers.discard(sub)

    # ---- the watches -----------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        for kind in (*KINDS, *TEMPLATE_KINDS):
            thread = threading.Thread(target=self._run, args=(loop, kind), name=f"watch-{kind}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def _list(self, kind: str) -> tuple[list[JSON], str]:
        self.api_requests += 1
        if self.namespace is None or kind in CLUSTER_SCOPED:
            res: Any = self.custom.list_cluster_custom_object(GROUP, VERSION, kind, _request_timeout=30)
        else:
            res = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, kind, _request_timeout=30)
        return list(res.get("items") or []), str(res["metadata"]["resourceVersion"])

    def _stream(self, kind: str, rv: str) -> Iterator[dict[str, Any]]:
        self.api_requests += 1
        w = watch.Watch()  # type: ignore[no-untyped-call]
        kwargs: dict[str, Any] = {
            "resource_version": rv,
            "timeout_seconds": WATCH_TIMEOUT_S,
            "allow_watch_bookmarks": True,
        }
        stream: Any = w.stream
        if self.namespace is None or kind in CLUSTER_SCOPED:
            yield from stream(self.custom.list_cluster_custom_object, GROUP, VERSION, kind, **kwargs)
        else:
            yield from stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, kind, **kwargs)

    def _run(self, loop: asyncio.AbstractEventLoop, kind: str) -> None:
        rv: str | None = None
        warned = False
        while not self._stop.is_set():
            try:
                if rv is None:
                    items, rv = self._list(kind)
                    loop.call_soon_threadsafe(self._replace, kind, items)
                for event in self._stream(kind, rv):
                    if self._stop.is_set():
                        return
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        rv = None  # 410 Gone (or worse): list again
                        break
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if event["type"] != "BOOKMARK":
                        loop.call_soon_threadsafe(self._apply, kind, event["type"], obj)
            except ApiException as exc:
                rv = None if exc.status == 410 else rv
                errors = self.template_errors if kind in TEMPLATE_KINDS else self.errors
                loop.call_soon_threadsafe(errors.__setitem__, kind, f"{exc.status} {exc.reason}")
                optional = exc.status == 403 and kind in TEMPLATE_KINDS
                if not (optional and warned):  # said once: these credentials may not read templates
                    log.warning("watch %s: %s %s", kind, exc.status, exc.reason)
                warned = warned or optional
                self._stop.wait(FORBIDDEN_RETRY_S if optional else 1)
            except Exception as exc:  # a dropped connection: resume from the last resourceVersion
                log.warning("watch %s: %s", kind, exc)
                self._stop.wait(1)

    # ---- on the event loop -----------------------------------------------------------------------
    def _replace(self, kind: str, items: list[JSON]) -> None:
        old = self.objects[kind]
        self.objects[kind] = {_key(o): o for o in items}
        if kind in TEMPLATE_KINDS:  # nothing on a page changes by itself: charts read them when drawn
            self.template_errors.pop(kind, None)
            return
        self.synced[kind] = True
        self.errors.pop(kind, None)
        for key in set(old) | set(self.objects[kind]):
            if old.get(key) is not self.objects[kind].get(key):
                self._notify(Change(kind, *key, deleted=key not in self.objects[kind]))
        for obj in items:
            self._sample(kind, obj)

    def _apply(self, kind: str, type_: str, obj: JSON) -> None:
        key = _key(obj)
        if kind in TEMPLATE_KINDS:
            if type_ == "DELETED":
                self.objects[kind].pop(key, None)
            else:
                self.objects[kind][key] = obj
            return
        if type_ == "DELETED":
            self.objects[kind].pop(key, None)
            self.match_rates.pop(key, None)
            self.gate_results.pop(key, None)
        else:
            self.objects[kind][key] = obj
            self._sample(kind, obj)
        self._notify(Change(kind, *key, deleted=type_ == "DELETED"))

    def _sample(self, kind: str, obj: JSON) -> None:
        if kind == "strategyrollouts":
            self._sample_gates(obj)
        if kind != "shadowruns":
            return
        rate = ((obj.get("status") or {}).get("decisions") or {}).get("matchRate")
        if isinstance(rate, int | float):
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            samples = self.match_rates.setdefault(key, deque(maxlen=MATCH_SAMPLES))
            if not samples or samples[-1][1] != rate:
                samples.append((time.time(), float(rate)))

    def _sample_gates(self, obj: JSON) -> None:
        """Each new evaluation of a gate Prometheus cannot chart (a webhook: a template may be one)."""
        spec_gates = (obj.get("spec") or {}).get("gates") or []
        wanted = {
            g.get("name") for g in spec_gates if isinstance(g, dict) and (g.get("webhook") or g.get("templateRef"))
        }
        if not wanted:
            return
        per_gate = self.gate_results.setdefault(_key(obj), {})
        for gate in (obj.get("status") or {}).get("gates") or []:
            name, at, result = gate.get("name"), gate.get("evaluatedAt"), gate.get("result")
            if name not in wanted or not isinstance(at, str) or not isinstance(result, str):
                continue
            try:
                ts = datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            samples = per_gate.setdefault(name, deque(maxlen=GATE_SAMPLES))
            if not samples or samples[-1][0] < ts:
                value = gate.get("value")
                samples.append((ts, result, float(value) if isinstance(value, int | float) else None))

    def _notify(self, change: Change) -> None:
        for sub in self.subscribers:
            sub.push(change)


def _key(obj: JSON) -> tuple[str, str]:
    meta = obj["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])
