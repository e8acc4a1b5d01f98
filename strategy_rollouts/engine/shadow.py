"""ShadowRun engine: decision parsing, pairing with tolerances, incremental matcher, verdict.

Pure: no I/O and no clock reads. The operator reads the two Redis streams, parses entries with
`parse_decision`, feeds them to `ingest` together with the current time, stores the returned
`MatcherState` (via `to_dict`) and finally asks `shadow_verdict` for Pass / Hold / Fail.

Pairing rules (API.md, ShadowRun):
- Decisions pair on the `matchOn` key (e.g. symbol + tick). Several decisions with the same key
  on one side are paired FIFO with the other side's decisions of that key (the n-th live with the
  n-th shadow); the surplus stays pending and ends as missing_live / missing_shadow. FIFO makes the
  pairing independent of how the streams are split into reads.
- A pending decision whose `ts` is more than `pairing_window_s` older than `now_ts` is finalized
  as missing on the other side (a live one as missing_shadow, a shadow one as missing_live).
- Every decision (distinct stream id) is counted exactly once: a re-delivered entry (stream id at
  or below the last one read on its side) is ignored, so a restart never recounts.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Context, Decimal, InvalidOperation
from typing import Any, Final, Literal, TypeAlias

MismatchKind: TypeAlias = Literal["price", "quantity", "side", "type", "missing_live", "missing_shadow"]
PairMismatch: TypeAlias = Literal["type", "side", "price", "quantity"]
GateResult: TypeAlias = Literal[
    "Pass", "Fail", "Inconclusive", "Error", "Rejected", "Undecided"
]  # as api.gates.GateResult
VerdictValue: TypeAlias = Literal["Pass", "Hold", "Fail"]
Side: TypeAlias = Literal["live", "shadow"]

SIDES: Final[tuple[Side, ...]] = ("live", "shadow")
MISMATCH_KINDS: Final[tuple[MismatchKind, ...]] = (
    "price",
    "quantity",
    "side",
    "type",
    "missing_live",
    "missing_shadow",
)
DECISION_FIELDS: Final = ("symbol", "tick", "type", "side", "price", "quantity", "ts")
MATCHABLE_FIELDS: Final = ("symbol", "tick", "type", "side")
MAX_EXAMPLES: Final = 20
# Pending decisions are stored in status / a ConfigMap: ~100 bytes each serialized, so 5000 keep the
# state under ~0.5 MiB. Beyond the cap the oldest are finalized as missing.
MAX_PENDING: Final = 5_000
STATE_VERSION: Final = 1

_MAX_TEXT: Final = 256  # symbol, tick, type, side: longer values are rejected as malformed
_MAX_NUMBER_TEXT: Final = 64
_MAX_EXPONENT: Final = 40  # price / quantity magnitude must lie within 1e-40 .. 1e40
# Exact enough for cross-multiplied comparisons of bounded decimals (no division, no rounding).
_EXACT: Final = Context(prec=200)
# Severity rank of a mismatch kind for the worst-examples list (higher = worse).
_KIND_RANK: Final[Mapping[MismatchKind, int]] = {
    "type": 5,
    "side": 4,
    "price": 3,
    "quantity": 2,
    "missing_shadow": 1,
    "missing_live": 1,
}


# --------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True, slots=True)
class Decision:
    """One entry of a decision stream. `ts` is Unix seconds; `stream_id` is the Redis id `ms-seq`."""

    symbol: str
    tick: str
    type: str
    side: str
    price: Decimal
    quantity: Decimal
    ts: float
    stream_id: str


def _text(value: str | bytes, name: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"field {name!r} is not valid UTF-8") from None
    return value.strip()


def _positive_decimal(raw: str, name: str) -> Decimal:
    if len(raw) > _MAX_NUMBER_TEXT:
        raise ValueError(f"field {name!r} is too long ({len(raw)} characters)")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"field {name!r} is not a decimal number: {raw!r}") from None
    if not value.is_finite():
        raise ValueError(f"field {name!r} must be finite, got {raw!r}")
    if value <= 0:
        raise ValueError(f"field {name!r} must be positive, got {raw!r}")
    if abs(value.adjusted()) > _MAX_EXPONENT:
        raise ValueError(f"field {name!r} is out of range: {raw!r}")
    return value


def _timestamp(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"field 'ts' is not a number: {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"field 'ts' must be a finite, non-negative Unix time, got {raw!r}")
    return value


def stream_id_key(stream_id: str) -> tuple[int, int]:
    """Order of Redis stream ids (`<ms>-<seq>`); raises ValueError on anything else."""
    ms, sep, seq = stream_id.partition("-")
    if not (sep and ms.isdigit() and seq.isdigit()):
        raise ValueError(f"bad stream id {stream_id!r}: expected '<ms>-<seq>'")
    return int(ms), int(seq)


def parse_decision(fields: Mapping[str | bytes, str | bytes], stream_id: str) -> Decision:
    """Parse one stream entry; ValueError names the missing or bad field (the caller counts it)."""
    stream_id_key(stream_id)
    text: dict[str, str] = {}
    for key, value in fields.items():
        name = _text(key, "<field name>")
        if name in DECISION_FIELDS:
            text[name] = _text(value, name)
    for name in DECISION_FIELDS:
        if not text.get(name):
            raise ValueError(f"field {name!r} is missing or empty")
        if len(text[name]) > _MAX_TEXT:
            raise ValueError(f"field {name!r} is too long ({len(text[name])} characters)")
    return Decision(
        symbol=text["symbol"],
        tick=text["tick"],
        type=text["type"],
        side=text["side"],
        price=_positive_decimal(text["price"], "price"),
        quantity=_positive_decimal(text["quantity"], "quantity"),
        ts=_timestamp(text["ts"]),
        stream_id=stream_id,
    )


def match_key(decision: Decision, match_on: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(getattr(decision, name)) for name in match_on)


def validate_match_on(match_on: Sequence[str]) -> str | None:
    """Error message for a bad `matchOn`, or None."""
    if not match_on:
        return "matchOn must name at least one field"
    unknown = [name for name in match_on if name not in MATCHABLE_FIELDS]
    if unknown:
        return f"matchOn: unknown field(s) {unknown}; allowed: {list(MATCHABLE_FIELDS)}"
    if len(set(match_on)) != len(match_on):
        return "matchOn: duplicate field names"
    return None


# ------------------------------------------------------------------------------------- tolerances


@dataclass(frozen=True, slots=True)
class Tolerances:
    price_bps: float
    quantity_percent: float

    def __post_init__(self) -> None:
        for name in ("price_bps", "quantity_percent"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"tolerance {name} must be a finite number >= 0, got {value}")


def _exceeds(live: Decimal, shadow: Decimal, scale: int, tolerance: float) -> bool:
    # |s - l| / l * scale > tol, cross-multiplied so the boundary is exact (l > 0 by parsing).
    # repr() turns the float tolerance back into the decimal the user wrote (0.5, 1, 0.1).
    return _EXACT.multiply(abs(_EXACT.subtract(shadow, live)), Decimal(scale)) > _EXACT.multiply(
        Decimal(repr(tolerance)), live
    )


def deviation(live: Decimal, shadow: Decimal, scale: int) -> float:
    """|shadow - live| / live * scale (1e4 for bps, 100 for percent), relative to LIVE."""
    return float(abs(shadow - live) / live * scale)


def compare_pair(live: Decision, shadow: Decision, tol: Tolerances) -> PairMismatch | None:
    """First mismatch of a pair in the order type, side, price, quantity; None when they match.

    Tolerances are relative to the live value and use the absolute difference, so a shadow that is
    +x bps or -x bps away from live is judged alike.
    """
    if live.type != shadow.type:
        return "type"
    if live.side != shadow.side:
        return "side"
    if _exceeds(live.price, shadow.price, 10_000, tol.price_bps):
        return "price"
    if _exceeds(live.quantity, shadow.quantity, 100, tol.quantity_percent):
        return "quantity"
    return None


# ----------------------------------------------------------------------------------------- counts


@dataclass(frozen=True, slots=True)
class MatchCounts:
    matched: int = 0
    price: int = 0
    quantity: int = 0
    side: int = 0
    type: int = 0
    missing_live: int = 0
    missing_shadow: int = 0

    @property
    def mismatches(self) -> dict[MismatchKind, int]:
        return {kind: getattr(self, kind) for kind in MISMATCH_KINDS}

    @property
    def compared(self) -> int:
        """Pairs + unpaired decisions."""
        return self.matched + sum(self.mismatches.values())

    @property
    def match_rate(self) -> float | None:
        return self.matched / self.compared if self.compared else None

    def add(self, kind: MismatchKind | None) -> MatchCounts:
        name = "matched" if kind is None else kind
        return replace(self, **{name: getattr(self, name) + 1})

    def to_dict(self) -> dict[str, Any]:
        """Status shape: {compared, matched, matchRate, mismatches: {...}}."""
        return {
            "compared": self.compared,
            "matched": self.matched,
            "matchRate": self.match_rate,
            "mismatches": dict(self.mismatches),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MatchCounts:
        mismatches = data.get("mismatches", {})
        values = {kind: _count(mismatches.get(kind, 0), kind) for kind in MISMATCH_KINDS}
        return cls(matched=_count(data.get("matched", 0), "matched"), **values)


def _count(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"count {name!r} must be a non-negative integer, got {value!r}")
    return value


# --------------------------------------------------------------------------------------- examples


@dataclass(frozen=True, slots=True)
class MismatchExample:
    kind: MismatchKind
    key: tuple[str, ...]
    live: Decision | None
    shadow: Decision | None
    price_bps: float | None = None
    quantity_percent: float | None = None

    @property
    def magnitude(self) -> float:
        if self.kind == "price":
            return self.price_bps or 0.0
        if self.kind == "quantity":
            return self.quantity_percent or 0.0
        return 0.0

    def sort_key(self) -> tuple[int, float, str, str]:
        """Worst first; stream ids break ties so the order is total and split-independent."""
        live_id = self.live.stream_id if self.live else ""
        shadow_id = self.shadow.stream_id if self.shadow else ""
        return (-_KIND_RANK[self.kind], -self.magnitude, live_id, shadow_id)


def make_example(
    kind: MismatchKind, key: tuple[str, ...], live: Decision | None, shadow: Decision | None
) -> MismatchExample:
    if live is None or shadow is None:
        return MismatchExample(kind, key, live, shadow)
    return MismatchExample(
        kind,
        key,
        live,
        shadow,
        price_bps=deviation(live.price, shadow.price, 10_000),
        quantity_percent=deviation(live.quantity, shadow.quantity, 100),
    )


def worst(examples: Iterable[MismatchExample], limit: int = MAX_EXAMPLES) -> tuple[MismatchExample, ...]:
    return tuple(sorted(examples, key=MismatchExample.sort_key)[:limit])


# ---------------------------------------------------------------------------------------- matcher


@dataclass(frozen=True, slots=True)
class MatcherState:
    """Everything needed to resume matching after a restart; store it with `to_dict`."""

    counts: MatchCounts = field(default_factory=MatchCounts)
    pending_live: tuple[Decision, ...] = ()  # unpaired, in stream order
    pending_shadow: tuple[Decision, ...] = ()
    last_live_id: str | None = None  # XREAD offsets: the last stream id consumed per side
    last_shadow_id: str | None = None
    worst_examples: tuple[MismatchExample, ...] = ()
    malformed: int = 0  # entries the caller could not parse (not part of `compared`)

    @property
    def pending(self) -> int:
        return len(self.pending_live) + len(self.pending_shadow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "counts": self.counts.to_dict(),
            "pendingLive": [_decision_row(d) for d in self.pending_live],
            "pendingShadow": [_decision_row(d) for d in self.pending_shadow],
            "lastLiveId": self.last_live_id,
            "lastShadowId": self.last_shadow_id,
            "worstExamples": [example_to_dict(e) for e in self.worst_examples],
            "malformed": self.malformed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MatcherState:
        """Inverse of `to_dict`; ValueError on anything it did not write."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported matcher state version {data.get('version')!r}")
        try:
            return cls(
                counts=MatchCounts.from_dict(data["counts"]),
                pending_live=tuple(_decision_from_row(r) for r in data["pendingLive"]),
                pending_shadow=tuple(_decision_from_row(r) for r in data["pendingShadow"]),
                last_live_id=_optional_id(data.get("lastLiveId")),
                last_shadow_id=_optional_id(data.get("lastShadowId")),
                worst_examples=tuple(_example_from_dict(e) for e in data["worstExamples"]),
                malformed=_count(data.get("malformed", 0), "malformed"),
            )
        except (KeyError, TypeError, InvalidOperation) as exc:
            raise ValueError(f"malformed matcher state: {exc!r}") from None


