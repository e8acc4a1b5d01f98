"""`engine.shadow_run.reconcile`: phases, verdicts, the recorded end state enforced on every pass,
fail-closed status checks, and a property over random specs, streams and crash points."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategy_rollouts.api.shadowrun import ShadowRunSpec, ShadowRunStatus
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.shadow import MatcherState, Tolerances, finalize, ingest
from strategy_rollouts.engine.shadow_observed import StreamRead, parse_entries, to_ms
from strategy_rollouts.engine.shadow_run import (
    ABSENT,
    Decision,
    Latency,
    Observations,
    ShadowDeployment,
    plan,
    reconcile,
    report_documents,
    status_error,
)
from strategy_rollouts.operator.shadowrun.adapter import parse_status

T0 = datetime(2024, 1, 1, tzinfo=UTC)
NS, NAME = "trading", "fib"
OWNER = {
    "apiVersion": "strategyrollouts.io/v1alpha1",
    "kind": "ShadowRun",
    "metadata": {"name": NAME, "namespace": NS, "uid": "u-1"},
}
ISOLATED = ShadowDeployment(0, {"SHADOW_MODE": "true"}, {"app": "pipeline"})


def make_spec(**overrides: Any) -> ShadowRunSpec:
    raw: dict[str, Any] = {
        "strategy": "fib_rsi",
        "live": {"deployment": "legacy", "version": "v1"},
        "shadow": {"deployment": "pipeline", "version": "v2", "replicas": 2},
        "duration": "10s",
        "isolation": {"env": {"SHADOW_MODE": "true"}, "denyEgress": True, "allowEgressTo": [{"cidr": "10.0.0.0/8"}]},
        "decisions": {"source": {"redis": {"address": "redis://r:6379/0"}}, "minDecisions": 2, "pairingWindow": "10m"},
    }
    raw.update(overrides)
    return ShadowRunSpec.model_validate(raw)


def obs(deployment: ShadowDeployment | None = ISOLATED, **kw: Any) -> Observations:
    return Observations(namespace=NS, name=NAME, owner=OWNER, deployment=deployment, **kw)


def entry(ms: int, seq: int = 0, price: str = "100", **fields: str) -> tuple[bytes, dict[bytes, bytes]]:
    base = {"symbol": "BTC", "tick": str(ms), "type": "entry", "side": "buy", "price": price, "quantity": "1"}
    base.update(fields)
    base["ts"] = str(ms / 1000)
    return f"{ms}-{seq}".encode(), {k.encode(): v.encode() for k, v in base.items()}


def started(spec: ShadowRunSpec) -> Decision:
    return reconcile(spec, ShadowRunStatus(), obs(), T0)


# ------------------------------------------------------------------------------------------ phases


def test_start_records_the_target_then_asks_for_scale_and_policy() -> None:
    d = started(make_spec())
    assert d.status.phase == "Running" and d.status.started_at == T0
    assert d.status.target is not None and d.status.target.shadow_deployment == "pipeline"
    assert (d.deployment, d.scale) == ("pipeline", 2)
    assert isinstance(d.policy, dict) and d.policy["spec"]["podSelector"] == {"matchLabels": {"app": "pipeline"}}
    assert [e.reason for e in d.events] == ["Started"] and d.wake_at == T0


def test_before_the_start_nothing_is_touched() -> None:
    pending = reconcile(make_spec(), ShadowRunStatus(), obs(None), T0)
    assert pending.status.phase == "Pending" and (pending.scale, pending.policy) == (None, None)
    unsafe = reconcile(make_spec(), ShadowRunStatus(), obs(ShadowDeployment(0, {}, {})), T0)
    assert unsafe.status.phase == "Invalid" and (unsafe.scale, unsafe.policy) == (None, None)
    assert {c.type: c.reason for c in unsafe.status.conditions}["InvalidSpec"] == "IsolationMissing"
    broken = reconcile(None, ShadowRunStatus(), obs(spec_error="spec.live: field required"), T0)
    assert broken.status.phase == "Invalid" and "spec.live" in (broken.status.message or "")


def test_running_keeps_the_policy_and_the_replicas_the_status_records() -> None:
    spec = make_spec()
    status = started(spec).status
    d = reconcile(
        spec, status, obs(ShadowDeployment(0, ISOLATED.env, ISOLATED.match_labels)), T0 + timedelta(seconds=2)
    )
    assert d.status.phase == "Running" and d.scale == 2 and isinstance(d.policy, dict)
    no_egress = reconcile(make_spec(isolation={"env": {"SHADOW_MODE": "true"}}), status, obs(), T0)
    assert no_egress.policy == ABSENT


def _complete(spec: ShadowRunSpec, status: ShadowRunStatus, live: Sequence[Any], shadow: Sequence[Any]) -> Decision:
    end = T0 + timedelta(seconds=12)
    reads = dict(live=parse_entries(live, f"{to_ms(T0)}-0", 100), shadow=parse_entries(shadow, f"{to_ms(T0)}-0", 100))
    return reconcile(spec, status, obs(**reads), end)


def test_completion_is_recorded_with_the_end_state_and_report() -> None:
    spec = make_spec()
    base = to_ms(T0)
    live = [entry(base + 100), entry(base + 200)]
    d = _complete(spec, started(spec).status, live, [entry(base + 100), entry(base + 200)])
    assert d.status.phase == "Completed" and d.status.verdict == "Pass", d.status.reasons
    assert d.status.decisions is not None and d.status.decisions.compared == 2
    assert (d.deployment, d.scale, d.policy) == ("pipeline", 0, ABSENT)
    assert d.status.target is not None and d.status.target.replicas == 0
    assert d.report is not None and d.report.name == "fib-report" and "Pass" in d.report.data["report.md"]
    assert [e.reason for e in d.events] == ["ShadowPass"]


def test_price_mismatches_fail() -> None:
    spec = make_spec()
    base = to_ms(T0)
    d = _complete(spec, started(spec).status, [entry(base + 1), entry(base + 2)], [entry(base + 1, price="101")] * 1)
    assert d.status.verdict == "Fail" and any("match rate" in r for r in d.status.reasons)


def test_a_completed_run_is_re_enforced_on_every_pass_from_its_record() -> None:
    spec = make_spec()
    base = to_ms(T0)
    done = _complete(spec, started(spec).status, [entry(base + 1), entry(base + 2)], [entry(base + 1), entry(base + 2)])
    # Someone scaled the shadow up again and recreated a policy; the spec now names another deployment.
    edited = make_spec(shadow={"deployment": "other", "version": "v3", "replicas": 5})
    again = reconcile(
        edited, done.status, obs(ShadowDeployment(3, {}, {}), policy_exists=True), T0 + timedelta(hours=1)
    )
    assert again.status == done.status  # final: nothing to write
    assert (again.deployment, again.scale, again.policy) == ("pipeline", 0, ABSENT)
    assert [e.reason for e in again.events] == ["ShadowScaledBack"]
    assert again.report == done.report  # derived from status alone, unchanged by the spec edit
    assert report_documents(NAME, done.status) == done.report
    unparsed = reconcile(None, done.status, obs(spec_error="bad"), T0 + timedelta(hours=1))
    assert (unparsed.deployment, unparsed.scale, unparsed.policy) == ("pipeline", 0, ABSENT)


def test_isolation_removed_mid_run_fails_at_once() -> None:
    spec = make_spec()
    tampered = ShadowDeployment(2, {"SHADOW_MODE": "false"}, {"app": "pipeline"})
    d = reconcile(spec, started(spec).status, obs(tampered), T0 + timedelta(seconds=1))
    assert d.status.phase == "Completed" and d.status.verdict == "Fail"
    assert any(r.startswith("isolation:") for r in d.status.reasons) and d.scale == 0 and d.policy == ABSENT


def test_a_spec_naming_another_shadow_mid_run_fails_and_stops_the_recorded_one() -> None:
    spec = make_spec()
    moved = make_spec(shadow={"deployment": "elsewhere", "version": "v2"})
    d = reconcile(moved, started(spec).status, obs(), T0 + timedelta(seconds=1))
    assert d.status.verdict == "Fail" and d.deployment == "pipeline" and d.scale == 0
    assert any("elsewhere" in r for r in d.status.reasons)


def test_a_kpi_beyond_its_limit_fails_early_and_one_never_measured_holds() -> None:
    kpi = {"name": "k", "query": "q", "condition": "> 0", "interval": "1s"}
    spec = make_spec(kpis=[kpi], decisions=None)
    status = started(spec).status
    assert [k.name for k in plan(spec, status, NS, T0 + timedelta(seconds=1), True).measure] == ["k"]
    failed = reconcile(spec, status, obs(kpis={"k": Measurement(0.0)}), T0 + timedelta(seconds=1))
    assert failed.status.verdict == "Fail" and "kpi k failed" in failed.status.reasons[0]
    held = reconcile(spec, status, obs(), T0 + timedelta(seconds=12))
    assert held.status.verdict == "Hold" and any("never measured" in r for r in held.status.reasons)


def test_latency_profile_not_measured_at_the_end_holds_never_passes() -> None:
    spec = make_spec(decisions=None, latencyProfile={"histogram": "h", "maxRegressionPercent": 5})
    status = started(spec).status
    held = reconcile(spec, status, obs(), T0 + timedelta(seconds=12))
    assert held.status.verdict == "Hold" and "latency profile: not measured" in held.status.reasons
    latency = Latency({"p95": {"tick": 10.0}}, {"p95": {"tick": 10.2}})
    passed = reconcile(spec, status, obs(latency=latency), T0 + timedelta(seconds=12))
    assert passed.status.verdict == "Pass" and passed.status.latency_profile["tick"].max_regression_percent == 5
    assert passed.report is not None and "tick" in passed.report.data["summary.json"]


def test_the_last_read_happens_before_the_verdict() -> None:
    spec = make_spec()
    status = started(spec).status
    end = T0 + timedelta(seconds=12)
    unread = reconcile(spec, status, obs(), end)
    assert unread.status.phase == "Running" and unread.wake_at is not None and unread.wake_at <= end
    assert plan(spec, status, NS, end, read=False).streams is not None  # past the end: read regardless


def test_unreadable_status_is_refused_before_the_engine() -> None:
    assert status_error(ShadowRunStatus()) is None
    bad_matcher = {"phase": "Running", "startedAt": "2024-01-01T00:00:00Z", "matcher": {"version": 1}}
    for raw in (
        bad_matcher,
        {**bad_matcher, "matcher": {**MatcherState().to_dict(), "cursors": {"live": "x", "shadow": "1-0"}}},
        {"phase": "Completed", "startedAt": "2024-01-01T00:00:00Z"},
        {"phase": "Running"},
        {"phase": "Running", "decisions": {"compared": "many"}},
    ):
        status, error = parse_status({"status": raw})
        assert status is None and error, raw
    assert parse_status({"status": {"phase": "Running", "startedAt": "2024-01-01T00:00:00Z"}})[0] is not None


def test_reconcile_never_changes_its_input() -> None:
    spec = make_spec()
    status = started(spec).status
    before = status.model_dump()
    base = to_ms(T0)
    _complete(spec, status, [entry(base + 1)], [entry(base + 1)])
    assert status.model_dump() == before


# ------------------------------------------------------------------------------------------ property


@dataclass
class Sim:
    """A world for the engine: streams, the shadow deployment, its policy, the persisted status."""

    spec: ShadowRunSpec
    live: list[tuple[bytes, dict[bytes, bytes]]]
    shadow: list[tuple[bytes, dict[bytes, bytes]]]
    batch: int
    kpi_value: float | None
    now: datetime = T0
    persisted: dict[str, Any] = field(default_factory=dict)
    replicas: int = 0
    policy: dict[str, Any] | None = None
    passes: int = 0

    def read(self, entries: list[tuple[bytes, dict[bytes, bytes]]], cursor: str, end_ms: int) -> StreamRead:
        after, now_ms = tuple(map(int, cursor.split("-"))), to_ms(self.now)
        ready = [(i, f) for i, f in entries if _id(i) > after and _id(i)[0] <= min(end_ms, now_ms)]
        return parse_entries(ready[: self.batch], cursor, self.batch)

    def step(self, crash: str) -> Decision:
        status = ShadowRunStatus.model_validate(self.persisted)
        assert status_error(status) is None
        p = plan(self.spec, status, NS, self.now, read=True)
        reads: dict[str, Any] = {}
        if p.streams is not None:
            reads = dict(
                live=self.read(self.live, p.streams.cursors.live, p.streams.end_ms),
                shadow=self.read(self.shadow, p.streams.cursors.shadow, p.streams.end_ms),
            )
        kpis = {k.name: Measurement(self.kpi_value) for k in p.measure}
        o = obs(replace(ISOLATED, replicas=self.replicas), kpis=kpis, policy_exists=self.policy is not None, **reads)
        d = reconcile(self.spec, status, o, self.now)
        self.passes += 1
        if crash == "before-write":
            return d
        self.persisted = d.status.wire()
        if crash == "after-write":
            return d  # the status landed, the enforcement did not
        if d.deployment == "pipeline" and d.scale is not None:
            self.replicas = d.scale
        if isinstance(d.policy, dict):
            self.policy = d.policy
        elif d.policy == ABSENT:
            self.policy = None
        return d


def _id(raw: bytes) -> tuple[int, int]:
    ms, seq = raw.decode().split("-")
    return int(ms), int(seq)


@st.composite
def worlds(draw: st.DrawFn) -> Sim:
    duration = draw(st.integers(3, 30))
    kpis = draw(st.sampled_from([[], [{"name": "k", "query": "q", "condition": "> 0", "interval": "2s"}]]))
    spec = make_spec(
        duration=f"{duration}s",
        shadow={"deployment": "pipeline", "version": "v2", "replicas": draw(st.sampled_from([None, 1, 3]))},
        isolation={"env": {"SHADOW_MODE": "true"}, "denyEgress": draw(st.booleans())},
        kpis=kpis,
        decisions={
            "source": {"redis": {"address": "redis://r"}},
            "minDecisions": draw(st.integers(0, 20)),
            "minMatchRate": draw(st.sampled_from([0.5, 0.9, 1.0])),
            "tolerances": {"priceBps": draw(st.sampled_from([0.0, 0.5, 50.0]))},
            "pairingWindow": "10m",  # nothing expires mid-run: counts do not depend on read timing
        },
    )
    base = to_ms(T0)
    live: list[Any] = []
    shadow: list[Any] = []
    kinds = st.sampled_from(["same", "price", "no-shadow", "no-live", "malformed"])
    offsets = draw(st.lists(st.tuples(st.integers(-2000, (duration + 3) * 1000), kinds), max_size=40))
    for n, (offset, kind) in enumerate(sorted(offsets)):
        ms, tick = base + offset, str(n)
        if kind != "no-live":
            live.append(entry(ms, n, tick=tick) if kind != "malformed" else (f"{ms}-{n}".encode(), {b"symbol": b"X"}))
        if kind not in ("no-shadow", "malformed"):
            shadow.append(entry(ms, n, tick=tick, price="100.2" if kind == "price" else "100"))
    value = draw(st.sampled_from([None, 1.0])) if kpis else None
    return Sim(spec, live, shadow, draw(st.integers(1, 8)), value)


def _recompute(sim: Sim, status: ShadowRunStatus) -> tuple[dict[str, Any], int]:
    """The uninterrupted count: every entry with startedAt < id <= end, in one go."""
    assert status.started_at is not None
    start, end = (to_ms(status.started_at), 0), to_ms(status.started_at) + int(sim.spec.duration[:-1]) * 1000
    sides = []
    malformed = 0
    for entries in (sim.live, sim.shadow):
        read = parse_entries([(i, f) for i, f in entries if start < _id(i) and _id(i)[0] <= end], "0-0", 10**6)
        sides.append(read.decisions)
        malformed += read.malformed
    assert sim.spec.decisions is not None
    tol = sim.spec.decisions.tolerances
    state = ingest(MatcherState(), sides[0], sides[1], ["symbol", "tick"], Tolerances(tol.price_bps, 1.0), 0.0, 1e9)
    return finalize(state).counts.to_dict(), malformed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sim=worlds(),
    crashes=st.lists(st.sampled_from(["ok", "ok", "before-write", "after-write"]), min_size=5, max_size=60),
    meddling=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 4), st.booleans()), max_size=4),
    dts=st.lists(st.integers(200, 3000), min_size=1, max_size=10),
)
def test_random_crashes_converge_to_one_end_state_counted_once(
    sim: Sim, crashes: list[str], meddling: list[tuple[int, int, bool]], dts: list[int]
) -> None:
    meddle = {step: (replicas, policy) for step, replicas, policy in meddling}
    for i, crash in enumerate(crashes):
        if i in meddle:  # a person scales the shadow and adds or deletes its policy by hand
            sim.replicas = meddle[i][0]
            sim.policy = {"by": "hand"} if meddle[i][1] else None
        sim.step(crash)
        sim.now += timedelta(milliseconds=dts[i % len(dts)])
    for _ in range(200):  # then clean passes: the run must end, and end the same way
        sim.step("ok")
        if sim.persisted.get("phase") == "Completed":
            break
        sim.now += timedelta(seconds=1)
    status = ShadowRunStatus.model_validate(sim.persisted)
    assert status.phase == "Completed" and status.verdict is not None, status.message
    assert (sim.replicas, sim.policy) == (0, None)
    sim.replicas, sim.policy = 4, {"by": "hand"}  # meddling after the end is undone by the next pass
    sim.step("ok")
    assert (sim.replicas, sim.policy) == (0, None) and ShadowRunStatus.model_validate(sim.persisted) == status
    counts, malformed = _recompute(sim, status)
    assert status.decisions is not None
    got = status.decisions.model_dump(by_alias=True)
    assert {k: got[k] for k in ("compared", "matched", "mismatches")} == {
        k: counts[k] for k in ("compared", "matched", "mismatches")
    }
    assert got["malformed"] == malformed


def test_property_sim_counts_a_simple_run_exactly() -> None:
    base = to_ms(T0)
    sim = Sim(make_spec(), [entry(base + 5, tick="a"), entry(base + 6, tick="b")], [entry(base + 5, tick="a")], 1, None)
    for _ in range(40):
        sim.step("ok")
        sim.now += timedelta(seconds=1)
    status = ShadowRunStatus.model_validate(sim.persisted)
    assert status.decisions is not None
    assert (status.decisions.compared, status.decisions.matched, status.decisions.mismatches.missing_shadow) == (
        2,
        1,
        1,
    )


def test_an_early_fail_measures_the_latency_profile_in_its_next_pass_then_ends() -> None:
    """The plan is data (no second look into the engine): the pass that finds an early Fail records
    ENDING and wakes at once; the next pass's plan asks for the latency profile, and that pass ends."""
    kpi = {"name": "k", "query": "q", "condition": "> 0", "interval": "1s"}
    spec = make_spec(decisions=None, kpis=[kpi], latencyProfile={"histogram": "h", "maxRegressionPercent": 5})
    status = started(spec).status
    t1 = T0 + timedelta(seconds=1)
    assert not plan(spec, status, NS, t1, True).latency  # mid-run: no latency query
    first = reconcile(spec, status, obs(kpis={"k": Measurement(0.0)}), t1)
    assert first.status.phase == "Running" and first.wake_at == t1
    assert any(c.type == "Ending" and c.status == "True" for c in first.status.conditions)
    p2 = plan(spec, first.status, NS, t1, True)
    assert p2.latency
    latency = Latency({"p95": {"tick": 10.0}}, {"p95": {"tick": 10.1}})
    done = reconcile(spec, first.status, obs(latency=latency), t1)
    assert done.status.phase == "Completed" and done.status.verdict == "Fail"
    assert "tick" in done.status.latency_profile and not any(c.type == "Ending" for c in done.status.conditions)


def test_past_the_end_the_plan_asks_for_the_latency_profile() -> None:
    spec = make_spec(decisions=None, latencyProfile={"histogram": "h", "maxRegressionPercent": 5})
    status = started(spec).status
    assert plan(spec, status, NS, T0 + timedelta(seconds=12), False).latency
    assert not plan(spec, status, NS, T0 + timedelta(seconds=5), True).latency
