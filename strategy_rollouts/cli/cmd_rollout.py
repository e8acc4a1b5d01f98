"""StrategyRollout commands: get, status, promote, abort, retry, pause, resume, approve."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import RenderableType
from rich.live import Live
from rich.text import Text

from strategy_rollouts.api.requests import RolloutAction
from strategy_rollouts.cli.ctrl_c import until_ctrl_c
from strategy_rollouts.cli.errors import EXIT_RUNNING
from strategy_rollouts.cli.output import console
from strategy_rollouts.cli.render_rollout import exit_code, request_result, rollout_detail, rollouts_table
from strategy_rollouts.cli.wait import check_outcome, wait_handled
from strategy_rollouts.read.cluster import Cluster
from strategy_rollouts.read.requests import new_id, rollout_request

KIND = "StrategyRollout"
POLL = 1.0


def _now() -> datetime:
    return datetime.now(UTC)


def get(cluster: Cluster, args: argparse.Namespace) -> int:
    out = console()

    def fetch() -> list[dict[str, Any]]:
        return cluster.objects(KIND, args.name, args.all_namespaces)

    def render(objs: list[dict[str, Any]]) -> RenderableType:
        if not objs:
            return Text(cluster.nothing_found(KIND, args.all_namespaces))
        return rollouts_table(objs, _now(), args.all_namespaces)

    if not args.watch:
        out.print(render(fetch()))
        return 0
    # Ctrl-C ends the watch with exit 0 in every state, the first list included (ctrl_c.py says why
    # a bare `except KeyboardInterrupt` is not enough)
    if out.is_terminal:
        with Live(console=out, refresh_per_second=4) as live:
            return until_ctrl_c(lambda: live.update(render(fetch())), POLL)
    # Piped: a new table whenever something changed (like `kubectl get -w`).
    seen: list[str] | None = None

    def print_changes() -> None:
        nonlocal seen
        objs = fetch()
        versions = [o["metadata"].get("resourceVersion", "") for o in objs]
        if versions != seen:
            out.print(render(objs))
            seen = versions

    return until_ctrl_c(print_changes, POLL)


def status(cluster: Cluster, args: argparse.Namespace) -> int:
    out = console()
    obj = cluster.get(KIND, args.name)
    if not args.watch:
        out.print(rollout_detail(obj, _now()))
        return exit_code(obj)
    deadline = time.monotonic() + args.timeout
    with Live(rollout_detail(obj, _now()), console=out, refresh_per_second=4) as live:
        while exit_code(obj) == EXIT_RUNNING and time.monotonic() < deadline:
            time.sleep(POLL)
            obj = cluster.get(KIND, args.name)
            live.update(rollout_detail(obj, _now()))
    code = exit_code(obj)
    if code == EXIT_RUNNING:
        console(stderr=True).print(f"still running after {args.timeout:g}s")
    return code


def manual(cluster: Cluster, args: argparse.Namespace) -> int:
    """promote [--full] / abort / retry / pause / resume / approve / release-key: one request in status.requests."""
    action: RolloutAction = "promoteFull" if args.command == "promote" and args.full else args.command
    if args.command == "release-key":
        action = "releaseKey"
    what = f"strategyrollout {cluster.namespace}/{args.name}"
    cluster.get(KIND, args.name)  # clear "not found" before anything is written
    id_ = new_id()
    key = getattr(args, "key", None)
    cluster.patch_status(KIND, args.name, rollout_request(action, cluster.user_name(), args.reason, _now(), id_, key))
    if args.no_wait:
        print(f"{action} requested for {what} (request {id_})")
        return 0
    obj, entry = wait_handled(lambda: cluster.get(KIND, args.name), id_, args.timeout, what)
    check_outcome(entry, what)
    console().print(request_result(obj, entry))
    return 0
