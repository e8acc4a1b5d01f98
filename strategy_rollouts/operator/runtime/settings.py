"""The operator's settings (command line and Helm values), one object for the process."""

from __future__ import annotations

from dataclasses import dataclass

from strategy_rollouts.engine.allowlist import AllowList


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
    # Where the operator may send requests (Helm `security.*`): URL prefixes, and in-cluster Service
    # names when `allow_cluster_services`. With none of the three set the operator restricts nothing
    # (local development, announced at start); the chart always sets them.
    allowed_prometheus: tuple[str, ...] = ()
    allowed_webhooks: tuple[str, ...] = ()
    allow_cluster_services: bool = False
    # A notification is retried this long after it was recorded, then dropped (NotificationFailed).
    notify_retry_window_s: float = 600.0
    # The watched namespaces (--namespace); empty: every namespace. Namespaced RBAC cannot list across them.
    namespaces: tuple[str, ...] = ()

    @property
    def restricted(self) -> bool:
        return bool(self.allowed_prometheus or self.allowed_webhooks or self.allow_cluster_services)

    @property
    def prometheus_allow(self) -> AllowList:
        """The listed prefixes and the operator's own --prometheus-url (its operator chose it)."""
        if not self.restricted:
            return AllowList.UNRESTRICTED
        return AllowList((self.prometheus_url, *self.allowed_prometheus), self.allow_cluster_services)

    @property
    def webhook_allow(self) -> AllowList:
        if not self.restricted:
            return AllowList.UNRESTRICTED
        return AllowList(self.allowed_webhooks, self.allow_cluster_services)
