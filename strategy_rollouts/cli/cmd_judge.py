"""`judge replay` and `judge simulate`: a judge gate's own evaluation (engine/judge_replay.py) over recorded
data (a CSV, or a Prometheus range) or synthetic data. Neither needs a cluster."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import yaml
from pydantic import ValidationError
from rich.table import Table

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.api.placeholders import substitute
from strategy_rollouts.cli.errors import CliError
from strategy_rollouts.cli.output import console
from strategy_rollouts.engine import judge_replay
from strategy_rollouts.engine.sequential import per_timestamp
from strategy_rollouts.engine.validation import gate_errors
from strategy_rollouts.read import prometheus

USAGE = 2


def load_gate(path: str) -> GateSpec:
    """GATE.yaml: one gate, as an item of spec.gates (a judge gate, no templateRef)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"{path}: {exc}", USAGE) from None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    try:
        gate = GateSpec.model_validate(data)
    except ValidationError as exc:
        raise CliError(f"{path}: gate: {validation_message(exc)}", USAGE) from None
    if gate.judge is None:
        raise CliError(f"{path}: gate {gate.name} has no judge", USAGE)
    errors = gate_errors("gate", [gate])
    if errors:
        raise CliError(f"{path}: {'; '.join(errors)}", USAGE)
    return gate


def _number(text: str | None, where: str) -> float:
    if text is None or text.strip() == "":
        return math.nan  # a missing sample
    try:
        return float(text)
    except ValueError:
        raise CliError(f"{where}: not a number: {text!r}", USAGE) from None


def read_csv(path: str) -> dict[str, judge_replay.Run]:
    """Header `run,t,canary,stable` (`run` optional); `t` seconds from the start of the step."""
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"t", "canary", "stable"} - set(reader.fieldnames or [])
            if missing:
                raise CliError(
                    f"{path}: header needs run (optional), t, canary, stable; missing {sorted(missing)}", USAGE
                )
            for i, row in enumerate(reader, start=2):
                where = f"{path}:{i}"
                t = _number(row["t"], f"{where} t")
                if not math.isfinite(t):
                    raise CliError(f"{where}: t is required", USAGE)
                rows[row.get("run") or ""].append((t, _number(row["canary"], where), _number(row["stable"], where)))
    except OSError as exc:
        raise CliError(f"{path}: {exc}", USAGE) from None
    return {
        run: judge_replay.Run(tuple(t for t, _, _ in r), tuple(c for _, c, _ in r), tuple(s for _, _, s in r))
        for run, r in rows.items()
    }


