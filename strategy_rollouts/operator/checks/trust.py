"""The operator's allow-lists applied to one spec (API.md "Credentials and trust")."""

from __future__ import annotations

from collections.abc import Iterable

from strategy_rollouts.api.common import PrometheusConnection, SecretKeyRef
from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.api.notify import NotifyRule
from strategy_rollouts.engine.allowlist import spec_errors
from strategy_rollouts.operator.clients.credentials import CredentialsError
from strategy_rollouts.operator.context import Context


def trust_errors(
    ctx: Context, prometheus: PrometheusConnection | None, gates: Iterable[GateSpec], field: str
) -> list[str]:
    """Addresses outside `--allowed-prometheus` / `--allowed-webhook`: InvalidSpec, the object does not act."""
    address = prometheus.address if prometheus is not None else None
    s = ctx.settings
    return spec_errors(address, gates, field, s.prometheus_allow, s.webhook_allow)


async def secret_errors(ctx: Context, namespace: str, refs: Iterable[tuple[str, SecretKeyRef | None]]) -> list[str]:
    """InvalidSpec messages for named Secrets the operator may not or cannot read (never their values)."""
    out: list[str] = []
    for field, ref in refs:
        if ref is None:
            continue
        try:
            await ctx.secret(namespace, ref)
        except CredentialsError as exc:
            out.append(f"{field}: {exc}")
    return out


def prometheus_refs(prometheus: PrometheusConnection | None) -> list[tuple[str, SecretKeyRef | None]]:
    """spec.prometheus's Secrets: an unlabelled one is InvalidSpec, not a query sent without it."""
    if prometheus is None:
        return []
    return [
        ("spec.prometheus.bearerTokenSecretRef", prometheus.bearer_token_secret_ref),
        ("spec.prometheus.caSecretRef", prometheus.ca_secret_ref),
    ]


def notify_refs(rules: Iterable[NotifyRule]) -> list[tuple[str, SecretKeyRef | None]]:
    """spec.notify's Secrets (their values are never shown, only whether they can be read)."""
    return [(f"spec.notify[{i}].to.secretRef", rule.to.secret_ref) for i, rule in enumerate(rules)]