def _decision_row(d: Decision) -> list[Any]:
    # Compact positional rows: pending can hold thousands of decisions.
    return [d.stream_id, d.ts, d.symbol, d.tick, d.type, d.side, str(d.price), str(d.quantity)]


def _decision_from_row(row: Sequence[Any]) -> Decision:
    stream_id, ts, symbol, tick, type_, side, price, quantity = row
    stream_id_key(stream_id)
    return Decision(
        str(symbol), str(tick), str(type_), str(side), Decimal(price), Decimal(quantity), float(ts), stream_id
    )


def decision_to_dict(d: Decision) -> dict[str, Any]:
    """Readable form for reports (decimals as strings, so no precision is lost)."""
    return {
        "streamId": d.stream_id,
        "ts": d.ts,
        "symbol": d.symbol,
        "tick": d.tick,
        "type": d.type,
        "side": d.side,
        "price": str(d.price),
        "quantity": str(d.quantity),
    }


def example_to_dict(e: MismatchExample) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "key": list(e.key),
        "live": _decision_row(e.live) if e.live else None,
        "shadow": _decision_row(e.shadow) if e.shadow else None,
        "priceBps": e.price_bps,
        "quantityPercent": e.quantity_percent,
    }


def _example_from_dict(data: Mapping[str, Any]) -> MismatchExample:
    if data["kind"] not in MISMATCH_KINDS:
        raise ValueError(f"unknown mismatch kind {data['kind']!r}")
    return MismatchExample(
        kind=data["kind"],
        key=tuple(str(k) for k in data["key"]),
        live=_decision_from_row(data["live"]) if data["live"] else None,
        shadow=_decision_from_row(data["shadow"]) if data["shadow"] else None,
        price_bps=data.get("priceBps"),
        quantity_percent=data.get("quantityPercent"),
    )


