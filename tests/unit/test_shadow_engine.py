"""ShadowRun engine: parsing, pair comparison, the incremental matcher (properties) and the verdict."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.engine.shadow import (
    MAX_EXAMPLES,
    Decision,
    KpiResult,
    MatchCounts,
    MatcherState,
    Quantiles,
    StageLatency,
    Tolerances,
    Verdict,
    compare_pair,
    finalize,
    ingest,
    judge_stage,
    latency_regression,
    parse_decision,
    shadow_verdict,
    stream_id_key,
    validate_match_on,
)

MATCH_ON = ("symbol", "tick")
TOL = Tolerances(price_bps=0.5, quantity_percent=1)
BIG_WINDOW = 1e12


def dec(
    n: int,
    symbol: str = "BTCUSDT",
    tick: str | None = None,
    *,
    price: str = "100",
    quantity: str = "1",
    type_: str = "limit",
    side: str = "buy",
    ts: float | None = None,
) -> Decision:
    return Decision(
        symbol=symbol,
        tick=str(n) if tick is None else tick,
        type=type_,
        side=side,
        price=Decimal(price),
        quantity=Decimal(quantity),
        ts=float(n) if ts is None else ts,
        stream_id=f"{1000 + n}-0",
    )


# ------------------------------------------------------------------------------------------ parse


def test_parse_decision_accepts_bytes_and_strings() -> None:
    fields: dict[str | bytes, str | bytes] = {
        b"symbol": b"BTCUSDT",
        "tick": "42",
        "type": b"limit",
        "side": "sell",
        "price": b"65000.10",
        "quantity": "0.25",
        "ts": b"1700000000.5",
        b"extra": b"ignored",
    }
    d = parse_decision(fields, "1700000000500-3")
    assert d == Decision(
        "BTCUSDT",
        "42",
        "limit",
        "sell",
        Decimal("65000.10"),
        Decimal("0.25"),
        1700000000.5,
        "1700000000500-3",
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("price", "NaN", "'price' must be finite"),
        ("price", "inf", "'price' must be finite"),
        ("price", "-1", "'price' must be positive"),
        ("quantity", "0", "'quantity' must be positive"),
        ("quantity", "abc", "'quantity' is not a decimal"),
        ("price", "1e999", "'price' is out of range"),
        ("ts", "soon", "'ts' is not a number"),
        ("ts", "nan", "'ts' must be a finite"),
        ("symbol", "", "'symbol' is missing or empty"),
        ("side", b"\xff", "'side' is not valid UTF-8"),
    ],
)
def test_parse_decision_rejects_bad_fields(field: str, value: str | bytes, message: str) -> None:
    fields: dict[str | bytes, str | bytes] = {
        "symbol": "X",
        "tick": "1",
        "type": "limit",
        "side": "buy",
        "price": "1",
        "quantity": "1",
        "ts": "1",
    }
    fields[field] = value
    with pytest.raises(ValueError, match=message):
        parse_decision(fields, "1-0")


def test_parse_decision_names_missing_field_and_bad_id() -> None:
    with pytest.raises(ValueError, match="'quantity' is missing"):
        parse_decision({"symbol": "X", "tick": "1", "type": "t", "side": "s", "price": "1", "ts": "1"}, "1-0")
    with pytest.raises(ValueError, match="bad stream id"):
        parse_decision({}, "not-an-id")


def test_validate_match_on() -> None:
    assert validate_match_on(["symbol", "tick"]) is None
    assert "unknown field" in (validate_match_on(["symbol", "account"]) or "")
    assert validate_match_on([]) is not None


# ---------------------------------------------------------------------------------------- compare


def test_compare_pair_checks_type_side_price_quantity_in_order() -> None:
    live = dec(1)
    assert compare_pair(live, dec(1, type_="market", side="sell", price="200"), TOL) == "type"
    assert compare_pair(live, dec(1, side="sell", price="200"), TOL) == "side"
    assert compare_pair(live, dec(1, price="200", quantity="9"), TOL) == "price"
    assert compare_pair(live, dec(1, quantity="1.02"), TOL) == "quantity"
    assert compare_pair(live, dec(1, price="100.004", quantity="0.995"), TOL) is None


def test_price_exactly_at_tolerance_boundary_matches() -> None:
    # 0.005 / 100 * 1e4 = 0.5 bps exactly; one more digit is beyond.
    assert compare_pair(dec(1), dec(1, price="100.005"), TOL) is None
    assert compare_pair(dec(1), dec(1, price="99.995"), TOL) is None
    assert compare_pair(dec(1), dec(1, price="100.0050001"), TOL) == "price"
    # 1 % of 1 is 0.01: exactly at the quantity boundary.
    assert compare_pair(dec(1), dec(1, quantity="1.01"), TOL) is None


def test_one_bps_skew_with_half_bps_tolerance_is_a_price_mismatch() -> None:
    assert compare_pair(dec(1, price="65000"), dec(1, price="65006.5"), TOL) == "price"


def test_tolerance_is_relative_to_live() -> None:
    # live 100 -> shadow 100.005 is 0.5 bps of live; live 100.005 -> shadow 100 is 0.49998 bps of live.
    assert compare_pair(dec(1, price="100.005"), dec(1, price="100"), TOL) is None
    assert compare_pair(dec(1, price="100"), dec(1, price="100.005"), Tolerances(0.49999, 1)) == "price"


@given(
    price=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1e7"), places=4),
    skew_bps=st.decimals(min_value=0, max_value=100, places=3),
    qty=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("1e6"), places=3),
    skew_pct=st.decimals(min_value=0, max_value=50, places=3),
    tol_bps=st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.5, 10.0]),
    tol_pct=st.sampled_from([0.0, 0.5, 1.0, 5.0]),
)
def test_symmetric_tolerance(
    price: Decimal, skew_bps: Decimal, qty: Decimal, skew_pct: Decimal, tol_bps: float, tol_pct: float
) -> None:
    """A skew of +x and -x (relative to live) is judged alike: only |difference| / live counts."""
    tol = Tolerances(tol_bps, tol_pct)
    live = dec(1, price=str(price), quantity=str(qty))
    dp, dq = price * skew_bps / 10_000, qty * skew_pct / 100
    up = dec(1, price=str(price + dp), quantity=str(qty + dq))
    down = dec(1, price=str(price - dp), quantity=str(qty - dq))
    assert compare_pair(live, up, tol) == compare_pair(live, down, tol)
    expected = (
        "price" if skew_bps > Decimal(repr(tol_bps)) else "quantity" if skew_pct > Decimal(repr(tol_pct)) else None
    )
    assert compare_pair(live, up, tol) == expected


# ---------------------------------------------------------------------------------------- matcher


def test_matcher_pairs_counts_and_match_rate() -> None:
    live = [dec(1), dec(2), dec(3), dec(4)]
    shadow = [dec(1), dec(2, price="100.01"), dec(3, side="sell"), dec(5)]
    state = ingest(MatcherState(), live, shadow, MATCH_ON, TOL, now_ts=5, pairing_window_s=60)
    assert state.counts == MatchCounts(matched=1, price=1, side=1)
    assert [d.tick for d in state.pending_live] == ["4"]
    assert [d.tick for d in state.pending_shadow] == ["5"]
    assert (state.last_live_id, state.last_shadow_id) == ("1004-0", "1005-0")
    done = finalize(state)
    assert done.counts == MatchCounts(matched=1, price=1, side=1, missing_live=1, missing_shadow=1)
    assert done.counts.compared == 5
    assert done.counts.match_rate == pytest.approx(0.2)
    assert done.pending == 0
    assert MatchCounts().match_rate is None


def test_late_arrival_pairs_within_window_and_expires_beyond_it() -> None:
    s = ingest(MatcherState(), [dec(1, ts=100)], [], MATCH_ON, TOL, now_ts=100, pairing_window_s=10)
    s = ingest(s, [], [dec(1, ts=108)], MATCH_ON, TOL, now_ts=109, pairing_window_s=10)
    assert s.counts == MatchCounts(matched=1)
    s = ingest(s, [dec(2, ts=110)], [], MATCH_ON, TOL, now_ts=110, pairing_window_s=10)
    s = ingest(s, [], [], MATCH_ON, TOL, now_ts=120.5, pairing_window_s=10)
    assert s.counts == MatchCounts(matched=1, missing_shadow=1)
    # The partner arriving after expiry is unpaired too: each decision counted once, as missing.
    s = finalize(ingest(s, [], [dec(2, ts=111)], MATCH_ON, TOL, now_ts=121, pairing_window_s=10))
    assert s.counts == MatchCounts(matched=1, missing_shadow=1, missing_live=1)


def test_duplicate_keys_pair_fifo_and_surplus_is_unpaired() -> None:
    live = [dec(1, tick="7", price="100"), dec(2, tick="7", price="200"), dec(3, tick="7", price="300")]
    shadow = [dec(4, tick="7", price="100"), dec(5, tick="7", price="200")]
    s = finalize(ingest(MatcherState(), live, shadow, MATCH_ON, TOL, now_ts=0, pairing_window_s=60))
    assert s.counts == MatchCounts(matched=2, missing_shadow=1)
    assert s.worst_examples[0].live is not None and s.worst_examples[0].live.price == Decimal("300")


def test_redelivered_entries_are_ignored() -> None:
    batch = [dec(1), dec(2)]
    s = ingest(MatcherState(), batch, [], MATCH_ON, TOL, now_ts=0, pairing_window_s=60)
    s = ingest(s, [*batch, dec(3)], batch, MATCH_ON, TOL, now_ts=0, pairing_window_s=60)
    assert s.counts == MatchCounts(matched=2)
    assert [d.tick for d in s.pending_live] == ["3"]


def test_pending_cap_finalizes_the_oldest() -> None:
    live = [dec(n, ts=1000 - n) for n in range(10)]  # higher n = older
    s = ingest(MatcherState(), live, [], MATCH_ON, TOL, now_ts=1000, pairing_window_s=BIG_WINDOW, max_pending=4)
    assert s.counts == MatchCounts(missing_shadow=6)
    assert sorted(d.tick for d in s.pending_live) == ["0", "1", "2", "3"]


def test_worst_examples_bounded_and_ordered_by_severity() -> None:
    live = [dec(n) for n in range(100)]
    shadow = [dec(n, price=str(100 + n / 100)) for n in range(100)]  # n bps off
    shadow[50] = dec(50, side="sell")
    s = ingest(MatcherState(), live, shadow, MATCH_ON, TOL, now_ts=0, pairing_window_s=60)
    kinds = [e.kind for e in s.worst_examples]
    assert len(kinds) == MAX_EXAMPLES and kinds[0] == "side"
    bps = [e.price_bps or 0.0 for e in s.worst_examples[1:]]
    assert bps == sorted(bps, reverse=True) and bps[0] == pytest.approx(99)


def test_state_round_trips_through_json() -> None:
    s = ingest(MatcherState(), [dec(1), dec(2)], [dec(1, price="101"), dec(3)], MATCH_ON, TOL, 0, 60, malformed=2)
    again = MatcherState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s
    assert again.malformed == 2
    with pytest.raises(ValueError, match="version"):
        MatcherState.from_dict({"version": 99})
    with pytest.raises(ValueError, match="malformed matcher state"):
        MatcherState.from_dict({"version": 1})


# Streams for the properties: a few keys, duplicates allowed, prices sometimes off tolerance.
_entry = st.tuples(
    st.sampled_from(["BTC", "ETH", "SOL"]),
    st.integers(0, 12),
    st.sampled_from(["100", "100.004", "100.01", "99"]),
    st.sampled_from(["buy", "sell"]),
    st.integers(0, 50),
)


def _stream(entries: Sequence[tuple[str, int, str, str, int]]) -> list[Decision]:
    return [
        Decision(sym, str(tick), "limit", side, Decimal(price), Decimal(1), float(ts), f"{1000 + i}-0")
        for i, (sym, tick, price, side, ts) in enumerate(entries)
    ]


def _cuts(data: st.DataObject, n: int) -> list[int]:
    inner = data.draw(st.lists(st.integers(0, n), max_size=5))
    return sorted({0, n, *inner})


def _batches(
    data: st.DataObject, live: list[Decision], shadow: list[Decision]
) -> list[tuple[list[Decision], list[Decision]]]:
    """Split both streams into reads, independently, possibly overlapping (re-delivery)."""
    lc, sc = _cuts(data, len(live)), _cuts(data, len(shadow))
    n = max(len(lc), len(sc))
    lc += [lc[-1]] * (n - len(lc))
    sc += [sc[-1]] * (n - len(sc))
    overlap = data.draw(st.integers(0, 2))
    return [
        (live[max(0, lc[i] - overlap) : lc[i + 1]], shadow[max(0, sc[i] - overlap) : sc[i + 1]]) for i in range(n - 1)
    ]


def _distinct(live: list[Decision], shadow: list[Decision]) -> int:
    return len(live) + len(shadow)


def _accounted(s: MatcherState) -> int:
    c = s.counts
    pairs = c.matched + c.price + c.quantity + c.side + c.type
    return 2 * pairs + c.missing_live + c.missing_shadow + s.pending


@settings(max_examples=100, deadline=None)
@given(
    live=st.lists(_entry, max_size=40),
    shadow=st.lists(_entry, max_size=40),
    window=st.sampled_from([0, 5, 30]),
    data=st.data(),
)
def test_every_decision_counted_exactly_once(
    live: list[tuple[str, int, str, str, int]],
    shadow: list[tuple[str, int, str, str, int]],
    window: int,
    data: st.DataObject,
) -> None:
    """2 x pairs + unpaired + pending == distinct decisions read, for any split, overlap and window."""
    lv, sh = _stream(live), _stream(shadow)
    s = MatcherState()
    for i, (lb, sb) in enumerate(_batches(data, lv, sh)):
        s = ingest(s, lb, sb, MATCH_ON, TOL, now_ts=i * 7, pairing_window_s=window)
        assert _accounted(s) == _read(lv, s.last_live_id) + _read(sh, s.last_shadow_id)
    s = ingest(s, lv, sh, MATCH_ON, TOL, now_ts=1000, pairing_window_s=window)  # full re-delivery: no-op
    assert _accounted(s) == _distinct(lv, sh)
    done = finalize(s)
    assert done.pending == 0 and _accounted(done) == _distinct(lv, sh)
    assert done.counts.compared == done.counts.matched + sum(done.counts.mismatches.values())


def _read(stream: list[Decision], last_id: str | None) -> int:
    return 0 if last_id is None else sum(stream_id_key(d.stream_id) <= stream_id_key(last_id) for d in stream)


@settings(max_examples=100, deadline=None)
@given(live=st.lists(_entry, max_size=40), shadow=st.lists(_entry, max_size=40), data=st.data())
def test_incremental_ingest_equals_one_shot(
    live: list[tuple[str, int, str, str, int]],
    shadow: list[tuple[str, int, str, str, int]],
    data: st.DataObject,
) -> None:
    """Without expiry in between (window covers the lag), reads split any way give the same result."""
    lv, sh = _stream(live), _stream(shadow)
    one_shot = finalize(ingest(MatcherState(), lv, sh, MATCH_ON, TOL, now_ts=0, pairing_window_s=BIG_WINDOW))
    s = MatcherState()
    for lb, sb in _batches(data, lv, sh):
        s = ingest(s, lb, sb, MATCH_ON, TOL, now_ts=0, pairing_window_s=BIG_WINDOW)
    incremental = finalize(s)
    assert incremental.counts == one_shot.counts
    assert incremental.worst_examples == one_shot.worst_examples


@settings(max_examples=100, deadline=None)
@given(
    live=st.lists(_entry, max_size=40),
    shadow=st.lists(_entry, max_size=40),
    window=st.sampled_from([0, 5, 30, BIG_WINDOW]),
    data=st.data(),
)
def test_restart_mid_stream_gives_identical_counts(
    live: list[tuple[str, int, str, str, int]],
    shadow: list[tuple[str, int, str, str, int]],
    window: float,
    data: st.DataObject,
) -> None:
    """A restart (state through JSON) at any read is indistinguishable from an uninterrupted run."""
    lv, sh = _stream(live), _stream(shadow)
    batches = _batches(data, lv, sh)
    restart_at = data.draw(st.integers(0, len(batches)))
    plain = restarted = MatcherState()
    for i, (lb, sb) in enumerate(batches):
        if i == restart_at:
            restarted = MatcherState.from_dict(json.loads(json.dumps(restarted.to_dict())))
        plain = ingest(plain, lb, sb, MATCH_ON, TOL, now_ts=i * 3, pairing_window_s=window)
        restarted = ingest(restarted, lb, sb, MATCH_ON, TOL, now_ts=i * 3, pairing_window_s=window)
    assert finalize(restarted) == finalize(plain)


# ---------------------------------------------------------------------------------------- verdict

ENOUGH = MatchCounts(matched=990, price=10)


def stage(
    name: str = "tick_total", live: float | None = 100, shadow: float | None = 102, budget: float | None = 145
) -> StageLatency:
    return StageLatency(name, Quantiles(p95=live), Quantiles(p95=shadow), budget, max_regression_percent=3)


def verdict(
    counts: MatchCounts = ENOUGH,
    kpis: Sequence[KpiResult] = (),
    stages: Sequence[StageLatency] = (),
    finished: bool = True,
) -> Verdict:
    return shadow_verdict(counts, min_decisions=500, min_match_rate=0.95, kpis=kpis, stages=stages, finished=finished)


def test_verdict_pass() -> None:
    v = verdict(kpis=[KpiResult("p95", "Pass", 120)], stages=[stage()])
    assert v.verdict == "Pass"
    assert v.reasons == ("match rate 0.990 >= 0.95 over 1000 decisions",)


def test_verdict_fail_names_price_mismatches() -> None:
    v = verdict(MatchCounts(matched=912, price=41, missing_shadow=47))
    assert v.verdict == "Fail"
    assert v.reasons == ("match rate 0.912 < 0.95 (missing_shadow mismatches: 47, price mismatches: 41)",)


def test_verdict_rate_just_below_limit_is_printed_below_it() -> None:
    v = verdict(MatchCounts(matched=9499, price=501))
    assert v.reasons[0].startswith("match rate 0.9499 < 0.95")


def test_verdict_hold_when_too_few_decisions() -> None:
    v = verdict(MatchCounts(matched=100))
    assert v.verdict == "Hold"
    assert "only 100 decisions compared, minDecisions 500" in v.reasons[0]
    assert verdict(MatchCounts()).verdict == "Hold"


def test_verdict_hold_on_inconclusive_kpi_or_latency() -> None:
    assert verdict(kpis=[KpiResult("risk", "Inconclusive", None, "empty result")]).verdict == "Hold"
    assert verdict(kpis=[KpiResult("risk", "Error", None, "parse error")]).verdict == "Hold"
    assert verdict(stages=[stage(shadow=None)]).verdict == "Hold"


def test_fail_takes_precedence_over_hold() -> None:
    v = verdict(MatchCounts(matched=10), kpis=[KpiResult("risk", "Fail", 0.6, "<= 0.4")])
    assert v.verdict == "Fail"
    assert v.reasons == (
        "kpi risk failed: value 0.6 (<= 0.4)",
        "only 10 decisions compared, minDecisions 500 (match rate 1.000)",
    )


def test_no_verdict_while_running_except_early_fail() -> None:
    assert verdict(MatchCounts(), finished=False).verdict is None
    within_limit = KpiResult("risk", "Fail", 0.6)
    assert verdict(kpis=[within_limit], finished=False).verdict is None
    beyond = KpiResult("risk", "Fail", 0.6, beyond_limit=True)
    v = verdict(MatchCounts(), kpis=[beyond, KpiResult("p95", "Inconclusive")], finished=False)
    assert (v.verdict, v.reasons) == ("Fail", ("kpi risk failed: value 0.6",))


def test_latency_regression_and_stage_judgement() -> None:
    assert latency_regression(100, 103) == pytest.approx(3)
    assert latency_regression(0, 5) is None
    assert latency_regression(100, float("nan")) is None
    assert judge_stage(stage(shadow=103)).result == "Pass"  # exactly at maxRegressionPercent
    over = judge_stage(stage(shadow=104))
    assert over.result == "Fail" and over.reasons == (
        "stage tick_total: p95 regression 4.00% > 3% (live 100, shadow 104)",
    )
    assert judge_stage(stage(live=150, shadow=146)).reasons == ("stage tick_total: shadow p95 146 > budget 145",)
    assert judge_stage(stage(live=None)).result == "Inconclusive"
    assert judge_stage(stage(live=None, shadow=200)).result == "Fail"  # over budget is a Fail anyway
    assert verdict(stages=[stage(shadow=110)]).verdict == "Fail"
