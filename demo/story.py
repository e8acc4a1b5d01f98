"""The demo's story, one function per part. Each part acts on the real cluster through the World, prints
what a user would look at (the plugin's tables, the symbol map, quoter metrics), checks that it ended as
expected and returns what happened; `Unexpected` says which thing did not.

1. a ShadowRun judges v2 beside v1 decision by decision: Pass, with its report;
2. a StrategyRollout takes v2 staging -> prod by symbol behind Prometheus gates fed by the quoters;
3. a worse v3 (the quoter's `--latency-ms 450`) is rolled back by its gate;
4. a ParityCheck sees v2's live returns drift from the backtest and halves `sizeMultiplier`, which the
   quoter obeys (its `size_multiplier` metric).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from rich.table import Table

from demo.show import follow_rollout, heading, rollout_view
from demo.world import KEYS, ROUTING, World, wait
from strategy_rollouts.operator.clients.routing import OWNER_NAME, OWNER_NAMESPACE

if TYPE_CHECKING:
    from quoter.testing import QuoterEndpoints

V1, V2, V3 = "v1.0.0", "v2.0.0", "v3.0.0"
LEGACY, PIPELINE, SHADOW_DEPLOYMENT, NEXT = "fib-rsi-legacy", "fib-rsi-pipeline", "fib-rsi-shadow", "fib-rsi-v3"
ROLLOUT, SHADOW_RUN, PARITY, BUDGETS = "fib-rsi", "fib-rsi-v2-shadow", "fib-rsi-parity", "fib-rsi-stage-budgets"
WORSE_LATENCY_MS = 450.0  # v3's mean tick: the gate below allows a p95 under 200 ms
# v2 is a new build: it drops ~1 % of its decisions and prices 0.2 bps off (inside the 0.5 bps tolerance)
V2_BUILD = {"drop_rate": 0.01, "price_skew_bps": 0.2}
DRIFT = {"return_noise_bps": 60.0, "return_drift_bps": 8.0, "slippage_bps": 3.0}  # v2 live vs its backtest
PARITY_WINDOW_S = 15


class Unexpected(Exception):
    """A part did not end as expected; the message says what was seen."""


def p95_ms(version: str) -> str:
    return (
        "histogram_quantile(0.95, sum by (le) (rate(tick_duration_seconds_bucket"
        f'{{strategy="{{{{strategy}}}}",version="{version}"}}[10s]))) * 1000'
    )


GATES = [
    {"name": "tick-p95-ms", "query": p95_ms("{{canary.version}}"), "condition": "< 200"},
    {
        "name": "deadline-miss-ratio",
        "query": 'sum(rate(deadline_misses_total{strategy="{{strategy}}",version="{{canary.version}}"}[10s]))'
        ' / sum(rate(ticks_total{strategy="{{strategy}}",version="{{canary.version}}"}[10s]))',
        "condition": "< 0.05",
    },
]


# v3 also has a sequential judge (docs/judge.md): its tick p95 against stable's, paired second by second; Fail
# once the confidence sequence for canary - stable lies entirely above 0, with the interval in the message.
JUDGE: dict[str, Any] = {
    "name": "tick-p95-vs-stable",
    "interval": "1s",
    "failureLimit": 0,
    "inconclusiveLimit": 30,
    "judge": {
        "test": "sequential",
        "query": p95_ms("{{version}}"),
        "step": "1s",
        "worseWhen": "higher",
        "confidence": 0.95,
        "margin": 20.0,  # ms: a p95 up to 20 ms slower than stable's is acceptable
        "minSamples": 5,
    },
}


def rollout(
    strategy: str, stable: tuple[str, str], canary: tuple[str, str], shadow_run: bool, judge: bool = False
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "strategy": strategy,
        "stable": {"deployment": stable[0], "version": stable[1]},
        "canary": {"deployment": canary[0], "version": canary[1], "replicas": 2},
        "routing": {"keys": KEYS, "handoff": "2s"},
        "stages": [
            {"name": "staging", "steps": [{"setWeight": 10}, {"pause": {"duration": "5s"}}]},
            {
                "name": "prod",
                "steps": [
                    {"setWeight": 30},
                    {"pause": {"duration": "5s"}},
                    {"setWeight": 60},
                    {"pause": {"duration": "5s"}},
                    {"setWeight": 100},
                ],
            },
        ],
        # failureLimit 3: blips are tolerated, the fourth Fail within a step rolls back
        "gates": [{**g, "interval": "2s", "failureLimit": 3, "inconclusiveLimit": 10} for g in GATES]
        + ([JUDGE] if judge else []),
        "scaleDownDelay": "3s",
    }
    if shadow_run:
        spec["shadowRun"] = SHADOW_RUN
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"name": ROLLOUT},
        "spec": spec,
    }


def config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def prepare(world: World) -> None:
    """The world before the story: v1 trades every symbol; v2 and v3 are built but get nothing."""
    world.deployment(LEGACY, 4, V1)
    world.deployment(PIPELINE, 0, V2)
    world.deployment(SHADOW_DEPLOYMENT, 0, V2, env={"SHADOW_MODE": "true"})
    world.deployment(NEXT, 0, V3)
    routing = {
        "strategy": world.strategy,
        "stableVersion": V1,
        "canaryVersion": V1,
        "weight": 0,
        "assignments": dict.fromkeys(KEYS, V1),
        "sizeMultiplier": 1.0,
        "entriesEnabled": True,
        "revision": 1,
    }
    # Made before the rollout exists, so it is handed to it by name (docs/safety.md "Tenancy"): the
    # rollout fib-rsi, and no other, takes it over and publishes here.
    handed = config_map(ROUTING, {"routing.json": json.dumps(routing)})
    handed["metadata"]["labels"] = {OWNER_NAMESPACE: world.namespace, OWNER_NAME: ROLLOUT}
    world.apply(handed)
    # p95 budgets per stage (ms) for the ShadowRun's latency profile; the quoter's mean tick is 40 ms
    world.apply(config_map(BUDGETS, {s: "100" for s in ("fetch", "signal", "risk", "order", "tick_total")}))
    world.start_quoter("v1", V1)


def keys_of(q_state: dict[str, Any]) -> list[str]:
    return list(q_state.get("keys") or [])


def decisions_and_orders(q: QuoterEndpoints) -> tuple[float, float]:
    """Orders read first: both counters move every tick, so a live quoter never shows more orders than decisions."""
    orders = q.metric("orders_total") or 0
    return q.metric("decisions_total") or 0, orders


# -- 1 -------------------------------------------------------------------------------------------------


def shadow_run(world: World) -> str:
    heading(world.console, "1/4 ShadowRun: v2 beside v1 on the same market, side effects off, decision by decision")
    world.start_quoter("v2-shadow", V2, shadow=True, knobs=V2_BUILD)
    world.wait_scraped("strategy_stage_duration_seconds_bucket", V2)
    redis_port = world.cluster.redis_url.rsplit(":", 1)[1].split("/")[0]
    prometheus_port = world.cluster.prometheus_url.rsplit(":", 1)[1]
    spec = {
        "strategy": world.strategy,
        "live": {"deployment": LEGACY, "version": V1},
        "shadow": {"deployment": SHADOW_DEPLOYMENT, "version": V2, "replicas": 1},
        "duration": "20s",
        "isolation": {
            "env": {"SHADOW_MODE": "true"},
            "denyEgress": True,
            "allowEgressTo": [{"cidr": "127.0.0.1/32", "ports": [int(redis_port), int(prometheus_port)]}],
        },
        "decisions": {
            "source": {"redis": {"address": world.cluster.redis_url}},
            "matchOn": ["symbol", "tick"],
            "tolerances": {"priceBps": 0.5, "quantityPercent": 1},
            "minDecisions": 100,
            "minMatchRate": 0.95,
            "pairingWindow": "3s",
        },
        "kpis": [
            {
                "name": "shadow-tick-p95-ms",
                "query": p95_ms("{{shadow.version}}"),
                "condition": "<= 200",
                "interval": "2s",
                "inconclusiveLimit": 10,
            }
        ],
        "latencyProfile": {
            "histogram": "strategy_stage_duration_seconds",
            "budgets": {"configMap": BUDGETS},
            "maxRegressionPercent": 25,
        },
    }
    world.apply(
        {
            "apiVersion": "strategyrollouts.io/v1alpha1",
            "kind": "ShadowRun",
            "metadata": {"name": SHADOW_RUN},
            "spec": spec,
        }
    )
    world.console.print(f"    ShadowRun {SHADOW_RUN}: 20 s, at least 100 decisions, match rate >= 95 %")

    def ended() -> dict[str, Any] | None:
        st = world.status("shadowrun", SHADOW_RUN)
        return st if st.get("phase") in ("Completed", "Invalid") else None

    st = wait(ended, 120, f"ShadowRun {SHADOW_RUN} to complete")
    # Side effects off: the shadow decided as much as the live version but sent no order.
    shadow, live = world.quoters["v2-shadow"], world.quoters["v1"]
    counts = {q: decisions_and_orders(q) for q in (shadow, live)}
    world.console.print(
        f"    decisions / orders sent: shadow v2 {counts[shadow][0]:g} / {counts[shadow][1]:g}, "
        f"live v1 {counts[live][0]:g} / {counts[live][1]:g}"
    )
    world.stop_quoter("v2-shadow")
    if counts[shadow][1] != 0 or counts[shadow][0] == 0:
        raise Unexpected(f"the shadow quoter sent {counts[shadow][1]:g} orders for {counts[shadow][0]:g} decisions")
    world.console.print(world.plugin("shadow", "get", SHADOW_RUN).stdout)
    world.console.print(world.plugin("shadow", "report", SHADOW_RUN).stdout)
    d = st.get("decisions") or {}
    seen = (
        f"verdict {st.get('verdict')}: {d.get('compared', 0)} decisions compared, "
        f"match rate {100 * (d.get('matchRate') or 0):.1f} %"
    )
    if st.get("verdict") != "Pass":
        raise Unexpected(f"{seen}; reasons: {st.get('reasons') or st.get('message')}")
    return seen


# -- 2 -------------------------------------------------------------------------------------------------


def promote_v2(world: World) -> str:
    heading(world.console, "2/4 StrategyRollout: v2 staging 10% -> prod 30% -> 60% -> 100%, by symbol, behind gates")
    world.start_quoter("v2", V2, knobs=V2_BUILD)
    world.wait_scraped("tick_duration_seconds_bucket", V2)
    world.console.print("    gates: " + ", ".join(f"{g['name']} {g['condition']}" for g in GATES))
    world.apply(rollout(world.strategy, (LEGACY, V1), (PIPELINE, V2), shadow_run=True))
    seen = follow_rollout(world, ROLLOUT, V2, 240)
    st = seen.obj.get("status") or {}
    if st.get("phase") != "Succeeded" or seen.weights != [10, 30, 60, 100]:
        raise Unexpected(f"phase {st.get('phase')} ({st.get('reason')}) via {seen.weights}: {st.get('message')}")
    # What the apps themselves trade: each quoter's own view of the routing it obeys.
    v2_keys = wait(lambda: len(keys_of(world.quoters["v2"].state())) == len(KEYS), 15, "the v2 quoter on every key")
    assert v2_keys
    v1_keys = keys_of(world.quoters["v1"].state())
    if v1_keys:
        raise Unexpected(f"Succeeded, but the v1 quoter still trades {v1_keys}")
    world.stop_quoter("v1")  # retired
    path = " -> ".join(f"{w}%" for w in seen.weights)
    return f"Succeeded via {path}: the v2 quoter trades all {len(KEYS)} symbols, the v1 quoter none"


# -- 3 -------------------------------------------------------------------------------------------------


def reject_v3(world: World) -> str:
    heading(world.console, f"3/4 A worse canary v3 (quoter --latency-ms {WORSE_LATENCY_MS:g}): its gate rolls it back")
    world.start_quoter("v3", V3, knobs={"latency_ms": WORSE_LATENCY_MS})
    world.wait_scraped("tick_duration_seconds_bucket", V3)
    world.apply(rollout(world.strategy, (PIPELINE, V2), (NEXT, V3), shadow_run=False, judge=True))
    seen = follow_rollout(world, ROLLOUT, V3, 120)
    st = seen.obj.get("status") or {}
    failed = [g for g in st.get("gates") or [] if g.get("result") == "Fail"]
    table = Table(title="Gates of v3", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("GATE", "VALUE", "THRESHOLD", "RESULT"):
        table.add_column(column)
    conditions = {g["name"]: g["condition"] for g in GATES}
    conditions[JUDGE["name"]] = f"sequential, margin {JUDGE['judge']['margin']:g} ms"
    for g in st.get("gates") or []:
        value = "-" if g.get("value") is None else f"{g['value']:.4g}"
        table.add_row(g["name"], value, conditions.get(g["name"], "-"), str(g.get("result")))
    world.console.print(table)
    world.console.print(f"    message: {st.get('message')}")
    if st.get("phase") != "RolledBack" or not failed:
        raise Unexpected(f"phase {st.get('phase')} ({st.get('reason')}), failed gates {failed}: {st.get('message')}")
    owners = wait(
        lambda: set((doc := world.routing()).get("assignments", {}).values()) == {V2} and doc,
        20,
        "every symbol back on v2",
    )
    assert owners
    rollout_view(world.console, world.get("strategyrollout", ROLLOUT) or {})
    world.stop_quoter("v3")
    gate = failed[0]
    judged: dict[str, Any] = next((g for g in st.get("gates") or [] if g["name"] == JUDGE["name"]), {})
    ci = judged.get("confidenceInterval") or {}
    interval = (
        f"; judge {judged.get('result')}: v3 - v2 p95 in [{ci['lower']:.4g}, {ci['upper']:.4g}] ms"
        if ci.get("lower") is not None and ci.get("upper") is not None
        else f"; judge {judged.get('result', '-')}"
    )
    what = (
        f"{gate['name']} = {gate['value']:.4g}, threshold {conditions.get(gate['name'])}"
        if gate["name"] != JUDGE["name"]
        else f"{gate['name']} (sequential)"
    )
    return (
        f"RolledBack ({st.get('reason')}): {what}{interval}, after v3 traded {seen.most_canary_keys} symbol(s);"
        " every symbol back on v2"
    )


# -- 4 -------------------------------------------------------------------------------------------------


def parity_check(world: World) -> dict[str, Any]:
    def series(metric: str, source: str, component: str | None = None) -> str:
        extra = f',component="{component}"' if component else ""
        return f'{metric}{{strategy="{{{{strategy}}}}",version="{V2}",source="{source}"{extra}}}'

    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "ParityCheck",
        "metadata": {"name": PARITY},
        "spec": {
            "strategy": world.strategy,
            "target": {"rollout": ROLLOUT},
            "schedule": "0 0 1 1 *",  # yearly: the demo asks for its runs (`kubectl strategy parity run`)
            "window": f"{PARITY_WINDOW_S}s",
            "step": "1s",
            "periodsPerYear": 1,  # per-period tracking error: the quoter's noise in bps
            "minSamples": 8,
            "live": {"query": series("strategy_return", "live")},
            "backtest": {"query": series("strategy_return", "backtest")},
            "attribution": {
                c: {
                    "live": series("strategy_cost_bps", "live", c),
                    "backtest": series("strategy_cost_bps", "backtest", c),
                }
                for c in ("fees", "slippage")
            },
            "thresholdsBps": {"warning": 12, "critical": 25, "emergency": 400},
            "consecutiveBreaches": 1,
            "actions": {"critical": {"sizeMultiplier": 0.5}},
        },
    }


def quoter_size(world: World) -> dict[str, float | None]:
    q = world.quoters["v2"]
    return {m: q.metric(m) for m in ("size_multiplier", "capital_at_risk_percent")}


def parity_run(world: World) -> dict[str, Any]:
    out = world.plugin("parity", "run", PARITY)
    world.console.print(f"    $ kubectl strategy parity run {PARITY}\n    {out.stdout.strip()} {out.stderr.strip()}")
    if out.returncode != 0:
        raise Unexpected(f"`kubectl strategy parity run` exited {out.returncode}: {out.stderr.strip()}")
    return dict(world.status("paritycheck", PARITY).get("lastRun") or {})


def cut_size(world: World) -> str:
    heading(world.console, "4/4 ParityCheck: v2's live returns drift from its backtest -> sizeMultiplier cut")
    world.apply(parity_check(world))
    world.wait_scraped("strategy_return", V2, samples=PARITY_WINDOW_S + 2)
    before = quoter_size(world)
    first = parity_run(world)
    if first.get("level") not in ("Excellent", "Good"):
        raise Unexpected(f"before any drift the level is {first.get('level')} ({first.get('trackingErrorBps')} bps)")
    world.console.print(f"    live drifts from the backtest: v2 quoter knobs {DRIFT}; waiting one window")
    world.quoters["v2"].set_knobs(**DRIFT)
    time.sleep(PARITY_WINDOW_S + 3)  # the whole window after the drift (scrapes lag a second or two)
    second = parity_run(world)
    if second.get("level") != "Critical":
        raise Unexpected(f"after the drift the level is {second.get('level')} ({second.get('trackingErrorBps')} bps)")
    wait(
        lambda: (
            (a := world.status("paritycheck", PARITY).get("actionsTaken"))
            and all(x.get("state") == "Applied" for x in a)
        ),
        30,
        "the parity actions applied",
    )
    wait(lambda: world.quoters["v2"].metric("size_multiplier") == 0.5, 15, "the quoter obeying sizeMultiplier 0.5")
    after = quoter_size(world)
    world.console.print(world.plugin("parity", "get", PARITY).stdout)
    table = Table(title="v2 quoter metrics", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("METRIC", "BEFORE", "AFTER"):
        table.add_column(column)
    for metric in before:
        table.add_row(metric, f"{before[metric]:g}", f"{after[metric]:g}")
    table.add_row("routing.json sizeMultiplier", "1", f"{world.routing().get('sizeMultiplier'):g}")
    world.console.print(table)
    return (
        f"{first.get('level')} {first.get('trackingErrorBps', 0):.1f} bps -> {second.get('level')} "
        f"{second.get('trackingErrorBps', 0):.1f} bps; size_multiplier {before['size_multiplier']:g} -> "
        f"{after['size_multiplier']:g}"
    )


PARTS = [
    ("ShadowRun v2 vs v1", "verdict Pass", shadow_run),
    ("StrategyRollout v2", "Succeeded, v2 on every symbol", promote_v2),
    ("Canary v3 (worse)", "RolledBack by its gate", reject_v3),
    ("ParityCheck", "Critical, sizeMultiplier 0.5 obeyed", cut_size),
]