def _optional_id(value: Any) -> str | None:
    if value is None:
        return None
    stream_id_key(value)
    return str(value)


_OTHER: Final[Mapping[Side, Side]] = {"live": "shadow", "shadow": "live"}
# A decision left unpaired on one side is missing on the other.
_MISSING: Final[Mapping[Side, MismatchKind]] = {"live": "missing_shadow", "shadow": "missing_live"}


class _Matcher:
    """Mutable working copy used inside one `ingest` / `finalize` call, never escapes it."""

    def __init__(self, state: MatcherState, match_on: Sequence[str], tol: Tolerances | None) -> None:
        self.match_on = tuple(match_on)
        self.tol = tol
        self.counts = state.counts
        self.examples = list(state.worst_examples)
        self.last: dict[Side, str | None] = {"live": state.last_live_id, "shadow": state.last_shadow_id}
        self.pending: dict[Side, dict[tuple[str, ...], deque[Decision]]] = {"live": {}, "shadow": {}}
        self.malformed = state.malformed
        restored: dict[Side, tuple[Decision, ...]] = {
            "live": state.pending_live,
            "shadow": state.pending_shadow,
        }
        for side, decisions in restored.items():
            for d in decisions:
                self.pending[side].setdefault(match_key(d, self.match_on), deque()).append(d)

    def _record(self, kind: MismatchKind | None, example: MismatchExample | None) -> None:
        self.counts = self.counts.add(kind)
        if example is not None:
            self.examples.append(example)
            if len(self.examples) > 4 * MAX_EXAMPLES:  # trim now and then, not on every append
                self.examples = list(worst(self.examples))

    def add(self, side: Side, d: Decision) -> None:
        last = self.last[side]
        if last is not None and stream_id_key(d.stream_id) <= stream_id_key(last):
            return  # re-delivered: already counted
        self.last[side] = d.stream_id
        key = match_key(d, self.match_on)
        waiting = self.pending[_OTHER[side]].get(key)
        if not waiting:
            self.pending[side].setdefault(key, deque()).append(d)
            return
        other = waiting.popleft()
        if not waiting:
            del self.pending[_OTHER[side]][key]
        live, shadow = (d, other) if side == "live" else (other, d)
        self._pair(key, live, shadow)

    def _pair(self, key: tuple[str, ...], live: Decision, shadow: Decision) -> None:
        assert self.tol is not None, "pairing needs tolerances"
        kind = compare_pair(live, shadow, self.tol)
        self._record(kind, None if kind is None else make_example(kind, key, live, shadow))

    def expire(self, keep: Callable[[Decision], bool]) -> None:
        """Finalize every pending decision for which keep(decision) is false."""
        for side in SIDES:
            for key in list(self.pending[side]):
                queue = self.pending[side][key]
                kept = deque(d for d in queue if keep(d))
                for d in queue:
                    if not keep(d):
                        self._finalize_one(side, key, d)
                if kept:
                    self.pending[side][key] = kept
                else:
                    del self.pending[side][key]

    def _finalize_one(self, side: Side, key: tuple[str, ...], d: Decision) -> None:
        kind = _MISSING[side]
        live, shadow = (d, None) if side == "live" else (None, d)
        self._record(kind, make_example(kind, key, live, shadow))

    def enforce_cap(self, cap: int) -> None:
        everything = [d for side in SIDES for q in self.pending[side].values() for d in q]
        excess = len(everything) - cap
        if excess <= 0:
            return
        oldest = sorted(everything, key=lambda d: (d.ts, stream_id_key(d.stream_id)))[:excess]
        doomed = {id(d) for d in oldest}
        self.expire(lambda d: id(d) not in doomed)

    def freeze(self) -> MatcherState:
        def ordered(side: Side) -> tuple[Decision, ...]:
            flat = (d for q in self.pending[side].values() for d in q)
            return tuple(sorted(flat, key=lambda d: stream_id_key(d.stream_id)))

        return MatcherState(
            counts=self.counts,
            pending_live=ordered("live"),
            pending_shadow=ordered("shadow"),
            last_live_id=self.last["live"],
            last_shadow_id=self.last["shadow"],
            worst_examples=worst(self.examples),
            malformed=self.malformed,
        )


