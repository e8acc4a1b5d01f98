"""The plugin's symbol map: which key trades on which version (status.targets), shown in `status NAME`."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, RenderableType

from strategy_rollouts.cli.render_rollout import rollout_detail
from strategy_rollouts.cli.render_symbols import symbol_map


def text(renderable: RenderableType) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return str(out)


def rollout(targets: list[dict[str, Any]], stable: str = "v1.0.0", canary: str = "v2.0.0") -> dict[str, Any]:
    return {
        "metadata": {"name": "fib-rsi", "namespace": "demo"},
        "spec": {"strategy": "fib_rsi", "stable": {"version": stable}, "canary": {"version": canary}},
        "status": {"phase": "Progressing", "stableVersion": stable, "canaryVersion": canary, "targets": targets},
    }


def test_keys_grouped_by_owner_with_draining_and_its_next_owner() -> None:
    target = {
        "namespace": "demo",
        "configMap": "fib-rsi-routing",
        "weight": 50,
        "revision": 4,
        "assignments": {"BTC": "v2.0.0", "ETH": "v1.0.0", "SOL": "draining", "ADA": "v1.0.0"},
        "pending": {"SOL": "v2.0.0"},
        "drainingUntil": "2026-12-02T10:00:00Z",
    }
    lines = [line.split() for line in text(symbol_map(rollout([target])) or "").splitlines()]
    assert lines[0] == ["Symbols"]
    assert lines[2] == ["demo/fib-rsi-routing", "50%", "v2.0.0", "(canary)", "BTC"]
    assert lines[3] == ["v1.0.0", "(stable)", "ADA", "ETH"]
    assert lines[4] == ["draining", "SOL", "→", "v2.0.0"]
    assert len(lines) == 5


def test_a_version_that_owns_nothing_shows_a_dash_and_stopped_keys_show_as_none() -> None:
    target = {"namespace": "demo", "configMap": "cm", "assignments": {"BTC": "none", "ETH": "none"}}
    lines = [line.split() for line in text(symbol_map(rollout([target])) or "").splitlines()]
    assert lines[2][-3:] == ["v2.0.0", "(canary)", "-"]
    assert lines[3] == ["v1.0.0", "(stable)", "-"]
    assert lines[4] == ["none", "BTC", "ETH"]


def test_no_targets_no_map_and_status_shows_it_once_there_are() -> None:
    assert symbol_map(rollout([])) is None
    now = datetime(2026, 12, 2, tzinfo=UTC)
    assert "Symbols" not in text(rollout_detail(rollout([]), now))
    target = {"namespace": "demo", "configMap": "cm", "assignments": {"BTC": "v1.0.0"}}
    assert "v1.0.0 (stable)  BTC" in text(rollout_detail(rollout([target]), now))


def test_a_segmented_universe_lists_its_segments_by_owner() -> None:
    target = {
        "namespace": "demo",
        "configMap": "fib-rsi-routing",
        "weight": 10,
        "revision": 2,
        "drainingUntil": "2026-12-02T10:00:00Z",
        "segmented": {
            "keys": 100_000,
            "sha256": "ab" * 32,
            "segments": [
                {"start": "", "owner": "v2.0.0"},
                {"start": "199b", "owner": "draining", "next": "v2.0.0"},
                {"start": "7f", "owner": "v1.0.0"},
            ],
        },
    }
    shown = text(symbol_map(rollout([target])) or "")
    assert "100,000 keys, segmented" in shown
    assert "sha256≥0" in shown and "sha256≥199b → v2.0.0" in shown and "sha256≥7f" in shown
