"""ParityCheck commands: parity get, parity run."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from rich.text import Text

from strategy_rollouts.cli.output import console
from strategy_rollouts.cli.render_parity import paritychecks_table, run_result
from strategy_rollouts.cli.wait import check_outcome, wait_handled
from strategy_rollouts.read.cluster import Cluster
from strategy_rollouts.read.requests import new_id, parity_run_request

KIND = "ParityCheck"


def get(cluster: Cluster, args: argparse.Namespace) -> int:
    objs = cluster.objects(KIND, args.name, args.all_namespaces)
    if not objs:
        console().print(Text(cluster.nothing_found(KIND, args.all_namespaces)))
        return 0
    console().print(paritychecks_table(objs, datetime.now(UTC), args.all_namespaces))
    return 0


def run(cluster: Cluster, args: argparse.Namespace) -> int:
    what = f"paritycheck {cluster.namespace}/{args.name}"
    cluster.get(KIND, args.name)
    id_ = new_id()
    cluster.patch_status(KIND, args.name, parity_run_request(cluster.user_name(), datetime.now(UTC), id_))
    if args.no_wait:
        print(f"run requested for {what} (request {id_})")
        return 0
    obj, entry = wait_handled(lambda: cluster.get(KIND, args.name), id_, args.timeout, what)
    check_outcome(entry, what)
    console().print(run_result(obj))
    return 0
