"""ShadowRun commands: shadow get, shadow report, baseline update."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from rich.text import Text

from strategy_rollouts.cli.baseline import budgets_config_map, budgets_table, new_budgets
from strategy_rollouts.cli.errors import CliError
from strategy_rollouts.cli.output import console
from strategy_rollouts.cli.render_shadow import report_config_map, shadowruns_table
from strategy_rollouts.read.cluster import Cluster

KIND = "ShadowRun"


def get(cluster: Cluster, args: argparse.Namespace) -> int:
    objs = cluster.objects(KIND, args.name, args.all_namespaces)
    if not objs:
        console().print(Text(cluster.nothing_found(KIND, args.all_namespaces)))
        return 0
    console().print(shadowruns_table(objs, datetime.now(UTC), args.all_namespaces))
    return 0


def report(cluster: Cluster, args: argparse.Namespace) -> int:
    obj = cluster.get(KIND, args.name)
    name = report_config_map(obj)
    data = cluster.config_map(name)
    key = "summary.json" if args.json else "report.md"
    if data is None or key not in data:
        phase = (obj.get("status") or {}).get("phase") or "Pending"
        raise CliError(f"no {key} for shadowrun {cluster.namespace}/{args.name} yet (configmap {name}; phase {phase})")
    text = data[key]
    if args.json:
        text = json.dumps(json.loads(text), indent=2, sort_keys=True)
    print(text.rstrip("\n"))
    return 0


def baseline_update(cluster: Cluster, args: argparse.Namespace) -> int:
    obj = cluster.get(KIND, args.shadowrun)
    name = budgets_config_map(obj)
    after = new_budgets(obj, force=args.force)
    before = cluster.config_map(name)
    cluster.merge_config_map(name, after, create=before is None)
    out = console()
    out.print(f"{'created' if before is None else 'updated'} configmap {cluster.namespace}/{name}:")
    out.print(budgets_table(before or {}, after))
    return 0
