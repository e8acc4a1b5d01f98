"""`kubectl-strategy`: the kubectl plugin (`kubectl strategy ...`) for StrategyRollouts, ShadowRuns and
ParityChecks. Argument parsing and dispatch; commands live in cmd_*.py, renderers in render_*.py."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeAlias

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.cli import cmd_dashboard, cmd_judge, cmd_parity, cmd_rollout, cmd_shadow
from strategy_rollouts.cli.errors import EXIT_ERROR, CliError
from strategy_rollouts.read.allow_options import allow_options
from strategy_rollouts.read.cluster import Cluster, ClusterError, Target

Handler = Callable[[Cluster, argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _seconds(text: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _globals(defaults: bool) -> argparse.ArgumentParser:
    """Global flags, accepted before or after the command (`-n x get` and `get -n x`)."""
    parent = argparse.ArgumentParser(add_help=False)
    default = None if defaults else argparse.SUPPRESS
    parent.add_argument("-n", "--namespace", default=default, help="namespace (default: the context's)")
    parent.add_argument("--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG)")
    parent.add_argument("--context", default=default, help="kubeconfig context")
    return parent


def _wait_flags(parser: argparse.ArgumentParser, timeout: str) -> None:
    parser.add_argument("--no-wait", action="store_true", help="do not wait for the operator to handle it")
    parser.add_argument(
        "--timeout", type=_seconds, default=_seconds(timeout), help=f"how long to wait (default {timeout})"
    )


def build_parser() -> argparse.ArgumentParser:
    common = _globals(defaults=False)
    parser = argparse.ArgumentParser(
        prog="kubectl strategy",
        description="Safe trading-strategy rollouts: StrategyRollouts, ShadowRuns, ParityChecks.",
        parents=[_globals(defaults=True)],
        epilog="Exit codes: 0 done; 1 error, not found, or (status) RolledBack/Degraded/Invalid;"
        " 2 usage error, or (status) still running; 3 the operator did not handle the request in time.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_: str, into: Subparsers | None = None) -> argparse.ArgumentParser:
        p = (into or sub).add_parser(name, help=help_, description=help_, parents=[common])
        p.set_defaults(handler=handler)
        return p

    p = command("get", cmd_rollout.get, "list StrategyRollouts (stage, step, weight, gates)")
    p.add_argument("name", nargs="?")
    p.add_argument("-w", "--watch", action="store_true", help="refresh live until Ctrl-C")
    p.add_argument("-A", "--all-namespaces", action="store_true")

    p = command("status", cmd_rollout.status, "detailed status; exit 0 Succeeded, 1 RolledBack/Degraded, 2 running")
    p.add_argument("name")
    p.add_argument("-w", "--watch", action="store_true", help="wait until Succeeded or RolledBack")
    p.add_argument("--timeout", type=_seconds, default=_seconds("5m"), help="with --watch (default 5m)")

    p = command("promote", cmd_rollout.manual, "promote to the next step (--full: to the end)")
    p.add_argument("name")
    p.add_argument("--full", action="store_true", help="skip every remaining step and stage")
    p.add_argument("--reason")
    _wait_flags(p, "30s")
    p = command("abort", cmd_rollout.manual, "abort: roll back to stable")
    p.add_argument("name")
    p.add_argument("--reason", required=True, help="why (recorded in history and an Event)")
    _wait_flags(p, "30s")
    for name, help_ in (
        ("retry", "start again after a rollback"),
        ("pause", "pause the rollout (nothing advances)"),
        ("resume", "resume a paused rollout"),
        ("approve", "approve the current stage's promotion (two-person rule: spec.stages[].approvals)"),
    ):
        p = command(name, cmd_rollout.manual, help_)
        p.add_argument("name")
        p.add_argument("--reason", required=name == "approve", help="why (recorded in history and an Event)")
        _wait_flags(p, "30s")

    p = command("release-key", cmd_rollout.manual, "return a quarantined key to the canary (docs/keys.md)")
    p.add_argument("name")
    p.add_argument("key", help="the quarantined key (status.keys.quarantined)")
    p.add_argument("--reason", help="why (recorded in history and an Event)")
    _wait_flags(p, "30s")

    shadow = command("shadow", _usage, "ShadowRuns: get, report").add_subparsers(
        dest="shadow_command", required=True, metavar="COMMAND"
    )
    p = command("get", cmd_shadow.get, "list ShadowRuns (phase, verdict, match rate)", shadow)
    p.add_argument("name", nargs="?")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p = command("report", cmd_shadow.report, "print a ShadowRun's report.md", shadow)
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print summary.json instead")

    parity = command("parity", _usage, "ParityChecks: get, run").add_subparsers(
        dest="parity_command", required=True, metavar="COMMAND"
    )
    p = command("get", cmd_parity.get, "list ParityChecks (level, tracking error, runs, actions)", parity)
    p.add_argument("name", nargs="?")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p = command("run", cmd_parity.run, "run a ParityCheck now", parity)
    p.add_argument("name")
    _wait_flags(p, "60s")

    baseline = command("baseline", _usage, "latency budgets: update").add_subparsers(
        dest="baseline_command", required=True, metavar="COMMAND"
    )
    p = command(
        "update", cmd_shadow.baseline_update, "write a Pass ShadowRun's p95s into its budgets ConfigMap", baseline
    )
    p.add_argument("shadowrun")
    p.add_argument("--force", action="store_true", help="even if the verdict is not Pass")

    p = command("dashboard", cmd_dashboard.dashboard, "web dashboard on 127.0.0.1 (prints its URL with a token)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--prometheus-url", help="for the charts (default: $PROMETHEUS_URL, else http://127.0.0.1:9090)")
    p.add_argument("--read-only", action="store_true", help="no promote/abort/pause/approve buttons")
    allow_options(p)

    judge = command("judge", _usage, "judge gates: replay, simulate (no cluster needed)").add_subparsers(
        dest="judge_command", required=True, metavar="COMMAND"
    )
    cmd_judge.add_commands(judge, [common])
    return parser


def _usage(cluster: Cluster, args: argparse.Namespace) -> int:  # pragma: no cover - subcommands are required
    raise CliError("missing subcommand", 2)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    local: Callable[[argparse.Namespace], int] | None = getattr(args, "local_handler", None)
    try:
        if local is not None:  # judge replay / simulate: files and Prometheus only, no cluster
            return local(args)
        handler: Handler = args.handler
        cluster = Cluster(Target(args.kubeconfig, args.context, args.namespace))
        try:
            return handler(cluster, args)
        finally:
            cluster.close()
    except CliError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.code
    except ClusterError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
