"""`make demo`: the whole story on the real local cluster, in a few minutes (demo/story.py):

1. a ShadowRun judges v2 beside v1, decision by decision, with side effects off: Pass, with its report;
2. a StrategyRollout takes v2 staging -> prod symbol by symbol behind Prometheus gates;
3. a worse canary v3 is rolled back by its gate;
4. a ParityCheck sees live returns drift from the backtest and halves sizeMultiplier; the quoter obeys.

Everything is real: control plane, Prometheus, Redis, the operator process, and the reference strategy
(examples/quoter) as one process per version; the dashboard's URL is printed first, to watch it live.
A summary table ends it; the exit code is non-zero when any part did not end as expected. The cluster
is left running (`make dev-cluster-down` stops it); the operator, the dashboard and the quoters started
here are stopped.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402

from demo.show import heading  # noqa: E402
from demo.story import PARTS, prepare  # noqa: E402
from demo.summary import Outcome, run_parts, summary_table  # noqa: E402
from demo.world import World  # noqa: E402
from devcluster.cluster import DevCluster, up  # noqa: E402
from strategy_rollouts.testing.dashboard_process import DashboardProcess  # noqa: E402
from strategy_rollouts.testing.operator_process import OperatorProcess  # noqa: E402

NAMESPACE = "demo"
STRATEGY = "fib_rsi"


def banner(console: Console, cluster: DevCluster, namespace: str, dashboard: DashboardProcess) -> None:
    """Where to watch the demo live: the dashboard's URL first, then the terminal equivalents."""
    env = Path(cluster.state_dir) / "env"
    plugin = ".venv/bin/kubectl-strategy"
    console.print(f"\n[bold]Watch it live in a browser:[/] {dashboard.url}")
    console.print(f"    (the dashboard of `kubectl strategy dashboard`, as you; log: {dashboard.log_path})")
    console.print("\n[bold]Or[/] in another terminal (from the repository):")
    console.print(f"    source {env.relative_to(REPO) if env.is_relative_to(REPO) else env}")
    console.print(f"    {plugin} get -n {namespace} -w                  # the rollout, live")
    console.print(f"    {plugin} status fib-rsi -n {namespace}          # stages, symbol map, gates, history")
    console.print(f"    {plugin} shadow get -n {namespace}; {plugin} parity get -n {namespace}")
    console.print(f"    Prometheus: {cluster.prometheus_url}/graph")


def fresh_namespace(cluster: DevCluster, namespace: str) -> None:
    """A previous run's objects are gone (the operator is running, so finalizers are honoured)."""
    cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=120s")
    cluster.kubectl("create", "namespace", namespace)


def main() -> int:
    # The plugin's `get` table is wide: at least 140 columns, more on a wider terminal.
    console = Console(width=max(shutil.get_terminal_size((160, 40)).columns, 140), highlight=False)
    started = time.monotonic()
    heading(console, "Starting (or reusing) the local control plane, Prometheus and Redis")
    cluster, _reused = up()
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"))
    cluster.apply_status_policy()
    log_dir = Path(tempfile.mkdtemp(prefix="demo-", dir=cluster.state_dir))
    heading(console, f"Starting the operator (logs: {log_dir})")
    with (
        OperatorProcess(cluster.kubeconfig, cluster.prometheus_url, log_dir / "operator.log"),
        DashboardProcess(cluster.kubeconfig, cluster.prometheus_url, log_dir / "dashboard.log") as dashboard,
    ):
        fresh_namespace(cluster, NAMESPACE)
        banner(console, cluster, NAMESPACE, dashboard)
        world = World(cluster, NAMESPACE, STRATEGY, console, log_dir)
        try:
            heading(console, "The world before: v1 trades all 10 symbols")
            prepare(world)
            setup = Outcome("Setup", "cluster, operator, v1 trading", "ready", time.monotonic() - started, True)
            outcomes = [setup, *run_parts(world, PARTS, console)]
        finally:
            world.close()
    heading(console, "Summary")
    console.print(summary_table(outcomes, time.monotonic() - started))
    failed = [o for o in outcomes if not o.ok]
    if failed:
        console.print(f"[red bold]Demo did NOT end as expected:[/] {failed[0].name}: {failed[0].happened}")
    else:
        console.print("[green bold]Demo finished as expected.[/]")
    console.print(
        "    The cluster is still running: `source .devcluster/env` to poke at it, `make dev-cluster-down` to stop it."
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