def ingest(
    state: MatcherState,
    live: Sequence[Decision],
    shadow: Sequence[Decision],
    match_on: Sequence[str],
    tol: Tolerances,
    now_ts: float,
    pairing_window_s: float,
    *,
    malformed: int = 0,
    max_pending: int = MAX_PENDING,
) -> MatcherState:
    """Pair newly read decisions (each side in stream order) with pending ones, then expire.

    Pairing happens before expiry, so a late arrival still pairs with a partner that was pending
    at the previous read. `malformed` adds the entries the caller failed to parse in this read.
    """
    if pairing_window_s < 0 or max_pending < 0:
        raise ValueError("pairing_window_s and max_pending must be >= 0")
    m = _Matcher(state, match_on, tol)
    m.malformed += malformed
    for d in live:
        m.add("live", d)
    for d in shadow:
        m.add("shadow", d)
    cutoff = now_ts - pairing_window_s
    m.expire(lambda d: d.ts >= cutoff)
    m.enforce_cap(max_pending)
    return m.freeze()


def finalize(state: MatcherState, match_on: Sequence[str] = ("symbol", "tick")) -> MatcherState:
    """End of run: every pending decision becomes missing on the other side."""
    m = _Matcher(state, match_on, None)
    m.expire(lambda d: False)
    return m.freeze()


