"""What the demo prints while it runs: the plugin's own renderers (its `get` row, the symbol map)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from demo.world import World
from strategy_rollouts.cli.render_rollout import rollouts_table
from strategy_rollouts.cli.render_symbols import symbol_map

DONE = ("Succeeded", "RolledBack", "Invalid")


def heading(console: Console, text: str) -> None:
    console.print(f"\n[bold]==> {text}[/]")


def rollout_view(console: Console, obj: dict[str, Any]) -> None:
    """`kubectl strategy get` of the rollout, then its symbol map."""
    console.print(rollouts_table([obj], datetime.now(UTC)))
    symbols = symbol_map(obj)
    if symbols is not None:
        console.print(symbols)
    console.print()


def _moment(obj: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a new picture worth printing: phase, position, and every key's owner."""
    st = obj.get("status") or {}
    owners = tuple(tuple(sorted((t.get("assignments") or {}).items())) for t in st.get("targets") or [])
    return st.get("phase"), st.get("stage"), st.get("stepIndex"), st.get("canaryWeight"), owners


@dataclass(frozen=True)
class Followed:
    obj: dict[str, Any]  # the rollout's last body
    most_canary_keys: int  # the most keys the canary owned at once (draining ones not counted)
    weights: list[int]  # each canary weight it went through, in order


def follow_rollout(world: World, name: str, canary: str, timeout: float) -> Followed:
    """Print the rollout each time its position or symbol map changes, until its run of `canary` ends
    (an earlier run's final phase does not count)."""
    deadline = time.monotonic() + timeout
    last: tuple[Any, ...] | None = None
    most, weights = 0, list[int]()
    while time.monotonic() < deadline:
        obj = world.get("strategyrollout", name)
        st = (obj or {}).get("status") or {}
        if obj is not None and st.get("canaryVersion") == canary:
            moment = _moment(obj)
            if moment != last:
                last = moment
                rollout_view(world.console, obj)
            owned = [k for t in st.get("targets") or [] for k, v in (t.get("assignments") or {}).items() if v == canary]
            most = max(most, len(owned))
            weight = st.get("canaryWeight")
            if weight and (not weights or weights[-1] != weight):
                weights.append(weight)
            if st.get("phase") in DONE:
                return Followed(obj, most, weights)
        time.sleep(0.5)
    raise TimeoutError(f"rollout {name} did not end within {timeout:.0f}s")
