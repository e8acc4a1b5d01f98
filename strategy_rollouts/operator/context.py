"""Process-wide operator state handed to every handler through kopf's memo: the runtime's parts
(client, settings, caches, loops, leadership) and each kind's memory. Nothing here reads the world."""

from __future__ import annotations

from dataclasses import dataclass, field

from strategy_rollouts.api.common import PrometheusConnection, SecretKeyRef
from strategy_rollouts.operator.checks.calendars import Calendars
from strategy_rollouts.operator.clients.credentials import CaFiles, prometheus_connection, read_secret
from strategy_rollouts.operator.clients.kube import Kube
from strategy_rollouts.operator.clients.notifier import Notifier
from strategy_rollouts.operator.gates.cache import TemplateCache
from strategy_rollouts.operator.runtime.cache import WatchCache
from strategy_rollouts.operator.runtime.leader import Leadership
from strategy_rollouts.operator.runtime.loops import Loops
from strategy_rollouts.operator.runtime.settings import Settings
from strategy_rollouts.operator.runtime.wakers import ObjectKey, Wakers
from strategy_rollouts.operator.shadowrun.cache import ShadowCache
from strategy_rollouts.operator.shadowrun.memory import ShadowMemory
from strategy_rollouts.operator.strategyrollout.memory import RolloutMemory
from strategy_rollouts.read.prometheus import Connection, Pool

__all__ = ["Context", "ObjectKey", "Settings"]


@dataclass
class Context:
    """All of the operator process's state, handed to every handler through kopf's memo."""

    kube: Kube
    settings: Settings = field(default_factory=Settings)
    wakers: Wakers = field(default_factory=Wakers)
    watched: WatchCache = field(default_factory=WatchCache)
    loops: Loops = field(default_factory=Loops)
    rollouts: RolloutMemory = field(default_factory=RolloutMemory)
    ca_files: CaFiles = field(default_factory=CaFiles)
    prometheus: Pool = field(default_factory=Pool)
    shadow: ShadowMemory = field(default_factory=ShadowMemory)
    # The operator's own user name (SelfSubjectReview): `by` of the requests a ParityCheck sends. Kept
    # only once known; a failed lookup fails its pass and is asked again, never recorded as unknown.
    identity: str | None = None
    calendars: Calendars = field(default_factory=Calendars)
    notifier: Notifier = field(default_factory=Notifier)
    gate_templates: TemplateCache = field(default_factory=TemplateCache)
    leader: Leadership = field(default_factory=Leadership)  # disabled: acts always (no --leader-elect)
    shadow_cache: ShadowCache = field(default_factory=ShadowCache)  # ShadowRuns' watch-fed reads

    async def connection(
        self, namespace: str, override: PrometheusConnection | None, owner: tuple[str, str, str] | None = None
    ) -> Connection:
        """The operator default, overridden per object (clients/credentials.py); within `owner`'s
        budget of queries in flight (kind, namespace, name) when given."""
        s = self.settings
        conn = await prometheus_connection(
            self.kube, self.prometheus, self.ca_files, s.prometheus_url, s.prometheus_timeout_s, namespace, override
        )
        return conn.for_object(*owner) if owner is not None else conn

    async def secret(self, namespace: str, ref: SecretKeyRef) -> str:
        """One key of a Secret labelled as credentials (CredentialsError otherwise)."""
        return await read_secret(self.kube, namespace, ref)
