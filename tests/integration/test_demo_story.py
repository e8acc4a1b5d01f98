"""`make demo`'s story, as the demo tells it (demo/story.py), in a test namespace with the session operator:
ShadowRun Pass, v2 rolled out symbol by symbol, a worse v3 rolled back by its gate, a ParityCheck
halving the size the quoter trades. Each part checks its own ending and says what it saw instead."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rich.console import Console

from demo.story import PARTS, prepare
from demo.summary import run_parts, summary_table
from demo.world import World
from devcluster import realnode
from strategy_rollouts.testing.operator_process import OperatorProcess

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster


@pytest.mark.timeout(480)
def test_the_demo_story_ends_as_expected(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess, tmp_path: Path
) -> None:
    out = io.StringIO()
    console = Console(file=out, width=160, color_system=None)
    world = World(cluster, namespace, f"demo_{namespace.replace('-', '_')}", console, tmp_path)
    try:
        prepare(world)
        outcomes = run_parts(world, PARTS, console)
    finally:
        world.close()
    console.print(summary_table(outcomes, sum(o.seconds for o in outcomes)))
    printed = out.getvalue()
    assert [o.ok for o in outcomes] == [True] * len(PARTS), printed[-6000:]
    # What a newcomer reads: the verdict report, the symbol map at each step, the failing gate, the metrics.
    assert "## Verdict: **Pass**" in printed
    assert printed.count("Symbols") >= 5
    assert "tick-p95-ms" in printed and "< 200" in printed
    assert "tick-p95-vs-stable" in printed and "judge " in printed  # v3's sequential judge, in the story line
    assert "size_multiplier" in printed and "0.5" in printed
    # With the session cluster's real node, every quoter ran as a pod there (make demo does the same).
    started = [line for line in printed.splitlines() if line.startswith("    quoter ")]
    assert len(started) >= 4, started
    if cluster.real_node is not None:
        assert all(f"on node {realnode.NODE_NAME})" in line for line in started), started
