"""The notification sender: one task per operator process, delivering what status records as pending.

Intent first: a pass writes each notification into `status.notifications.pending` in the same write as
the transition that caused it (engine/notifications.py). Every watch event of every kind is offered
here; the sender delivers each pending entry with Apprise and then removes it by a JSON merge patch
that also records `lastDelivered` (guarded by the object's uid, so a recreated object with the same name
is never touched). A crash after the transition is written delivers it after the restart (the initial
listing offers it again); a crash between delivery and that patch is the one case that repeats it.

Failures are retried with backoff for 10 minutes after the entry was recorded (`at`, in status, so the
window survives restarts), then a Warning Event `NotificationFailed` and `lastFailed`, and the entry is
dropped. Nothing here runs inside a reconcile: a slow or failing receiver delays only its own entry.
Apprise is synchronous: it runs on this sender's own small thread pool, never on the event loop and
never on the pool the Kubernetes calls use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from strategy_rollouts.api.common import API_VERSION
from strategy_rollouts.api.notify import PendingNotification, SentNotification
from strategy_rollouts.engine.notifications import retry_at
from strategy_rollouts.operator.clients.credentials import CredentialsError
from strategy_rollouts.operator.clients.kube import KINDS, Conflict, Rejected

if TYPE_CHECKING:
    from strategy_rollouts.operator.context import Context

log = logging.getLogger(__name__)
PLURALS = {kind: plural for plural, kind in KINDS.items()}
SENDERS = 4  # threads (and concurrent deliveries): a hanging receiver holds one, the others go on
SEND_TIMEOUT_S = 30.0
RECORD_RETRY = timedelta(seconds=5)
# Events whose message is bad news: Apprise shows them as failures (red in Slack, an alert in PagerDuty).
BAD_NEWS = frozenset({"GateFailed", "Inconclusive", "RolledBack", "Aborted", "TradingStopped", "Frozen"})


@dataclass
class Job:
    kind: str
    namespace: str
    name: str
    uid: str
    id: str
    entry: PendingNotification
    due: datetime
    failures: int = 0
    delivered: bool = False  # sent; its removal from status not yet written
    given_up: bool = False
    running: bool = False


def deliver(urls: Sequence[str], title: str, body: str, bad_news: bool) -> str | None:
    """Send one message to every URL (in a worker thread); None when all accepted it, else why not."""
    import apprise  # heavy: only operators whose objects notify pay for it

    # Apprise's own log lines can carry a URL, and URLs carry tokens: only our own messages are logged.
    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)
    sender = apprise.Apprise()
    for n, url in enumerate(urls, start=1):
        if not sender.add(url):
            return f"line {n} of the Secret is not an Apprise URL"
    kind = apprise.NotifyType.FAILURE if bad_news else apprise.NotifyType.INFO
    return None if sender.notify(body=body, title=title, notify_type=kind) else "a receiver did not accept it"


class Notifier:
    """Context.notifier: pending entries by object uid, their retry state, and the sender task."""

    def __init__(self) -> None:
        self._jobs: dict[str, dict[str, Job]] = {}
        # Delivered or given up, until the object's status no longer lists them (a stale watch event).
        self._finished: dict[str, set[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._attempts: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None
        self._pool: ThreadPoolExecutor | None = None

    # ---- what the watch delivers --------------------------------------------------------------
    def offer(self, ctx: Context, kind: str, obj: Mapping[str, Any]) -> None:
        """Every watch event of every kind: start jobs for new pending entries, forget recorded ones."""
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        raw = ((obj.get("status") or {}).get("notifications") or {}).get("pending") or {}
        if not uid or (not raw and uid not in self._jobs and uid not in self._finished):
            return
        listed = set(raw)
        finished = self._finished.get(uid, set()) & listed
        jobs = self._jobs.get(uid, {})
        jobs = {i: j for i, j in jobs.items() if i in listed or j.running}
        now = datetime.now(UTC)
        for id_, value in raw.items():
            if id_ in jobs or id_ in finished:
                continue
            try:
                entry = PendingNotification.model_validate(value)
            except ValidationError:
                where = f"{meta.get('namespace')}/{meta.get('name')}"
                log.warning("%s %s: pending notification %s does not parse; skipped", kind, where, id_)
                continue
            jobs[id_] = Job(kind, meta.get("namespace", ""), meta.get("name", ""), uid, id_, entry, now)
        self._store(uid, jobs, finished)
        if jobs:
            self._start(ctx)

    def forget(self, uid: str) -> None:
        """The object is gone: nothing of it is sent any more."""
        self._jobs.pop(uid, None)
        self._finished.pop(uid, None)

    def _store(self, uid: str, jobs: dict[str, Job], finished: set[str]) -> None:
        if jobs:
            self._jobs[uid] = jobs
        else:
            self._jobs.pop(uid, None)
        if finished:
            self._finished[uid] = finished
        else:
            self._finished.pop(uid, None)

    # ---- the sender task ------------------------------------------------------------------------
    def _start(self, ctx: Context) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(ctx), name="notifier")
        self._wake.set()

    async def _run(self, ctx: Context) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            now = datetime.now(UTC)
            soonest: datetime | None = None
            for jobs in list(self._jobs.values()):
                for job in list(jobs.values()):
                    if job.running:
                        continue
                    if job.due > now:
                        soonest = job.due if soonest is None else min(soonest, job.due)
                    elif len(self._attempts) < SENDERS:  # else: a finishing attempt wakes us
                        job.running = True
                        task = asyncio.create_task(self._attempt(ctx, job), name=f"notify:{job.id}")
                        self._attempts.add(task)
                        task.add_done_callback(self._attempts.discard)
            timeout = None if soonest is None else max((soonest - now).total_seconds(), 0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _attempt(self, ctx: Context, job: Job) -> None:
        try:
            if not ctx.leader.acting():  # a standby sends nothing; it looks again when it may lead
                job.due = datetime.now(UTC) + timedelta(seconds=ctx.leader.timing.retry_s)
                return
            if not job.delivered and not job.given_up:
                error = await self._send(ctx, job)
                if error is None:
                    job.delivered = True
                else:
                    job.failures += 1
                    window = timedelta(seconds=ctx.settings.notify_retry_window_s)
                    later = retry_at(job.entry.at, job.failures, datetime.now(UTC), window)
                    if later is not None:
                        log.info(
                            "notification %s of %s %s/%s failed (%s); retry at %s",
                            job.id,
                            job.kind,
                            job.namespace,
                            job.name,
                            error,
                            later.isoformat(),
                        )
                        job.due = later
                        return
                    job.given_up = True
                    self._warn(job, error, window)
            await self._record(ctx, job, "Delivered" if job.delivered else "Failed")
            self._finish(job)
        except (Conflict, Rejected):
            self._finish(job)  # the object was recreated: the uid guard refused
        except ApiException as exc:
            if exc.status == 404:
                self._finish(job)  # the object is gone
            else:
                job.due = datetime.now(UTC) + RECORD_RETRY
        except Exception:
            log.exception("notification %s of %s %s/%s", job.id, job.kind, job.namespace, job.name)
            job.due = datetime.now(UTC) + RECORD_RETRY
        finally:
            job.running = False
            if self._wake is not None:
                self._wake.set()

    async def _send(self, ctx: Context, job: Job) -> str | None:
        try:
            text = await ctx.secret(job.namespace, job.entry.to)
        except CredentialsError as exc:
            return str(exc)
        urls = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        if not urls:
            return f"Secret {job.namespace}/{job.entry.to.name} key {job.entry.to.key!r} holds no URL"
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="notify")
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(
            self._pool, deliver, urls, job.entry.title, job.entry.message, job.entry.event in BAD_NEWS
        )
        try:
            return await asyncio.wait_for(call, SEND_TIMEOUT_S)
        except TimeoutError:
            return f"no answer within {SEND_TIMEOUT_S:g}s"

    async def _record(self, ctx: Context, job: Job, outcome: Literal["Delivered", "Failed"]) -> None:
        """Remove the entry and record the outcome, in one merge patch guarded by the object's uid.

        Not guarded by a resourceVersion: the patch is idempotent by construction. It deletes the one
        entry `job.id` (ids are unique per notification; deleting a deleted key is a no-op) and sets
        lastDelivered / lastFailed, which no pass reads to decide anything. So an old leader's copy
        landing late, even after a new leader delivered and recorded the same entry, changes nothing a
        reconcile acts on; at worst lastDelivered names this notification rather than a newer one.
        """
        sent = SentNotification(
            id=job.id,
            event=job.entry.event,
            occurrence=job.entry.occurrence,
            at=datetime.now(UTC),
            outcome=outcome,
        )
        field = "lastDelivered" if outcome == "Delivered" else "lastFailed"
        patch = {"notifications": {"pending": {job.id: None}, field: sent.wire()}}
        written = await ctx.kube.merge_status(PLURALS[job.kind], job.namespace, job.name, patch, uid=job.uid)
        if written:
            ctx.watched.offer(written)
        log.info("notification %s of %s %s/%s: %s", job.id, job.kind, job.namespace, job.name, outcome)

    def _warn(self, job: Job, error: str, window: timedelta) -> None:
        body = {
            "apiVersion": API_VERSION,
            "kind": job.kind,
            "metadata": {"name": job.name, "namespace": job.namespace, "uid": job.uid},
        }
        minutes = f"{window.total_seconds() / 60:g} minutes"
        message = f"{job.entry.event} notification {job.id} not delivered for {minutes}, dropped: {error}"
        log.warning("%s %s/%s: %s", job.kind, job.namespace, job.name, message)
        kopf.event(cast(kopf.Body, body), type="Warning", reason="NotificationFailed", message=message[:1000])

    def _finish(self, job: Job) -> None:
        jobs = self._jobs.get(job.uid)
        if jobs is not None and jobs.get(job.id) is job:
            del jobs[job.id]
            if not jobs:
                del self._jobs[job.uid]
        self._finished.setdefault(job.uid, set()).add(job.id)

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._attempts) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
