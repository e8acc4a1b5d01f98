"""The operator's allow-lists applied to one spec (API.md "Credentials and trust")."""

from __future__ import annotations

from collections.abc import Iterable

from strategy_rollouts.api.common import PrometheusConnection
from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.engine.allowlist import spec_errors
from strategy_rollouts.operator.context import Context


def trust_errors(
    ctx: Context, prometheus: PrometheusConnection | None, gates: Iterable[GateSpec], field: str
) -> list[str]:
    """Addresses outside `--allowed-prometheus` / `--allowed-webhook`: InvalidSpec, the object does not act."""
    address = prometheus.address if prometheus is not None else None
    s = ctx.settings
    return spec_errors(address, gates, field, s.allowed_prometheus, s.allowed_webhooks)
