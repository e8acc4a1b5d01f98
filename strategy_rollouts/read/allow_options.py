"""The Prometheus allow-list options of the read-side tools (the dashboard, `kubectl strategy dashboard`),
declared once; the operator's `run` has its own (it also allows webhooks and always its --prometheus-url)."""

from __future__ import annotations

import argparse

from strategy_rollouts.engine.allowlist import AllowList


def allow_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allowed-prometheus",
        action="append",
        default=[],
        metavar="URL_PREFIX",
        help="an object's own spec.prometheus.address is queried only under these (repeatable)",
    )
    p.add_argument(
        "--allow-cluster-services",
        action="store_true",
        help="also query in-cluster Service names (NAME.NS.svc[.cluster.local], one label)",
    )


def allow_list(args: argparse.Namespace) -> AllowList:
    return AllowList(tuple(args.allowed_prometheus), args.allow_cluster_services)
