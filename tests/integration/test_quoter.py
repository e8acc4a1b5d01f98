"""The reference strategy app (examples/quoter) against the real API server, Prometheus and Redis.

Each test uses its own strategy name, so Redis streams and Prometheus series never collide.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "quoter"))

from quoter import market
from quoter.decisions import stream_name
from quoter.testing import QUOTER_ROOT, QuoterProcess, spawn_quoter, start_quoter, wait_until

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

ALL = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT")
FIELDS = {"symbol", "tick", "type", "side", "price", "quantity", "ts"}
CM = "quoter-routing"


@pytest.fixture
def strategy() -> str:
    return f"qt_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def rds(cluster: DevCluster, strategy: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(cluster.redis_url, decode_responses=True)
    try:
        yield client
    finally:
        for key in client.scan_iter(match=f"decisions:{strategy}:*"):
            client.delete(key)
        client.close()


def put_routing(
    cluster: DevCluster,
    namespace: str,
    strategy: str,
    assignments: dict[str, str],
    revision: int,
    size_multiplier: float = 1.0,
    entries_enabled: bool = True,
) -> float:
    """Apply the routing ConfigMap; returns the time kubectl returned."""
    doc = {
        "strategy": strategy,
        "stableVersion": "v1",
        "canaryVersion": "v2",
        "weight": 0,
        "assignments": assignments,
        "sizeMultiplier": size_multiplier,
        "entriesEnabled": entries_enabled,
        "revision": revision,
    }
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CM, "namespace": namespace},
        "data": {"routing.json": json.dumps(doc)},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    return time.time()


def decisions(rds: redis.Redis, strategy: str, version: str) -> list[dict[str, str]]:
    entries: list[tuple[str, dict[str, str]]] = rds.xrange(stream_name(strategy, version))  # type: ignore[assignment]
    return [fields for _id, fields in entries]


def routed_quoter(cluster: DevCluster, namespace: str, strategy: str, version: str, **kw: Any) -> QuoterProcess:
    return start_quoter(
        strategy,
        version,
        namespace=namespace,
        routing_configmap=CM,
        kubeconfig=cluster.kubeconfig,
        redis_url=cluster.redis_url,
        **kw,
    )


def recorded(quantity: float) -> Any:
    """A quantity as the decision stream records it: eight decimals, so within half of 1e-8."""
    return pytest.approx(quantity, abs=5e-9 + 1e-15)


def wait_metric(q: QuoterProcess, name: str, value: float, timeout: float = 3.0) -> float:
    """Wait until q's `name` equals `value`; returns the seconds it took."""
    start = time.monotonic()
    wait_until(lambda: q.metric(name) == value, timeout=timeout, interval=0.05, what=f"{q} {name} == {value}")
    return time.monotonic() - start


def prom_between(cluster: DevCluster, query: str, lo: float, hi: float, timeout: float = 30.0) -> float:
    """Wait until the query's value is within [lo, hi]; returns it."""

    def within() -> float | None:
        value = prom_value(cluster, query)
        return value if value is not None and lo <= value <= hi else None

    value = wait_until(within, timeout=timeout, interval=0.5, what=f"{query} in [{lo}, {hi}]")
    assert value is not None
    return value


def prom_value(cluster: DevCluster, query: str) -> float | None:
    result = cluster.prometheus_api("query", query=query)["result"]
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value


# -- routing ----------------------------------------------------------------------------------------


