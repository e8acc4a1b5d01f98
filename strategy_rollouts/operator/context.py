"""Process-wide operator state: settings, the shared Kubernetes client, watch caches, daemon wake-ups."""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from strategy_rollouts.api.common import PrometheusConnection, SecretKeyRef
from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.operator.checks.calendars import Calendars
from strategy_rollouts.operator.clients.kube import Kube
from strategy_rollouts.operator.clients.notifier import Notifier
from strategy_rollouts.operator.clients.prometheus import Connection, Pool
from strategy_rollouts.operator.gates.template_cache import TemplateCache
from strategy_rollouts.operator.paritycheck.memory import ParityMemory
from strategy_rollouts.operator.runtime.leader import Leadership
from strategy_rollouts.operator.runtime.loops import Loops
from strategy_rollouts.operator.runtime.watched import Watched
from strategy_rollouts.operator.shadowrun.cache import ShadowCache
from strategy_rollouts.operator.shadowrun.memory import ShadowMemory

ObjectKey = tuple[str, str]  # (namespace, name)
CREDENTIALS_LABEL = "strategyrollouts.io/credentials"


class CredentialsError(Exception):
    """A Secret named in a spec is missing, lacks the key, or is not labelled as credentials."""


@dataclass
class Settings:
    prometheus_url: str = "http://127.0.0.1:9090"
    prometheus_timeout_s: float = 10.0
    # Longest a daemon sleeps with nothing due (a safety net; events wake it sooner).
    idle_recheck_s: float = 300.0
    error_backoff_s: float = 5.0
    # Gate evaluations reach status.gates when a result or counter changes, else at most this often
    # (the latest values are always on /metrics); between writes they live in memory.
    gate_status_refresh_s: float = 300.0
    # URL prefixes the operator may send credentials to (Helm `security.allowed*`); empty: any.
    allowed_prometheus: tuple[str, ...] = ()
    allowed_webhooks: tuple[str, ...] = ()
    # A notification is retried this long after it was recorded, then dropped (NotificationFailed).
    notify_retry_window_s: float = 600.0
    # The watched namespaces (--namespace); empty: every namespace. Namespaced RBAC cannot list across them.
    namespaces: tuple[str, ...] = ()


