"""Judge gates on the real control plane and real Prometheus, on populations the test writes.

Both versions' samples are a gauge per version the exporter redraws (seeded noise) at every scrape; the
judge's range query reads every point of the window once per side.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from strategy_rollouts.testing.exporter import Exporter
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.gate_world import gate, rollout, scraped, start, wait_phase, wait_routed

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

MIN_SAMPLES = 12


def judge_gate(confidence: float = 0.99) -> dict[str, Any]:
    return {
        "name": "pnl-vs-stable",
        "interval": "1s",
        "failureLimit": 0,
        "inconclusiveLimit": 200,  # the window fills up first: Inconclusive meanwhile, never a pass
        "judge": {
            "query": 'judge_pnl_bps{strategy="{{strategy}}",version="{{version}}"}',
            "window": "20s",
            "step": "1s",
            "worseWhen": "lower",
            "confidence": confidence,
            "minSamples": MIN_SAMPLES,
        },
    }


@pytest.fixture
def exporter(cluster: DevCluster, namespace: str, live_operator: OperatorProcess) -> Iterator[Exporter]:
    with scraped(cluster, f"judge-{namespace}", seed=13) as exp:
        yield exp


def feed(exporter: Exporter, strategy: str, canary: float, stable: float) -> None:
    exporter.gauge("judge_pnl_bps", canary, noise=1.0, strategy=strategy, version="v2.0.0")
    exporter.gauge("judge_pnl_bps", stable, noise=1.0, strategy=strategy, version="v1.0.0")


def test_judge_fail_rolls_back_with_p_effect_and_samples(
    cluster: DevCluster, namespace: str, exporter: Exporter
) -> None:
    obj = rollout("judged-bad", namespace, [judge_gate()], pause="60s")
    feed(exporter, obj["spec"]["strategy"], canary=5.0, stable=10.0)  # the canary earns 5 bps less
    start(cluster, obj)
    st = wait_phase(cluster, "judged-bad", namespace, "RolledBack", timeout=120)
    assert st["reason"] == "GateFailed" and "pnl-vs-stable" in st["message"]
    g = gate(st, "pnl-vs-stable")
    assert g["result"] == "Fail"
    assert g["value"] < 0.01  # the one-sided p-value
    assert -6.5 < g["effect"] < -3.5  # Hodges-Lehmann: canary - stable, about -5
    assert g["samples"]["canary"] >= MIN_SAMPLES and g["samples"]["stable"] >= MIN_SAMPLES
    wait_routed(cluster, "judged-bad", namespace, {"v1.0.0", "draining"})


def test_judge_pass_advances_to_success(cluster: DevCluster, namespace: str, exporter: Exporter) -> None:
    obj = rollout("judged-good", namespace, [judge_gate()])
    feed(exporter, obj["spec"]["strategy"], canary=11.0, stable=10.0)  # the canary earns more: not worse
    start(cluster, obj)
    st = wait_phase(cluster, "judged-good", namespace, "Succeeded", timeout=150)
    g = gate(st, "pnl-vs-stable")
    assert g["result"] == "Pass" and g["failures"] == 0
    assert g["value"] > 0.5 and g["effect"] > 0
    assert g["samples"]["canary"] >= MIN_SAMPLES
    wait_routed(cluster, "judged-good", namespace, {"v2.0.0"})