def test_trades_only_assigned_keys_and_follows_the_configmap(
    cluster: DevCluster, namespace: str, strategy: str, rds: redis.Redis
) -> None:
    spawned = [
        spawn_quoter(
            strategy,
            v,
            namespace=namespace,
            routing_configmap=CM,
            kubeconfig=cluster.kubeconfig,
            redis_url=cluster.redis_url,
        )
        for v in ("v1", "v2")
    ]
    with spawned[0].ready() as v1, spawned[1].ready() as v2:
        # No ConfigMap yet: hands off.
        time.sleep(1.0)
        for q in (v1, v2):
            assert q.metric("assigned_keys") == 0
            assert q.metric("decisions_total") == 0
            assert q.alive()

        changed = put_routing(
            cluster,
            namespace,
            strategy,
            {"BTCUSDT": "v2", "ETHUSDT": "v1", "SOLUSDT": "draining", "BNBUSDT": "none"},
            revision=1,
        )
        took = max(wait_metric(v1, "assigned_keys", 1), wait_metric(v2, "assigned_keys", 1))
        print(f"revision 1 in force {time.time() - changed:.2f}s after kubectl returned ({took:.2f}s waited)")
        assert v2.metric("routing_revision") == 1
        assert v2.state()["keys"] == ["BTCUSDT"]
        wait_until(lambda: len(decisions(rds, strategy, "v2")) >= 5, timeout=10, what="v2 decisions")
        wait_until(lambda: len(decisions(rds, strategy, "v1")) >= 5, timeout=10, what="v1 decisions")
        assert {d["symbol"] for d in decisions(rds, strategy, "v2")} == {"BTCUSDT"}
        assert {d["symbol"] for d in decisions(rds, strategy, "v1")} == {"ETHUSDT"}

        # Hand ETH over through draining, give SOL to v2 and ADA to v1, drain BTC.
        changed = put_routing(
            cluster,
            namespace,
            strategy,
            {"BTCUSDT": "draining", "ETHUSDT": "draining", "SOLUSDT": "v2", "ADAUSDT": "v1"},
            revision=2,
        )
        wait_metric(v2, "routing_revision", 2)
        wait_metric(v1, "routing_revision", 2)
        settled = time.time()
        print(f"revision 2 in force on both {settled - changed:.2f}s after kubectl returned")
        assert settled - changed < 2.0
        assert v2.metric("assigned_keys") == 1 and v1.metric("assigned_keys") == 1
        changed = put_routing(
            cluster,
            namespace,
            strategy,
            {"ETHUSDT": "v2", "SOLUSDT": "v2", "ADAUSDT": "v1", "BNBUSDT": "v1"},
            revision=3,
        )
        wait_metric(v2, "assigned_keys", 2)
        wait_metric(v1, "assigned_keys", 2)
        settled = time.time()
        assert settled - changed < 2.0

        def symbols_since(version: str) -> set[str]:
            return {d["symbol"] for d in decisions(rds, strategy, version) if float(d["ts"]) > settled}

        # Every key each version owns shows up, and nothing else ever does.
        wait_until(lambda: len(symbols_since("v2")) >= 2, timeout=20, what="v2 trading both of its keys")
        wait_until(lambda: len(symbols_since("v1")) >= 2, timeout=20, what="v1 trading both of its keys")
        assert symbols_since("v2") == {"ETHUSDT", "SOLUSDT"}
        assert symbols_since("v1") == {"ADAUSDT", "BNBUSDT"}

        # Exclusivity over the whole run: no (symbol, tick) decided by both versions.
        owned_v1 = {(d["symbol"], d["tick"]) for d in decisions(rds, strategy, "v1")}
        owned_v2 = {(d["symbol"], d["tick"]) for d in decisions(rds, strategy, "v2")}
        assert not owned_v1 & owned_v2

        # The ConfigMap disappears: hands off again.
        cluster.kubectl("delete", "configmap", CM, "-n", namespace)
        wait_metric(v1, "assigned_keys", 0)
        wait_metric(v2, "assigned_keys", 0)
        assert v2.metric("routing_revision") == 3, "the last revision seen is kept"
        assert v1.stop() == 0 and v2.stop() == 0


def test_routing_survives_watch_reconnects(cluster: DevCluster, namespace: str, strategy: str) -> None:
    """With a 1 s watch timeout the quoter relists and rewatches many times; it never misses a change."""
    put_routing(cluster, namespace, strategy, {"BTCUSDT": "v1"}, revision=1)
    with routed_quoter(cluster, namespace, strategy, "v1", extra_args=["--watch-timeout", "1s"]) as q:
        wait_metric(q, "routing_revision", 1)
        for revision in range(2, 6):
            time.sleep(1.3)  # across at least one reconnect
            keys = dict.fromkeys(ALL[:revision], "v1")
            changed = put_routing(cluster, namespace, strategy, keys, revision=revision)
            wait_metric(q, "assigned_keys", min(revision, len(ALL)))
            assert time.time() - changed < 2.0
        assert "Traceback" not in q.log()