class Wakers:
    """One asyncio.Event per object, plus reverse indexes: a Deployment or ShadowRun event wakes its rollouts."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, ObjectKey], asyncio.Event] = {}
        self.watchers: dict[tuple[str, ObjectKey], set[tuple[str, ObjectKey]]] = defaultdict(set)

    def event(self, kind: str, key: ObjectKey) -> asyncio.Event:
        return self.events.setdefault((kind, key), asyncio.Event())

    def wake(self, kind: str, key: ObjectKey) -> None:
        ev = self.events.get((kind, key))
        if ev is not None:
            ev.set()
        for watcher in self.watchers.get((kind, key), ()):
            ev = self.events.get(watcher)
            if ev is not None:
                ev.set()

    def watch(self, watcher_kind: str, watcher: ObjectKey, kind: str, keys: list[ObjectKey]) -> None:
        """`watcher` wants a wake-up whenever one of `keys` (of `kind`) changes."""
        for key in keys:
            self.watchers[(kind, key)].add((watcher_kind, watcher))

    def forget(self, kind: str, key: ObjectKey) -> None:
        self.events.pop((kind, key), None)
        for watchers in self.watchers.values():
            watchers.discard((kind, key))


@dataclass
class RolloutMemory:
    """What the rollout adapter remembers between passes (never the truth: status is)."""

    # (namespace, name) -> (generation, status) of our last status write, to recognise its watch echo.
    own_writes: dict[ObjectKey, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    # (namespace, name) -> (resourceVersion, status): the engine's last decision on that version of the
    # object, including gate evaluations not worth a write of their own (rollouts.must_persist).
    working: dict[ObjectKey, tuple[str, Any]] = field(default_factory=dict)

    def forget(self, key: ObjectKey) -> None:
        self.own_writes.pop(key, None)
        self.working.pop(key, None)


@dataclass
class Context:
    """All of the operator process's state, handed to every handler through kopf's memo."""

    kube: Kube
    settings: Settings = field(default_factory=Settings)
    wakers: Wakers = field(default_factory=Wakers)
    watched: Watched = field(default_factory=Watched)
    loops: Loops = field(default_factory=Loops)
    rollouts: RolloutMemory = field(default_factory=RolloutMemory)
    ca_files: dict[str, str] = field(default_factory=dict)  # PEM -> temp file path
    prometheus: Pool = field(default_factory=Pool)
    shadow: ShadowMemory = field(default_factory=ShadowMemory)
    parity: ParityMemory = field(default_factory=ParityMemory)
    calendars: Calendars = field(default_factory=Calendars)
    notifier: Notifier = field(default_factory=Notifier)
    gate_templates: TemplateCache = field(default_factory=TemplateCache)
    leader: Leadership = field(default_factory=Leadership)  # disabled: acts always (no --leader-elect)
    shadow_cache: ShadowCache = field(default_factory=ShadowCache)  # ShadowRuns' watch-fed reads

    async def connection(self, namespace: str, override: PrometheusConnection | None) -> Connection:
        """The operator default, overridden per object; secrets read at use, never logged or stored."""
        if override is None:
            return Connection(self.settings.prometheus_url, self.settings.prometheus_timeout_s, pool=self.prometheus)
        token = await self._secret(namespace, override.bearer_token_secret_ref)
        ca = await self._secret(namespace, override.ca_secret_ref)
        return Connection(
            address=override.address or self.settings.prometheus_url,
            timeout_s=parse_duration(override.timeout).total_seconds(),
            bearer_token=token.strip() if token else None,
            ca_file=self._ca_file(ca) if ca else None,
            insecure_skip_verify=override.insecure_skip_verify,
            pool=self.prometheus,
        )

    async def _secret(self, namespace: str, ref: SecretKeyRef | None) -> str | None:
        if ref is None:
            return None
        try:
            return await self.secret(namespace, ref)
        except CredentialsError:
            return None

    async def secret(self, namespace: str, ref: SecretKeyRef) -> str:
        """One key of a Secret labelled as credentials; anything else raises CredentialsError naming it.

        Only labelled Secrets are read (API.md "Credentials and trust"), so a spec cannot make the
        operator disclose an arbitrary Secret of the namespace to a URL its author chose.
        """
        try:
            secret = await self.kube.maybe(self.kube.core.read_namespaced_secret, ref.name, namespace)
        except ApiException as exc:
            if exc.status != 403:
                raise
            # The chart grants Secrets per namespace (values rbac.secretNamespaces), never cluster-wide by default.
            raise CredentialsError(
                f"Secret {namespace}/{ref.name}: the operator may not read Secrets in namespace {namespace} "
                "(grant it: the chart's rbac.secretNamespaces)"
            ) from None
        if secret is None:
            raise CredentialsError(f"Secret {namespace}/{ref.name} not found")
        labels = (secret.metadata.labels if secret.metadata is not None else None) or {}
        if labels.get(CREDENTIALS_LABEL) != "true":
            raise CredentialsError(f'Secret {namespace}/{ref.name} lacks the label {CREDENTIALS_LABEL}: "true"')
        data = secret.data or {}
        if ref.key not in data:
            raise CredentialsError(f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
        return base64.b64decode(data[ref.key]).decode()

    def _ca_file(self, pem: str) -> str:
        """CA bundles go to a temp file (requests wants a path); the root filesystem may be read-only."""
        if pem not in self.ca_files:
            fd, path = tempfile.mkstemp(prefix="prometheus-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as handle:
                handle.write(pem)
            self.ca_files[pem] = path
        return self.ca_files[pem]
