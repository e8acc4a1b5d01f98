"""The symbol map of a StrategyRollout: which key trades on which version, per stage target.

Read from `status.targets[]` (what the operator recorded and publishes in the routing ConfigMaps), grouped
by owner so it reads without colour too: canary, stable, draining (with the owner it will get), nobody.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from strategy_rollouts.api.rollout import DRAINING, StrategyRolloutStatus, TargetStatus
from strategy_rollouts.read.views import status_of

CANARY_STYLE, STABLE_STYLE, DRAINING_STYLE, NOBODY_STYLE = "green", "blue", "yellow", "dim"


def owners(target: TargetStatus, stable: str | None, canary: str | None) -> list[tuple[str, Text]]:
    """(label, keys) rows of one target: canary, stable, draining, then any other owner, keys sorted."""
    by_owner: dict[str, list[str]] = {}
    for key, owner in sorted(target.assignments.items()):
        by_owner.setdefault(owner, []).append(key)
    pending = target.pending
    if target.segmented is not None:  # one "key" per segment of the hash order, named by where it starts
        pending = {}
        for s in target.segmented.segments:
            label = f"sha256≥{s.start or '0'}"
            by_owner.setdefault(s.owner, []).append(label)
            pending |= {label: s.next} if s.next is not None else {}
    rows: list[tuple[str, Text]] = []
    roles = [(canary, "canary", CANARY_STYLE)] if canary is not None and canary != stable else []
    for version, role, style in [*roles, (stable, "stable", STABLE_STYLE)]:
        keys = by_owner.pop(version, []) if version is not None else []
        rows.append((f"{version or '-'} ({role})", Text(" ".join(keys) or "-", style=style if keys else "dim")))
    draining = by_owner.pop(DRAINING, [])
    if draining:
        text = Text()
        for i, key in enumerate(draining):
            text.append(("  " if i else "") + f"{key} → {pending.get(key, '?')}", style=DRAINING_STYLE)
        rows.append(("draining", text))
    for owner, keys in sorted(by_owner.items()):  # "none" (nobody: trading stopped) or a version no longer named
        rows.append((owner, Text(" ".join(keys), style=NOBODY_STYLE)))
    return rows


def symbol_map(obj: dict[str, Any]) -> Table | None:
    """`Symbols` table (None before the rollout recorded any target)."""
    status = status_of(StrategyRolloutStatus, obj)
    if not status.targets:
        return None
    spec = obj.get("spec") or {}
    stable = status.stable_version or (spec.get("stable") or {}).get("version")
    canary = status.canary_version or (spec.get("canary") or {}).get("version")
    table = Table(title="Symbols", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("TARGET", "OWNER", "KEYS"):
        table.add_column(column, no_wrap=column != "KEYS")
    for target in status.targets:
        where = f"{target.namespace}/{target.config_map} {target.weight}%"
        if target.segmented is not None:
            where += f" ({target.segmented.keys:,} keys, segmented)"
        for i, (label, keys) in enumerate(owners(target, stable, canary)):
            table.add_row(where if i == 0 else "", label, keys)
    return table