# ---------------------------------------------------------------------------------------- verdict


@dataclass(frozen=True, slots=True)
class KpiResult:
    """Latest KPI gate result; `beyond_limit` = the gate has failed more than its failureLimit."""

    name: str
    result: GateResult
    value: float | None = None
    message: str = ""
    beyond_limit: bool = False


@dataclass(frozen=True, slots=True)
class Quantiles:
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(frozen=True, slots=True)
class StageLatency:
    """One stage of the latency profile (any unit, the same for live, shadow and budget)."""

    stage: str
    live: Quantiles
    shadow: Quantiles
    budget_p95: float | None
    max_regression_percent: float

    @property
    def regression_percent(self) -> float | None:
        if self.live.p95 is None or self.shadow.p95 is None:
            return None
        return latency_regression(self.live.p95, self.shadow.p95)


@dataclass(frozen=True, slots=True)
class StageJudgement:
    stage: str
    result: Literal["Pass", "Fail", "Inconclusive"]
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: VerdictValue | None  # None: still running, no verdict yet
    reasons: tuple[str, ...]


def latency_regression(live_p95: float, shadow_p95: float) -> float | None:
    """(shadow - live) / live * 100; None when live is not a positive finite number."""
    if not (math.isfinite(live_p95) and math.isfinite(shadow_p95)) or live_p95 <= 0:
        return None
    return (shadow_p95 - live_p95) / live_p95 * 100


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def judge_stage(stage: StageLatency) -> StageJudgement:
    """Budget and regression check of one stage; missing data is Inconclusive (never a Pass)."""
    name = stage.stage
    shadow_p95, live_p95 = stage.shadow.p95, stage.live.p95
    if shadow_p95 is None or not _known(shadow_p95):
        return StageJudgement(name, "Inconclusive", (f"stage {name}: no shadow p95 latency data",))
    fails: list[str] = []
    if stage.budget_p95 is not None and shadow_p95 > stage.budget_p95:
        fails.append(f"stage {name}: shadow p95 {shadow_p95:g} > budget {stage.budget_p95:g}")
    regression = stage.regression_percent
    if regression is not None and regression > stage.max_regression_percent:
        fails.append(
            f"stage {name}: p95 regression {regression:.2f}% > {stage.max_regression_percent:g}% "
            f"(live {live_p95:g}, shadow {shadow_p95:g})"
        )
    if fails:
        return StageJudgement(name, "Fail", tuple(fails))
    if regression is None:
        return StageJudgement(name, "Inconclusive", (f"stage {name}: no live p95 latency data to compare",))
    return StageJudgement(name, "Pass")


