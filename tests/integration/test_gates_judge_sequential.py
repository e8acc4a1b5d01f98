"""Sequential judge gates on the real control plane and real Prometheus, on series the test writes.

Both versions' samples are a gauge per version that the exporter redraws (seeded noise) at every scrape
(every second); the gate reads every point since the current step started, paired by timestamp.
`judge replay --prometheus` then decides on the same range as the operator did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from strategy_rollouts.cli.main import main as cli
from strategy_rollouts.testing.exporter import Exporter
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.gate_world import gate, rollout, scraped, start, wait_phase, wait_routed
from tests.integration.workloads import status

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

MIN_SAMPLES = 12
METRIC = "seq_pnl_bps"


def judge_gate(**judge: Any) -> dict[str, Any]:
    return {
        "name": "pnl-vs-stable",
        "interval": "1s",
        "failureLimit": 0,
        "inconclusiveLimit": 5,
        "judge": {
            "test": "sequential",
            "query": METRIC + '{strategy="{{strategy}}",version="{{version}}"}',
            "step": "1s",
            "worseWhen": "lower",
            "confidence": 0.95,
            "minSamples": MIN_SAMPLES,
            **judge,
        },
    }


@pytest.fixture
def exporter(cluster: DevCluster, namespace: str, live_operator: OperatorProcess) -> Iterator[Exporter]:
    with scraped(cluster, f"seqjudge-{namespace}", seed=17) as exp:
        yield exp


def feed(exporter: Exporter, strategy: str, canary: float | None, stable: float) -> None:
    if canary is not None:
        exporter.gauge(METRIC, canary, noise=1.0, strategy=strategy, version="v2.0.0")
    exporter.gauge(METRIC, stable, noise=1.0, strategy=strategy, version="v1.0.0")


def test_a_clearly_worse_canary_rolls_back_with_the_interval_and_replay_agrees(
    cluster: DevCluster, namespace: str, exporter: Exporter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate_spec = judge_gate(margin=1.0)
    obj = rollout("seq-bad", namespace, [gate_spec], pause="60s")
    feed(exporter, obj["spec"]["strategy"], canary=5.0, stable=10.0)  # the canary earns 5 bps less
    start(cluster, obj)
    st = wait_phase(cluster, "seq-bad", namespace, "RolledBack", timeout=120)
    g = gate(st, "pnl-vs-stable")
    assert st["reason"] == "GateFailed" and "pnl-vs-stable" in st["message"]
    assert "interval [" in st["message"] and "entirely below 0" in st["message"]
    assert g["result"] == "Fail"
    ci = g["confidenceInterval"]
    assert ci["lower"] < g["effect"] < ci["upper"] < 0
    assert -6.5 < g["effect"] < -3.5
    assert g["samples"]["pairs"] >= MIN_SAMPLES and g["value"] < 0.05 and g["margin"] == 1.0
    wait_routed(cluster, "seq-bad", namespace, {"v1.0.0", "draining"})

    # The same gate over the same Prometheus range: the same decision as the operator's.
    gate_file = tmp_path / "gate.yaml"
    gate_file.write_text(yaml.safe_dump(gate_spec))
    history = [h for h in st["history"] if h.get("outcome") == "RolledBack"]
    assert history
    args = ["judge", "replay", "-f", str(gate_file), "--prometheus", cluster.prometheus_url, "-o", "json"]
    args += ["--from", st["stepStartedAt"], "--to", g["evaluatedAt"], "--strategy", obj["spec"]["strategy"]]
    assert cli([*args, "--canary", "v2.0.0", "--stable", "v1.0.0"]) == 0
    evaluations = json.loads(capsys.readouterr().out)["evaluations"]
    shown = json.dumps({"status": {k: st.get(k) for k in ("stepStartedAt", "history", "gates")}, "replay": evaluations})
    assert evaluations[-1]["result"] == "Fail", shown[:6000]
    # Before the first samples exist a look is Inconclusive (missing data), as the operator's was; never a Pass.
    assert all(e["result"] in ("Inconclusive", "Undecided", "Fail") for e in evaluations), shown[:6000]
    first_fail = next(e for e in evaluations if e["result"] == "Fail")
    assert first_fail["samples"]["pairs"] >= MIN_SAMPLES
    assert evaluations[-1]["confidenceInterval"]["upper"] < 0


def test_the_same_data_passes_only_after_min_samples_and_advances(
    cluster: DevCluster, namespace: str, exporter: Exporter
) -> None:
    obj = rollout("seq-same", namespace, [judge_gate(margin=2.0)])
    feed(exporter, obj["spec"]["strategy"], canary=10.0, stable=10.0)
    start(cluster, obj)
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        st = status(cluster, "seq-same", namespace)
        seen += [g for g in st.get("gates", []) if g.get("result")]
        if st.get("phase") == "Succeeded":
            break
        assert st.get("phase") not in ("RolledBack", "Degraded"), st.get("message")
        time.sleep(0.5)
    assert st.get("phase") == "Succeeded", json.dumps(st)[:2000]
    passes = [g for g in seen if g["result"] == "Pass"]
    assert passes and all(g["samples"]["pairs"] >= MIN_SAMPLES for g in passes)
    assert all(g["confidenceInterval"]["lower"] > -2.0 for g in passes)  # never while beyond the margin
    assert any(g["result"] == "Undecided" and g["samples"]["pairs"] < MIN_SAMPLES for g in seen)
    assert not any(g["result"] == "Fail" for g in seen)
    wait_routed(cluster, "seq-same", namespace, {"v2.0.0"})


def test_a_canary_without_data_never_advances_and_says_why(
    cluster: DevCluster, namespace: str, exporter: Exporter
) -> None:
    obj = rollout("seq-nodata", namespace, [judge_gate(margin=100.0)])
    feed(exporter, obj["spec"]["strategy"], canary=None, stable=10.0)  # no canary series at all
    start(cluster, obj)
    st = wait_phase(cluster, "seq-nodata", namespace, "Paused", timeout=90)
    assert st["reason"] == "Inconclusive"
    assert "no canary samples since the step started (missing data never passes)" in st["message"]
    time.sleep(MIN_SAMPLES + 3)  # longer than minSamples x step: still nothing passes
    st = status(cluster, "seq-nodata", namespace)
    assert st["phase"] == "Paused" and st["stageIndex"] == 0 and st["stepIndex"] == 0
    assert gate(st, "pnl-vs-stable")["result"] == "Inconclusive"


def test_decide_within_with_on_undecided_rollback_rolls_back(
    cluster: DevCluster, namespace: str, exporter: Exporter
) -> None:
    # Not worse, and margin 0: no evidence either way, so no decision comes.
    obj = rollout("seq-undecided", namespace, [judge_gate(decideWithin="20s", onUndecided="rollback")])
    feed(exporter, obj["spec"]["strategy"], canary=10.0, stable=10.0)
    start(cluster, obj)
    st = wait_phase(cluster, "seq-undecided", namespace, "RolledBack", timeout=120)
    assert st["reason"] == "GateFailed"
    assert "no decision within decideWithin 20s (onUndecided: rollback)" in st["message"]
    wait_routed(cluster, "seq-undecided", namespace, {"v1.0.0", "draining"})
