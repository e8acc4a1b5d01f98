"""Chaos run (issue 11): 13 StrategyRollouts, 2 ShadowRuns and 2 ParityChecks run together on the
real control plane while the operator is SIGKILLed at seeded random moments and restarted, and the
API server is restarted once. Observers (status, ConfigMap and Deployment watches, a routing
sampler) run from before the first object to the end; afterwards every object is checked.

`CHAOS_KILLS` (default 8; `make chaos`: 50) sets the number of kills; durations grow with it so
the objects are still moving while the operator dies. `CHAOS_SEED` replays a run (it is printed).
"""

from __future__ import annotations

import gc
import json
import os
import random
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client, config

from devcluster.cluster import CommandError
from strategy_rollouts.testing import invariants as inv
from strategy_rollouts.testing.chaos import (
    Monkey,
    Record,
    Sampler,
    Watcher,
    listers,
    replica_counts,
    routing_docs,
    statuses,
)
from strategy_rollouts.testing.exporter import Exporter
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.test_paritycheck_operator import CRITICAL_BANDS, EMERGENCY_BANDS, NEVER, paritycheck
from tests.integration.test_rollout_operator import rollout
from tests.integration.test_shadowrun_operator import shadowrun
from tests.integration.workloads import allow_rollouts_from, apply, deployment, patch_status

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "quoter"))
from quoter.testing import QuoterProcess, start_quoter

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

KILLS = int(os.environ.get("CHAOS_KILLS", "8"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.SystemRandom().randrange(1 << 30))))
SCALE = max(1.0, KILLS / 8)  # durations grow with the number of kills
KEYS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT", "LINKUSDT"]
STABLE, CANARY = "v1.0.0", "v2.0.0"
HANDOFF = 2.0
SCALE_DOWN_DELAY = "2s"
GOOD, BAD = 10.0, 500.0  # chaos_gate values; the gate passes below 100
GATE = 'max(chaos_gate{strategy="{{strategy}}"})'
RETURNS = 'chaos_return{{strategy="{{{{strategy}}}}",source="{source}"}}'
CRITICAL_NOISE, EMERGENCY_NOISE = 70e-4, 400e-4  # per-period return stdev: tracking error 70 / 400 bps
PARITY_WINDOW = 10
SHADOW_LIVE, SHADOW_PASS, SHADOW_SKEW = "v1.0.0", "v2.0.0", "v3.0.0"
END = ("Succeeded", "RolledBack")


def seconds(base: float) -> str:
    return f"{round(base * SCALE)}s"


@dataclass(frozen=True)
class Expect:
    """What one rollout must end as, and how its deployments (namespace, name) must have been scaled."""

    phase: str
    reason: str
    outcomes: dict[str, int]
    replicas: dict[tuple[str, str], list[int]]
    owner: str  # who owns every key at the end: a version, or "none"
    steps: list[int]  # steps per stage