def test_size_multiplier_and_entries_enabled_are_obeyed(
    cluster: DevCluster, namespace: str, strategy: str, rds: redis.Redis
) -> None:
    put_routing(cluster, namespace, strategy, dict.fromkeys(ALL, "v1"), revision=1)
    with routed_quoter(cluster, namespace, strategy, "v1", knobs={"risk_percent": 2.0}) as q:
        wait_metric(q, "assigned_keys", 5)
        assert q.metric("capital_at_risk_percent") == 2.0
        wait_until(lambda: len(decisions(rds, strategy, "v1")) >= 20, timeout=10, what="decisions")
        full = decisions(rds, strategy, "v1")
        assert {d["type"] for d in full} == {"entry", "exit"}
        for d in full:
            sig = market.signal("0", d["symbol"], int(d["tick"]))
            assert sig is not None
            assert float(d["quantity"]) == recorded(sig.quantity)

        changed = put_routing(
            cluster,
            namespace,
            strategy,
            dict.fromkeys(ALL, "v1"),
            2,
            size_multiplier=0.5,
            entries_enabled=False,
        )
        wait_metric(q, "entries_enabled", 0)
        assert q.metric("size_multiplier") == 0.5
        assert q.metric("capital_at_risk_percent") == 1.0
        print(f"sizeMultiplier/entriesEnabled in force {time.time() - changed:.2f}s after kubectl returned")
        settled = time.time()
        wait_until(
            lambda: len([d for d in decisions(rds, strategy, "v1") if float(d["ts"]) > settled]) >= 20,
            timeout=15,
            what="decisions after the change",
        )
        after = [d for d in decisions(rds, strategy, "v1") if float(d["ts"]) > settled]
        assert {d["type"] for d in after} == {"exit"}
        for d in after:
            sig = market.signal("0", d["symbol"], int(d["tick"]))
            assert sig is not None
            assert float(d["quantity"]) == recorded(0.5 * sig.quantity)
        assert (q.metric("orders_total") or 0) > 0


# -- metrics through Prometheus -----------------------------------------------------------------------


def test_latency_rates_and_parity_knobs_show_in_prometheus(cluster: DevCluster, strategy: str) -> None:
    sel = f'strategy="{strategy}",version="v1"'
    p95 = f"histogram_quantile(0.95, sum by (le) (rate(tick_duration_seconds_bucket{{{sel}}}[15s]))) * 1000"
    misses = f"sum(rate(deadline_misses_total{{{sel}}}[10s])) / sum(rate(ticks_total{{{sel}}}[10s]))"
    ret = f'strategy_return{{{sel},source="%s"}}'
    drift = f"({ret % 'live'} - ignoring(source) {ret % 'backtest'})"
    fees = f'strategy_cost_bps{{{sel},component="fees",source="%s"}}'
    with start_quoter(strategy, "v1") as q:
        job = f"quoter-{strategy}"
        cluster.add_scrape_target(job, q.metrics_target)
        try:
            before = prom_between(cluster, p95, 36, 50, timeout=20)
            print(f"p95 at latency_ms=40: {before:.1f} ms")

            q.set_knobs(latency_ms=300)
            changed = time.monotonic()
            after = prom_between(cluster, p95, 280, 350)
            print(f"p95 at latency_ms=300: {after:.1f} ms, {time.monotonic() - changed:.1f}s after the POST")

            q.set_knobs(deadline_miss_rate=0.25, return_drift_bps=10, fees_bps=3)
            changed = time.monotonic()
            ratio = prom_between(cluster, misses, 0.22, 0.28)
            took = time.monotonic() - changed
            print(f"deadline miss ratio {ratio:.3f} (knob 0.25) {took:.1f}s after the POST")

            prom_between(cluster, f"{drift} * 1e4", 9.999, 10.001, timeout=5)
            prom_between(cluster, f"{fees % 'live'} - ignoring(source) {fees % 'backtest'}", 2.999, 3.001, timeout=5)
        finally:
            cluster.remove_scrape_target(job)


# -- decisions in Redis -----------------------------------------------------------------------------


