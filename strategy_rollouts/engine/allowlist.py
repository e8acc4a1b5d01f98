"""Where the operator and the dashboard may send a request: the chart's `security.*` values.

An address is allowed when it is well formed (http or https, a host, no `user@`, no backslash,
whitespace or control character: a URL that two parsers read differently could reach another host
than the one checked) and either
- it matches an entry of `prefixes`: scheme and host[:port] equal and the path below the entry's, so
  `https://risk.internal` does not admit `https://risk.internal.evil.example`; or
- `cluster_services` is on and its host is an in-cluster Service name: `NAME.NAMESPACE.svc`,
  `NAME.NAMESPACE.svc.cluster.local` or a single DNS label (`prometheus`); never `localhost`, a
  number (`2130706433` is 127.0.0.1 to a resolver) nor a name with a trailing dot.

`AllowList.UNRESTRICTED` admits anything: only an operator started with no allow-list option at all
(local development). The chart always passes one, and the dashboard has no unrestricted mode.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import SplitResult, urlsplit

from strategy_rollouts.api.gates import GateSpec

# A Service name is an RFC 1035 label (a letter first); a namespace an RFC 1123 label.
_SERVICE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_CLUSTER_SUFFIXES = (("svc",), ("svc", "cluster", "local"))
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True)
class AllowList:
    prefixes: tuple[str, ...] = ()
    cluster_services: bool = False
    unrestricted: bool = False

    UNRESTRICTED: ClassVar[AllowList]

    def describe(self) -> str:
        """What is allowed, in words (for messages)."""
        if self.unrestricted:
            return "any address"
        parts = list(self.prefixes) + (["in-cluster Service names"] if self.cluster_services else [])
        return ", ".join(parts) or "nothing"


AllowList.UNRESTRICTED = AllowList(unrestricted=True)


def _split(url: str) -> SplitResult | None:
    """The URL's parts when it is well formed for our purpose, else None."""
    if _UNSAFE.search(url):
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return parts


def cluster_service(host: str) -> bool:
    """An in-cluster Service name: `NAME.NS.svc`, `NAME.NS.svc.cluster.local` or one label."""
    labels = host.lower().split(".")
    if len(labels) == 1:
        return host != "localhost" and _SERVICE.fullmatch(labels[0]) is not None
    for suffix in _CLUSTER_SUFFIXES:
        head = labels[: -len(suffix)]
        if tuple(labels[-len(suffix) :]) == suffix and head and all(_LABEL.fullmatch(label) for label in head):
            return True
    return False


def allowed(url: str, allow: AllowList) -> bool:
    if allow.unrestricted:
        return True
    target = _split(url)
    if target is None:
        return False
    if allow.cluster_services and cluster_service(target.hostname or ""):
        return True
    for prefix in allow.prefixes:
        entry = urlsplit(prefix)
        if (target.scheme, target.netloc.lower()) != (entry.scheme, entry.netloc.lower()):
            continue
        path = entry.path.rstrip("/")
        if target.path == path or target.path.startswith(path + "/") or not path:
            return True
    return False


def address_errors(field: str, url: str | None, allow: AllowList, setting: str) -> list[str]:
    if url is None or allowed(url, allow):
        return []
    return [f"{field}: {url} is outside the operator's {setting} ({allow.describe()})"]


def spec_errors(
    prometheus_address: str | None,
    gates: Iterable[GateSpec],
    gates_field: str,
    allowed_prometheus: AllowList,
    allowed_webhooks: AllowList,
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
