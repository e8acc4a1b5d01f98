"""The operator's settings (command line and Helm values), one object for the process."""

from __future__ import annotations

from dataclasses import dataclass


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