def test_two_versions_publish_identical_decisions_until_price_is_skewed(
    cluster: DevCluster, strategy: str, rds: redis.Redis
) -> None:
    with (
        start_quoter(strategy, "v1", redis_url=cluster.redis_url) as live,
        start_quoter(strategy, "v2", redis_url=cluster.redis_url, shadow=True) as shadow,
    ):
        wait_until(lambda: len(decisions(rds, strategy, "v2")) >= 40, timeout=15, what="shadow decisions")
        skew_from = shadow.state()["tick"] + 2
        shadow.set_knobs(price_skew_bps=5.0)
        wait_until(
            lambda: len([d for d in decisions(rds, strategy, "v2") if int(d["tick"]) >= skew_from]) >= 30,
            timeout=15,
            what="skewed decisions",
        )
        assert shadow.metric("orders_total") == 0, "shadow mode never sends orders"
        assert (live.metric("orders_total") or 0) > 0

    by_key = {v: {(d["symbol"], int(d["tick"])): d for d in decisions(rds, strategy, v)} for v in ("v1", "v2")}
    for entries in by_key.values():
        for d in entries.values():
            assert set(d) == FIELDS
            assert d["symbol"] in ALL and d["type"] in ("entry", "exit") and d["side"] in ("buy", "sell")
            assert float(d["price"]) > 0 and float(d["quantity"]) > 0 and int(d["tick"]) > 0
            assert abs(float(d["ts"]) - time.time()) < 120

    ticks = [{t for _s, t in by_key[v]} for v in ("v1", "v2")]
    lo, hi = max(min(t) for t in ticks), min(max(t) for t in ticks)
    common = {k for k in by_key["v1"] if lo <= k[1] <= hi}
    assert common == {k for k in by_key["v2"] if lo <= k[1] <= hi}, "same (symbol, tick) decided"
    equal = [k for k in common if k[1] < skew_from - 2]
    skewed = [k for k in common if k[1] >= skew_from]
    assert len(equal) >= 20 and len(skewed) >= 20
    for k in equal:
        a, b = by_key["v1"][k], by_key["v2"][k]
        assert (a["type"], a["side"], a["price"], a["quantity"]) == (
            b["type"],
            b["side"],
            b["price"],
            b["quantity"],
        )
    for k in skewed:
        a, b = by_key["v1"][k], by_key["v2"][k]
        assert (a["type"], a["side"], a["quantity"]) == (b["type"], b["side"], b["quantity"])
        bps = (float(b["price"]) - float(a["price"])) / float(a["price"]) * 1e4
        assert bps == pytest.approx(5.0, abs=0.01)
    print(f"{len(common)} common decisions: {len(equal)} identical, {len(skewed)} skewed by 5 bps")


# -- process behaviour --------------------------------------------------------------------------------


def test_ticks_once_per_interval_and_counts_orders_only_when_live(strategy: str) -> None:
    with (
        start_quoter(strategy, "v1", knobs={"partial_fill_rate": 0.5}) as live,
        start_quoter(strategy, "v2", shadow=True) as shadow,
    ):
        t0, ticks0 = time.monotonic(), live.metric("ticks_total") or 0
        time.sleep(3.0)
        per_second = ((live.metric("ticks_total") or 0) - ticks0) / (time.monotonic() - t0)
        print(f"ticks/s at tick_interval 0.2s: {per_second:.2f}")
        assert 4.0 <= per_second <= 5.6
        orders, fills = live.metric("orders_total") or 0, live.metric("partial_fills_total") or 0
        assert orders > 10 and abs(fills - orders / 2) <= 2
        assert shadow.metric("orders_total") == 0 and shadow.metric("partial_fills_total") == 0
        assert (shadow.metric("decisions_total") or 0) > 10


def test_sigterm_exits_zero_quickly_while_watching(cluster: DevCluster, namespace: str, strategy: str) -> None:
    put_routing(cluster, namespace, strategy, {"BTCUSDT": "v1"}, revision=1)
    q = routed_quoter(cluster, namespace, strategy, "v1")
    wait_metric(q, "assigned_keys", 1)
    start = time.monotonic()
    assert q.stop(timeout=2.0) == 0
    took = time.monotonic() - start
    print(f"SIGTERM to exit: {took:.2f}s")
    assert took < 2.0


def test_unreachable_api_server_means_hands_off_not_a_crash(tmp_path: Path, strategy: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    with start_quoter(strategy, "v1", namespace="x", routing_configmap="r", kubeconfig=kubeconfig) as q:
        time.sleep(1.0)
        assert q.alive()
        assert q.metric("assigned_keys") == 0 and q.metric("decisions_total") == 0
        assert (q.metric("ticks_total") or 0) > 0
        assert "routing watch" in q.log()
        assert q.stop() == 0


def test_shadow_refuses_to_start_without_shadow_mode_env() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHADOW_MODE"}
    env["PYTHONPATH"] = str(QUOTER_ROOT)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "quoter",
            "--strategy",
            "s",
            "--version",
            "v",
            "--shadow",
            "--metrics-port",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert "SHADOW_MODE=true" in r.stderr
    assert "QUOTER READY" not in r.stdout
