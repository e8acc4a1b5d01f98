"""Command line and environment: every flag `--some-flag` can also be set as QUOTER_SOME_FLAG."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .knobs import KNOB_NAMES, Knobs

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT")
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*$")


@dataclass(frozen=True)
class Config:
    strategy: str
    version: str
    namespace: str = "default"
    routing_configmap: str | None = None
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    kubeconfig: str | None = None
    metrics_port: int = 8000
    control_port: int = 8001
    bind: str = "127.0.0.1"
    redis_url: str | None = None
    tick_interval: float = 0.2
    watch_timeout: float = 30.0
    shadow: bool = False
    seed: str = "0"
    exit_with_parent: bool = False
    log_level: str = "INFO"
    knobs: Knobs = field(default_factory=Knobs)
    # symbols whose net bps (strategy_symbol_net_bps) is knob bad_symbol_net_bps instead of symbol_net_bps
    bad_symbols: frozenset[str] = frozenset()

    @property
    def routed(self) -> bool:
        """Whether trading follows the routing ConfigMap (otherwise: every symbol)."""
        return self.routing_configmap is not None and not self.shadow


def parse_duration(text: str) -> float:
    """Seconds from "0.2s", "200ms" or "0.2"."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 0.2s, 200ms, 0.2)")
    value = float(match.group(1)) / (1000.0 if match.group(2) == "ms" else 1.0)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"duration must be > 0: {text!r}")
    return value


def _symbols(text: str) -> tuple[str, ...]:
    symbols = tuple(s.strip() for s in text.split(",") if s.strip())
    if not symbols:
        raise argparse.ArgumentTypeError("--symbols must name at least one symbol")
    return symbols


def _truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


def build_parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    def env(flag: str, default: str | None = None) -> str | None:
        return environ.get("QUOTER_" + flag.upper().replace("-", "_"), default)

    namespace = env("namespace") or environ.get("POD_NAMESPACE")
    if namespace is None and SA_NAMESPACE_FILE.exists():
        namespace = SA_NAMESPACE_FILE.read_text().strip()

    p = argparse.ArgumentParser(
        prog="quoter",
        description="Reference strategy app for strategy-rollouts. Every flag can also be set as "
        "QUOTER_<FLAG> (e.g. QUOTER_TICK_INTERVAL=200ms).",
    )
    p.add_argument("--strategy", default=env("strategy"), help="strategy name, e.g. fib_rsi (required)")
    p.add_argument("--version", default=env("version"), help="this process's version, e.g. v2.0.0 (required)")
    p.add_argument("--namespace", default=namespace or "default", help="namespace of the routing ConfigMap")
    p.add_argument(
        "--routing-configmap",
        default=env("routing-configmap"),
        help="routing ConfigMap to obey; without it (or with --shadow) trade every --symbols",
    )
    p.add_argument("--symbols", type=_symbols, default=env("symbols", ",".join(DEFAULT_SYMBOLS)))
    p.add_argument("--kubeconfig", default=env("kubeconfig"), help="default: $KUBECONFIG, then in-cluster")
    p.add_argument("--metrics-port", type=int, default=env("metrics-port", "8000"))
    p.add_argument("--control-port", type=int, default=env("control-port", "8001"))
    p.add_argument("--bind", default=env("bind", "127.0.0.1"), help="listen address (0.0.0.0 in a pod)")
    p.add_argument("--redis-url", default=env("redis-url"), help="publish decisions to this Redis")
    p.add_argument("--tick-interval", type=parse_duration, default=env("tick-interval", "0.2s"))
    p.add_argument(
        "--watch-timeout",
        type=parse_duration,
        default=env("watch-timeout", "30s"),
        help="the routing watch is re-established (relist + watch) at least this often",
    )
    p.add_argument(
        "--shadow",
        action="store_true",
        default=_truthy(env("shadow")),
        help="side effects disabled (needs env SHADOW_MODE=true): only record decisions",
    )
    p.add_argument("--seed", default=env("seed", "0"), help="market seed; equal seeds see equal markets")
    p.add_argument(
        "--exit-with-parent",
        action="store_true",
        default=_truthy(env("exit-with-parent")),
        help="exit when the parent process dies (test harnesses)",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        default=env("log-level", "INFO"),
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    p.add_argument(
        "--bad-symbols",
        default=env("bad-symbols", ""),
        help="comma-separated symbols that trade badly (their strategy_symbol_net_bps is --bad-symbol-net-bps)",
    )
    defaults = Knobs()
    knobs = p.add_argument_group("knobs (also settable at runtime: POST /knobs on the control port)")
    for name in KNOB_NAMES:
        flag = name.replace("_", "-")
        knobs.add_argument("--" + flag, type=float, default=env(flag, str(getattr(defaults, name))))
    return p


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Parse flags and QUOTER_* variables; exits with status 2 and a message on bad input."""
    environ = os.environ if environ is None else environ
    parser = build_parser(environ)
    args = parser.parse_args(argv)
    for flag in ("strategy", "version"):
        if not getattr(args, flag):
            parser.error(f"--{flag} is required (or QUOTER_{flag.upper()})")
    shadow_env = _truthy(environ.get("SHADOW_MODE"))
    if args.shadow and not shadow_env:
        parser.error("refusing to start: --shadow needs the environment variable SHADOW_MODE=true")
    try:
        knobs = Knobs().updated({name: getattr(args, name) for name in KNOB_NAMES})
    except ValueError as exc:
        parser.error(str(exc))
    for port in (args.metrics_port, args.control_port):
        if not 0 <= port <= 65535:
            parser.error(f"port out of range: {port}")
    return Config(
        strategy=args.strategy,
        version=args.version,
        namespace=args.namespace,
        routing_configmap=args.routing_configmap or None,
        symbols=args.symbols,
        kubeconfig=args.kubeconfig or None,
        metrics_port=args.metrics_port,
        control_port=args.control_port,
        bind=args.bind,
        redis_url=args.redis_url or None,
        tick_interval=args.tick_interval,
        watch_timeout=args.watch_timeout,
        # SHADOW_MODE=true alone also disables side effects: the isolation env must always win.
        shadow=args.shadow or shadow_env,
        seed=args.seed,
        exit_with_parent=args.exit_with_parent,
        log_level=args.log_level,
        knobs=knobs,
        bad_symbols=frozenset(s.strip() for s in args.bad_symbols.split(",") if s.strip()),
    )
