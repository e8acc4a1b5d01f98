"""The quoter's synthetic market, strategy and knobs are pure and deterministic."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "quoter"))

from quoter import market, simulate
from quoter.config import parse_config, parse_duration
from quoter.decisions import Decision, decide, stream_name
from quoter.knobs import Knobs
from quoter.routing import HANDS_OFF, parse_routing

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT")
T0 = 8_900_000_000  # a realistic tick number (unix time / 0.2 s)
ticks = st.integers(min_value=0, max_value=2**40)
symbols = st.sampled_from(SYMBOLS) | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=10)


def test_tick_number_is_floor_of_time_over_interval() -> None:
    assert market.tick_number(100.0, 0.2) == 500
    assert market.tick_number(100.19, 0.2) == 500
    assert market.tick_number(1_700_000_000.5, 1.0) == 1_700_000_000


@given(symbol=symbols, tick=ticks)
def test_price_is_a_pure_function_of_seed_symbol_tick(symbol: str, tick: int) -> None:
    market.price.cache_clear()
    first = market.price("0", symbol, tick)
    market.price.cache_clear()
    assert market.price("0", symbol, tick) == first
    assert first > 0 and math.isfinite(first)


@given(symbol=symbols, tick=ticks)
def test_prices_stay_near_the_base_price(symbol: str, tick: int) -> None:
    ratio = market.price("0", symbol, tick) / market.base_price("0", symbol)
    assert 0.97 < ratio < 1.03


def test_different_seeds_see_different_markets() -> None:
    assert market.price("0", "BTCUSDT", T0) != market.price("1", "BTCUSDT", T0)


def test_price_moves_are_small_and_local() -> None:
    moves = [
        abs(math.log(market.price("0", "ETHUSDT", t) / market.price("0", "ETHUSDT", t - 1)))
        for t in range(T0, T0 + 2000)
    ]
    assert max(moves) < 0.002  # at most ~20 bps per tick
    assert statistics.mean(moves) > 1e-5  # but it does move


@given(symbol=symbols, tick=ticks)
def test_rsi_is_in_range(symbol: str, tick: int) -> None:
    assert 0.0 <= market.rsi("0", symbol, tick) <= 100.0


def test_signals_are_frequent_and_cover_every_type_and_side() -> None:
    kinds: dict[tuple[str, str], int] = {}
    n = 0
    for tick in range(T0, T0 + 1000):
        for symbol in SYMBOLS:
            sig = market.signal("0", symbol, tick)
            if sig is not None:
                n += 1
                kinds[(sig.type, sig.side)] = kinds.get((sig.type, sig.side), 0) + 1
                assert sig.price == market.price("0", symbol, tick)
                assert 0.5 * market.ORDER_NOTIONAL <= sig.price * sig.quantity <= 1.5 * market.ORDER_NOTIONAL
    assert 0.15 < n / 5000 < 0.6  # enough decisions for a shadow comparison in seconds
    assert set(kinds) == {("entry", "buy"), ("entry", "sell"), ("exit", "buy"), ("exit", "sell")}


def test_two_versions_decide_identically_for_the_same_ticks() -> None:
    """Decisions depend on (seed, symbol, tick, knobs) only: not on version or process history."""
    knobs = Knobs()
    live = [d for t in range(T0, T0 + 300) for d in decide("0", t, SYMBOLS, knobs)]
    market.price.cache_clear()
    shadow = [d for t in reversed(range(T0, T0 + 300)) for d in decide("0", t, SYMBOLS, knobs)]
    key = lambda d: (d.tick, d.symbol)  # noqa: E731
    assert sorted(live, key=key) == sorted(shadow, key=key)
    assert len(live) > 100


def test_price_skew_shifts_every_price_by_exactly_that_many_bps() -> None:
    base = [d for t in range(T0, T0 + 200) for d in decide("0", t, SYMBOLS, Knobs())]
    skewed = [d for t in range(T0, T0 + 200) for d in decide("0", t, SYMBOLS, Knobs(price_skew_bps=2.0))]
    assert [(d.symbol, d.tick, d.type, d.side, d.quantity) for d in base] == [
        (d.symbol, d.tick, d.type, d.side, d.quantity) for d in skewed
    ]
    for b, s in zip(base, skewed, strict=True):
        assert (s.price - b.price) / b.price * 1e4 == pytest.approx(2.0)


def test_size_multiplier_and_quantity_skew_scale_quantities() -> None:
    base = decide("0", T0 + 7, SYMBOLS, Knobs())
    half = decide("0", T0 + 7, SYMBOLS, Knobs(quantity_skew_percent=10), size_multiplier=0.5)
    for b, h in zip(base, half, strict=True):
        assert h.quantity == pytest.approx(b.quantity * 0.55)
        assert h.price == b.price


def test_entries_disabled_leaves_only_exits() -> None:
    ticks_ = range(T0, T0 + 200)
    all_ = [d for t in ticks_ for d in decide("0", t, SYMBOLS, Knobs())]
    exits = [d for t in ticks_ for d in decide("0", t, SYMBOLS, Knobs(), entries_enabled=False)]
    assert exits == [d for d in all_ if d.type == "exit"]
    assert 0 < len(exits) < len(all_)


def test_drop_rate_drops_that_fraction_deterministically() -> None:
    ticks_ = range(T0, T0 + 1000)
    all_ = [d for t in ticks_ for d in decide("0", t, SYMBOLS, Knobs())]
    kept = [d for t in ticks_ for d in decide("0", t, SYMBOLS, Knobs(drop_rate=0.2))]
    again = [d for t in ticks_ for d in decide("0", t, SYMBOLS, Knobs(drop_rate=0.2))]
    assert kept == again
    assert set(kept) <= set(all_)
    assert 1 - len(kept) / len(all_) == pytest.approx(0.2, abs=0.03)


def test_decision_fields_are_decimal_strings() -> None:
    d = Decision("BTCUSDT", T0, "entry", "buy", 60123.456789, 0.0166, 1_700_000_000.25)
    f = d.fields()
    assert f == {
        "symbol": "BTCUSDT",
        "tick": str(T0),
        "type": "entry",
        "side": "buy",
        "price": "60123.45678900",
        "quantity": "0.01660000",
        "ts": "1700000000.250000",
    }
    assert stream_name("fib_rsi", "v2.0.0") == "decisions:fib_rsi:v2.0.0"


@given(latency=st.floats(min_value=0, max_value=5000), tick=ticks)
def test_stages_add_up_to_tick_total_around_the_latency_knob(latency: float, tick: int) -> None:
    stages = simulate.stage_durations("0", tick, latency)
    assert set(stages) == {"fetch", "signal", "risk", "order", "tick_total"}
    total = stages.pop("tick_total")
    assert total == pytest.approx(sum(stages.values()))
    assert latency / 1000 * (1 - simulate.JITTER) <= total + 1e-12
    assert total <= latency / 1000 * (1 + simulate.JITTER) + 1e-12


def test_tick_total_mean_is_the_latency_knob() -> None:
    totals = [simulate.stage_durations("0", t, 300.0)["tick_total"] for t in range(T0, T0 + 3000)]
    assert statistics.mean(totals) == pytest.approx(0.300, rel=0.01)


@given(start=ticks, rate=st.floats(min_value=0.0, max_value=1.0))
def test_rates_match_their_knobs_over_any_short_window(start: int, rate: float) -> None:
    """50 ticks = 10 s at 0.2 s: a rate() over that window shows the knob to within 0.06."""
    misses = sum(simulate.deadline_missed(t, rate) for t in range(start, start + 50))
    fills = sum(simulate.partially_filled(n, rate) for n in range(start, start + 50))
    assert abs(misses - 50 * rate) <= 3
    assert abs(fills - 50 * rate) <= 3


def test_live_returns_are_backtest_plus_drift_plus_noise() -> None:
    knobs = Knobs(return_drift_bps=5.0, return_noise_bps=20.0)
    diffs = []
    for t in range(T0, T0 + 5000):
        r = simulate.returns("0", "fib_rsi", "v2", t, knobs)
        assert r["backtest"] == market.backtest_return("0", "fib_rsi", t)
        diffs.append((r["live"] - r["backtest"]) * 1e4)
    assert statistics.mean(diffs) == pytest.approx(5.0, abs=1.0)
    assert statistics.stdev(diffs) == pytest.approx(20.0, rel=0.05)
    flat = simulate.returns("0", "fib_rsi", "v2", T0, Knobs())
    assert flat["live"] == flat["backtest"]


def test_live_costs_are_backtest_baseline_plus_knob() -> None:
    costs = simulate.costs(Knobs(fees_bps=3, slippage_bps=1.5, timing_bps=0, sizing_bps=-1))
    assert costs[("live", "fees")] - costs[("backtest", "fees")] == pytest.approx(3)
    assert costs[("live", "slippage")] - costs[("backtest", "slippage")] == pytest.approx(1.5)
    assert costs[("live", "timing")] == costs[("backtest", "timing")]
    assert costs[("live", "sizing")] - costs[("backtest", "sizing")] == pytest.approx(-1)


def test_knob_updates_are_validated() -> None:
    knobs = Knobs().updated({"latency_ms": 300, "drop_rate": "0.5"})
    assert (knobs.latency_ms, knobs.drop_rate) == (300.0, 0.5)
    for bad, match in (
        ({"nope": 1}, "unknown knob 'nope'"),
        ({"drop_rate": 1.5}, "fraction"),
        ({"latency_ms": -1}, ">= 0"),
        ({"fees_bps": "x"}, "number"),
        ({"fees_bps": True}, "number"),
        ({"fees_bps": float("nan")}, "finite"),
    ):
        with pytest.raises(ValueError, match=match):
            Knobs().updated(bad)


def test_routing_json_parses_and_assigns_keys_only_to_their_version() -> None:
    doc = {
        "strategy": "fib_rsi",
        "stableVersion": "v1",
        "canaryVersion": "v2",
        "weight": 40,
        "assignments": {"BTCUSDT": "v2", "ETHUSDT": "v1", "SOLUSDT": "draining", "BNBUSDT": "none"},
        "sizeMultiplier": 0.5,
        "entriesEnabled": False,
        "revision": 7,
    }
    routing = parse_routing(json.dumps(doc))
    assert routing.keys_for("v2") == ["BTCUSDT"]
    assert routing.keys_for("v1") == ["ETHUSDT"]
    assert routing.keys_for("v3") == []
    assert (routing.size_multiplier, routing.entries_enabled, routing.revision) == (0.5, False, 7)
    assert parse_routing("{}").keys_for("v1") == []
    assert HANDS_OFF.keys_for("") == []
    for bad in ("[]", "not json", '{"assignments": {"A": 1}}', '{"entriesEnabled": "maybe"}'):
        with pytest.raises(ValueError):
            parse_routing(bad)


def test_config_flags_env_and_shadow_guard(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = parse_config(
        ["--strategy", "fib_rsi", "--version", "v2", "--tick-interval", "200ms", "--latency-ms", "90"],
        {"QUOTER_SYMBOLS": "A,B", "QUOTER_DROP_RATE": "0.1", "QUOTER_ROUTING_CONFIGMAP": "r"},
    )
    assert cfg.tick_interval == pytest.approx(0.2)
    assert cfg.symbols == ("A", "B")
    assert (cfg.knobs.latency_ms, cfg.knobs.drop_rate) == (90.0, 0.1)
    assert cfg.routed and not cfg.shadow
    assert parse_duration("0.5s") == 0.5 and parse_duration("2") == 2.0
    with pytest.raises(SystemExit) as exc:
        parse_config(["--strategy", "s", "--version", "v", "--shadow"], {})
    assert exc.value.code == 2
    assert "SHADOW_MODE=true" in capsys.readouterr().err
    shadow = parse_config(["--strategy", "s", "--version", "v", "--shadow"], {"SHADOW_MODE": "true"})
    assert shadow.shadow and not shadow.routed
    implied = parse_config(["--strategy", "s", "--version", "v"], {"SHADOW_MODE": "true"})
    assert implied.shadow
