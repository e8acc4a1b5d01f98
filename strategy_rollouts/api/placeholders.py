"""Literal `{{name}}` substitution in Prometheus queries (no template engine, no eval), and the values
every kind substitutes (`placeholder_values`)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from strategy_rollouts.api.paritycheck import ParityCheckSpec
from strategy_rollouts.api.rollout import StrategyRolloutSpec
from strategy_rollouts.api.shadowrun import ShadowRunSpec

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


def placeholder_values(
    spec: StrategyRolloutSpec | ShadowRunSpec | ParityCheckSpec,
    namespace: str,
    stage: str | None = None,
    interval: str = "",
) -> dict[str, str]:
    """Every placeholder's value for one object of any kind (the names its *_PLACEHOLDERS set allows).

    StrategyRollout: the stage (`""` when None) and versions. ShadowRun: `{{live.*}}` / `{{shadow.*}}`, and the
    rollout names `{{stable.*}}` / `{{canary.*}}` for the same. ParityCheck: its window and step (it has no
    stage nor interval, so those arguments are ignored). `interval` is usually set per gate by the caller.
    """
    if isinstance(spec, ParityCheckSpec):
        return {"strategy": spec.strategy, "namespace": namespace, "window": spec.window, "step": spec.step}
    if isinstance(spec, ShadowRunSpec):
        return {
            "strategy": spec.strategy,
            "namespace": namespace,
            "stage": stage or "",
            "interval": interval,
            "live.version": spec.live.version,
            "shadow.version": spec.shadow.version,
            "live.deployment": spec.live.deployment,
            "shadow.deployment": spec.shadow.deployment,
            "stable.version": spec.live.version,
            "canary.version": spec.shadow.version,
            "stable.deployment": spec.live.deployment,
            "canary.deployment": spec.shadow.deployment,
        }
    return {
        "strategy": spec.strategy,
        "namespace": namespace,
        "stage": stage or "",
        "stable.version": spec.stable.version,
        "canary.version": spec.canary.version,
        "stable.deployment": spec.stable.deployment,
        "canary.deployment": spec.canary.deployment,
        "interval": interval,
    }
