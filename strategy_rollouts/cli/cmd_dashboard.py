"""`kubectl strategy dashboard`: the web dashboard on 127.0.0.1 with your kubeconfig (docs/dashboard.md).

The web stack is an optional extra (`pip install strategy-rollouts[dashboard]`), imported only here.
"""

from __future__ import annotations

import argparse

from strategy_rollouts.cli.errors import CliError
from strategy_rollouts.read.allow_options import allow_list
from strategy_rollouts.read.cluster import Cluster


def dashboard(cluster: Cluster, args: argparse.Namespace) -> int:
    try:
        from strategy_rollouts.dashboard import server
    except ImportError as exc:
        raise CliError(f"the dashboard needs its extra: pip install 'strategy-rollouts[dashboard]' ({exc})") from None
    return server.local(
        cluster,
        args.port,
        args.prometheus_url,
        args.read_only,
        lambda line: print(line, flush=True),
        allow_list(args),
    )
