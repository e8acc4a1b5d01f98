"""What the demo prints while it runs: the plugin's own renderers (its `get` row, the symbol map)."""

from __future__ import annotations

import time
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


def follow_rollout(world: World, name: str, canary: str, timeout: float) -> dict[str, Any]:
    """Print the rollout each time its position or symbol map changes, until its run of `canary` ends
    (an earlier run's final phase does not count); its last body."""
    deadline = time.monotonic() + timeout
    last: tuple[Any, ...] | None = None
    while time.monotonic() < deadline:
        obj = world.get("strategyrollout", name)
        if obj is not None:
            moment = _moment(obj)
            if moment != last:
                last = moment
                rollout_view(world.console, obj)
            st = obj.get("status") or {}
            if st.get("canaryVersion") == canary and st.get("phase") in DONE:
                return obj
        time.sleep(0.5)
    raise TimeoutError(f"rollout {name} did not end within {timeout:.0f}s")