def _instant(text: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"not a time (RFC 3339 or unix seconds): {text!r}", USAGE) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def read_prometheus(gate: GateSpec, args: argparse.Namespace) -> dict[str, judge_replay.Run]:
    """The gate's query once per side over [from, to] at its step, as the operator reads it."""
    assert gate.judge is not None
    start, end = _instant(args.start), _instant(args.end)
    if end <= start:
        raise CliError("--to must be after --from", USAGE)
    step_s = parse_duration(gate.judge.step).total_seconds()
    conn = prometheus.Connection(args.prometheus)
    values = {"strategy": args.strategy or "", "interval": gate.interval}
    try:
        queries = [substitute(gate.judge.query, {**values, "version": v}) for v in (args.canary, args.stable)]
    except KeyError as exc:
        raise CliError(f"judge.query: {exc.args[0]} (replay fills strategy, version, interval)", USAGE) from None

    async def both() -> list[prometheus.Samples]:
        return list(await asyncio.gather(*(prometheus.range_samples(conn, q, start, end, step_s) for q in queries)))

    sides = asyncio.run(both())
    for name, got in zip(("canary", "stable"), sides, strict=True):
        if got.outcome != "ok":
            raise CliError(f"Prometheus, {name} side: {got.error}")
    (tc, vc), (ts, vs) = (per_timestamp((got.times, got.values)) for got in sides)
    canary, stable = dict(zip(tc.tolist(), vc.tolist(), strict=True)), dict(zip(ts.tolist(), vs.tolist(), strict=True))
    stamps = sorted(set(canary) | set(stable))
    base = start.timestamp()
    return {
        "": judge_replay.Run(
            tuple(t - base for t in stamps),
            tuple(canary.get(t, math.nan) for t in stamps),
            tuple(stable.get(t, math.nan) for t in stamps),
        )
    }


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def replay(args: argparse.Namespace) -> int:
    gate = load_gate(args.file)
    if (args.data is None) == (args.prometheus is None):
        raise CliError("give --data FILE.csv or --prometheus URL --from T --to T", USAGE)
    if args.prometheus is not None and not (args.start and args.end and args.canary and args.stable):
        raise CliError("--prometheus needs --from, --to, --canary and --stable", USAGE)
    runs = read_csv(args.data) if args.data else read_prometheus(gate, args)
    evaluations = judge_replay.replay(gate, runs)
    if args.output == "json":
        print(json.dumps({"evaluations": [e.wire() for e in evaluations]}, indent=2))
        return 0
    table = Table(box=None, pad_edge=False)
    for column in ("RUN", "T", "RESULT", "VALUE", "EFFECT", "INTERVAL", "SAMPLES", "MESSAGE"):
        table.add_column(column)
    for e in evaluations:
        interval = f"[{_num(e.lower)}, {_num(e.upper)}]" if e.lower is not None else ""
        samples = f"{e.canary}/{e.stable}" + (f" ({e.pairs} pairs)" if e.pairs is not None else "")
        table.add_row(e.run, f"{e.t:g}", e.result, _num(e.value), _num(e.effect), interval, samples, e.message)
    console().print(table)
    return 0


def simulate(args: argparse.Namespace) -> int:
    gate = load_gate(args.file)
    duration = parse_duration(args.duration).total_seconds()
    if duration <= 0 or args.runs < 1:
        raise CliError("--duration and --runs must be positive", USAGE)
    out = judge_replay.simulate(gate, duration, args.shift, args.dist, args.runs, args.seed)
    if args.output == "json":
        print(json.dumps(out.wire(), indent=2))
        return 0
    assert gate.judge is not None
    print(
        f"{gate.name} ({gate.judge.test}), {args.runs} runs of {args.duration}, {args.dist}, shift {args.shift:g} sd:"
        f"\n  Fail (rolled back) {out.fail:.1%}   median {_num(out.minutes_to_fail)} min"
        f"\n  Pass               {out.passed:.1%}   median {_num(out.minutes_to_pass)} min"
        f"\n  undecided          {out.undecided:.1%}"
    )
    return 0


def add_commands(
    judge: argparse._SubParsersAction[argparse.ArgumentParser], parents: list[argparse.ArgumentParser]
) -> None:
    p = judge.add_parser(
        "replay", help="the gate's own evaluation, every interval, over recorded data", parents=parents
    )
    p.set_defaults(local_handler=replay)
    p.add_argument("-f", "--file", required=True, help="GATE.yaml: one gate, as an item of spec.gates")
    p.add_argument("--data", help="CSV with header run,t,canary,stable (run optional; t seconds into the step)")
    p.add_argument("--prometheus", help="Prometheus URL to read the gate's query from")
    p.add_argument("--from", dest="start", help="start of the range (RFC 3339 or unix seconds): the step's start")
    p.add_argument("--to", dest="end", help="end of the range")
    p.add_argument("--strategy", help="value of {{strategy}}")
    p.add_argument("--canary", help="the canary's {{version}}")
    p.add_argument("--stable", help="the stable's {{version}}")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p = judge.add_parser("simulate", help="the gate's operating characteristics over synthetic data", parents=parents)
    p.set_defaults(local_handler=simulate)
    p.add_argument("-f", "--file", required=True, help="GATE.yaml: one gate, as an item of spec.gates")
    p.add_argument("--duration", required=True, help="the step's duration, e.g. 60m")
    p.add_argument("--shift", type=float, default=0.0, help="canary - stable in standard deviations (default 0)")
    p.add_argument("--dist", choices=judge_replay.DISTRIBUTIONS, default="normal")
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=20261207, help="of the synthetic data (default: the bench's)")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
