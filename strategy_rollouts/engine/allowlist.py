"""Where the operator may send credentials: the allow-lists of its Helm values (`security.allowed*`).

An entry is a URL prefix: scheme and host[:port] must be equal and the path must start with the
entry's path, so `https://risk.internal` does not admit `https://risk.internal.evil.example`.
An empty list restricts nothing (the default, as before the lists existed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from strategy_rollouts.api.gates import GateSpec


def allowed(url: str, prefixes: Sequence[str]) -> bool:
    if not prefixes:
        return True
    target = urlsplit(url)
    for prefix in prefixes:
        entry = urlsplit(prefix)
        if (target.scheme, target.netloc.lower()) != (entry.scheme, entry.netloc.lower()):
            continue
        path = entry.path.rstrip("/")
        if target.path == path or target.path.startswith(path + "/") or not path:
            return True
    return False


def address_errors(field: str, url: str | None, prefixes: Sequence[str], setting: str) -> list[str]:
    if url is None or allowed(url, prefixes):
        return []
    return [f"{field}: {url} is outside the operator's {setting} ({', '.join(prefixes)})"]


def spec_errors(
    prometheus_address: str | None,
    gates: Iterable[GateSpec],
    gates_field: str,
    allowed_prometheus: Sequence[str],
    allowed_webhooks: Sequence[str],
) -> list[str]:
    """Every address of a spec outside the allow-lists, each naming its field."""
    errors = address_errors(
        "spec.prometheus.address", prometheus_address, allowed_prometheus, "security.allowedPrometheus"
    )
    for i, gate in enumerate(gates):
        if gate.webhook is not None:
            errors += address_errors(
                f"{gates_field}[{i}].webhook.url", gate.webhook.url, allowed_webhooks, "security.allowedWebhooks"
            )
    return errors