@dataclass
class Chaos:
    cluster: DevCluster
    ns: str
    other: str
    strategy: str
    exporter: Exporter
    record: Record = field(default_factory=Record)
    sampled: Record = field(default_factory=Record)
    expect: dict[str, Expect] = field(default_factory=dict)
    configmaps: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # rollout -> routing ConfigMaps
    quoters: list[QuoterProcess] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def latest(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        seen = statuses(self.record, plural, namespace or self.ns, name)
        return seen[-1][1] if seen else {}

    def strategy_of(self, name: str) -> str:
        return f"{self.strategy}_{name.replace('-', '_')}"


def steps(pause: float, weights: tuple[int, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for w in weights:
        out += [{"setWeight": w}, {"pause": {"duration": seconds(pause)}}]
    return out[:-1]


def symbols_rollout(c: Chaos, name: str, pause: float, prod_pause: float | None = None, **extra: Any) -> dict[str, Any]:
    """staging: 20% then a pause; prod: 50%, a pause, 100%. Each setWeight changes the weight."""
    prod = steps(prod_pause if prod_pause is not None else pause, (50, 100))
    body = rollout(
        name,
        c.ns,
        c.strategy_of(name),
        stable={"deployment": f"{name}-stable", "version": STABLE},
        canary={"deployment": f"{name}-canary", "version": CANARY, "replicas": 2},
        routing={"keys": KEYS, "handoff": f"{HANDOFF:g}s"},
        stages=[
            {"name": "staging", "steps": [{"setWeight": 20}, {"pause": {"duration": seconds(pause)}}]},
            {"name": "prod", "steps": prod},
        ],
        gates=[
            {
                "name": "chaos-gate",
                "query": GATE,
                "condition": "< 100",
                "interval": "1s",
                "failureLimit": 1,
                "inconclusiveLimit": 30,
            }
        ],
        scaleDownDelay=SCALE_DOWN_DELAY,
        progressDeadline="5m",
        **extra,
    )
    return body


def add_rollout(c: Chaos, body: dict[str, Any], expect: Expect, namespaces: tuple[str, ...] = ()) -> None:
    name, spec = body["metadata"]["name"], body["spec"]
    for ns in namespaces or (c.ns,):
        stable = spec.get("replicas", 2) if spec["routing"].get("mode") == "replicas" else 2
        apply(
            c.cluster,
            deployment(spec["stable"]["deployment"], ns, stable, STABLE),
            deployment(spec["canary"]["deployment"], ns, 0, CANARY),
        )
        c.configmaps.setdefault(name, []).append((ns, f"{name}-routing"))
    c.exporter.gauge("chaos_gate", GOOD, strategy=spec["strategy"])
    c.expect[name] = expect


def succeeded(name: str, ns: str, steps_: list[int], *extra_ns: str, **outcomes: int) -> Expect:
    replicas = {(n, f"{name}-{d}"): v for n in (ns, *extra_ns) for d, v in (("stable", [2, 0]), ("canary", [0, 2]))}
    return Expect("Succeeded", "Completed", {"Succeeded": 1, "RolledBack": 0, **outcomes}, replicas, CANARY, steps_)


def build(c: Chaos, rng: random.Random) -> None:
    """Every object of the run; the Deployments and series first, the custom objects all at once."""
    objects: list[dict[str, Any]] = []
    two = [2, 3]
    for i in range(5):
        body = symbols_rollout(c, f"healthy-{i}", rng.uniform(3, 7))
        add_rollout(c, body, succeeded(f"healthy-{i}", c.ns, two))
        objects.append(body)
    for i in range(3):
        name = f"failing-{i}"
        body = symbols_rollout(c, name, rng.uniform(3, 5), prod_pause=60)
        expect = Expect(
            "RolledBack",
            "GateFailed",
            {"RolledBack": 1, "Succeeded": 0},
            {(c.ns, f"{name}-stable"): [2], (c.ns, f"{name}-canary"): [0, 2, 0]},
            STABLE,
            two,
        )
        add_rollout(c, body, expect)
        objects.append(body)
    # multi-namespace: prod runs in its own namespace, with its own deployments and routing ConfigMap
    body = symbols_rollout(c, "multi-ns", 4)
    body["spec"]["stages"][1]["namespace"] = c.other
    add_rollout(c, body, succeeded("multi-ns", c.ns, two, c.other), namespaces=(c.ns, c.other))
    objects.append(body)
    # replicas mode: 4 pods shared; canary 1, 2, 4 as the weight goes 25, 50, 100
    body = symbols_rollout(c, "replicas", 4)
    body["spec"]["routing"] = {"mode": "replicas", "keys": KEYS}
    body["spec"]["replicas"] = 4
    body["spec"]["stages"] = [{"name": "prod", "steps": steps(4, (25, 50, 100))}]
    expect = Expect(
        "Succeeded",
        "Completed",
        {"Succeeded": 1, "RolledBack": 0},
        {(c.ns, "replicas-stable"): [4, 3, 2, 0], (c.ns, "replicas-canary"): [0, 1, 2, 4]},
        "",
        [5],
    )
    add_rollout(c, body, expect)
    objects.append(body)
    # waits for the passing ShadowRun's verdict before its first step
    body = symbols_rollout(c, "after-shadow", 3, shadowRun="shadow-pass")
    add_rollout(c, body, succeeded("after-shadow", c.ns, two))
    objects.append(body)
    # the parity checks' targets sit in their prod pause until the checks act
    body = symbols_rollout(c, "parity-critical", 3, prod_pause=45)
    add_rollout(c, body, succeeded("parity-critical", c.ns, two, Paused=1, Resumed=1))
    objects.append(body)
    body = symbols_rollout(c, "parity-emergency", 3, prod_pause=600)
    expect = Expect(
        "RolledBack",
        "TradingStopped",
        {"Aborted": 1, "RolledBack": 0, "Succeeded": 0},
        {(c.ns, "parity-emergency-stable"): [2], (c.ns, "parity-emergency-canary"): [0, 2]},
        "none",
        two,
    )
    add_rollout(c, body, expect)
    objects.append(body)
    for name, noise in (("parity-critical", CRITICAL_NOISE), ("parity-emergency", EMERGENCY_NOISE)):
        strategy = c.strategy_of(name)
        c.exporter.gauge("chaos_return", 0.0, noise=noise, strategy=strategy, source="live")
        c.exporter.gauge("chaos_return", 0.0, strategy=strategy, source="backtest")
        objects.append(
            paritycheck(
                name,
                c.ns,
                strategy,
                {"rollout": name},
                schedule=NEVER,
                window=f"{PARITY_WINDOW}s",
                live={"query": RETURNS.format(source="live")},
                backtest={"query": RETURNS.format(source="backtest")},
                attribution={},
                thresholdsBps=CRITICAL_BANDS if name == "parity-critical" else EMERGENCY_BANDS,
                autoRecover=name == "parity-critical",
            )
        )
    objects += build_shadows(c)
    apply(c.cluster, *objects)


def build_shadows(c: Chaos) -> list[dict[str, Any]]:
    apply(
        c.cluster,
        deployment("sh-live", c.ns, 1, SHADOW_LIVE),
        *(deployment(f"sh-{v}", c.ns, 0, v, env={"SHADOW_MODE": "true"}) for v in (SHADOW_PASS, SHADOW_SKEW)),
    )
    strategy = c.strategy_of("shadow")
    for version, shadow, knobs in ((SHADOW_LIVE, False, None), (SHADOW_PASS, True, None), (SHADOW_SKEW, True, 1.0)):
        q = start_quoter(
            strategy,
            version,
            namespace=c.ns,
            kubeconfig=c.cluster.kubeconfig,
            redis_url=c.cluster.redis_url,
            tick_interval=0.2,
            shadow=shadow,
            knobs={"price_skew_bps": knobs} if knobs else None,
        )
        c.quoters.append(q)
    return [
        shadowrun(
            name,
            c.ns,
            strategy,
            c.cluster.redis_url,
            live={"deployment": "sh-live", "version": SHADOW_LIVE},
            shadow={"deployment": f"sh-{version}", "version": version, "replicas": 1},
            duration=seconds(12),
        )
        for name, version in (("shadow-pass", SHADOW_PASS), ("shadow-fail", SHADOW_SKEW))
    ]


# ---- driving the run -------------------------------------------------------------------------------


def prometheus_value(c: Chaos, query: str) -> float | None:
    url = f"{c.cluster.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            result = json.load(resp)["data"]["result"]
    except OSError:
        return None
    return float(result[0]["value"][1]) if result else None


def request_run(c: Chaos, name: str, user: str) -> str:
    """A manual ParityCheck run (`status.requests`, as the plugin writes it); retried while the API
    server is away."""
    rid = f"chaos-{uuid.uuid4().hex[:12]}"
    at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    body = {"requests": {rid: {"action": "run", "by": user, "at": at, "reason": "chaos run"}}}
    deadline = time.monotonic() + 60
    while True:
        try:
            patch_status(c.cluster, "paritycheck", name, c.ns, body)
            return rid
        except CommandError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def handled(st: dict[str, Any], rid: str) -> bool:
    return any(h.get("id") == rid for h in st.get("handledRequests", []))


@dataclass
class Driver:
    """One-shot actions fired when their condition holds, polled from the main thread."""

    c: Chaos
    user: str
    done: set[str] = field(default_factory=set)
    runs: dict[str, list[str]] = field(default_factory=dict)  # parity check -> run request ids

    def once(self, label: str, condition: Callable[[], bool], action: Callable[[], None]) -> None:
        if label not in self.done and condition():
            action()
            self.done.add(label)

    def in_prod_pause(self, name: str) -> bool:
        st = self.c.latest("strategyrollouts", name)
        return st.get("stageIndex") == 1 and st.get("stepIndex") == 1 and st.get("phase") == "Progressing"

    def enough_samples(self, name: str) -> bool:
        query = (
            f'count_over_time(chaos_return{{strategy="{self.c.strategy_of(name)}",source="live"}}[{PARITY_WINDOW}s])'
        )
        return (prometheus_value(self.c, query) or 0) >= PARITY_WINDOW - 1

    def run(self, name: str) -> None:
        self.runs.setdefault(name, []).append(request_run(self.c, name, self.user))

    def last_run_handled(self, name: str) -> bool:
        rids = self.runs.get(name, [])
        return bool(rids) and handled(self.c.latest("paritychecks", name), rids[-1])

    def quiet(self, name: str) -> bool:
        series = f'chaos_return{{strategy="{self.c.strategy_of(name)}",source="live"}}'
        query = f"stddev_over_time({series}[{PARITY_WINDOW + 3}s])"
        return prometheus_value(self.c, query) == 0.0

    def step(self) -> None:
        c = self.c
        for name in (n for n in c.expect if n.startswith("failing-")):
            self.once(
                f"fail {name}",
                lambda n=name: c.latest("strategyrollouts", n).get("stageIndex") == 1,  # type: ignore[misc]
                lambda n=name: c.exporter.gauge("chaos_gate", BAD, strategy=c.strategy_of(n)),  # type: ignore[misc]
            )
        crit, emer = "parity-critical", "parity-emergency"
        self.once(
            "critical run", lambda: self.in_prod_pause(crit) and self.enough_samples(crit), lambda: self.run(crit)
        )
        self.once(
            "calm down",
            lambda: (
                "critical run" in self.done
                and self.last_run_handled(crit)
                and c.latest("strategyrollouts", crit).get("phase") == "Paused"
            ),
            lambda: c.exporter.gauge("chaos_return", 0.0, strategy=c.strategy_of(crit), source="live"),
        )
        self.once("recovery run", lambda: "calm down" in self.done and self.quiet(crit), lambda: self.run(crit))
        self.once(
            "emergency run", lambda: self.in_prod_pause(emer) and self.enough_samples(emer), lambda: self.run(emer)
        )

    def finished(self) -> bool:
        c = self.c
        rollouts = all(c.latest("strategyrollouts", n).get("phase") == e.phase for n, e in c.expect.items())
        shadows = all(c.latest("shadowruns", n).get("phase") == "Completed" for n in ("shadow-pass", "shadow-fail"))
        parity = "recovery run" in self.done and self.last_run_handled("parity-critical")
        parity = parity and self.last_run_handled("parity-emergency")
        wanted = [(k, w) for e in c.expect.values() for k, w in e.replicas.items()]
        wanted += [((c.ns, f"sh-{v}"), [0, 1, 0]) for v in (SHADOW_PASS, SHADOW_SKEW)]
        scaled = all(
            (seen := inv.changes(replica_counts(c.record, ns, d))) and seen[-1] == want[-1] and len(seen) >= len(want)
            for (ns, d), want in wanted
        )
        return rollouts and shadows and parity and scaled


# ---- the test --------------------------------------------------------------------------------------


@pytest.fixture
def chaos(cluster: DevCluster, namespace: str, other_namespace: str, live_operator: OperatorProcess) -> Iterator[Chaos]:
    exporter = Exporter(seed=SEED)
    job = f"chaos-{namespace}"
    cluster.add_scrape_target(job, exporter.target)
    c = Chaos(cluster, namespace, other_namespace, f"c_{namespace.replace('-', '_')}", exporter)
    # the multi-ns rollout's prod stage acts there: the namespace lets it in (docs/safety.md "Tenancy")
    allow_rollouts_from(cluster, other_namespace, namespace)
    stop = threading.Event()
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
    cfg.connection_pool_maxsize = 32  # ten watches and a sampler share it
    api = client.ApiClient(cfg)
    threads: list[threading.Thread] = []
    for ns in (namespace, other_namespace):
        for resource, lister in listers(api, ns, ("strategyrollouts", "shadowruns", "paritychecks")).items():
            threads.append(Watcher(resource, ns, lister, c.record, stop))
    threads.append(Sampler(api, (namespace, other_namespace), c.sampled, stop, period=0.1))
    for t in threads:
        t.start()
    for t in threads:
        if isinstance(t, Watcher):
            assert t.ready.wait(30), f"{t.name} did not list"
    try:
        yield c
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        api.close()  # its pooled TLS connections (a ResourceWarning in whichever test runs when it is collected)
        # A watch stream broken by the API server's restart or still open when its thread stopped is out of
        # the pool: collect it now, quietly (the test's own observers, not the operator's connections).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        for q in c.quoters:
            q.stop()
        cluster.remove_scrape_target(job)
        exporter.stop()


def test_chaos_run_loses_repeats_and_reverts_nothing(chaos: Chaos, live_operator: OperatorProcess) -> None:
    c = chaos
    print(f"chaos run: CHAOS_SEED={SEED} CHAOS_KILLS={KILLS}")
    rng = random.Random(SEED)
    user = c.cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()
    build(c, rng)
    monkey = Monkey(
        live_operator, c.cluster.restart_apiserver, KILLS, SEED, apiserver_after=rng.randrange(1, KILLS + 1)
    )
    monkey.start()
    driver = Driver(c, user)
    deadline = time.monotonic() + 150 * SCALE
    while not (driver.finished() and not monkey.is_alive()):
        assert monkey.error is None, f"the monkey failed: {monkey.error!r}"
        if time.monotonic() > deadline:
            monkey.stop.set()
            pytest.fail(f"not finished after {150 * SCALE:.0f}s (seed {SEED}): {summary(c, driver, monkey)}")
        driver.step()
        time.sleep(0.25)
    assert monkey.error is None, f"the monkey failed: {monkey.error!r}"
    assert monkey.count("kill") == KILLS and monkey.count("apiserver") == 1, monkey.log
    time.sleep(1.5)  # the last writes reach the watches and the sampler
    print(summary(c, driver, monkey))
    violations = check(c, driver)
    assert not violations, f"seed {SEED}: {len(violations)} violations:\n" + "\n".join(violations[:60])


def summary(c: Chaos, driver: Driver, monkey: Monkey) -> str:
    phases = {
        n: (c.latest("strategyrollouts", n).get("phase"), c.latest("strategyrollouts", n).get("reason"))
        for n in c.expect
    }
    shadows = {
        n: (c.latest("shadowruns", n).get("phase"), c.latest("shadowruns", n).get("verdict"))
        for n in ("shadow-pass", "shadow-fail")
    }
    versions = sum(len(v) for v in c.record.versions.values())
    seen = {
        n: (
            len(inv.positions(statuses(c.record, "strategyrollouts", c.ns, n))),
            sum(len(routing_docs(c.record, ns, cm)) for ns, cm in c.configmaps[n]),
            sum(len(routing_docs(c.sampled, ns, cm)) for ns, cm in c.configmaps[n]),
        )
        for n in c.expect
    }
    return (
        f"(positions, watched revisions, sampled revisions) per rollout {seen}; "
        f"rollouts {phases}; shadow runs {shadows}; driver {sorted(driver.done)}; "
        f"disruptions {[(round(d.t - c.t0, 1), d.what, d.detail) for d in monkey.log]}; "
        f"{versions} object versions watched, relists {c.record.gaps}"
    )


def check(c: Chaos, driver: Driver) -> list[str]:
    out: list[str] = []
    for name, e in c.expect.items():
        seen = statuses(c.record, "strategyrollouts", c.ns, name)
        st = seen[-1][1]
        if (st.get("phase"), st.get("reason")) != (e.phase, e.reason):
            out.append(f"{name}: ended {st.get('phase')}/{st.get('reason')}, expected {e.phase}/{e.reason}")
        out += inv.outcome_violations(name, st, CANARY, e.outcomes)
        out += inv.handled_violations(name, st)
        relisted_rollouts = [t for t, resource, gns in c.record.gaps if resource == "strategyrollouts" and gns == c.ns]
        out += inv.step_violations(name, seen, e.steps, c.t0, relisted_rollouts)
        for (ns, dep), want in e.replicas.items():
            out += inv.replica_violations(f"{name} {ns}/{dep}", replica_counts(c.record, ns, dep), want)
        for ns, cm in c.configmaps[name]:
            watched, sampled = routing_docs(c.record, ns, cm), routing_docs(c.sampled, ns, cm)
            label = f"{name} {ns}/{cm}"
            relisted = [t for t, resource, gns in c.record.gaps if resource == "configmaps" and gns == ns]
            out += inv.exclusivity_violations(f"{label} (watch)", watched, (STABLE, CANARY), True, c.t0, relisted)
            out += inv.exclusivity_violations(f"{label} (sampler)", sampled, (STABLE, CANARY), False, c.t0)
            out += inv.drain_violations(f"{label} (watch)", watched, (STABLE, CANARY), HANDOFF - 0.5, c.t0)
            final = watched[-1][1] if watched else {}
            owners = set(final.get("assignments", {}).values())
            if e.owner and owners != {e.owner}:
                out.append(f"{label}: keys end owned by {owners}, expected {e.owner}")
    out += parity_checks(c, driver)
    out += shadow_checks(c)
    return out


def parity_checks(c: Chaos, driver: Driver) -> list[str]:
    out: list[str] = []
    for name, runs in driver.runs.items():
        st = c.latest("paritychecks", name)
        out += inv.handled_violations(f"paritycheck {name}", st)
        if len(st.get("history", [])) != len(runs):
            out.append(f"paritycheck {name}: {len(st.get('history', []))} runs in history for {len(runs)} requested")
    # critical, then back to good: its actions were applied, then lifted; the rollout went on
    crit = routing_docs(c.record, c.ns, "parity-critical-routing")
    if not any(d.get("sizeMultiplier") == 0.5 and d.get("entriesEnabled") is False for _, d in crit):
        out.append("parity-critical: sizeMultiplier 0.5 / entries off never published")
    final = crit[-1][1] if crit else {}
    if (final.get("sizeMultiplier"), final.get("entriesEnabled")) != (1.0, True):
        out.append(
            f"parity-critical: routing ends sizeMultiplier {final.get('sizeMultiplier')},"
            f" entries {final.get('entriesEnabled')}"
        )
    level = c.latest("paritychecks", "parity-critical").get("lastRun", {}).get("level")
    if level not in ("Excellent", "Good"):
        out.append(f"parity-critical: last run {level}, expected Excellent or Good")
    rst = c.latest("strategyrollouts", "parity-critical")
    sent = [(h.get("action"), h.get("outcome")) for h in rst.get("handledRequests", [])]
    sent = [
        a
        for a, h in zip(sent, rst.get("handledRequests", []), strict=True)
        if h.get("source") == "paritycheck/parity-critical"
    ]
    if sent != [("pause", "Applied"), ("resume", "Applied")]:
        out.append(
            f"parity-critical: its requests to the rollout were handled as {sent}, expected pause then resume Applied"
        )
    # emergency: the stop landed
    est = c.latest("strategyrollouts", "parity-emergency")
    stops = [h for h in est.get("handledRequests", []) if h.get("action") == "stopTrading"]
    if [h.get("outcome") for h in stops] != ["Applied"]:
        out.append(f"parity-emergency: stopTrading requests handled as {[h.get('outcome') for h in stops]}")
    edoc = (routing_docs(c.record, c.ns, "parity-emergency-routing") or [(0.0, {})])[-1][1]
    if set(edoc.get("assignments", {}).values()) != {"none"} or edoc.get("entriesEnabled") is not False:
        out.append(f"parity-emergency: routing ends {edoc.get('assignments')} entries {edoc.get('entriesEnabled')}")
    if c.latest("paritychecks", "parity-emergency").get("lastRun", {}).get("level") != "Emergency":
        out.append("parity-emergency: last run is not Emergency")
    return out


def shadow_checks(c: Chaos) -> list[str]:
    out: list[str] = []
    for name, version, verdict in (("shadow-pass", SHADOW_PASS, "Pass"), ("shadow-fail", SHADOW_SKEW, "Fail")):
        st = c.latest("shadowruns", name)
        if (st.get("phase"), st.get("verdict")) != ("Completed", verdict):
            out.append(f"shadowrun {name}: ended {st.get('phase')}/{st.get('verdict')}, expected Completed/{verdict}")
        out += inv.replica_violations(
            f"shadowrun {name} sh-{version}", replica_counts(c.record, c.ns, f"sh-{version}"), [0, 1, 0]
        )
    out += inv.replica_violations("shadowrun live sh-live", replica_counts(c.record, c.ns, "sh-live"), [1])
    policies = c.cluster.kubectl("get", "networkpolicies", "-n", c.ns, "-o", "name").stdout.split()
    if policies:
        out.append(f"shadow runs completed but NetworkPolicies remain: {policies}")
    return out
