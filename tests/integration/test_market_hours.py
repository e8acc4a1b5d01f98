"""Freeze windows on the real control plane with real Prometheus: a window the test places over the next
20 seconds holds a rollout at its step (gates still measured), a failing gate in the same window still
rolls a second rollout back, and the first continues by itself when the window ends.

Exchange hours and days are covered with a fake clock in tests/unit/test_market_*.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from strategy_rollouts.api.common import rfc3339
from strategy_rollouts.api.market import MarketSpec
from strategy_rollouts.engine import market
from strategy_rollouts.operator.checks.calendars import Calendars
from strategy_rollouts.testing.exporter import Exporter
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.conftest import wait_for
from tests.integration.gate_world import scraped
from tests.integration.workloads import apply, deployment, status

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

KEYS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "AVAXUSDT"]
GATE = "market_test_gate"
WINDOW = timedelta(seconds=20)


def rollout(name: str, namespace: str, strategy: str, pause: str, windows: list[dict[str, str]]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "strategy": strategy,
        "stable": {"deployment": f"{name}-legacy", "version": "v1.0.0"},
        "canary": {"deployment": f"{name}-pipeline", "version": "v2.0.0", "replicas": 1},
        "routing": {"keys": KEYS, "handoff": "1s"},
        "stages": [
            {
                "name": "prod",
                "steps": [{"setWeight": 25}, {"pause": {"duration": pause}}, {"setWeight": 50}, {"setWeight": 100}],
            }
        ],
        "gates": [
            {
                "name": "latency",
                "query": f'max({GATE}{{strategy="{{{{strategy}}}}"}})',
                "condition": "< 200",
                "interval": "1s",
                "inconclusiveLimit": 5,
            }
        ],
        "scaleDownDelay": "2s",
        "freezeWindows": windows,
    }
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@pytest.fixture
def exporter(cluster: DevCluster, namespace: str, live_operator: OperatorProcess) -> Iterator[Exporter]:
    with scraped(cluster, f"market-{namespace}") as exp:
        yield exp


def test_freeze_holds_the_step_a_failure_still_rolls_back_and_it_continues_after(
    cluster: DevCluster, namespace: str, exporter: Exporter
) -> None:
    strategy_a, strategy_b = (f"m_{namespace.replace('-', '_')}_{x}" for x in "ab")
    exporter.gauge(GATE, 100.0, strategy=strategy_a)
    exporter.gauge(GATE, 100.0, strategy=strategy_b)
    apply(
        cluster,
        *(deployment(f"{n}-legacy", namespace, 2, "v1.0.0") for n in ("held", "failing")),
        *(deployment(f"{n}-pipeline", namespace, 0, "v2.0.0") for n in ("held", "failing")),
    )
    # Both start with no window; the held one pauses 6s at 25%, the failing one 10 minutes.
    apply(
        cluster, rollout("held", namespace, strategy_a, "6s", []), rollout("failing", namespace, strategy_b, "10m", [])
    )

    def at_pause(name: str) -> bool:
        st = status(cluster, name, namespace)
        return st.get("phase") == "Progressing" and st.get("stepIndex") == 1 and st.get("canaryWeight") == 25

    wait_for(lambda: at_pause("held") and at_pause("failing"), 90, what="both rollouts at their pause step")
    held_before = status(cluster, "held", namespace)

    # The window goes in mid-rollout, over the next 20 seconds: it applies at once, without a restart.
    start = datetime.now(UTC) - timedelta(seconds=1)
    end = start + timedelta(seconds=1) + WINDOW
    window = [{"name": "fomc", "start": rfc3339(start), "end": rfc3339(end)}]
    apply(cluster, rollout("held", namespace, strategy_a, "6s", window))
    apply(cluster, rollout("failing", namespace, strategy_b, "10m", window))

    def frozen(name: str) -> dict[str, Any] | None:
        st = status(cluster, name, namespace)
        return st if st.get("phase") == "Paused" and st.get("reason") == "Frozen" else None

    st = wait_for(lambda: frozen("held"), 10, what="held rollout Frozen")
    assert "fomc" in st["message"] and end.strftime("%H:%M:%S") in st["message"], st["message"]
    assert {c["type"]: c["status"] for c in st["conditions"]}["Frozen"] == "True"
    assert st["market"]["frozenBy"] == "fomc" and st["market"]["summary"] == "frozen: fomc"
    assert st["startedAt"] == held_before["startedAt"]
    wait_for(lambda: frozen("failing"), 10, what="failing rollout Frozen")

    # Gates keep running in the freeze, and a Fail still rolls back, inside the window.
    exporter.gauge(GATE, 900.0, strategy=strategy_b)
    failed = wait_for(
        lambda: (s := status(cluster, "failing", namespace)).get("phase") == "RolledBack" and s,
        12,
        what="failing rollout RolledBack during the freeze",
    )
    assert datetime.now(UTC) < end, "the rollback came only after the window"
    assert failed["reason"] == "GateFailed" and "latency" in failed["message"]

    # Past the 6s pause, still held at its step; its gate was measured in the window and shows in status
    # (status.gates is rewritten when a result changes, so the freeze's first write carries the latest).
    wait_for(lambda: datetime.now(UTC) > start + timedelta(seconds=9), 10, what="past the pause")
    now_st = frozen("held")
    assert now_st is not None and datetime.now(UTC) < end
    assert (now_st["stepIndex"], now_st["canaryWeight"]) == (1, 25)
    gate = now_st["gates"][0]
    assert gate["result"] == "Pass" and datetime.fromisoformat(gate["evaluatedAt"].replace("Z", "+00:00")) > start

    # After the window: it continues by itself (no edit, no request) and completes.
    done = wait_for(
        lambda: (s := status(cluster, "held", namespace)).get("phase") == "Succeeded" and s,
        (end - datetime.now(UTC)).total_seconds() + 60,
        what="held rollout Succeeded after the window",
    )
    assert [h["outcome"] for h in done["history"]] == ["Succeeded"], json.dumps(done["history"])
    assert done["startedAt"] == held_before["startedAt"]
    assert {c["type"]: c["status"] for c in done["conditions"]}["Frozen"] == "False"
    progressed = [
        datetime.fromisoformat(h["at"].replace("Z", "+00:00")) for h in done["history"] if h["outcome"] == "Succeeded"
    ]
    assert progressed and progressed[0] >= end


def test_unknown_calendar_is_invalid_and_a_real_calendar_shows_in_status(
    cluster: DevCluster, namespace: str, exporter: Exporter
) -> None:
    strategy = f"m_{namespace.replace('-', '_')}_c"
    exporter.gauge(GATE, 100.0, strategy=strategy)
    apply(cluster, deployment("cal-legacy", namespace, 2, "v1.0.0"), deployment("cal-pipeline", namespace, 0, "v2.0.0"))
    bad = rollout("cal", namespace, strategy, "1m", [])
    bad["spec"]["market"] = {"calendar": "NOPE"}
    apply(cluster, bad)
    st = wait_for(lambda: (s := status(cluster, "cal", namespace)).get("phase") == "Invalid" and s, 30, what="Invalid")
    assert st["message"].startswith("spec.market.calendar: unknown calendar 'NOPE'") and "XNYS" in st["message"]

    # The real XNYS calendar in the operator: what it shows depends on when the test runs, so the
    # expectation comes from the same library, asked about now.
    good = rollout("cal", namespace, strategy, "1m", [])
    good["spec"]["market"] = {"calendar": "XNYS", "advance": "whenOpen"}
    now = datetime.now(UTC)
    apply(cluster, good)
    nyse = Calendars().get("XNYS", now)
    held = market.advance_allowed(MarketSpec(calendar="XNYS", advance="whenOpen"), [], nyse, now) is not None
    if held:
        st = wait_for(
            lambda: (s := status(cluster, "cal", namespace)).get("reason") == "MarketClosed" and s, 30, what="held"
        )
        assert st["phase"] == "Pending" and st["market"]["open"] is False
        assert st["market"]["summary"].startswith("closed, opens ")
        assert {c["type"]: c["status"] for c in st["conditions"]}["Frozen"] == "True"
    else:
        st = wait_for(
            lambda: (s := status(cluster, "cal", namespace)).get("phase") == "Progressing" and s, 30, what="started"
        )
        assert st["market"]["open"] is True and st["market"]["summary"] == "open"
