"""Leader election through a coordination.k8s.io/v1 Lease, with fencing (API.md "Operator: high
availability and admission").

Every replica watches and caches (kopf's watches stay warm); only the leader acts. The timing is
client-go's (lease 15 s, renew deadline 10 s, retry 2 s) and so is the rule for taking a lease: a
candidate takes it only after the Lease's record has not changed for a whole lease duration on its
OWN monotonic clock (other hosts' clocks are never compared).

Fencing: the leader acts only while its last successful renewal was SENT less than the renew
deadline ago (monotonic). A renewal sent at t0 reaches the API server at t1 >= t0, and a candidate
sees that record at t2 >= t1, so it can take the lease at t2 + lease >= t0 + lease, while the leader
stopped acting at t0 + renew deadline: 5 s earlier. A process frozen (SIGSTOP, a VM pause) and
thawed after that finds its window closed before any action: every write of `Kube` checks
`Leadership.check` in the worker thread right before the request (Kube.fence). The request then
has `Timing.request_timeout_s` and one attempt; and it is conditional (a resourceVersion read before
the check), so should it still reach the API server after a new leader wrote the object, it fails
with 409 instead of overwriting (docs/high-availability.md states the bound).

The kubernetes client's own `leaderelection` package is not used: it is thread-based, wall-clock
timed, leads once (after losing it returns for good) and has no hook to fence writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from strategy_rollouts.operator.runtime import metrics

log = logging.getLogger(__name__)
Clock = Callable[[], float]
Action = Literal["create", "renew", "take", "wait"]


class NotLeader(Exception):
    """This replica may not act now (standby, or a leader whose renew deadline passed)."""


@dataclass(frozen=True)
class Timing:
    lease_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_s: float = 2.0

    @property
    def request_timeout_s(self) -> float:
        """How long a write may take (Kube.write_timeout_s): below the renew deadline, and no longer than
        lease - renew deadline, so a write whose fence check passed is answered, or given up by the
        client, before a standby can take the Lease (defaults: 5 s)."""
        return min(self.renew_deadline_s / 2, self.lease_s - self.renew_deadline_s)

    def errors(self) -> list[str]:
        """client-go's constraints: lease > renew deadline > retry > 0."""
        out = []
        if not self.lease_s > self.renew_deadline_s:
            out.append(f"--leader-elect-lease-duration ({self.lease_s}) must exceed the renew deadline")
        if not self.renew_deadline_s > self.retry_s > 0:
            out.append(f"--leader-elect-renew-deadline ({self.renew_deadline_s}) must exceed the retry period > 0")
        return out


@dataclass(frozen=True)
class Record:
    """What a Lease says (the fields that change on every renewal or transition)."""

    holder: str
    renew_time: str
    transitions: int


def decide(record: Record | None, identity: str, unchanged_since: float | None, now: float, timing: Timing) -> Action:
    """Pure: what a candidate does with the Lease it just read. `unchanged_since` is when (on our
    monotonic clock) we first saw this exact record; None for a record we had not seen before."""
    if record is None:
        return "create"
    if record.holder == identity:
        return "renew"
    if not record.holder:
        return "take"  # released by a leader that shut down cleanly
    if unchanged_since is not None and now - unchanged_since >= timing.lease_s:
        return "take"
    return "wait"


@dataclass
class Leadership:
    """This process's leadership (Context.leader). Disabled (no --leader-elect): always acting."""

    enabled: bool = False
    identity: str = ""
    timing: Timing = field(default_factory=Timing)
    clock: Clock = time.monotonic
    renewed_at: float | None = None  # when our last successful create/renew/take was sent
    started: bool = False  # kopf's startup ran: watches are starting, /readyz may say Ready
    seen: Record | None = None
    seen_since: float | None = None
    gained: asyncio.Event = field(default_factory=asyncio.Event)

    def acting(self) -> bool:
        if not self.enabled:
            return True
        return self.renewed_at is not None and self.clock() - self.renewed_at < self.timing.renew_deadline_s

    def check(self) -> None:
        """Raise NotLeader unless this replica may act now (the fence every write passes)."""
        if not self.acting():
            metrics.fenced_total.inc()
            raise NotLeader(f"{self.identity} is not the leader")

    def role(self) -> str:
        return "leader" if self.acting() else "standby"

    def observe(self, record: Record | None) -> float | None:
        """Remember when this exact record was first seen; returns that time (None: new just now)."""
        now = self.clock()
        if record is None or record != self.seen:
            self.seen, self.seen_since = record, now
            return None
        return self.seen_since

    def renewed(self, sent_at: float, record: Record) -> None:
        self.renewed_at = sent_at
        self.seen, self.seen_since = record, self.clock()

    def next_attempt_in(self) -> float:
        """The retry period, or sooner when the lease we watch becomes takeable before the next one."""
        if self.acting() or self.seen is None or self.seen_since is None or not self.seen.holder:
            return self.timing.retry_s
        takeable = self.seen_since + self.timing.lease_s - self.clock()
        return max(0.05, min(self.timing.retry_s, takeable))

    async def until_acting(self, stopped: Callable[[], bool]) -> None:
        """Return once this replica may act (at once when it may), or when `stopped()`."""
        while not self.acting() and not stopped():
            self.gained.clear()
            with contextlib.suppress(TimeoutError):  # re-check the stop (and the clock) every retry period
                await asyncio.wait_for(self.gained.wait(), self.timing.retry_s)


