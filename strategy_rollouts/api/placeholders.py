"""Literal `{{name}}` substitution in Prometheus queries: no template engine, no eval."""

from __future__ import annotations

import re
from collections.abc import Mapping

ROLLOUT_PLACEHOLDERS = frozenset(
    {
        "strategy",
        "namespace",
        "stage",
        "stable.version",
        "canary.version",
        "stable.deployment",
        "canary.deployment",
        "interval",
    }
)
# In a ShadowRun `live.*` and `shadow.*` stand for stable and canary.
SHADOW_PLACEHOLDERS = ROLLOUT_PLACEHOLDERS | {
    "live.version",
    "shadow.version",
    "live.deployment",
    "shadow.deployment",
}
PARITY_PLACEHOLDERS = frozenset({"strategy", "namespace", "window", "step"})

_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.-]*)\s*\}\}")


def placeholders_in(text: str) -> list[str]:
    return [m.group(1) for m in _TOKEN.finditer(text)]


def unknown_placeholders(text: str, known: frozenset[str]) -> list[str]:
    return [name for name in placeholders_in(text) if name not in known]


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace every `{{name}}`; an unknown name raises KeyError naming it (validated earlier as InvalidSpec)."""

    def _value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"unknown placeholder {{{{{name}}}}}")
        return values[name]

    return _TOKEN.sub(_value, text)