def _below(value: float, limit: float) -> str:
    # Enough digits that the printed value is visibly below the limit (0.9499 not 0.950).
    for digits in range(3, 10):
        text = f"{value:.{digits}f}"
        if float(text) < limit:
            return text
    return repr(value)


def _decision_reasons(
    counts: MatchCounts, min_decisions: int, min_match_rate: float
) -> tuple[list[str], list[str], list[str]]:
    """(fail, hold, pass) reasons about the decision comparison, judged at the end of the run."""
    rate = counts.match_rate
    if rate is None or counts.compared < min_decisions:
        shown = "n/a" if rate is None else f"{rate:.3f}"
        short = f"only {counts.compared} decisions compared, minDecisions {min_decisions} (match rate {shown})"
        return [], [short], []
    if rate < min_match_rate:
        breakdown = ", ".join(
            f"{kind} mismatches: {n}" for kind, n in sorted(counts.mismatches.items(), key=lambda kv: -kv[1]) if n
        )
        return [f"match rate {_below(rate, min_match_rate)} < {min_match_rate:g} ({breakdown})"], [], []
    return [], [], [f"match rate {rate:.3f} >= {min_match_rate:g} over {counts.compared} decisions"]


def _kpi_reasons(kpis: Sequence[KpiResult], finished: bool) -> tuple[list[str], list[str], bool]:
    """(fail, hold, early_fail) for the KPIs; before the end only a KPI beyond its limit counts."""
    fail: list[str] = []
    hold: list[str] = []
    early = False
    for kpi in kpis:
        value = "n/a" if kpi.value is None else f"{kpi.value:g}"
        detail = f" ({kpi.message})" if kpi.message else ""
        if kpi.result == "Fail" and (finished or kpi.beyond_limit):
            fail.append(f"kpi {kpi.name} failed: value {value}{detail}")
            early = early or kpi.beyond_limit
        elif kpi.result == "Inconclusive":
            hold.append(f"kpi {kpi.name} inconclusive{detail}")
        elif kpi.result == "Undecided":  # a sequential judge without a decision: no Pass at the end
            hold.append(f"kpi {kpi.name} undecided{detail}")
        elif kpi.result == "Error":
            # A broken query cannot judge the strategy: no Pass, but not a Fail of the strategy either.
            hold.append(f"kpi {kpi.name} error{detail}")
    return fail, hold, early


def shadow_verdict(
    counts: MatchCounts,
    *,
    min_decisions: int,
    min_match_rate: float,
    kpis: Sequence[KpiResult],
    stages: Sequence[StageLatency],
    finished: bool,
) -> Verdict:
    """Pass / Hold / Fail at the end of the run (Fail wins over Hold); before it only an early Fail."""
    kpi_fail, kpi_hold, early = _kpi_reasons(kpis, finished)
    if not finished:
        return Verdict("Fail", tuple(kpi_fail)) if early else Verdict(None, ())
    fail, hold, ok = _decision_reasons(counts, min_decisions, min_match_rate)
    fail += kpi_fail
    hold += kpi_hold
    for judgement in map(judge_stage, stages):
        (fail if judgement.result == "Fail" else hold).extend(judgement.reasons)
    if fail:
        return Verdict("Fail", tuple(fail + hold))
    if hold:
        return Verdict("Hold", tuple(hold))
    return Verdict("Pass", tuple(ok))
