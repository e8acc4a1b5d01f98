"""A judge as a ShadowRun KPI: shadow worse than live fails the run early; too few samples hold it."""

from __future__ import annotations

from datetime import timedelta

from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.shadow_run import reconcile
from tests.unit.test_shadow_run import T0, make_spec, obs, started

KPI = {
    "name": "pnl-vs-live",
    "interval": "1s",
    "judge": {"query": 'pnl{version="{{version}}"}', "worseWhen": "lower", "minSamples": 10},
}


def test_a_judge_kpi_with_the_shadow_worse_fails_the_run_with_p_effect_and_samples() -> None:
    spec = make_spec(kpis=[KPI], decisions=None)
    status = started(spec).status
    worse = Measurement(None, populations=(tuple(float(v) for v in range(10)), tuple(float(v) for v in range(20, 30))))
    out = reconcile(spec, status, obs(kpis={"pnl-vs-live": worse}), T0 + timedelta(seconds=1))
    assert out.status.verdict == "Fail" and "pnl-vs-live" in out.status.reasons[0]
    [kpi] = out.status.kpis
    assert kpi.result == "Fail" and kpi.value is not None and kpi.value < 0.001
    assert kpi.effect == -20.0 and kpi.samples is not None and kpi.samples.canary == 10


def test_a_judge_kpi_with_too_few_samples_holds_at_the_end() -> None:
    spec = make_spec(kpis=[KPI], decisions=None)
    status = started(spec).status
    few = Measurement(None, populations=((1.0, 2.0), (1.0, 2.0)))
    mid = reconcile(spec, status, obs(kpis={"pnl-vs-live": few}), T0 + timedelta(seconds=1)).status
    assert mid.kpis[0].result == "Inconclusive"
    end = reconcile(spec, mid, obs(), T0 + timedelta(seconds=12))
    assert end.status.verdict == "Hold"


SEQ_KPI = {
    "name": "pnl-seq",
    "interval": "1s",
    "judge": {
        "test": "sequential",
        "query": 'pnl{version="{{version}}"}',
        "worseWhen": "lower",
        "step": "1s",
        "minSamples": 10,
        "margin": 1.0,
    },
}


def paired(shadow: list[float], live: list[float]) -> Measurement:
    times = tuple(float(t) for t in range(len(shadow)))
    return Measurement(None, points=((times, tuple(shadow)), (times, tuple(live))), started=T0)


def test_a_sequential_kpi_with_the_shadow_worse_fails_the_run_early_with_its_interval() -> None:
    spec = make_spec(kpis=[SEQ_KPI], decisions=None)
    status = started(spec).status
    live = [10.0 + (i % 3) for i in range(12)]
    out = reconcile(spec, status, obs(kpis={"pnl-seq": paired([v - 5 for v in live], live)}), T0 + timedelta(seconds=1))
    assert out.status.verdict == "Fail" and "pnl-seq" in out.status.reasons[0]
    [kpi] = out.status.kpis
    assert kpi.result == "Fail" and kpi.confidence_interval is not None
    assert kpi.confidence_interval.upper is not None and kpi.confidence_interval.upper < 0


def test_an_undecided_sequential_kpi_holds_at_the_end_never_passes() -> None:
    spec = make_spec(kpis=[SEQ_KPI], decisions=None)
    status = started(spec).status
    swings = [5.0 * (-1) ** i for i in range(12)]  # mean 0, sd 5: no evidence within 12 samples
    mid = reconcile(spec, status, obs(kpis={"pnl-seq": paired(swings, [0.0] * 12)}), T0 + timedelta(seconds=1))
    assert mid.status.kpis[0].result == "Undecided"
    end = reconcile(spec, mid.status, obs(), T0 + timedelta(seconds=12))
    assert end.status.verdict == "Hold" and any("undecided" in r for r in end.status.reasons)


def test_a_run_resting_only_on_sequential_kpis_ends_early_with_pass_at_their_decision() -> None:
    """Anytime-valid: stopping at the decision keeps the guarantee, so the run ends at once (not at its
    end) with Pass; the same decision with a decision comparison configured waits for the end."""
    spec = make_spec(kpis=[SEQ_KPI], decisions=None, duration="1h")
    status = started(spec).status
    live = [10.0 + (i % 3) for i in range(60)]
    same = paired(list(live), live)  # identical: the interval closes around 0, inside the margin
    out = reconcile(spec, status, obs(kpis={"pnl-seq": same}), T0 + timedelta(seconds=1))
    assert out.status.kpis[0].result == "Pass"
    assert out.status.phase == "Completed" and out.status.verdict == "Pass"
    compared = make_spec(kpis=[SEQ_KPI], duration="1h")  # decisions configured: needs the full duration
    running = reconcile(compared, started(compared).status, obs(kpis={"pnl-seq": same}), T0 + timedelta(seconds=1))
    assert running.status.kpis[0].result == "Pass" and running.status.phase == "Running"
    mixed = make_spec(kpis=[SEQ_KPI, {**KPI, "name": "fixed"}], decisions=None, duration="1h")  # a fixed-sample KPI
    half = reconcile(mixed, started(mixed).status, obs(kpis={"pnl-seq": same}), T0 + timedelta(seconds=1))
    assert half.status.phase == "Running"