def identity() -> str:
    """The pod's name (the chart sets POD_NAME) or the host name, plus the pid: unique per process."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}"


def namespace(flag: str | None) -> str:
    """The flag, else the pod's namespace (POD_NAMESPACE, or the ServiceAccount mount), else default."""
    if flag:
        return flag
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
            return handle.read().strip() or "default"
    except OSError:
        return "default"


def record_of(lease: Any) -> Record:
    spec = lease.spec
    renew = spec.renew_time.isoformat() if spec.renew_time is not None else ""
    return Record(spec.holder_identity or "", renew, spec.lease_transitions or 0)


@dataclass
class Elector:
    """The campaign: read the Lease every retry period, create / renew / take it when `decide` says."""

    leadership: Leadership
    coordination: client.CoordinationV1Api
    name: str
    namespace: str
    on_gained: Callable[[], Coroutine[Any, Any, None]] | None = None  # run beside the campaign: renewals never wait
    on_change: Callable[[bool], None] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self) -> None:
        me = self.leadership
        was = False
        while True:
            try:
                await self.attempt()
            except ApiException as exc:  # 409: someone else wrote first; anything else: next period
                if exc.status != 409:
                    log.warning("lease %s/%s: API %s %s", self.namespace, self.name, exc.status, exc.reason)
            except Exception:  # the API server is down or restarting: the deadline fences us meanwhile
                log.warning("lease %s/%s: renewal failed", self.namespace, self.name, exc_info=True)
            now = me.acting()
            if now != was:
                log.info("%s is now %s (lease %s/%s)", me.identity, me.role(), self.namespace, self.name)
                if self.on_change is not None:
                    self.on_change(now)
                if now:
                    me.gained.set()
                    if self.on_gained is not None:
                        task = asyncio.create_task(self.on_gained(), name="on-gained")
                        self.tasks.add(task)
                        task.add_done_callback(self.tasks.discard)
            was = now
            await asyncio.sleep(me.next_attempt_in())

    async def attempt(self) -> None:
        me = self.leadership
        lease = await self._call(self.coordination.read_namespaced_lease, self.name, self.namespace, missing=True)
        record = None if lease is None else record_of(lease)
        since = me.observe(record)
        action = decide(record, me.identity, since, me.clock(), me.timing)
        if action == "wait":
            return
        sent_at = me.clock()
        stamp = datetime.now(UTC)
        if lease is None:
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(stamp, stamp, 0),
            )
            written = await self._call(self.coordination.create_namespaced_lease, self.namespace, body)
        else:
            old = lease.spec
            if action == "renew":
                lease.spec = self._spec(old.acquire_time or stamp, stamp, old.lease_transitions or 0)
            else:  # take: a new term
                lease.spec = self._spec(stamp, stamp, (old.lease_transitions or 0) + 1)
            # replace carries the resourceVersion we read: a concurrent taker gets 409, not both the lease
            written = await self._call(self.coordination.replace_namespaced_lease, self.name, self.namespace, lease)
        me.renewed(sent_at, record_of(written))

    def _spec(self, acquired: datetime, renewed: datetime, transitions: int) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.leadership.identity,
            lease_duration_seconds=int(self.leadership.timing.lease_s),
            acquire_time=acquired,
            renew_time=renewed,
            lease_transitions=transitions,
        )

    async def release(self) -> None:
        """On a clean shutdown (after the loops stopped): stop acting and hand the lease over at once."""
        me = self.leadership
        if me.renewed_at is None:
            return
        me.renewed_at = None
        try:
            lease = await self._call(self.coordination.read_namespaced_lease, self.name, self.namespace, missing=True)
            if lease is None or lease.spec.holder_identity != me.identity:
                return
            lease.spec.holder_identity = ""
            lease.spec.lease_duration_seconds = 1
            await self._call(self.coordination.replace_namespaced_lease, self.name, self.namespace, lease)
            log.info("%s released lease %s/%s", me.identity, self.namespace, self.name)
        except Exception:  # the others take it after the lease duration anyway
            log.warning("releasing lease %s/%s failed", self.namespace, self.name, exc_info=True)

    async def _call(self, fn: Callable[..., Any], *args: Any, missing: bool = False) -> Any:
        """Lease calls bypass Kube's semaphore and fence: a flood of reconciles must not starve renewal,
        and renewing is what a standby does to become leader. Each call is bounded by the deadline."""
        timeout = self.leadership.timing.renew_deadline_s / 2
        try:
            return await asyncio.to_thread(fn, *args, _request_timeout=timeout)
        except ApiException as exc:
            if missing and exc.status == 404:
                return None
            raise
